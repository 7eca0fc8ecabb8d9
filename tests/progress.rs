//! Progress: the sample's work reports each quarter of `PROCESSING_DELAY_MS`, and the monitor
//! (and the status URL's `202`) shows `percentComplete` rising, never changing after the end;
//! in the domain, writes are at most one per second whatever the work reports, and never
//! overwrite a cancel.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;
use tokio::sync::Notify;

use async_request_reply::adapters::memory::{
    MemoryRecordStore, MemoryResultStore, MemoryWorkQueue,
};
use async_request_reply::domain::ports::{
    ETag, RecordStore, Storage, StoreError, Stores, SystemClock, WorkQueue,
};
use async_request_reply::domain::sample::SampleWork;
use async_request_reply::domain::work::{Work, WorkContext, WorkError, WorkOutput};
use async_request_reply::domain::{OperationId, Service, ServiceSettings, Status, SubmitRequest};
use support::app::{record, Backend, TestApp};
use support::{contract, eventually};

async fn progress_rises_while_the_work_runs_and_stops_at_its_end(backend: Backend) {
    let app = TestApp::start(backend, &[("PROCESSING_DELAY_MS", "4000")]).await;
    let accepted: Value = app.submit(&record("1")).await.json().await.unwrap();
    let id = accepted["id"].as_str().unwrap().to_string();
    let monitor_url = app.url(&format!("/api/operations/{id}"));
    let status_url = accepted["statusUrl"].as_str().unwrap().to_string();
    let mut seen: Vec<u64> = Vec::new();
    let mut on_202 = None;
    let end = eventually(
        "the slow operation ending",
        Duration::from_millis(50),
        Duration::from_secs(30),
        async || {
            let doc: Value = app
                .client
                .get(&monitor_url)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if doc["status"] == "Running" {
                if let Some(p) = doc["percentComplete"].as_u64() {
                    if seen.last() != Some(&p) {
                        seen.push(p);
                    }
                    if on_202.is_none() {
                        let r = app.client.get(&status_url).send().await.unwrap();
                        if r.status() == 202 {
                            on_202 = Some(r.json::<Value>().await.unwrap());
                        }
                    }
                }
            }
            (doc["status"] == "Succeeded").then_some(doc)
        },
    )
    .await;
    println!("progress: percentComplete seen while running: {seen:?}");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "rising: {seen:?}");
    assert!(seen.len() >= 2, "seen rising at least once: {seen:?}");
    assert!(seen.iter().all(|p| (1..100).contains(p)), "{seen:?}");
    let on_202 = on_202.expect("a 202 from the status URL while progress was reported");
    assert!(on_202["percentComplete"].as_u64().is_some(), "{on_202}");
    assert!(on_202["customStatus"]["stage"].is_string(), "{on_202}");
    assert_eq!(end["percentComplete"], 100, "{end}");
    assert_eq!(end["customStatus"], json!({"stage": "quarter 3 of 4 done"}));
    // Ended, it never changes again, whatever the work's writer had in hand. This waits for
    // nothing: it looks, over longer than one progress write interval, for a change that
    // must not come.
    for _ in 0..15 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let again: Value = app
            .client
            .get(&monitor_url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(again, end);
    }
}

contract!(progress_rises_while_the_work_runs_and_stops_at_its_end);

/// A record store that counts the writes to operation records.
#[derive(Default)]
struct CountingRecords {
    inner: MemoryRecordStore,
    operation_writes: AtomicUsize,
}

