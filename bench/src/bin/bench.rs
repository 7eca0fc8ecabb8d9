//! The benchmark driver: measures what a load generator cannot. Each subcommand prints
//! `RESULT <name> <value>` lines that bench/run.sh collects into its table.
//!
//!   bench port                                         a free loopback port
//!   bench latency   --url U --n N --conc C [--baseline]  submit-to-result latency
//!   bench coldstart --bin PATH --runs R [--env K=V]...   spawn to first 200 on GET /
//!   bench drain     --url U --n N --conc C              submit N quickly, time until all done
//!   bench submit    --url U --n N --conc C --out FILE   submit N; write the status URLs to FILE
//!   bench backlog   --url U --queue URL --name Q --paths FILE [--azurite-pid P]
//!                   [--timeout-s S] [--no-check]
//!                   wait until queue Q is empty (every message handled and deleted), print
//!                   when, then check every status in FILE answers 302 on the handler at U
//!   bench stream    --url U --pid P --size BYTES        RSS while streaming a large result
//!   bench azure     --what W --blob URL --queue URL --n N --conc C [--secs S]
//!                   W = roundtrip (put+get blob) | get (get one blob) | submit (put blob
//!                   create-only + put message) | drain (put N messages, then receive+delete)
//!                   | workdrain (put N messages, then receive up to 32 per free handler,
//!                   put a result blob and delete, C handlers) | txops (submit, work and
//!                   read N through the counting proxy at --proxy URL, counted per phase)
//!                   [--azurite-pid P]: also report Azurite's CPU use while draining
//!   bench count-proxy --upstream-blob URL --upstream-queue URL --blob-port P --queue-port Q
//!                   [--log]  forward storage calls to Azurite, counting them (GET
//!                   /__counts, POST /__reset); --log prints a line per call
//!   bench txreport  --n N --submit0 F --submit1 F --ready F --drained F --read F
//!                   the handler's storage calls per operation from count snapshots
//!   bench statuses  --url U --paths FILE   read each status once; every one must be a 302
//!   bench chart     --data FILE --out SVG --title T --x-label X --y-label Y [--log-x]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_request_reply_bench::common::*;
use async_request_reply_bench::{bare, chart, count_proxy, txcount};
use azure_storage_queues::QueueServiceClientBuilder;
use futures::StreamExt;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits (OnPending=Synchronous, repeated) until the status URL answers 302 or 200.
async fn wait_done(client: &reqwest::Client, status_url: &str) -> Result<(), BoxError> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let r = client
            .get(format!("{status_url}?OnPending=Synchronous"))
            .send()
            .await?;
        let code = r.status().as_u16();
        let _ = r.bytes().await;
        match code {
            302 | 200 => return Ok(()),
            202 => {}
            503 | 429 => tokio::time::sleep(Duration::from_millis(20)).await,
            other => return Err(format!("status answered {other}").into()),
        }
        if Instant::now() > deadline {
            return Err("gave up waiting".into());
        }
    }
}

async fn latency(a: &Args) -> Result<(), BoxError> {
    let url = a.s("url");
    let n = a.n("n", 200);
    let conc = a.n("conc", 1).max(1);
    let baseline = a.flag("baseline");
    let client = http_client();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (client, url, next) = (client.clone(), url.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let t0 = Instant::now();
                let loc = submit(&client, &url, RECORD.to_string()).await?;
                if baseline {
                    // The baseline's fixed Location is not on its port: ask the same server.
                    let r = client
                        .get(format!("{url}/api/RequestStatus/x?OnPending=Synchronous"))
                        .send()
                        .await?;
                    let _ = r.bytes().await;
                } else {
                    wait_done(&client, &loc).await?;
                }
                samples.push(t0.elapsed().as_secs_f64() * 1000.0);
            }
            Ok::<_, BoxError>(samples)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    all.sort_by(|x, y| x.partial_cmp(y).unwrap());
    result("latency_n", all.len());
    result("latency_p50_ms", format!("{:.3}", percentile(&all, 50.0)));
    result("latency_p99_ms", format!("{:.3}", percentile(&all, 99.0)));
    Ok(())
}

