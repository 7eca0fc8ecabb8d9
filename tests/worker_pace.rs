//! The standalone worker follows storage's answers: it takes no more messages than the work
//! side's load limit allows, fewer once storage pushes back, more again once it answers
//! quickly, while the messages it already holds always finish.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Map, Value};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use async_request_reply::adapters::memory::{
    MemoryRecordStore, MemoryResultStore, MemoryWorkQueue,
};
use async_request_reply::domain::load::{Answer, LoadLimit};
use async_request_reply::domain::ports::{
    Delivery, Receipt, Storage, StoreError, Stores, SystemClock, WorkQueue,
};
use async_request_reply::domain::sample::SampleWork;
use async_request_reply::domain::work::{Work, WorkContext, WorkError, WorkOutput};
use async_request_reply::domain::{OperationId, Service, ServiceSettings, Status, SubmitRequest};
use async_request_reply::edges::consumer::ConsumerGauges;
use async_request_reply::edges::worker::{self, WorkerSettings};

use support::eventually;

const POLL: Duration = Duration::from_millis(10);
const LIMIT: Duration = Duration::from_secs(10);

/// Work that holds until the test hands it a permit, counting how many run at once.
struct HeldWork {
    running: AtomicUsize,
    peak: AtomicUsize,
    release: Semaphore,
}

impl Default for HeldWork {
    fn default() -> Self {
        Self {
            running: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            release: Semaphore::new(0),
        }
    }
}

impl HeldWork {
    fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }
    /// The most that ran at once since the last call.
    fn take_peak(&self) -> usize {
        self.peak.swap(self.running(), Ordering::SeqCst)
    }
}

#[async_trait]
impl Work for HeldWork {
    async fn perform(
        &self,
        context: &WorkContext,
        record: Map<String, Value>,
    ) -> Result<WorkOutput, WorkError> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        self.release.acquire().await.expect("open").forget();
        self.running.fetch_sub(1, Ordering::SeqCst);
        SampleWork::default().perform(context, record).await
    }
}

/// A queue that remembers how many messages each receive asked for.
#[derive(Default)]
struct AskingQueue {
    inner: MemoryWorkQueue,
    asked: Mutex<Vec<usize>>,
}

impl AskingQueue {
    fn asked_since(&self, from: usize) -> Vec<usize> {
        self.asked.lock().unwrap()[from..].to_vec()
    }
    fn receives(&self) -> usize {
        self.asked.lock().unwrap().len()
    }
}

#[async_trait]
impl WorkQueue for AskingQueue {
    async fn send(&self, text: &str) -> Result<(), StoreError> {
        self.inner.send(text).await
    }
    async fn send_delayed(&self, text: &str, delay: Duration) -> Result<(), StoreError> {
        self.inner.send_delayed(text, delay).await
    }
    async fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<Delivery>, StoreError> {
        let got = self.inner.receive(max, visibility).await?;
        if !got.is_empty() {
            self.asked.lock().unwrap().push(max);
        }
        Ok(got)
    }
    async fn extend(
        &self,
        receipt: &Receipt,
        text: &str,
        visibility: Duration,
    ) -> Result<Receipt, StoreError> {
        self.inner.extend(receipt, text, visibility).await
    }
    async fn delete(&self, receipt: &Receipt) -> Result<(), StoreError> {
        self.inner.delete(receipt).await
    }
    async fn dead_letter(&self, delivery: &Delivery) -> Result<(), StoreError> {
        self.inner.dead_letter(delivery).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_takes_fewer_messages_while_storage_pushes_back_and_finishes_those_in_hand() {
    // A zero target: every pushback cuts the limit at once, and only instant answers grow it.
    let load = Arc::new(LoadLimit::new(16, Duration::ZERO));
    let queue = Arc::new(AskingQueue::default());
    let work = Arc::new(HeldWork::default());
    let stores = Stores {
        records: Arc::new(MemoryRecordStore::new()),
        results: Arc::new(MemoryResultStore::new()),
        queue: queue.clone(),
        callbacks: Arc::new(MemoryWorkQueue::new()),
    };
    let storage = Storage {
        requests: stores.clone(),
        work: stores,
        work_load: load.clone(),
    };
    let service = Arc::new(Service::new(
        storage,
        work.clone(),
        Arc::new(SystemClock),
        ServiceSettings::default(),
        CancellationToken::new(),
    ));
    let mut ids = vec![];
    for _ in 0..48 {
        ids.push(submit_one(&service).await);
    }
    let settings = WorkerSettings {
        concurrency: 16,
        visibility_timeout: Duration::from_secs(60),
        max_poll_interval: Duration::from_millis(100),
    };
    let gauges = Arc::new(ConsumerGauges::default());
    let stop = CancellationToken::new();
    let running = tokio::spawn(worker::run(
        service.clone(),
        settings,
        gauges.clone(),
        stop.clone(),
    ));

    // Storage answers well: the worker holds its whole concurrency.
    eventually("16 messages worked on", POLL, LIMIT, async || {
        work.running() == 16
    })
    .await;
    assert_eq!(work.take_peak(), 16);
    assert_eq!(gauges.limit(), 16);

    // Storage pushes back three times: 16 -> 12 -> 9 -> 6. The 16 in hand all finish.
    for _ in 0..3 {
        load.record(Answer::PushedBack);
    }
    assert_eq!(load.current(), 6);
    let receives = queue.receives();
    work.release.add_permits(16);
    eventually(
        "the next messages under the cut limit",
        POLL,
        LIMIT,
        async || work.running() == 6 && gauges.in_flight() == 6,
    )
    .await;
    assert_eq!(gauges.limit(), 6);
    let asked = queue.asked_since(receives);
    assert!(
        !asked.is_empty() && asked.iter().all(|&n| n <= 6),
        "receives under the cut limit asked for at most 6 messages: {asked:?}"
    );
    let statuses = futures::future::join_all(ids.iter().map(|id| status(&service, *id))).await;
    let succeeded = statuses.iter().filter(|s| **s == Status::Succeeded).count();
    assert_eq!(
        succeeded, 16,
        "the messages in hand all finished: {statuses:?}"
    );
    work.take_peak();

    // Quick answers grow it back to the top: with 6 in hand, at most half of 16, the worker
    // receives 10 more.
    for _ in 0..1000 {
        load.record(Answer::Took(Duration::ZERO));
    }
    assert_eq!(load.current(), 16);
    eventually("16 messages worked on again", POLL, LIMIT, async || {
        work.running() == 16
    })
    .await;
    assert_eq!(gauges.limit(), 16);

    // The rest finishes: nothing accepted is lost.
    work.release.add_permits(64);
    for id in &ids {
        eventually("every operation ends", POLL, LIMIT, async || {
            status(&service, *id).await == Status::Succeeded
        })
        .await;
    }
    stop.cancel();
    running.await.unwrap();
}

async fn status(service: &Service, id: OperationId) -> Status {
    service.get(id).await.expect("readable").status
}

async fn submit_one(service: &Service) -> OperationId {
    let Value::Object(record) = json!({ "id": "1", "customername": "Contoso" }) else {
        unreachable!()
    };
    let request = SubmitRequest {
        record,
        idempotency_key: None,
        traceparent: None,
        callback_url: None,
    };
    let status_url = |id| format!("http://localhost/api/RequestStatus/{id}");
    service
        .submit(request, &status_url)
        .await
        .expect("accepted")
        .operation
        .id
}
