//! The bare storage client (`bench azure`): the crates the handler uses doing only the storage
//! calls a row needs, as its baseline. Among them issue 15's: the drain that does the seed's
//! minimum per message (receive in batches of up to 32, put one result blob, delete the
//! message) on as many concurrent handlers as the handler's worker, and the same calls counted
//! through the counting proxy, phase by phase.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use azure_core::request_options::IfMatchCondition;
use azure_storage_blobs::prelude::{BlobContentType, ClientBuilder, ContainerClient};
use azure_storage_queues::prelude::{NumberOfMessages, PopReceipt, QueueClient};
use azure_storage_queues::QueueServiceClientBuilder;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::common::{
    container, cpu_percent, cpu_seconds, creds, location, queue, read_blob, result, run_ops, Args,
    BoxError,
};
use crate::txcount;

const MESSAGE: &str = "eyJpZCI6IjEiLCJjdXN0b21lcm5hbWUiOiJDb250b3NvIn0=";
const RESULT_DOC: &[u8] = br#"{"id":"1","customername":"Contoso","processed":true}"#;
const RECORD_DOC: &[u8] = br#"{"id":"00000000-0000-4000-8000-000000000000","status":"NotStarted","createdDateTime":"2026-01-01T00:00:00Z","lastUpdatedDateTime":"2026-01-01T00:00:00Z","expirationDateTime":"2026-01-02T00:00:00Z","statusUrl":"http://127.0.0.1/api/RequestStatus/00000000-0000-4000-8000-000000000000","record":{"id":"1","customername":"Contoso"}}"#;