#[async_trait]
impl RecordStore for CountingRecords {
    async fn insert(&self, key: &str, doc: Bytes) -> Result<ETag, StoreError> {
        self.inner.insert(key, doc).await
    }
    async fn get(&self, key: &str) -> Result<Option<(Bytes, ETag)>, StoreError> {
        self.inner.get(key).await
    }
    async fn is_at(&self, key: &str, etag: &str) -> Result<bool, StoreError> {
        self.inner.is_at(key, etag).await
    }
    async fn replace(&self, key: &str, doc: Bytes, etag: &str) -> Result<ETag, StoreError> {
        if key.starts_with("operations/") {
            self.operation_writes.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.replace(key, doc, etag).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
    async fn list_written_before(
        &self,
        prefix: &str,
        cutoff: OffsetDateTime,
    ) -> Result<Vec<String>, StoreError> {
        self.inner.list_written_before(prefix, cutoff).await
    }
}

/// Work that reports 200 times, 10 ms apart, then (when gated) waits to be let go.
#[derive(Default)]
struct ChattyWork {
    reported: Notify,
    go: Option<Notify>,
}

#[async_trait]
impl Work for ChattyWork {
    async fn perform(
        &self,
        context: &WorkContext,
        record: Map<String, Value>,
    ) -> Result<WorkOutput, WorkError> {
        for i in 0..200u32 {
            let percent = (i / 4) as u8; // up to 49: the gated report after it is 99
            context
                .progress
                .report(percent, Some(json!({ "step": i })))
                .map_err(|e| WorkError::Permanent(e.to_string()))?;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.reported.notify_one();
        if let Some(go) = &self.go {
            go.notified().await;
            context.progress.report(99, None).unwrap();
            // Long enough for the writer to try the last report.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        SampleWork::default().perform(context, record).await
    }
}

fn service(work: Arc<ChattyWork>) -> (Arc<Service>, Arc<CountingRecords>, Arc<MemoryWorkQueue>) {
    let records = Arc::new(CountingRecords::default());
    let queue = Arc::new(MemoryWorkQueue::new());
    let stores = Stores {
        records: records.clone(),
        results: Arc::new(MemoryResultStore::new()),
        queue: queue.clone(),
        callbacks: Arc::new(MemoryWorkQueue::new()),
    };
    let service = Service::new(
        Storage::same(stores),
        work,
        Arc::new(SystemClock),
        ServiceSettings::default(),
        Default::default(),
    );
    (Arc::new(service), records, queue)
}

async fn submit(service: &Service, queue: &MemoryWorkQueue) -> (OperationId, String) {
    let Value::Object(record) = json!({ "id": "1", "customername": "Contoso" }) else {
        unreachable!()
    };
    let request = SubmitRequest {
        record,
        idempotency_key: None,
        traceparent: None,
        callback_url: None,
    };
    let accepted = service
        .submit(request, &|id| {
            format!("http://localhost/api/RequestStatus/{id}")
        })
        .await
        .unwrap();
    let message = queue.receive(1, Duration::from_secs(60)).await.unwrap();
    (accepted.operation.id, message[0].text.clone())
}

#[tokio::test(start_paused = true)]
async fn two_hundred_reports_in_two_seconds_are_at_most_three_writes() {
    let (service, records, queue) = service(Arc::new(ChattyWork::default()));
    let (id, text) = submit(&service, &queue).await;
    let before = records.operation_writes.load(Ordering::SeqCst);
    service.process(&text, 1).await;
    let writes = records.operation_writes.load(Ordering::SeqCst) - before;
    // Running, the progress writes, Succeeded.
    let progress_writes = writes - 2;
    println!("progress: 200 reports over 2 s took {progress_writes} record writes");
    assert!(
        (1..=3).contains(&progress_writes),
        "{progress_writes} progress writes"
    );
    let op = service.get(id).await.unwrap();
    assert_eq!(op.status, Status::Succeeded);
    assert_eq!(op.percent_complete, Some(100));
}

#[tokio::test(start_paused = true)]
async fn progress_never_overwrites_a_cancel() {
    let work = Arc::new(ChattyWork {
        go: Some(Notify::new()),
        ..ChattyWork::default()
    });
    let (service, _records, queue) = service(work.clone());
    let (id, text) = submit(&service, &queue).await;
    let processing = tokio::spawn({
        let service = service.clone();
        async move { service.process(&text, 1).await }
    });
    work.reported.notified().await;
    let recorded = eventually(
        "a progress write",
        Duration::from_millis(100),
        Duration::from_secs(10),
        async || service.get(id).await.unwrap().percent_complete,
    )
    .await;
    let canceled = service.cancel(id).await.unwrap();
    assert_eq!(canceled.status, Status::Canceled);
    work.go.as_ref().unwrap().notify_one();
    processing.await.unwrap();
    let op = service.get(id).await.unwrap();
    assert_eq!(op.status, Status::Canceled);
    assert_eq!(op.last_updated_date_time, canceled.last_updated_date_time);
    assert_eq!(op.percent_complete, canceled.percent_complete);
    assert!(op.percent_complete.unwrap() >= recorded);
    assert_ne!(
        op.percent_complete,
        Some(99),
        "the report after the cancel was not written"
    );
}
