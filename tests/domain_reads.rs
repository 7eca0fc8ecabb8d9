//! The domain's storage round trips, counted: each read on the critical path costs a storage
//! call (about a millisecond on Azurite, more on Azure), so the ones the service avoids are
//! pinned here, together with the races that make avoiding them delicate.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;
use tokio::sync::Notify;

use async_request_reply::adapters::memory::{
    MemoryRecordStore, MemoryResultStore, MemoryWorkQueue,
};
use async_request_reply::domain::ports::{
    Clock, ETag, RecordStore, ResultStore, Storage, StoreError, Stores, SystemClock, WorkQueue,
};
use async_request_reply::domain::sample::SampleWork;
use async_request_reply::domain::work::Work;
use async_request_reply::domain::{OperationId, Service, ServiceSettings, Status};
use async_request_reply::domain::{Outcome, SubmitRequest};

use support::work::{CountedWork, GatedWork};

/// A clock the test moves.
struct ManualClock(Mutex<OffsetDateTime>);

impl ManualClock {
    fn advance(&self, by: time::Duration) {
        *self.0.lock().unwrap() += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

/// A record store that counts reads.
struct CountingRecords {
    inner: MemoryRecordStore,
    gets: AtomicUsize,
    writes: AtomicUsize,
    listings: AtomicUsize,
    /// Version checks (`is_at`): a read without the document.
    checks: AtomicUsize,
}

impl CountingRecords {
    fn gets(&self) -> usize {
        self.gets.load(Ordering::SeqCst)
    }
    fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }
    fn listings(&self) -> usize {
        self.listings.load(Ordering::SeqCst)
    }
    fn checks(&self) -> usize {
        self.checks.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl RecordStore for CountingRecords {
    async fn insert(&self, key: &str, doc: Bytes) -> Result<ETag, StoreError> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.insert(key, doc).await
    }
    async fn get(&self, key: &str) -> Result<Option<(Bytes, ETag)>, StoreError> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.inner.get(key).await
    }
    async fn is_at(&self, key: &str, etag: &str) -> Result<bool, StoreError> {
        self.checks.fetch_add(1, Ordering::SeqCst);
        self.inner.is_at(key, etag).await
    }
    async fn replace(&self, key: &str, doc: Bytes, etag: &str) -> Result<ETag, StoreError> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.replace(key, doc, etag).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.delete(key).await
    }
    async fn list_written_before(
        &self,
        prefix: &str,
        cutoff: OffsetDateTime,
    ) -> Result<Vec<String>, StoreError> {
        self.listings.fetch_add(1, Ordering::SeqCst);
        self.inner.list_written_before(prefix, cutoff).await
    }
}

struct Fixture {
    service: Arc<Service>,
    records: Arc<CountingRecords>,
    results: Arc<MemoryResultStore>,
    queue: Arc<MemoryWorkQueue>,
}

fn fixture(work: Arc<dyn Work>) -> Fixture {
    fixture_with_clock(work, Arc::new(SystemClock))
}

fn fixture_with_clock(work: Arc<dyn Work>, clock: Arc<dyn Clock>) -> Fixture {
    fixture_with(work, clock, ServiceSettings::default())
}

/// `Running` written before the work starts, whatever it takes (`RUNNING_AFTER_MS=0`).
fn fixture_running_first(work: Arc<dyn Work>) -> Fixture {
    let settings = ServiceSettings {
        running_after: Duration::ZERO,
        ..ServiceSettings::default()
    };
    fixture_with(work, Arc::new(SystemClock), settings)
}

fn fixture_with(work: Arc<dyn Work>, clock: Arc<dyn Clock>, settings: ServiceSettings) -> Fixture {
    let records = Arc::new(CountingRecords {
        inner: MemoryRecordStore::with_clock(clock.clone()),
        gets: AtomicUsize::new(0),
        writes: AtomicUsize::new(0),
        listings: AtomicUsize::new(0),
        checks: AtomicUsize::new(0),
    });
    let results = Arc::new(MemoryResultStore::new());
    let queue = Arc::new(MemoryWorkQueue::new());
    let stores = Stores {
        records: records.clone(),
        results: results.clone(),
        queue: queue.clone(),
        callbacks: Arc::new(MemoryWorkQueue::new()),
    };
    let service = Arc::new(Service::new(
        Storage::same(stores),
        work,
        clock,
        settings,
        Default::default(),
    ));
    Fixture {
        service,
        records,
        results,
        queue,
    }
}

