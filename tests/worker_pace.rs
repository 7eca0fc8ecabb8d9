//! The standalone worker follows storage's answers: it takes no more messages than the work
//! side's load limit allows, fewer once storage pushes back, more again once it answers
//! quickly, while the messages it already holds always finish.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use async_request_reply::adapters::memory::{
    MemoryRecordStore, MemoryResultStore, MemoryWorkQueue,
};
use async_request_reply::domain::load::{Answer, LoadLimit};
use async_request_reply::domain::ports::{Storage, Stores, SystemClock};
use async_request_reply::domain::sample::SampleWork;
use async_request_reply::domain::work::{Work, WorkContext, WorkError, WorkOutput};
use async_request_reply::domain::{OperationId, Service, ServiceSettings, Status};
use async_request_reply::edges::consumer::ConsumerGauges;
use async_request_reply::edges::worker::{self, WorkerSettings};

use support::eventually;
use support::queue::{submit_sample, CountingQueue};

const POLL: Duration = Duration::from_millis(10);
const LIMIT: Duration = Duration::from_secs(10);

/// Work that holds until the test moves past the phase it started in, counting how many run
/// at once. `u32::MAX` holds nothing.
struct HeldWork {
    running: AtomicUsize,
    peak: AtomicUsize,
    phase: watch::Sender<u32>,
}

impl Default for HeldWork {
    fn default() -> Self {
        Self {
            running: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            phase: watch::Sender::new(0),
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
    /// Releases the work started so far.
    fn next_phase(&self) {
        self.phase.send_modify(|p| *p += 1);
    }
    fn release_all(&self) {
        self.phase.send_replace(u32::MAX);
    }
}

#[async_trait]
impl Work for HeldWork {
    async fn perform(
        &self,
        context: &WorkContext,
        record: Map<String, Value>,
    ) -> Result<WorkOutput, WorkError> {
        let mut phase = self.phase.subscribe();
        let started_in = *phase.borrow();
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        if started_in != u32::MAX {
            let _ = phase.wait_for(|p| *p > started_in).await;
        }
        self.running.fetch_sub(1, Ordering::SeqCst);
        SampleWork::default().perform(context, record).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_takes_fewer_messages_while_storage_pushes_back_and_finishes_those_in_hand() {
    // A zero target: every pushback cuts the limit at once, and only instant answers grow it.
    let load = Arc::new(LoadLimit::new(16, Duration::ZERO));
    let queue = Arc::new(CountingQueue::default());
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
        ids.push(submit_sample(&service).await);
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
    work.next_phase();
    // The 16 in hand all end; meanwhile the worker takes new ones, but never more than the
    // cut limit (it may hold fewer: like the host, it receives again only once the messages in
    // hand have fallen to half the limit).
    eventually(
        "the 16 messages in hand all ended",
        POLL,
        LIMIT,
        async || {
            let statuses =
                futures::future::join_all(ids.iter().map(|id| status(&service, *id))).await;
            statuses.iter().filter(|s| **s == Status::Succeeded).count() == 16
        },
    )
    .await;
    eventually(
        "new messages under the cut limit",
        POLL,
        LIMIT,
        async || work.running() >= 3 && gauges.in_flight() == work.running(),
    )
    .await;
    assert_eq!(gauges.limit(), 6);
    assert!(work.running() <= 6, "{} worked on", work.running());
    let asked = queue.asked_since(receives);
    assert!(
        !asked.is_empty() && asked.iter().all(|&n| n <= 6),
        "receives under the cut limit asked for at most 6 messages: {asked:?}"
    );
    work.take_peak();

    // Quick answers grow it back to the top: with at most 6 in hand, under half of 16, the
    // worker receives the rest.
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
    work.release_all();
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
