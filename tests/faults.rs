//! Faults a production deployment meets, against the real binary and Azurite with on-disk
//! persistence: a soak, `kill -9` during load, a storage outage, duplicate delivery, graceful
//! shutdown, and bad settings. Each prints its figures. Sizes come from the environment so
//! `scripts/reliability.sh` can run them full size: SOAK_REQUESTS (default 400), CRASH_REQUESTS
//! (default 300), OUTAGE_SECONDS (default 10).

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::app::{client, Backend, TestApp};
use support::azurite::{Azurite, Names, KEY};
use support::host::{invocation_payload, Handler};
use support::{as_refs, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One accepted submission: what was sent and where to ask for it.
#[derive(Debug, Clone)]
struct Accepted {
    record_id: String,
    status_url: String,
}

#[derive(Debug, Default)]
struct Tally {
    accepted: AtomicUsize,
    refused_503: AtomicUsize,
    server_errors: AtomicUsize,
    connection_errors: AtomicUsize,
    /// Status requests answered `503` while waiting for results.
    status_503: AtomicUsize,
}

/// The wait a `202` or `503` asks for (`Retry-After`, in seconds), as a polite client obeys it.
fn retry_after(r: &reqwest::Response) -> Duration {
    r.headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(|s| Duration::from_secs(s.min(5)))
        .unwrap_or(Duration::from_millis(100))
}

/// Submits `n` records at `concurrency`, each with its own Idempotency-Key and retried (as a
/// client following Retry-After would) until it is accepted or `deadline` passes.
async fn submit_all(
    base: Arc<Mutex<String>>,
    n: usize,
    concurrency: usize,
    tally: Arc<Tally>,
    deadline: Duration,
) -> Vec<Accepted> {
    let http = client();
    let start = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let http = http.clone();
            let base = base.clone();
            let tally = tally.clone();
            async move {
                let record_id = format!("soak-{i}");
                let key = format!("{}-{i}", std::process::id());
                let mut wait = Duration::from_millis(100);
                loop {
                    assert!(start.elapsed() < deadline, "submission {i} never accepted");
                    let url = format!("{}/api/AsyncProcessingWorkAcceptor", base.lock().unwrap());
                    let r = http
                        .post(url)
                        .header("Idempotency-Key", &key)
                        .json(&json!({"id": record_id, "customername": format!("Customer {i}")}))
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == StatusCode::ACCEPTED => {
                            tally.accepted.fetch_add(1, Ordering::Relaxed);
                            let status_url = r.headers()["location"].to_str().unwrap().to_string();
                            return Accepted {
                                record_id,
                                status_url,
                            };
                        }
                        Ok(r) if r.status() == StatusCode::SERVICE_UNAVAILABLE => {
                            assert!(
                                r.headers().contains_key("retry-after"),
                                "503 without Retry-After"
                            );
                            tally.refused_503.fetch_add(1, Ordering::Relaxed);
                            wait = retry_after(&r);
                        }
                        Ok(r) => {
                            tally.server_errors.fetch_add(1, Ordering::Relaxed);
                            panic!("submission {i}: unexpected {}", r.status());
                        }
                        Err(_) => {
                            tally.connection_errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

/// Waits (bounded) until every accepted operation has its result, checks each result is the
/// submitted record, and returns the bytes of each result by status URL.
async fn collect_results(
    accepted: &[Accepted],
    concurrency: usize,
    deadline: Duration,
    tally: &Tally,
) -> HashMap<String, Vec<u8>> {
    let http = client();
    let start = Instant::now();
    let results: Vec<(String, Vec<u8>)> = futures::stream::iter(accepted.iter().cloned())
        .map(|a| {
            let http = http.clone();
            async move {
                loop {
                    assert!(
                        start.elapsed() < deadline,
                        "{} ({}) not done after {deadline:?}: lost",
                        a.status_url,
                        a.record_id
                    );
                    let url = format!("{}?OnComplete=Stream", a.status_url);
                    let wait = match http.get(&url).send().await {
                        Ok(r) if r.status() == StatusCode::OK => {
                            let bytes = r.bytes().await.unwrap().to_vec();
                            let result: Value = serde_json::from_slice(&bytes).unwrap();
                            assert_eq!(
                                result["id"], a.record_id,
                                "wrong result for {}",
                                a.status_url
                            );
                            return (a.status_url, bytes);
                        }
                        Ok(r) if r.status() == StatusCode::ACCEPTED => retry_after(&r),
                        Ok(r) if r.status() == StatusCode::SERVICE_UNAVAILABLE => {
                            tally.status_503.fetch_add(1, Ordering::Relaxed);
                            retry_after(&r)
                        }
                        Ok(r) => panic!("{}: unexpected {}", a.status_url, r.status()),
                        Err(_) => Duration::from_millis(100), // restarting
                    };
                    tokio::time::sleep(wait).await;
                }
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    results.into_iter().collect()
}

/// One answer during the outage test: when it was sent, status, how long it took, its Location.
type Answer = (Instant, u16, Duration, Option<String>);

/// Standalone on Azurite, with the default storage timeouts (3 s, 2 retries): a loaded
/// Azurite answers slowly, and a soak is not an outage.
fn standalone_env(conn: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AzureWebJobsStorage", conn.to_string()),
        ("VISIBILITY_TIMEOUT_SECONDS", "2".into()),
        ("QUEUE_MAX_POLL_MS", "200".into()),
        ("WORKER_CONCURRENCY", "16".into()),
    ]
}

/// As `standalone_env`, with short storage timeouts, so an outage is noticed within about 2 s.
fn outage_env(conn: &str) -> Vec<(&'static str, String)> {
    let mut env = standalone_env(conn);
    env.push(("STORAGE_TIMEOUT_MS", "1000".into()));
    env.push(("STORAGE_MAX_RETRIES", "1".into()));
    env
}

/// How long a run of `n` requests may take on a slow, shared machine before it counts as lost.
fn allowance(n: usize) -> Duration {
    Duration::from_secs(120 + n as u64 / 5)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn soak_every_accepted_request_completes() {
    let n = env_number("SOAK_REQUESTS", 400);
    let azurite = Azurite::start_persistent();
    let mut env = standalone_env(&azurite.connection_string());
    // Production's visibility timeout: a soak is sustained load, not a crash test.
    env.retain(|(name, _)| *name != "VISIBILITY_TIMEOUT_SECONDS");
    let log = std::env::temp_dir().join(format!("soak-handler-{}.log", std::process::id()));
    let handler = Handler::start_standalone_logged(&as_refs(&env), log.clone()).await;
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let base = Arc::new(Mutex::new(handler.base.clone()));
    let accepted = submit_all(base, n, 64, tally.clone(), allowance(n)).await;
    let submitted_in = started.elapsed();
    let results = collect_results(&accepted, 64, allowance(n), &tally).await;
    let lost = accepted.len() - results.len();
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    let warnings = log_text.lines().filter(|l| l.contains(" WARN ")).count();
    println!(
        "soak: {n} requests at concurrency 64: accepted {} / completed {} / lost {lost}; \
         other 5xx {}; 503 to submissions {}, to status requests {}; warnings logged {warnings} \
         ({}); submitted in {:.1} s, all done in {:.1} s",
        accepted.len(),
        results.len(),
        tally.server_errors.load(Ordering::Relaxed),
        tally.refused_503.load(Ordering::Relaxed),
        tally.status_503.load(Ordering::Relaxed),
        log.display(),
        submitted_in.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(accepted.len(), n);
    assert_eq!(lost, 0);
    assert_eq!(tally.server_errors.load(Ordering::Relaxed), 0);
    assert_eq!(
        tally.refused_503.load(Ordering::Relaxed) + tally.status_503.load(Ordering::Relaxed),
        0,
        "503s without an outage"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_three_times_during_load_loses_nothing() {
    let n = env_number("CRASH_REQUESTS", 300);
    let azurite = Azurite::start_persistent();
    let mut env = standalone_env(&azurite.connection_string());
    // Slow enough that kills land while messages are in flight.
    env.push(("PROCESSING_DELAY_MS", "50".into()));
    let mut handler = Handler::start_standalone(&as_refs(&env)).await;
    let base = Arc::new(Mutex::new(handler.base.clone()));
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let load = tokio::spawn(submit_all(base.clone(), n, 32, tally.clone(), allowance(n)));
    let mut kills = 0;
    while kills < 3 {
        // Kill once a third more of the work has been accepted (an event, not a timer).
        let target = (kills + 1) * n / 4;
        eventually(
            format_args!("{target} acceptances before kill {}", kills + 1),
            Duration::from_millis(10),
            Duration::from_secs(120),
            async || tally.accepted.load(Ordering::Relaxed) >= target || load.is_finished(),
        )
        .await;
        handler.restart().await; // kill -9, then start again on the same port
        kills += 1;
    }
    let accepted = load.await.unwrap();
    let results = collect_results(&accepted, 32, allowance(n), &tally).await;
    // Read every result again: a result is written once, so it never changes.
    let again = collect_results(&accepted, 32, Duration::from_secs(120), &tally).await;
    let changed = results
        .iter()
        .filter(|(url, bytes)| again.get(*url) != Some(*bytes))
        .count();
    let lost = accepted.len() - results.len();
    println!(
        "crash: {n} requests, kill -9 x{kills}: accepted {} / completed {} / lost {lost}; \
         results changed on re-read {changed}; connection errors while down {}; {:.1} s",
        accepted.len(),
        results.len(),
        tally.connection_errors.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(kills, 3);
    assert_eq!(lost, 0);
    assert_eq!(changed, 0);
    assert_eq!(tally.server_errors.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_storage_outage_answers_503_fast_and_recovers_without_a_restart() {
    let outage = Duration::from_secs(env_number("OUTAGE_SECONDS", 10) as u64);
    let mut azurite = Azurite::start_persistent();
    let env = outage_env(&azurite.connection_string());
    let log = std::env::temp_dir().join(format!("outage-handler-{}.log", std::process::id()));
    println!("handler log: {}", log.display());
    let handler = Handler::start_standalone_logged(&as_refs(&env), log).await;
    let http = client();
    let submit_url = format!("{}/api/AsyncProcessingWorkAcceptor", handler.base);

    // A known operation, to ask about during the outage.
    let r = http
        .post(&submit_url)
        .json(&json!({"id": "known", "customername": "c"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let known = r.headers()["location"].to_str().unwrap().to_string();

    // Load: 4 clients submitting in a loop, recording every answer and how long it took.
    let stop = Arc::new(AtomicBool::new(false));
    let answers: Arc<Mutex<Vec<Answer>>> = Arc::default();
    let mut clients = Vec::new();
    for c in 0..4 {
        let (http, url, stop, answers) = (
            http.clone(),
            submit_url.clone(),
            stop.clone(),
            answers.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let sent = Instant::now();
                let r = http
                    .post(&url)
                    .json(&json!({"id": format!("outage-{c}-{i}"), "customername": "c"}))
                    .send()
                    .await
                    .expect("the handler stays up");
                let took = sent.elapsed();
                let status = r.status().as_u16();
                let location =
                    (status == 202).then(|| r.headers()["location"].to_str().unwrap().to_string());
                if status == 503 {
                    assert!(
                        r.headers().contains_key("retry-after"),
                        "503 without Retry-After"
                    );
                    let body: Value = r.json().await.unwrap();
                    assert_eq!(
                        body["type"],
                        "urn:async-request-reply:problem:storage-unavailable"
                    );
                }
                answers.lock().unwrap().push((sent, status, took, location));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    eventually(
        "20 answers to the load",
        Duration::from_millis(10),
        Duration::from_secs(30),
        async || answers.lock().unwrap().len() >= 20,
    )
    .await;

    azurite.stop();
    let down_at = Instant::now();
    // The status route during the outage: a 503 problem, never a 500.
    let r = http.get(&known).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let remaining = outage.saturating_sub(down_at.elapsed());
    // The outage itself is the thing being timed.
    tokio::time::sleep(remaining).await;
    // Azurite may answer before `restart` returns (it polls for the ports), so for the
    // 'only 503s' check the outage ends when the restart begins.
    let restart_began = Instant::now();
    azurite.restart();
    let back_at = Instant::now();

    // Recovery: the first 202 after Azurite is back (bounded wait on the recorded answers;
    // how soon is a figure, printed below, and 30 s is only the bound on a hang).
    let recovered_at = eventually(
        "a 202 after storage returned",
        Duration::from_millis(10),
        Duration::from_secs(30),
        async || {
            answers
                .lock()
                .unwrap()
                .iter()
                .find(|(sent, status, _, _)| *sent > back_at && *status == 202)
                .map(|(sent, _, took, _)| *sent + *took)
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let answers = answers.lock().unwrap().clone();
    // Requests sent after storage went down and answered before it began coming back.
    let during: Vec<_> = answers
        .iter()
        .filter(|(sent, _, took, _)| *sent > down_at && *sent + *took < restart_began)
        .collect();
    let statuses: Vec<u16> = answers.iter().map(|a| a.1).collect();
    let slowest_503 = answers
        .iter()
        .filter(|a| a.1 == 503)
        .map(|a| a.2)
        .max()
        .unwrap_or_default();
    let accepted: Vec<Accepted> = answers
        .iter()
        .filter_map(|a| a.3.clone().map(|status_url| (status_url, a)))
        .map(|(status_url, _)| Accepted {
            record_id: String::new(),
            status_url,
        })
        .collect();
    println!(
        "outage: {:.0} s down; {} answers ({} x 202, {} x 503, {} other); slowest 503 {:.2} s; \
         recovered {:.2} s after storage returned",
        outage.as_secs_f64(),
        statuses.len(),
        statuses.iter().filter(|s| **s == 202).count(),
        statuses.iter().filter(|s| **s == 503).count(),
        statuses.iter().filter(|s| **s != 202 && **s != 503).count(),
        slowest_503.as_secs_f64(),
        (recovered_at - back_at).as_secs_f64()
    );
    assert!(
        statuses.iter().all(|s| *s == 202 || *s == 503),
        "{statuses:?}"
    );
    assert!(
        !during.is_empty(),
        "no answers during the outage: the service hung"
    );
    assert!(
        during.iter().all(|a| a.1 == 503),
        "a 202 while storage was down"
    );
    // How fast a 503 comes and how soon service returns are figures (printed above, recorded
    // by scripts/reliability.sh); the test bounds only a hang (the client's own limit is 60 s).
    assert!(
        slowest_503 < Duration::from_secs(30),
        "a 503 took {slowest_503:?}: the service hung"
    );

    // Nothing accepted is lost: every 202 completes (record ids are not checked here).
    let http = client();
    let started = Instant::now();
    for a in accepted.iter().chain([&Accepted {
        record_id: String::new(),
        status_url: known,
    }]) {
        let left = Duration::from_secs(120).saturating_sub(started.elapsed());
        eventually(
            format_args!("{} completing after the outage", a.status_url),
            Duration::from_millis(100),
            left,
            async || {
                let r = http
                    .get(format!("{}?OnComplete=Stream", a.status_url))
                    .send()
                    .await
                    .unwrap();
                assert!(
                    matches!(r.status().as_u16(), 200 | 202 | 503),
                    "{} lost after the outage: {}",
                    a.status_url,
                    r.status()
                );
                r.status() == StatusCode::OK
            },
        )
        .await;
    }
}

async fn duplicate_delivery(backend: Backend) {
    let app = TestApp::start(backend, &[("FUNCTIONS_CUSTOMHANDLER_PORT", "0")]).await;
    for i in 0..5 {
        let r = app
            .submit(&json!({"id": format!("dup-{i}"), "customername": "c"}))
            .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    }
    let deliveries = app
        .storage
        .queue
        .receive(32, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(deliveries.len(), 5);
    let invoke_url = app.url("/AsyncProcessingBackgroundWorker");
    for d in &deliveries {
        // Two host instances deliver the same message at the same moment.
        let payload = invocation_payload(&d.text, 1);
        let (a, b) = tokio::join!(
            app.client.post(&invoke_url).json(&payload).send(),
            app.client.post(&invoke_url).json(&payload).send()
        );
        let codes = [a.unwrap().status().as_u16(), b.unwrap().status().as_u16()];
        // One does the work; the other finds it done (200) or still running (503: retry later).
        assert!(codes.contains(&200), "{codes:?}");
        assert!(codes.iter().all(|c| *c == 200 || *c == 503), "{codes:?}");
        // The host's later retry of the loser finds it done.
        let again = app
            .client
            .post(&invoke_url)
            .json(&payload)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 200);
        let message: Value = serde_json::from_str(&d.text).unwrap();
        let status_url = message["RequestStatusURL"].as_str().unwrap();
        let first = app
            .client
            .get(format!("{status_url}?OnComplete=Stream"))
            .send()
            .await
            .unwrap();
        assert_eq!(first.status(), 200);
        let first = first.bytes().await.unwrap();
        let monitor: Value = app
            .client
            .get(app.url(&format!(
                "/api/operations/{}",
                message["RequestGUID"].as_str().unwrap()
            )))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(monitor["status"], "Succeeded");
        let second = app
            .client
            .get(format!("{status_url}?OnComplete=Stream"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            second.bytes().await.unwrap(),
            first,
            "one result, whatever the deliveries"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_delivery_gives_one_result_in_memory() {
    duplicate_delivery(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_delivery_gives_one_result_on_azurite() {
    duplicate_delivery(Backend::Azurite).await;
}

async fn graceful_shutdown(signal: &str) {
    let azurite = Azurite::start_persistent();
    let mut env = standalone_env(&azurite.connection_string());
    env.push(("PROCESSING_DELAY_MS", "1500".into()));
    env.push(("SHUTDOWN_GRACE_SECONDS", "10".into()));
    env.push(("VISIBILITY_TIMEOUT_SECONDS", "60".into()));
    let mut handler = Handler::start_standalone(&as_refs(&env)).await;
    let http = client();
    let r = http
        .post(format!("{}/api/AsyncProcessingWorkAcceptor", handler.base))
        .json(&json!({"id": "graceful", "customername": "c"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let status_url = r.headers()["location"].to_str().unwrap().to_string();
    let monitor = r.headers()["operation-location"]
        .to_str()
        .unwrap()
        .to_string();
    // Wait (bounded) until the worker has the message: the operation is Running.
    eventually(
        "the operation Running",
        Duration::from_millis(10),
        Duration::from_secs(20),
        async || {
            let m: Value = http
                .get(&monitor)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            m["status"] == "Running"
        },
    )
    .await;
    // An in-flight request: a synchronous wait for that operation, sent whole before the
    // signal. The server accepts connections in order, so once a later connection is answered
    // this one has been accepted with its request already in its socket.
    let path = status_url
        .split_once("/api/")
        .map(|(_, p)| format!("/api/{p}"))
        .expect("a status URL");
    let mut in_flight = tokio::net::TcpStream::connect(("127.0.0.1", handler.port))
        .await
        .unwrap();
    in_flight
        .write_all(
            format!(
                "GET {path}?OnPending=Synchronous&OnComplete=Stream HTTP/1.1\r\n\
                 Host: 127.0.0.1\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let r = http.get(format!("{}/", handler.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "a later connection is answered");
    let waiting = tokio::spawn(async move {
        let mut answer = Vec::new();
        in_flight.read_to_end(&mut answer).await.map(|_| answer)
    });
    let signalled = Instant::now();
    handler.signal(signal);
    let code = handler.wait_exit(Duration::from_secs(15)).await;
    let took = signalled.elapsed();
    println!(
        "shutdown on SIG{signal}: exit code {code:?} after {:.2} s",
        took.as_secs_f64()
    );
    assert_eq!(
        code,
        Some(0),
        "SIG{signal} must exit 0 within the grace period"
    );
    // The in-flight request got its answer, and the message being processed was finished.
    let answer = waiting
        .await
        .unwrap()
        .expect("the in-flight request was answered");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.1 202"),
        "{answer:?}"
    );
    // New connections are refused once it is down.
    assert!(http.get(format!("{}/", handler.base)).send().await.is_err());
    // The next start resumes: the operation is done, and new work is processed.
    handler.restart().await;
    let m: Value = http
        .get(&monitor)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        m["status"], "Succeeded",
        "the message in progress was finished before exit"
    );
    let r = http
        .post(format!("{}/api/AsyncProcessingWorkAcceptor", handler.base))
        .json(&json!({"id": "after", "customername": "c"}))
        .send()
        .await
        .unwrap();
    let after = r.headers()["location"].to_str().unwrap().to_string();
    let r = http
        .get(format!("{after}?OnPending=Synchronous&OnComplete=Stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_work_and_exits_0() {
    graceful_shutdown("TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_finishes_in_flight_work_and_exits_0() {
    graceful_shutdown("INT").await;
}

/// Every bad setting stops start-up with a message naming it; nothing starts half-configured.
#[test]
fn bad_settings_stop_startup_naming_the_setting() {
    use support::azurite::ACCOUNT;
    let https_emulator = format!(
        "DefaultEndpointsProtocol=https;AccountName={ACCOUNT};AccountKey={KEY};\
         BlobEndpoint=http://127.0.0.1:9/{ACCOUNT};QueueEndpoint=http://127.0.0.1:9/{ACCOUNT}"
    );
    let cases: &[(&str, &str)] = &[
        ("AzureWebJobsStorage", "not a connection string"),
        (
            "AzureWebJobsStorage",
            "AccountName=x;AccountKey=%%%notbase64",
        ),
        ("AzureWebJobsStorage", &https_emulator),
        ("PORT", "http"),
        ("PORT", "70000"),
        ("FUNCTIONS_CUSTOMHANDLER_PORT", "-1"),
        ("MAX_BODY_BYTES", "-5"),
        ("MAX_BODY_BYTES", "0"),
        ("RETENTION_SECONDS", "a day"),
        ("SAS_EXPIRY_SECONDS", "0"),
        ("SYNC_WAIT_SECONDS", "1000"),
        ("MAX_SYNC_WAITS", "many"),
        ("WORKER_CONCURRENCY", "0"),
        ("VISIBILITY_TIMEOUT_SECONDS", "1.5"),
        ("MAX_DEQUEUE_COUNT", "0"),
        ("STORAGE_TIMEOUT_MS", "5"),
        ("STORAGE_MAX_RETRIES", "lots"),
        ("STORAGE_MAX_CONCURRENT_CALLS", "0"),
        ("RECORDS_CONTAINER", "-bad-"),
        ("LOG_FORMAT", "xml"),
        ("TRUST_FORWARDED_HEADERS", "maybe"),
        ("PUBLIC_BASE_URL", "ftp://example.com"),
        ("BIND_ADDRESS", "not-an-address"),
        ("WORK_QUEUE_NAME", "Not_A_Queue"),
        ("RESULT_CONTAINER", "x"),
        ("RUST_LOG", "info,[{"),
    ];
    for (name, value) in cases {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_handler"))
            .env_clear()
            .env("PORT", "0")
            .env("STORAGE_TIMEOUT_MS", "500")
            .env("STORAGE_MAX_RETRIES", "0")
            .env(name, value)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the binary runs");
        // Bounded: a binary that starts anyway is killed and reported, never waited on forever.
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{name}={value:?} started anyway (still running after 30 s)");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}={value:?} started anyway");
        assert!(
            stderr.contains(name),
            "{name}={value:?}: the message does not name it: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{name}={value:?}: {stderr}");
        assert!(
            !stderr.contains(&KEY[..32]),
            "{name}: the account key is in the error"
        );
    }
    println!(
        "settings: {} bad values, each refused at start-up by name",
        cases.len()
    );
}

/// Storage reset under a running service (someone deletes the queue and the containers): the
/// next calls re-create them instead of failing forever, and never answer 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_queue_and_containers_are_recreated() {
    // The test's own queue and containers on the shared Azurite: deleting them touches no other.
    let azurite = Azurite::shared();
    let names = Names::unique();
    let mut env = standalone_env(&azurite.connection_string());
    env.extend(names.settings());
    let handler = Handler::start_standalone(&as_refs(&env)).await;
    let blobs = azurite.blob_service();
    for container in [&names.results, &names.records] {
        blobs.container_client(container).delete().await.unwrap();
    }
    azurite
        .queue_service()
        .queue_client(&names.queue)
        .delete()
        .await
        .unwrap();

    let http = client();
    let url = format!("{}/api/AsyncProcessingWorkAcceptor", handler.base);
    let status_url = eventually(
        "a 202 once the queue and containers are re-created",
        Duration::from_millis(50),
        Duration::from_secs(30),
        async || {
            let r = http
                .post(&url)
                .json(&json!({"id": "heal", "customername": "c"}))
                .send()
                .await
                .unwrap();
            match r.status().as_u16() {
                202 => Some(r.headers()["location"].to_str().unwrap().to_string()),
                503 => None,
                other => panic!("a missing container or queue answered {other}"),
            }
        },
    )
    .await;
    let r = http
        .get(format!(
            "{status_url}?OnPending=Synchronous&OnComplete=Stream"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "the work went through the re-created queue and containers"
    );
}