fn request() -> SubmitRequest {
    let Value::Object(record) = json!({ "id": "1", "customername": "Contoso" }) else {
        unreachable!()
    };
    SubmitRequest {
        record: Map::clone(&record),
        idempotency_key: None,
        traceparent: None,
        callback_url: None,
    }
}

/// Submits one operation and takes its message off the queue.
async fn submit_and_take(f: &Fixture) -> (OperationId, String) {
    let accepted = f
        .service
        .submit(request(), &|id| {
            format!("http://localhost/api/RequestStatus/{id}")
        })
        .await
        .expect("accepted");
    let mut deliveries = f
        .queue
        .receive(1, Duration::from_secs(60))
        .await
        .expect("received");
    assert_eq!(deliveries.len(), 1);
    (accepted.operation.id, deliveries.remove(0).text)
}

#[tokio::test]
async fn processing_a_message_reads_no_record() {
    let f = fixture_running_first(Arc::new(SampleWork::default()));
    let (id, text) = submit_and_take(&f).await;
    let submitted = f.service.get(id).await.unwrap();
    let (reads, writes) = (f.records.gets(), f.records.writes());

    assert_eq!(f.service.process(&text, 1).await, Outcome::Done);

    // The Running write starts from the record as the message says it was submitted (at the
    // version the message names), the Succeeded one from the version the worker just wrote.
    assert_eq!(f.records.gets(), reads);
    assert_eq!(f.records.writes(), writes + 2, "Running, then Succeeded");
    let done = f.service.get(id).await.unwrap();
    assert_eq!(done.status, Status::Succeeded);
    // The rebuilt record is the submitted one: nothing but the state and its time changed.
    assert_eq!(done.created_date_time, submitted.created_date_time);
    assert_eq!(done.expiration_date_time, submitted.expiration_date_time);
    assert_eq!(done.status_url, submitted.status_url);
}

#[tokio::test]
async fn a_redelivered_message_finds_the_operation_ended_and_changes_nothing() {
    let f = fixture(Arc::new(SampleWork::default()));
    let (id, text) = submit_and_take(&f).await;
    assert_eq!(f.service.process(&text, 1).await, Outcome::Done);
    let first = f.service.get(id).await.unwrap();
    let reads = f.records.gets();

    // The message's version is stale now: the write loses, the record is read, and the
    // operation is seen to have ended.
    assert_eq!(f.service.process(&text, 2).await, Outcome::Done);

    assert_eq!(f.records.gets(), reads + 1);
    assert_eq!(f.service.get(id).await.unwrap(), first);
}

#[tokio::test]
async fn a_cancel_before_the_worker_starts_wins_over_the_messages_version() {
    let f = fixture(Arc::new(SampleWork::default()));
    let (id, text) = submit_and_take(&f).await;
    f.service
        .cancel(id)
        .await
        .expect("a pending operation can be canceled");

    assert_eq!(f.service.process(&text, 1).await, Outcome::Done);

    assert_eq!(f.service.get(id).await.unwrap().status, Status::Canceled);
    assert!(f.results.open(&id.result_name()).await.unwrap().is_none());
}

#[tokio::test]
async fn a_synchronous_wait_takes_the_ending_from_the_worker_without_a_read() {
    let f = fixture(Arc::new(SampleWork::default()));
    let (id, text) = submit_and_take(&f).await;
    let waiting = {
        let service = f.service.clone();
        tokio::spawn(async move { service.wait(id, Duration::from_secs(20)).await })
    };
    // The wait's first read (bounded poll on the counter).
    let reads = f.records.gets();
    let until = Instant::now() + Duration::from_secs(10);
    while f.records.gets() < reads + 1 {
        assert!(Instant::now() < until, "the wait never read the operation");
        tokio::task::yield_now().await;
    }

    assert_eq!(f.service.process(&text, 1).await, Outcome::Done);
    let op = waiting.await.unwrap().expect("the operation");

    assert_eq!(op.status, Status::Succeeded);
    // Only the wait's first read: the worker reads nothing, and the wake-up carried the
    // ended operation.
    assert_eq!(f.records.gets(), reads + 1);
}

