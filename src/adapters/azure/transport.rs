//! The HTTP transport under every storage call, with an adaptive limit on the calls in flight.
//!
//! Without a limit, a burst of requests sends as many calls to storage as there are requests.
//! When storage is slower than the burst (a busy account, or the single-threaded emulator as
//! it fills up) the calls queue inside storage, each one's wait counts against its timeout, and
//! the calls that time out are abandoned (storage still does their work) and retried: more load
//! exactly when there is none to spare, a spiral that outlives the burst. So calls past the
//! limit wait here, where waiting costs storage nothing, and the limit follows storage's
//! latency (additive increase, multiplicative decrease): it shrinks while calls take longer
//! than a quarter of the timeout and grows back while they are quick, keeping storage's own
//! queue short enough that calls finish well inside their timeout. A wait for a slot is
//! bounded by the same timeout, so a stalled storage still answers `503` in bounded time.
//!
//! Only the request side's stores use this limited transport; those for work already accepted
//! hold nothing back (`ports::Storage`), since queued work must never starve behind status
//! polls: their transport only reports each answer to the standalone consumers' limit, which
//! decides how many messages they take on (`edges::consumer`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use azure_core::error::ErrorKind;
use azure_core::{HttpClient, Request, Response};
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

use crate::domain::load::{Answer, LoadLimit};

#[derive(Debug)]
pub(super) struct LimitedTransport {
    http: reqwest::Client,
    limit: AdaptiveLimit,
    max_wait: Duration,
}

impl LimitedTransport {
    pub(super) fn new(http: reqwest::Client, max_in_flight: usize, timeout: Duration) -> Self {
        Self {
            http,
            limit: AdaptiveLimit::new(max_in_flight, timeout / 4),
            max_wait: timeout,
        }
    }
}

#[async_trait]
impl HttpClient for LimitedTransport {
    /// One attempt of a call (the retry policy sits above). The slot is held until the
    /// response's head has arrived; a body is read after, as the caller consumes it.
    async fn execute_request(&self, request: &Request) -> azure_core::Result<Response> {
        let slot = self.limit.acquire(self.max_wait).await.ok_or_else(|| {
            azure_core::Error::message(
                ErrorKind::Io,
                "no storage call slot freed up within the storage timeout",
            )
        })?;
        let started = Instant::now();
        let answer = self.http.execute_request(request).await;
        self.limit
            .release(slot, answer_of(&answer, started.elapsed()));
        answer
    }
}

/// A limit on concurrent calls that adapts to their answers: slots a semaphore hands out,
/// as many as the [`LoadLimit`] allows.
#[derive(Debug)]
pub(crate) struct AdaptiveLimit {
    slots: Semaphore,
    load: LoadLimit,
    /// Slots in existence (handed out or free); moves toward the limit as calls complete.
    existing: Mutex<usize>,
}

impl AdaptiveLimit {
    pub(crate) fn new(max: usize, target: Duration) -> Self {
        let load = LoadLimit::new(max, target);
        let max = load.max();
        Self {
            slots: Semaphore::new(max),
            load,
            existing: Mutex::new(max),
        }
    }

