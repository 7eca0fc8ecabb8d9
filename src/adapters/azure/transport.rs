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
//! Only the request side's stores use this transport; those for work already accepted use the
//! plain client (`ports::Storage`), since queued work must never starve behind status polls.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::error::ErrorKind;
use azure_core::{HttpClient, Request, Response};
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

/// The limit never falls below this (or the maximum, if smaller), so requests keep moving.
const MIN_LIMIT: usize = 2;

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
        self.limit.release(slot, started.elapsed());
        answer
    }
}

/// A limit on concurrent calls that adapts to their latency.
#[derive(Debug)]
pub(crate) struct AdaptiveLimit {
    slots: Semaphore,
    state: Mutex<LimitState>,
    min: usize,
    max: usize,
    /// Calls slower than this shrink the limit.
    target: Duration,
}

#[derive(Debug)]
struct LimitState {
    /// The limit, fractional so that it grows by about one per limit's worth of quick calls.
    limit: f64,
    /// Slots in existence (handed out or free); moves toward `limit` as calls complete.
    slots: usize,
    last_decrease: Option<Instant>,
}

impl AdaptiveLimit {
    pub(crate) fn new(max: usize, target: Duration) -> Self {
        let max = max.max(1);
        Self {
            slots: Semaphore::new(max),
            state: Mutex::new(LimitState {
                limit: max as f64,
                slots: max,
                last_decrease: None,
            }),
            min: MIN_LIMIT.min(max),
            max,
            target,
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

    /// Gives a slot back, with how long its call took, and moves the limit.
    pub(crate) fn release(&self, slot: SemaphorePermit<'_>, took: Duration) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if took > self.target {
            // At most one decrease per target interval: a burst of slow answers is one signal.
            if s.last_decrease.is_none_or(|at| now - at >= self.target) {
                s.limit = (s.limit * 0.75).max(self.min as f64);
                s.last_decrease = Some(now);
            }
        } else {
            s.limit = (s.limit + 1.0 / s.limit).min(self.max as f64);
        }
        let want = (s.limit.floor() as usize).clamp(self.min, self.max);
        if s.slots > want {
            slot.forget();
            s.slots -= 1;
        } else {
            drop(slot);
            if s.slots < want {
                self.slots.add_permits(want - s.slots);
                s.slots = want;
            }
        }
    }

    /// The slots in existence: the limit as the calls so far have moved it.
    #[cfg(test)]
    fn current(&self) -> usize {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.slots
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            limit.release(slot, TARGET * 3);
            seen.push(limit.current());
            tokio::time::advance(TARGET).await;
        }
        assert_eq!(seen, vec![31, 30, 29, 28, 27, 26]);
        for _ in 0..40 {
            let slot = limit.acquire(TARGET).await.unwrap();
            limit.release(slot, TARGET * 3);
            tokio::time::advance(TARGET).await;
        }
        assert_eq!(limit.current(), MIN_LIMIT, "never below the minimum");
        for _ in 0..200 {
            let slot = limit.acquire(TARGET).await.unwrap();
            limit.release(slot, TARGET / 10);
        }
        assert!(limit.current() > 10, "quick calls grow it back");
        for _ in 0..2000 {
            let slot = limit.acquire(TARGET).await.unwrap();
            limit.release(slot, TARGET / 10);
        }
        assert_eq!(limit.current(), 32, "never above the maximum");
    }

    #[tokio::test]
    async fn a_burst_of_slow_answers_counts_once() {
        let limit = AdaptiveLimit::new(32, Duration::from_secs(60));
        let slots: Vec<_> = futures::future::join_all((0..16).map(|_| limit.acquire(TARGET))).await;
        for slot in slots {
            limit.release(slot.unwrap(), Duration::from_secs(120));
        }
        // One decrease (32 * 0.75 = 24), reached by giving back surplus slots as calls end.
        assert_eq!(limit.current(), 24);
    }

    #[tokio::test]
    async fn a_wait_for_a_slot_is_bounded() {
        let limit = AdaptiveLimit::new(1, TARGET);
        let held = limit.acquire(TARGET).await.unwrap();
        assert!(limit.acquire(TARGET).await.is_none());
        limit.release(held, TARGET / 10);
        assert!(limit.acquire(TARGET).await.is_some());
    }
}
