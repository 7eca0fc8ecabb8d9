//! Many instances, one queue: three standalone handlers on one storage account (Azurite) share
//! the work; every operation accepted by any of them completes, readable from any of them and
//! ended exactly once; a `kill -9` of one in the middle loses nothing (its messages come back
//! after the visibility timeout and a survivor finishes them) and the work spreads over the
//! survivors; a synchronous wait on one instance ends when another ends the work. Prints its
//! figures. Size from SCALE_REQUESTS (default 300); `scripts/reliability.sh` runs it.

mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use support::app::client;
use support::azurite::{Azurite, Names};
use support::host::Handler;
use support::{as_refs, eventually};

const INSTANCES: usize = 3;
/// The visibility timeout: how long the killed instance's messages stay hidden.
const VISIBILITY_SECONDS: u64 = 2;
/// How often a synchronous wait re-reads storage.
const SYNC_POLL_MS: u64 = 100;

/// How long `n` operations may take on a slow, shared machine before one counts as lost
/// (Azurite's queue slows down as it deepens).
fn allowance(n: usize) -> Duration {
    Duration::from_secs(120 + n as u64 / 5)
}

fn requests() -> usize {
    std::env::var("SCALE_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

/// One accepted submission.
#[derive(Debug, Clone)]
struct Accepted {
    record_id: String,
    /// The status path, without the instance's address: any instance answers it.
    path: String,
}

/// `503` answers (storage busy) that clients waited out and retried.
static BUSY: AtomicUsize = AtomicUsize::new(0);

/// The wait a `503` asks for, capped for the test.
fn retry_after(r: &reqwest::Response) -> Duration {
    let seconds = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(1);
    Duration::from_secs(seconds.min(2))
}

/// The live instances' base URLs, which submissions and reads go to.
type Live = Arc<Mutex<Vec<String>>>;

fn pick(live: &Live, i: usize) -> String {
    let live = live.lock().unwrap();
    live[i % live.len()].clone()
}

/// Submits `n` records over the live instances in turn, retrying (as a client would) one that
/// failed because its instance was killed.
async fn submit_all(live: Live, n: usize, accepted: Arc<AtomicUsize>) -> Vec<Accepted> {
    let http = client();
    futures::stream::iter(0..n)
        .map(|i| {
            let (http, live, accepted) = (http.clone(), live.clone(), accepted.clone());
            async move {
                let record_id = format!("scale-{i}");
                for attempt in 0.. {
                    assert!(attempt < 100, "{record_id} never accepted");
                    let base = pick(&live, i + attempt);
                    let sent = http
                        .post(format!("{base}/api/AsyncProcessingWorkAcceptor"))
                        .header("Idempotency-Key", &record_id)
                        .json(&json!({ "id": record_id, "customername": "Contoso" }))
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status() == StatusCode::ACCEPTED => {
                            let location = r.headers()["location"].to_str().unwrap().to_string();
                            let path = location[location.find("/api/").unwrap()..].to_string();
                            accepted.fetch_add(1, Ordering::Relaxed);
                            return Accepted { record_id, path };
                        }
                        // Storage busy: as a client should, again after `Retry-After`.
                        Ok(r) if r.status() == StatusCode::SERVICE_UNAVAILABLE => {
                            BUSY.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(retry_after(&r)).await;
                        }
                        Ok(r) => panic!("{record_id}: unexpected {}", r.status()),
                        // Its instance was just killed: the next live one takes it.
                        Err(_) => continue,
                    }
                }
                unreachable!()
            }
        })
        .buffer_unordered(24)
        .collect()
        .await
}

/// Reads each operation (bounded) from the live instances in turn until it has its result,
/// checks the result is the submitted record, and answers the result bytes by path.
async fn collect(live: &Live, accepted: &[Accepted], limit: Duration) -> HashMap<String, Vec<u8>> {
    let http = client();
    let start = Instant::now();
    futures::stream::iter(accepted.iter().cloned().enumerate())
        .map(|(i, a)| {
            let (http, live) = (http.clone(), live.clone());
            async move {
                for attempt in 0.. {
                    assert!(
                        start.elapsed() < limit,
                        "{} not done after {limit:?}: lost",
                        a.path
                    );
                    let base = pick(&live, i + attempt);
                    let url = format!("{base}{}?OnComplete=Stream", a.path);
                    let r = http
                        .get(&url)
                        .send()
                        .await
                        .expect("a live instance answers");
                    match r.status() {
                        StatusCode::OK => {
                            let bytes = r.bytes().await.unwrap().to_vec();
                            let result: Value = serde_json::from_slice(&bytes).unwrap();
                            assert_eq!(result["id"], a.record_id, "wrong result for {}", a.path);
                            return (a.path, bytes);
                        }
                        StatusCode::ACCEPTED => {
                            tokio::time::sleep(Duration::from_millis(100)).await
                        }
                        StatusCode::SERVICE_UNAVAILABLE => {
                            BUSY.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(retry_after(&r)).await
                        }
                        other => panic!("{}: unexpected {other}", a.path),
                    }
                }
                unreachable!()
            }
        })
        .buffer_unordered(24)
        .collect()
        .await
}

/// How many operations each instance's log says it ended.
fn endings(logs: &[PathBuf]) -> Vec<usize> {
    logs.iter()
        .map(|log| {
            std::fs::read_to_string(log)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("operation ended"))
                .count()
        })
        .collect()
}

