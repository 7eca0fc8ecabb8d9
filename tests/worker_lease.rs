//! The standalone worker's hold on a message: work that outlasts the visibility timeout keeps
//! its message hidden (renewed, as the host's queue trigger does), so slow storage or slow work
//! never hands the same message to a second consumer, and the message is deleted with the
//! receipt of its last renewal.

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_request_reply::domain::work::Work;
use tokio_util::sync::CancellationToken;

use async_request_reply::adapters::memory::{
    MemoryRecordStore, MemoryResultStore, MemoryWorkQueue,
};
use async_request_reply::domain::ports::{Storage, Stores, SystemClock, WorkQueue};
use async_request_reply::domain::{Service, ServiceSettings, Status};
use async_request_reply::edges::worker::{self, WorkerSettings};

use support::eventually;
use support::queue::{submit_sample, CountingQueue};
use support::work::{CountedWork, GatedWork};

/// How often the tests look again at what the worker did.
const POLL: Duration = Duration::from_millis(20);

/// A service on memory stores and the given queue and work.
fn service_on(
    queue: Arc<dyn WorkQueue>,
    work: Arc<dyn Work>,
    settings: ServiceSettings,
) -> Arc<Service> {
    let stores = Stores {
        records: Arc::new(MemoryRecordStore::new()),
        results: Arc::new(MemoryResultStore::new()),
        queue,
        callbacks: Arc::new(MemoryWorkQueue::new()),
    };
    Arc::new(Service::new(
        Storage::same(stores),
        work,
        Arc::new(SystemClock),
        settings,
        CancellationToken::new(),
    ))
}

/// A standalone worker of concurrency 4 on a service, until `stop`.
struct RunningWorker {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl RunningWorker {
    fn start(service: &Arc<Service>, visibility: Duration) -> Self {
        let settings = WorkerSettings {
            concurrency: 4,
            visibility_timeout: visibility,
            max_poll_interval: Duration::from_millis(100),
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn(worker::run(
            service.clone(),
            settings,
            Arc::default(),
            stop.clone(),
        ));
        Self { stop, task }
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the worker stops")
            .unwrap();
    }
}

/// No message of `queue` is visible: all it delivered are still hidden.
async fn assert_none_visible(queue: &CountingQueue, why: &str) {
    let visible = queue
        .inner
        .receive(32, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(visible.is_empty(), "{why}");
}

/// Waits for `work` to start once more.
async fn started(work: &GatedWork) {
    tokio::time::timeout(Duration::from_secs(10), work.started.notified())
        .await
        .expect("the worker starts the work");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_outlasting_the_visibility_timeout_keeps_its_message_hidden() {
    let queue = Arc::new(CountingQueue::default());
    let work = Arc::new(GatedWork::default());
    let service = service_on(queue.clone(), work.clone(), ServiceSettings::default());
    let visibility = Duration::from_secs(1);
    let worker = RunningWorker::start(&service, visibility);

    let id = submit_sample(&service).await;
    started(&work).await;
    let received_at = Instant::now();

    // Three renewals, half a timeout apart, take the work well past the first timeout.
    eventually(
        "three renewals",
        POLL,
        Duration::from_secs(10),
        async || queue.extended.load(Ordering::SeqCst) >= 3,
    )
    .await;
    assert!(received_at.elapsed() > visibility);
    assert_none_visible(
        &queue,
        "a message being worked on past its timeout is visible again",
    )
    .await;
    assert_eq!(queue.delivered.load(Ordering::SeqCst), 1);

    work.go.notify_one();
    eventually(
        "the message's deletion",
        POLL,
        Duration::from_secs(10),
        async || queue.deleted.load(Ordering::SeqCst) == 1,
    )
    .await;
    assert_eq!(service.get(id).await.unwrap().status, Status::Succeeded);
    assert_eq!(queue.delivered.load(Ordering::SeqCst), 1);
    worker.stop().await;
}

/// A message whose allowed deliveries were all taken by instances that died before reporting
/// back is not worked on again: as under the host, it goes to the poison queue unprocessed,
/// and the poison loop ends its operation `Failed` and keeps a copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_past_its_allowed_deliveries_goes_to_poison_unprocessed() {
    let queue = Arc::new(MemoryWorkQueue::new());
    let work = Arc::new(CountedWork::default());
    let settings = ServiceSettings {
        max_dequeue_count: 2,
        ..ServiceSettings::default()
    };
    let service = service_on(queue.clone(), work.clone(), settings);
    let id = submit_sample(&service).await;
    // Two deliveries to instances that crashed: received, never deleted, visible again at once.
    for _ in 0..2 {
        assert_eq!(queue.receive(32, Duration::ZERO).await.unwrap().len(), 1);
    }
    let worker = RunningWorker::start(&service, Duration::from_secs(30));
    let failed = eventually(
        "the operation's end",
        POLL,
        Duration::from_secs(10),
        async || Some(service.get(id).await.unwrap()).filter(|op| op.status.is_terminal()),
    )
    .await;
    assert_eq!(failed.status, Status::Failed);
    assert_eq!(failed.error.unwrap().code, "RetriesExhausted");
    assert_eq!(
        work.0.load(Ordering::SeqCst),
        0,
        "the work was not run again"
    );
    assert_eq!(queue.len(), 0, "gone from the work queue");
    eventually(
        "the poison message's deletion",
        POLL,
        Duration::from_secs(10),
        async || queue.poison_messages().is_empty(),
    )
    .await;
    let copies = service.poison_copies().await.unwrap();
    assert_eq!(copies.len(), 1);
    assert_eq!(copies[0].operation_id, Some(id));
    worker.stop().await;
}