/// Quick work (shorter than `running_after`) costs one record write, not two: the record goes
/// from `NotStarted` straight to `Succeeded`, after a version check (a read without the body)
/// that a cancel would have failed.
#[tokio::test]
async fn quick_work_skips_running_and_costs_one_record_write() {
    let f = fixture(Arc::new(SampleWork::default()));
    let (id, text) = submit_and_take(&f).await;
    let submitted = f.service.get(id).await.unwrap();
    let (reads, writes) = (f.records.gets(), f.records.writes());

    assert_eq!(f.service.process(&text, 1).await, Outcome::Done);

    assert_eq!(f.records.gets(), reads);
    assert_eq!(f.records.checks(), 1);
    assert_eq!(f.records.writes(), writes + 1, "Succeeded only");
    let done = f.service.get(id).await.unwrap();
    assert_eq!(done.status, Status::Succeeded);
    assert_eq!(done.created_date_time, submitted.created_date_time);
    assert_eq!(done.expiration_date_time, submitted.expiration_date_time);
}

/// The cancel fence holds without the `Running` write: a cancel before delivery fails the
/// version check, and the work never starts.
#[tokio::test]
async fn a_cancel_before_delivery_keeps_the_work_from_starting_without_a_running_write() {
    let work = Arc::new(CountedWork::default());
    let f = fixture(work.clone());
    let (id, text) = submit_and_take(&f).await;
    f.service.cancel(id).await.expect("canceled");

    assert_eq!(f.service.process(&text, 1).await, Outcome::Done);

    assert_eq!(work.0.load(Ordering::SeqCst), 0, "the work never started");
    assert_eq!(f.service.get(id).await.unwrap().status, Status::Canceled);
    assert!(f.results.open(&id.result_name()).await.unwrap().is_none());
}

/// A cancel while quick work runs (no `Running` written yet) wins: the final compare-and-swap
/// from the submitted version loses, and the result written meanwhile is removed.
#[tokio::test]
async fn a_cancel_during_quick_work_wins_over_the_final_write() {
    let work = Arc::new(GatedWork::default());
    let f = fixture(work.clone());
    let (id, text) = submit_and_take(&f).await;
    let processing = {
        let service = f.service.clone();
        tokio::spawn(async move { service.process(&text, 1).await })
    };
    work.started.notified().await;
    assert_eq!(f.service.get(id).await.unwrap().status, Status::NotStarted);
    f.service.cancel(id).await.expect("canceled");
    work.go.notify_one();

    assert_eq!(processing.await.unwrap(), Outcome::Done);
    assert_eq!(f.service.get(id).await.unwrap().status, Status::Canceled);
    assert!(f.results.open(&id.result_name()).await.unwrap().is_none());
}