/// Handles `n` queued messages with at most `conc` in flight: a receive asks for as many
/// messages (up to 32) as there are free handlers, and each message gets a result blob, then
/// its delete. Gives up after `timeout`.
pub async fn work_drain(
    q: &QueueClient,
    c: &ContainerClient,
    n: usize,
    conc: usize,
    timeout: Duration,
) -> Result<usize, BoxError> {
    let free = Arc::new(Semaphore::new(conc.max(1)));
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    let deadline = Instant::now() + timeout;
    while done.load(Ordering::SeqCst) < n {
        if Instant::now() > deadline {
            return Err(format!(
                "bare drain: {} of {n} messages handled after {} s",
                done.load(Ordering::SeqCst),
                timeout.as_secs()
            )
            .into());
        }
        let mut permits = vec![free.clone().acquire_owned().await?];
        while permits.len() < 32 {
            match free.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        while let Some(r) = tasks.try_join_next() {
            r??;
        }
        if done.load(Ordering::SeqCst) >= n {
            break;
        }
        let got = q
            .get_messages()
            .number_of_messages(NumberOfMessages::new(permits.len() as u8))
            .await?;
        if got.messages.is_empty() {
            drop(permits);
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        for m in got.messages {
            let Some(permit) = permits.pop() else { break };
            let (q, c, done) = (q.clone(), c.clone(), done.clone());
            tasks.spawn(async move {
                c.blob_client(format!("result-{}.json", m.message_id))
                    .put_block_blob(Bytes::from_static(RESULT_DOC))
                    .content_type(BlobContentType::from("application/json"))
                    .await?;
                q.pop_receipt_client(PopReceipt::new(m.message_id, m.pop_receipt))
                    .delete()
                    .await?;
                done.fetch_add(1, Ordering::SeqCst);
                drop(permit);
                Ok::<_, BoxError>(())
            });
        }
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(done.load(Ordering::SeqCst))
}

async fn fill(q: &QueueClient, n: usize) -> Result<(), BoxError> {
    let q = q.clone();
    run_ops("queue_put", n, 0.0, 16, move |_| {
        let q = q.clone();
        async move {
            q.put_message(MESSAGE).await?;
            Ok(())
        }
    })
    .await
}

/// `bench azure --what workdrain`: N messages queued first, then timed until all are handled.
pub async fn workdrain(a: &Args) -> Result<(), BoxError> {
    let (n, conc) = (a.n("n", 100), a.n("conc", 16));
    let timeout = Duration::from_secs(a.n("timeout-s", 1800) as u64);
    let tag = format!("bare{}", std::process::id());
    let q = queue(&a.s("queue"), &tag).await?;
    let c = container(&a.s("blob"), &tag).await?;
    fill(&q, n).await?;
    let azurite = a.named.get("azurite-pid").and_then(|p| p.parse().ok());
    let (cpu0, t0) = (cpu_seconds(azurite), Instant::now());
    let got = work_drain(&q, &c, n, conc, timeout).await?;
    let secs = t0.elapsed().as_secs_f64();
    result("work_drain_azurite_cpu_pct", cpu_percent(azurite, cpu0, t0));
    result("work_drain_n", got);
    result("work_drain_s", format!("{secs:.2}"));
    result("work_drain_rate_per_s", format!("{:.1}", got as f64 / secs));
    let _ = q.delete().await;
    let _ = c.delete().await;
    Ok(())
}

/// `bench azure --what txops --proxy URL`: the bare client's operations through the counting
/// proxy (`--blob`/`--queue` are the proxy's ports): submit (create-only record + message),
/// work (the drain above), one status read (get the record), each phase counted.
pub async fn txops(a: &Args) -> Result<(), BoxError> {
    let (n, conc) = (a.n("n", 100), a.n("conc", 16));
    let proxy = a.s("proxy");
    let tag = format!("tx{}", std::process::id());
    let q = queue(&a.s("queue"), &tag).await?;
    let c = container(&a.s("blob"), &tag).await?;
    let http = reqwest::Client::new();
    let s0 = txcount::reset(&http, &proxy).await?;
    {
        let (q, c) = (q.clone(), c.clone());
        run_ops("tx_bare_submit", n, 0.0, conc, move |i| {
            let (q, c) = (q.clone(), c.clone());
            async move {
                c.blob_client(format!("op-{i}.json"))
                    .put_block_blob(Bytes::from_static(RECORD_DOC))
                    .content_type(BlobContentType::from("application/json"))
                    .if_match(IfMatchCondition::NotMatch("*".into()))
                    .await?;
                q.put_message(MESSAGE).await?;
                Ok(())
            }
        })
        .await?;
    }
    let s1 = txcount::snapshot(&http, &proxy).await?;
    work_drain(&q, &c, n, conc, Duration::from_secs(600)).await?;
    let s2 = txcount::snapshot(&http, &proxy).await?;
    let reads: Vec<Result<usize, BoxError>> = futures::stream::iter(0..n)
        .map(|i| {
            let c = c.clone();
            async move { read_blob(&c, &format!("op-{i}.json")).await }
        })
        .buffer_unordered(conc.max(1))
        .collect()
        .await;
    for r in reads {
        r?;
    }
    let s3 = txcount::snapshot(&http, &proxy).await?;
    txcount::report(
        n,
        &[("submit", s0, s1), ("work", s1, s2), ("status", s2, s3)],
    );
    let _ = q.delete().await;
    let _ = c.delete().await;
    Ok(())
}

/// `bench azure --what W`: the bare client doing the storage calls a row compares against.
pub async fn run(a: &Args) -> Result<(), BoxError> {
    let what = a.s("what");
    let n = a.n("n", 200);
    let conc = a.n("conc", 16);
    let secs: f64 = a
        .named
        .get("secs")
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(0.0);
    let blob_ep = a.named.get("blob").cloned().unwrap_or_default();
    let queue_ep = a.named.get("queue").cloned().unwrap_or_default();
    let tag = format!("bench{}", std::process::id());
    let doc = bytes::Bytes::from_static(
        br#"{"id":"00000000-0000-4000-8000-000000000000","status":"NotStarted","createdDateTime":"2026-01-01T00:00:00Z","lastUpdatedDateTime":"2026-01-01T00:00:00Z","expirationDateTime":"2026-01-02T00:00:00Z","statusUrl":"http://127.0.0.1/api/RequestStatus/00000000-0000-4000-8000-000000000000","record":{"id":"1","customername":"Contoso"}}"#,
    );
    match what.as_str() {
        "roundtrip" => {
            let c = container(&blob_ep, &tag).await?;
            let keep = c.clone();
            let r = run_ops("blob_roundtrip", n, secs, conc, move |i| {
                let (c, doc) = (c.clone(), doc.clone());
                async move {
                    let name = format!("rt-{i}.json");
                    c.blob_client(&name)
                        .put_block_blob(doc)
                        .content_type(BlobContentType::from("application/json"))
                        .await?;
                    read_blob(&c, &name).await?;
                    Ok(())
                }
            })
            .await;
            let _ = keep.delete().await;
            r
        }
        "get" => {
            let c = container(&blob_ep, &tag).await?;
            c.blob_client("one.json")
                .put_block_blob(doc)
                .content_type(BlobContentType::from("application/json"))
                .await?;
            let keep = c.clone();
            let r = run_ops("blob_get", n, secs, conc, move |_| {
                let c = c.clone();
                async move {
                    read_blob(&c, "one.json").await?;
                    Ok(())
                }
            })
            .await;
            let _ = keep.delete().await;
            r
        }
        "submit" => {
            // The storage calls of one submission: create-only record blob + queue message.
            let c = container(&blob_ep, &tag).await?;
            let q = queue(&queue_ep, &tag).await?;
            let (keep_c, keep_q) = (c.clone(), q.clone());
            let r = run_ops("bare_submit", n, secs, conc, move |i| {
                let (c, q, doc) = (c.clone(), q.clone(), doc.clone());
                async move {
                    c.blob_client(format!("op-{i}.json"))
                        .put_block_blob(doc)
                        .content_type(BlobContentType::from("application/json"))
                        .if_match(IfMatchCondition::NotMatch("*".into()))
                        .await?;
                    q.put_message("eyJpZCI6IjEiLCJjdXN0b21lcm5hbWUiOiJDb250b3NvIn0=")
                        .await?;
                    Ok(())
                }
            })
            .await;
            // Leave nothing behind: Azurite slows down as its store grows.
            let _ = keep_c.delete().await;
            let _ = keep_q.delete().await;
            r
        }
        "delete" => {
            // Removes what a handler instance started by bench/run.sh used.
            let name = a.s("name");
            let svc =
                QueueServiceClientBuilder::with_location(location(&queue_ep), creds()).build();
            for q in [format!("q-{name}"), format!("q-{name}-poison")] {
                let _ = svc.queue_client(q).delete().await;
            }
            let blobs =
                ClientBuilder::with_location(location(&blob_ep), creds()).blob_service_client();
            for c in [format!("data-{name}"), format!("ops-{name}")] {
                let _ = blobs.container_client(c).delete().await;
            }
            Ok(())
        }
        "drain" => {
            let q = queue(&queue_ep, &tag).await?;
            {
                let q = q.clone();
                run_ops("queue_put", n, 0.0, conc, move |_| {
                    let q = q.clone();
                    async move {
                        q.put_message("eyJpZCI6IjEiLCJjdXN0b21lcm5hbWUiOiJDb250b3NvIn0=")
                            .await?;
                        Ok(())
                    }
                })
                .await?;
            }
            // Receive 32 at a time on `conc` receivers, deleting each, until all N are gone.
            let done = Arc::new(AtomicUsize::new(0));
            let azurite = a.named.get("azurite-pid").and_then(|p| p.parse().ok());
            let cpu0 = cpu_seconds(azurite);
            let t0 = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..conc.max(1) {
                let (q, done) = (q.clone(), done.clone());
                tasks.push(tokio::spawn(async move {
                    let mut empty = 0;
                    while done.load(Ordering::Relaxed) < n && empty < 50 {
                        let got = q
                            .get_messages()
                            .number_of_messages(NumberOfMessages::new(32))
                            .await?;
                        if got.messages.is_empty() {
                            empty += 1;
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                        for m in got.messages {
                            q.pop_receipt_client(PopReceipt::new(m.message_id, m.pop_receipt))
                                .delete()
                                .await?;
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok::<_, BoxError>(())
                }));
            }
            for t in tasks {
                t.await??;
            }
            let secs = t0.elapsed().as_secs_f64();
            result(
                "queue_drain_azurite_cpu_pct",
                cpu_percent(azurite, cpu0, t0),
            );
            let got = done.load(Ordering::Relaxed);
            result("queue_drain_n", got);
            result(
                "queue_drain_rate_per_s",
                format!("{:.1}", got as f64 / secs),
            );
            let _ = q.delete().await;
            Ok(())
        }
        "workdrain" => workdrain(a).await,
        "txops" => txops(a).await,
        other => Err(format!("unknown --what {other}").into()),
    }
}