    /// Waits (at most `max_wait`, first come first served) for a slot. `None` when none freed
    /// up in time (the semaphore is never closed, so that is the only way to get none).
    pub(crate) async fn acquire(&self, max_wait: Duration) -> Option<SemaphorePermit<'_>> {
        tokio::time::timeout(max_wait, self.slots.acquire())
            .await
            .ok()
            .and_then(Result::ok)
    }

    /// Gives a slot back, with its call's answer, and moves the limit.
    pub(crate) fn release(&self, slot: SemaphorePermit<'_>, answer: Answer) {
        let want = self.load.record(answer);
        let mut existing = self.existing.lock().unwrap_or_else(|e| e.into_inner());
        if *existing > want {
            slot.forget();
            *existing -= 1;
        } else {
            drop(slot);
            if *existing < want {
                self.slots.add_permits(want - *existing);
                *existing = want;
            }
        }
    }

    /// The slots in existence: the limit as the calls so far have moved it.
    #[cfg(test)]
    fn current(&self) -> usize {
        *self.existing.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The transport of the work side: nothing held back, but every call's answer moves the
/// standalone consumers' [`LoadLimit`], so they take fewer messages while storage is slow or
/// throttling instead of adding calls to it.
#[derive(Debug)]
pub(super) struct ObservedTransport {
    http: reqwest::Client,
    load: Arc<LoadLimit>,
}

impl ObservedTransport {
    pub(super) fn new(http: reqwest::Client, load: Arc<LoadLimit>) -> Self {
        Self { http, load }
    }
}

#[async_trait]
impl HttpClient for ObservedTransport {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<Response> {
        let started = Instant::now();
        let answer = self.http.execute_request(request).await;
        self.load.record(answer_of(&answer, started.elapsed()));
        answer
    }
}

/// What a call's outcome says about storage: a throttle (`503 ServerBusy`), a server-side
/// timeout (`500 OperationTimedOut`) or no answer at all is pushback; anything else took the
/// time it took.
fn answer_of(outcome: &azure_core::Result<Response>, took: Duration) -> Answer {
    match outcome {
        Ok(response) if matches!(u16::from(response.status()), 500 | 503) => Answer::PushedBack,
        Ok(_) => Answer::Took(took),
        Err(_) => Answer::PushedBack,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::load::MIN_LIMIT;

    const TARGET: Duration = Duration::from_millis(100);

    #[tokio::test(start_paused = true)]
    async fn slow_calls_shrink_the_limit_and_quick_ones_grow_it_back() {
        let limit = AdaptiveLimit::new(32, TARGET);
        assert_eq!(limit.current(), 32);
        // Slow answers, one target interval apart: each cuts the limit by a quarter, and the
        // slots follow one per released call.
        let mut seen = vec![];
        for _ in 0..6 {
            let slot = limit.acquire(TARGET).await.unwrap();
            limit.release(slot, Answer::Took(TARGET * 3));
            seen.push(limit.current());
            tokio::time::advance(TARGET).await;
        }
        assert_eq!(seen, vec![31, 30, 29, 28, 27, 26]);
        for _ in 0..40 {
            let slot = limit.acquire(TARGET).await.unwrap();
            limit.release(slot, Answer::Took(TARGET * 3));
            tokio::time::advance(TARGET).await;
        }
        assert_eq!(limit.current(), MIN_LIMIT, "never below the minimum");
        for _ in 0..200 {
            let slot = limit.acquire(TARGET).await.unwrap();
            limit.release(slot, Answer::Took(TARGET / 10));
        }
        assert!(limit.current() > 10, "quick calls grow it back");
        for _ in 0..2000 {
            let slot = limit.acquire(TARGET).await.unwrap();
            limit.release(slot, Answer::Took(TARGET / 10));
        }
        assert_eq!(limit.current(), 32, "never above the maximum");
    }

    #[tokio::test]
    async fn a_burst_of_slow_answers_counts_once() {
        let limit = AdaptiveLimit::new(32, Duration::from_secs(60));
        let slots: Vec<_> = futures::future::join_all((0..16).map(|_| limit.acquire(TARGET))).await;
        for slot in slots {
            limit.release(slot.unwrap(), Answer::Took(Duration::from_secs(120)));
        }
        // One decrease (32 * 0.75 = 24), reached by giving back surplus slots as calls end.
        assert_eq!(limit.current(), 24);
    }

    #[test]
    fn throttles_server_timeouts_and_failures_to_answer_are_pushback() {
        use azure_core::headers::Headers;
        use azure_core::StatusCode;
        let answer = |status| {
            let response =
                Response::new(status, Headers::new(), Box::pin(futures::stream::empty()));
            answer_of(&Ok(response), TARGET)
        };
        assert_eq!(answer(StatusCode::ServiceUnavailable), Answer::PushedBack);
        assert_eq!(answer(StatusCode::InternalServerError), Answer::PushedBack);
        assert_eq!(answer(StatusCode::Created), Answer::Took(TARGET));
        assert_eq!(answer(StatusCode::Conflict), Answer::Took(TARGET));
        let unreachable = azure_core::Error::message(ErrorKind::Io, "timed out");
        assert_eq!(answer_of(&Err(unreachable), TARGET), Answer::PushedBack);
    }

    #[tokio::test]
    async fn a_wait_for_a_slot_is_bounded() {
        let limit = AdaptiveLimit::new(1, TARGET);
        let held = limit.acquire(TARGET).await.unwrap();
        assert!(limit.acquire(TARGET).await.is_none());
        limit.release(held, Answer::Took(TARGET / 10));
        assert!(limit.acquire(TARGET).await.is_some());
    }
}