/// Work that outlasts `running_after` is marked `Running` while it runs; a cancel then stops
/// it (the work is dropped) and nothing is written after.
#[tokio::test]
async fn slow_work_is_marked_running_and_a_cancel_before_that_stops_it() {
    let settings = ServiceSettings {
        running_after: Duration::from_millis(50),
        ..ServiceSettings::default()
    };
    let work = Arc::new(GatedWork::default());
    let f = fixture_with(work.clone(), Arc::new(SystemClock), settings.clone());
    let (id, text) = submit_and_take(&f).await;
    let processing = {
        let service = f.service.clone();
        tokio::spawn(async move { service.process(&text, 1).await })
    };
    work.started.notified().await;
    let until = Instant::now() + Duration::from_secs(10);
    while f.service.get(id).await.unwrap().status != Status::Running {
        assert!(Instant::now() < until, "never marked Running");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    work.go.notify_one();
    assert_eq!(processing.await.unwrap(), Outcome::Done);
    assert_eq!(f.service.get(id).await.unwrap().status, Status::Succeeded);

    // Canceled before the mark: the Running write loses, and the held work is dropped.
    let work = Arc::new(GatedWork::default());
    let f = fixture_with(work.clone(), Arc::new(SystemClock), settings);
    let (id, text) = submit_and_take(&f).await;
    let processing = {
        let service = f.service.clone();
        tokio::spawn(async move { service.process(&text, 1).await })
    };
    work.started.notified().await;
    f.service.cancel(id).await.expect("canceled");
    // Never released: only the cancel can end this processing.
    assert_eq!(processing.await.unwrap(), Outcome::Done);
    assert_eq!(f.service.get(id).await.unwrap().status, Status::Canceled);
    assert!(f.results.open(&id.result_name()).await.unwrap().is_none());
}

#[tokio::test]
async fn a_cancel_while_running_beats_the_workers_remembered_version() {
    let work = Arc::new(GatedWork {
        started: Notify::new(),
        go: Notify::new(),
    });
    let f = fixture_running_first(work.clone());
    let (id, text) = submit_and_take(&f).await;
    let processing = {
        let service = f.service.clone();
        tokio::spawn(async move { service.process(&text, 1).await })
    };
    work.started.notified().await;
    assert_eq!(f.service.get(id).await.unwrap().status, Status::Running);

    let canceled = f
        .service
        .cancel(id)
        .await
        .expect("a running operation can be canceled");
    assert_eq!(canceled.status, Status::Canceled);
    work.go.notify_one();

    // The worker's Succeeded write, based on the version it wrote at Running, loses to the
    // cancel; it re-reads, sees Canceled, and removes the result it wrote.
    assert_eq!(processing.await.unwrap(), Outcome::Done);
    assert_eq!(f.service.get(id).await.unwrap().status, Status::Canceled);
    assert!(f.results.open(&id.result_name()).await.unwrap().is_none());
}

/// What a sweep costs with nothing to remove: one listing per kind of document (operations,
/// idempotency keys, poison copies, callbacks), whatever the number of live operations, so
/// every standalone instance can sweep (`app::sweep`) without multiplying more than that.
#[tokio::test]
async fn a_sweep_over_live_operations_costs_one_listing_per_kind_and_reads_nothing() {
    let f = fixture(Arc::new(SampleWork::default()));
    for _ in 0..50 {
        submit_and_take(&f).await;
    }
    let (reads, writes) = (f.records.gets(), f.records.writes());
    for instance in 1..=3 {
        assert_eq!(f.service.purge_expired().await.unwrap(), 0);
        // None was written a whole retention period ago, so none could have expired.
        assert_eq!(f.records.gets(), reads);
        assert_eq!(f.records.writes(), writes);
        assert_eq!(f.records.listings(), 4 * instance);
    }
}

#[tokio::test]
async fn a_sweep_removes_the_expired_operation_its_result_and_nothing_else() {
    let clock = Arc::new(ManualClock(Mutex::new(OffsetDateTime::now_utc())));
    let f = fixture_with_clock(Arc::new(SampleWork::default()), clock.clone());
    let (old, text) = submit_and_take(&f).await;
    assert_eq!(f.service.process(&text, 1).await, Outcome::Done);
    assert!(f.results.open(&old.result_name()).await.unwrap().is_some());
    let retention = time::Duration::try_from(ServiceSettings::default().retention).unwrap();
    clock.advance(retention + time::Duration::minutes(1));
    let (young, _) = submit_and_take(&f).await;

    assert_eq!(f.service.purge_expired().await.unwrap(), 1);

    assert!(f.service.get(old).await.is_err());
    assert!(f.records.get(&old.record_key()).await.unwrap().is_none());
    assert!(f.results.open(&old.result_name()).await.unwrap().is_none());
    assert_eq!(
        f.service.get(young).await.unwrap().status,
        Status::NotStarted
    );
}