/// Waits on instance `on` for an operation submitted to instance `to`, and answers how long
/// after the operation ended (its `lastUpdatedDateTime`, written by the instance that did the
/// work) the wait answered.
async fn wait_elsewhere(to: &str, on: &str) -> Duration {
    let http = client();
    let r = http
        .post(format!("{to}/api/AsyncProcessingWorkAcceptor"))
        .json(&json!({ "id": "waited", "customername": "Contoso" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let path = &location[location.find("/api/").unwrap()..];
    let waited = http
        .get(format!("{on}{path}?OnPending=Synchronous"))
        .send()
        .await
        .unwrap();
    let answered = OffsetDateTime::now_utc();
    assert_eq!(
        waited.status(),
        StatusCode::FOUND,
        "the wait on another instance ends with the result"
    );
    let id = path.rsplit('/').next().unwrap();
    let status: Value = http
        .get(format!("{on}/api/operations/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["status"], "Succeeded");
    let ended =
        OffsetDateTime::parse(status["lastUpdatedDateTime"].as_str().unwrap(), &Rfc3339).unwrap();
    (answered - ended).try_into().unwrap_or(Duration::ZERO)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_share_one_queue_and_a_kill_9_loses_nothing() {
    let n = requests();
    let azurite = Azurite::start();
    let names = Names::unique();
    let mut env = azurite.handler_settings(&names);
    env.extend([
        ("VISIBILITY_TIMEOUT_SECONDS", VISIBILITY_SECONDS.to_string()),
        ("QUEUE_MAX_POLL_MS", "200".to_string()),
        ("WORKER_CONCURRENCY", "8".to_string()),
        // Slow enough that the kill lands while the instance holds messages.
        ("PROCESSING_DELAY_MS", "100".to_string()),
        ("SYNC_POLL_MS", SYNC_POLL_MS.to_string()),
    ]);
    let run = uuid::Uuid::new_v4().simple().to_string();
    let logs: Vec<PathBuf> = (0..INSTANCES)
        .map(|i| std::env::temp_dir().join(format!("scale-{run}-{i}.log")))
        .collect();
    let mut instances = vec![];
    for log in &logs {
        instances.push(Handler::start_standalone_logged(&as_refs(&env), log.clone()).await);
    }
    let live: Live = Arc::new(Mutex::new(
        instances.iter().map(|h| h.base.clone()).collect(),
    ));

    // Before the kill: a synchronous wait on one instance for work another does.
    let mut waits = vec![];
    for i in 0..5 {
        let (to, on) = (
            &instances[i % INSTANCES].base,
            &instances[(i + 1) % INSTANCES].base,
        );
        waits.push(wait_elsewhere(to, on).await);
    }

    let started = Instant::now();
    let accepted_count = Arc::new(AtomicUsize::new(0));
    let load = tokio::spawn(submit_all(live.clone(), n, accepted_count.clone()));
    eventually(
        format_args!("{} acceptances before the kill", n / 3),
        Duration::from_millis(10),
        Duration::from_secs(120),
        async || accepted_count.load(Ordering::Relaxed) >= n / 3,
    )
    .await;
    live.lock().unwrap().retain(|b| *b != instances[0].base);
    instances[0].kill9();
    let before_kill = endings(&logs);
    let killed_at = started.elapsed();
    let accepted = load.await.unwrap();
    let results = collect(&live, &accepted, allowance(n)).await;
    let done_in = started.elapsed();
    let again = collect(&live, &accepted, Duration::from_secs(60)).await;
    let changed = results
        .iter()
        .filter(|(path, bytes)| again.get(*path) != Some(*bytes))
        .count();
    let after = endings(&logs);
    let after_kill: Vec<usize> = after.iter().zip(&before_kill).map(|(a, b)| a - b).collect();
    let lost = accepted.len() - results.len();
    let slowest_wait = waits.iter().max().copied().unwrap_or_default();
    println!(
        "scale-out: {n} requests over {INSTANCES} instances, kill -9 of one after {:.1} s: \
         accepted {} / completed {} / lost {lost}; results changed on re-read {changed}; \
         operations ended per instance {after:?} (after the kill {after_kill:?}, the killed one \
         first); 503s waited out {}; all done in {:.1} s; synchronous waits on another instance answered \
         {:.0}-{:.0} ms after the work ended (storage re-read every {SYNC_POLL_MS} ms)",
        killed_at.as_secs_f64(),
        accepted.len(),
        results.len(),
        BUSY.load(Ordering::Relaxed),
        done_in.as_secs_f64(),
        waits.iter().min().unwrap().as_secs_f64() * 1000.0,
        slowest_wait.as_secs_f64() * 1000.0,
    );
    assert_eq!(accepted.len(), n);
    assert_eq!(lost, 0);
    assert_eq!(changed, 0);
    // No operation ended twice (the waits' five included). Fewer lines than operations is
    // possible: an instance killed between its write and its log line, or a write storage did
    // after the call timed out (the redelivery then finds the operation ended); every result
    // was read back above, so none is missing.
    let ended = after.iter().sum::<usize>();
    assert!(
        ended <= n + waits.len(),
        "{ended} endings logged for {} operations",
        n + waits.len()
    );
    assert!(
        after_kill[1..]
            .iter()
            .all(|&k| k * 5 >= after_kill[1..].iter().sum::<usize>()),
        "the work after the kill spreads over the survivors: {after_kill:?}"
    );
    assert!(
        slowest_wait < Duration::from_millis(SYNC_POLL_MS) * 10,
        "a wait elsewhere ends within a few storage re-reads of the work's end"
    );
}