/// One GET / over a fresh connection; true on a 200.
fn probe(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 16];
    let mut got = 0;
    while got < 12 {
        match s.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => got += k,
        }
    }
    got >= 12 && &buf[9..12] == b"200"
}

fn coldstart(a: &Args) -> Result<(), BoxError> {
    let bin = a.s("bin");
    let runs = a.n("runs", 20).max(1);
    let mut handler = Vec::new();
    let mut trivial = Vec::new();
    for _ in 0..runs {
        let port = free_port();
        let mut cmd = Command::new(&bin);
        cmd.env("PORT", port.to_string())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in &a.envs {
            cmd.env(k, v);
        }
        let t0 = Instant::now();
        let mut child = cmd.spawn()?;
        loop {
            if probe(port) {
                break;
            }
            if let Some(st) = child.try_wait()? {
                return Err(format!("handler exited at start-up: {st}").into());
            }
            if t0.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                return Err("handler did not answer GET / within 30 s".into());
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        handler.push(t0.elapsed().as_secs_f64() * 1000.0);
        let _ = child.kill();
        let _ = child.wait();

        let t0 = Instant::now();
        let mut c = Command::new("true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        c.wait()?;
        trivial.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    handler.sort_by(|x, y| x.partial_cmp(y).unwrap());
    trivial.sort_by(|x, y| x.partial_cmp(y).unwrap());
    result("coldstart_runs", runs);
    result(
        "coldstart_median_ms",
        format!("{:.3}", percentile(&handler, 50.0)),
    );
    result(
        "coldstart_max_ms",
        format!("{:.3}", handler[handler.len() - 1]),
    );
    result(
        "true_median_ms",
        format!("{:.3}", percentile(&trivial, 50.0)),
    );
    Ok(())
}

async fn drain(a: &Args) -> Result<(), BoxError> {
    let url = a.s("url");
    let n = a.n("n", 100);
    let conc = a.n("conc", 16).max(1);
    let client = http_client();
    let t0 = Instant::now();
    let locs = submit_all(&client, &url, n, conc).await?;
    let submitted = t0.elapsed().as_secs_f64();
    // Walk the operations roughly in order (the queue is roughly FIFO): each wait is short.
    let walkers = 8.min(n.max(1));
    let locs = Arc::new(locs);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..walkers {
        let (client, locs, next) = (client.clone(), locs.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(loc) = locs.get(i) else { break };
                wait_done(&client, loc).await?;
            }
            Ok::<_, BoxError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let total = t0.elapsed().as_secs_f64();
    result("drain_n", n);
    result("drain_submit_s", format!("{submitted:.3}"));
    result("drain_total_s", format!("{total:.3}"));
    result("drain_rate_per_s", format!("{:.1}", n as f64 / total));
    Ok(())
}

async fn submit_to_file(a: &Args) -> Result<(), BoxError> {
    let client = http_client();
    let locs = submit_all(&client, &a.s("url"), a.n("n", 100), a.n("conc", 16)).await?;
    std::fs::write(a.s("out"), locs.join("\n"))?;
    result("submitted_n", locs.len());
    result("submit_retries", SUBMIT_RETRIES.load(Ordering::Relaxed));
    Ok(())
}

/// The backlog drain's finish line: the work queue is empty. A message is deleted only after
/// its operation's outcome is recorded, and Azurite's message count includes messages hidden
/// while in process, so an empty queue means every operation is done. Watching the queue
/// costs a few calls a second instead of a status read per operation competing with the
/// worker for Azurite. Every status is checked afterwards, outside the timing.
async fn backlog(a: &Args) -> Result<(), BoxError> {
    let q = QueueServiceClientBuilder::with_location(location(&a.s("queue")), creds())
        .build()
        .queue_client(a.s("name"));
    let azurite = a.named.get("azurite-pid").and_then(|p| p.parse().ok());
    let (t0, cpu0) = (Instant::now(), cpu_seconds(azurite));
    let limit = a.n("timeout-s", 1800) as u64;
    let deadline = Instant::now() + Duration::from_secs(limit);
    loop {
        let count = q.get_metadata().await?.approximate_messages_count;
        if count == 0 {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the drain did not finish: {count} messages still queued on {} after {limit} s \
                 (--timeout-s)",
                a.s("name")
            )
            .into());
        }
        // Counting the queue costs Azurite a scan of it, so look rarely on a long drain: every
        // 1/50 of the time spent so far (10 ms to 500 ms), a timing error of at most 2%.
        let nap = (t0.elapsed() / 50).clamp(Duration::from_millis(10), Duration::from_millis(500));
        tokio::time::sleep(nap).await;
    }
    let empty_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    result("backlog_empty_at_unix_ms", empty_at.as_millis());
    result("backlog_azurite_cpu_pct", cpu_percent(azurite, cpu0, t0));
    if a.flag("no-check") {
        return Ok(());
    }
    check_statuses(&a.s("url"), &a.s("paths")).await
}

/// Reads each status in the file once, on the handler at `url`: every one must answer 302.
async fn check_statuses(url: &str, paths: &str) -> Result<(), BoxError> {
    // Every operation must have succeeded (302): a drain that failed them proves nothing.
    let client = http_client();
    let paths: Vec<String> = std::fs::read_to_string(paths)?
        .lines()
        .map(|l| {
            let path = l.splitn(4, '/').nth(3).unwrap_or_default();
            format!("{url}/{path}")
        })
        .collect();
    let codes: Vec<u16> = futures::stream::iter(paths.iter())
        .map(|u| {
            let client = &client;
            async move {
                let r = client.get(u).send().await?;
                Ok::<_, BoxError>(r.status().as_u16())
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let not_done = codes.iter().filter(|c| **c != 302).count();
    if not_done > 0 {
        return Err(format!(
            "{not_done} of {} operations did not end Succeeded",
            codes.len()
        )
        .into());
    }
    result("backlog_checked_n", codes.len());
    Ok(())
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

async fn stream(a: &Args) -> Result<(), BoxError> {
    let url = a.s("url");
    let pid: u32 = a.s("pid").parse()?;
    let size = a.n("size", 1024 * 1024);
    let client = http_client();
    let pad = "x".repeat(size);
    let body = format!(r#"{{"id":"1","customername":"Contoso","pad":"{pad}"}}"#);
    drop(pad);
    let loc = submit(&client, &url, body).await?;
    wait_done(&client, &loc).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib(pid);
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(before));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let t0 = Instant::now();
    let r = client
        .get(format!("{loc}?OnComplete=Stream"))
        .send()
        .await?;
    let code = r.status().as_u16();
    let mut s = r.bytes_stream();
    let mut bytes = 0usize;
    while let Some(chunk) = s.next().await {
        bytes += chunk?.len();
    }
    let secs = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    if code != 200 {
        return Err(format!("stream answered {code}").into());
    }
    let peak = peak.load(Ordering::Relaxed);
    result("stream_bytes", bytes);
    result("stream_s", format!("{secs:.3}"));
    result("stream_rss_before_kib", before);
    result("stream_rss_peak_kib", peak);
    result("stream_rss_growth_kib", peak.saturating_sub(before));
    Ok(())
}

fn main() -> Result<(), BoxError> {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = raw.first().cloned() else {
        eprintln!(
            "usage: bench <port|latency|coldstart|drain|submit|backlog|statuses|stream|azure|count-proxy|txreport|chart> [--options]"
        );
        std::process::exit(2);
    };
    let a = Args::parse(&raw[1..]);
    match cmd.as_str() {
        "port" => {
            println!("{}", free_port());
            Ok(())
        }
        "coldstart" => coldstart(&a),
        "txreport" => txcount::txreport(&a),
        "chart" => chart::run(&a),
        _ => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(async {
                match cmd.as_str() {
                    "latency" => latency(&a).await,
                    "drain" => drain(&a).await,
                    "submit" => submit_to_file(&a).await,
                    "backlog" => backlog(&a).await,
                    "stream" => stream(&a).await,
                    "azure" => bare::run(&a).await,
                    "statuses" => check_statuses(&a.s("url"), &a.s("paths")).await,
                    "count-proxy" => {
                        count_proxy::run(
                            &a.s("upstream-blob"),
                            &a.s("upstream-queue"),
                            a.n("blob-port", 0) as u16,
                            a.n("queue-port", 0) as u16,
                            a.flag("log"),
                        )
                        .await
                    }
                    other => Err(format!("unknown command {other}").into()),
                }
            })
        }
    }
}
