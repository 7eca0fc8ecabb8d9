//! What the benchmark tools share: the emulator's account, result lines, the HTTP client
//! and submissions, Azurite's clients and CPU, and the loop that runs storage calls.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use azure_storage::{CloudLocation, StorageCredentials};
use azure_storage_blobs::prelude::{ClientBuilder, ContainerClient};
use azure_storage_queues::prelude::QueueClient;
use azure_storage_queues::QueueServiceClientBuilder;
use futures::StreamExt;

pub const ACCOUNT: &str = "devstoreaccount1";
pub const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// `--name value` options (and repeated `--env K=V`), as every subcommand takes them.
pub struct Args {
    pub named: HashMap<String, String>,
    pub envs: Vec<(String, String)>,
}

impl Args {
    pub fn parse(raw: &[String]) -> Args {
        let mut named = HashMap::new();
        let mut envs = Vec::new();
        let mut i = 0;
        while i < raw.len() {
            let k = raw[i].trim_start_matches("--").to_string();
            let next = raw.get(i + 1).filter(|v| !v.starts_with("--")).cloned();
            match next {
                Some(v) => {
                    if k == "env" {
                        if let Some((a, b)) = v.split_once('=') {
                            envs.push((a.to_string(), b.to_string()));
                        }
                    } else {
                        named.insert(k, v);
                    }
                    i += 2;
                }
                None => {
                    named.insert(k, "true".into());
                    i += 1;
                }
            }
        }
        Args { named, envs }
    }
    pub fn s(&self, k: &str) -> String {
        self.named
            .get(k)
            .cloned()
            .unwrap_or_else(|| panic!("missing --{k}"))
    }
    pub fn n(&self, k: &str, default: usize) -> usize {
        self.named
            .get(k)
            .map(|v| v.parse().expect("a number"))
            .unwrap_or(default)
    }
    pub fn flag(&self, k: &str) -> bool {
        self.named.contains_key(k)
    }
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub fn result(name: &str, value: impl std::fmt::Display) {
    println!("RESULT {name} {value}");
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(120))
        .build()
        .expect("an HTTP client")
}

pub const RECORD: &str = r#"{"id":"1","customername":"Contoso"}"#;

/// Submissions retried after a 503 or 429 (reported by the commands that submit in bulk).
pub static SUBMIT_RETRIES: AtomicUsize = AtomicUsize::new(0);

/// POSTs a record; returns the status URL from Location. Like a well-behaved client, a 503
/// or 429 is retried after its Retry-After (for at most two minutes).
pub async fn submit(client: &reqwest::Client, url: &str, body: String) -> Result<String, BoxError> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let r = loop {
        let r = client
            .post(format!("{url}/api/AsyncProcessingWorkAcceptor"))
            .header("Content-Type", "application/json")
            .body(body.clone())
            .send()
            .await?;
        let code = r.status().as_u16();
        if (code == 503 || code == 429) && Instant::now() < deadline {
            let wait = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(1);
            SUBMIT_RETRIES.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(wait.clamp(1, 10))).await;
            continue;
        }
        break r;
    };
    if r.status().as_u16() != 202 {
        return Err(format!("submit answered {}", r.status()).into());
    }
    let loc = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .ok_or("no Location")?
        .to_string();
    let _ = r.bytes().await;
    Ok(loc)
}

/// Submits N records as fast as `conc` connections allow; the status URLs in order.
pub async fn submit_all(
    client: &reqwest::Client,
    url: &str,
    n: usize,
    conc: usize,
) -> Result<Vec<String>, BoxError> {
    futures::stream::iter(0..n)
        .map(|i| async move {
            submit(
                client,
                url,
                format!(r#"{{"id":"{i}","customername":"Contoso"}}"#),
            )
            .await
        })
        .buffered(conc.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// CPU time a process has used so far (user + system), in seconds; 0 when unreadable.
pub fn cpu_seconds(pid: Option<u32>) -> f64 {
    let Some(pid) = pid else { return 0.0 };
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start at field 3; utime and
    // stime are fields 14 and 15, in clock ticks (USER_HZ, 100 on Linux).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Busy share of one core used by `pid` since `(cpu0, t0)`, in percent.
pub fn cpu_percent(pid: Option<u32>, cpu0: f64, t0: Instant) -> String {
    format!(
        "{:.0}",
        (cpu_seconds(pid) - cpu0) / t0.elapsed().as_secs_f64() * 100.0
    )
}

pub fn location(uri: &str) -> CloudLocation {
    CloudLocation::Custom {
        account: ACCOUNT.to_string(),
        uri: uri.to_string(),
    }
}

pub fn creds() -> StorageCredentials {
    StorageCredentials::access_key(ACCOUNT.to_string(), KEY.to_string())
}

pub async fn container(blob: &str, name: &str) -> Result<ContainerClient, BoxError> {
    let c = ClientBuilder::with_location(location(blob), creds()).container_client(name);
    let _ = c.create().await; // exists already: fine
    Ok(c)
}

pub async fn queue(q: &str, name: &str) -> Result<QueueClient, BoxError> {
    let c = QueueServiceClientBuilder::with_location(location(q), creds())
        .build()
        .queue_client(name);
    let _ = c.create().await;
    Ok(c)
}

pub async fn read_blob(c: &ContainerClient, name: &str) -> Result<usize, BoxError> {
    let mut s = c.blob_client(name).get().into_stream();
    let mut n = 0;
    while let Some(chunk) = s.next().await {
        n += chunk?.data.collect().await?.len();
    }
    Ok(n)
}

/// Runs `op(i)` `n` times on `conc` tasks, or for `secs` seconds when `secs > 0`; prints the
/// rate and latency percentiles.
pub async fn run_ops<F, Fut>(
    label: &str,
    n: usize,
    secs: f64,
    conc: usize,
    op: F,
) -> Result<(), BoxError>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), BoxError>> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let n = if secs > 0.0 { usize::MAX } else { n };
    let deadline = t0 + Duration::from_secs_f64(secs.max(0.0));
    let mut tasks = Vec::new();
    for _ in 0..conc.max(1) {
        let (op, next) = (op.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n || (secs > 0.0 && Instant::now() >= deadline) {
                    break;
                }
                let t = Instant::now();
                op(i).await?;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            Ok::<_, BoxError>(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = t0.elapsed().as_secs_f64();
    all.sort_by(|x, y| x.partial_cmp(y).unwrap());
    result(&format!("{label}_n"), all.len());
    result(
        &format!("{label}_rate_per_s"),
        format!("{:.1}", all.len() as f64 / elapsed),
    );
    result(
        &format!("{label}_p50_ms"),
        format!("{:.3}", percentile(&all, 50.0)),
    );
    result(
        &format!("{label}_p99_ms"),
        format!("{:.3}", percentile(&all, 99.0)),
    );
    Ok(())
}
