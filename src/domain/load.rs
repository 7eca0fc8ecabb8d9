//! How much storage can take right now: a concurrency limit that follows storage's answers
//! (additive increase, multiplicative decrease). Each call's answer moves it: a quick one grows
//! it by about one per limit's worth of calls, a slow one, a timeout or a throttle (`503
//! ServerBusy`, `500 OperationTimedOut`) cuts it by a quarter, at most once per target interval
//! so that a burst of slow answers counts as one signal. The request side's transport holds
//! calls back by it; the standalone queue consumers take no more messages than it allows.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The limit never falls below this (or the maximum, if smaller), so work keeps moving.
pub const MIN_LIMIT: usize = 2;

/// What one call said about storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// It answered, in the time it took.
    Took(Duration),
    /// It pushed back: throttled, timed out, or could not be reached.
    PushedBack,
}

/// A limit between [`MIN_LIMIT`] and a maximum, moved by the answers of calls.
#[derive(Debug)]
pub struct LoadLimit {
    state: Mutex<State>,
    min: usize,
    max: usize,
    /// Calls slower than this shrink the limit.
    target: Duration,
    /// Never moves.
    fixed: bool,
}

#[derive(Debug)]
struct State {
    /// Fractional, so that it grows by about one per limit's worth of quick calls.
    limit: f64,
    last_decrease: Option<Instant>,
    decreases: u64,
}

impl LoadLimit {
    /// Starts at `max`: storage is assumed well until it says otherwise.
    pub fn new(max: usize, target: Duration) -> Self {
        let max = max.max(1);
        Self {
            state: Mutex::new(State {
                limit: max as f64,
                last_decrease: None,
                decreases: 0,
            }),
            min: MIN_LIMIT.min(max),
            max,
            target,
            fixed: false,
        }
    }

    /// A limit nothing moves (storage in memory answers at once and never pushes back).
    pub fn unlimited() -> Self {
        Self {
            fixed: true,
            ..Self::new(usize::MAX, Duration::MAX)
        }
    }

    /// Records one call's answer and answers the limit it leaves.
    pub fn record(&self, answer: Answer) -> usize {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if self.fixed {
            return self.max;
        }
        let slow = match answer {
            Answer::Took(took) => took > self.target,
            Answer::PushedBack => true,
        };
        if slow {
            let now = Instant::now();
            let interval = self.target.min(Duration::from_secs(3600));
            if s.last_decrease.is_none_or(|at| now - at >= interval) {
                s.limit = (s.limit * 0.75).max(self.min as f64);
                s.last_decrease = Some(now);
                s.decreases += 1;
            }
        } else {
            s.limit = (s.limit + 1.0 / s.limit).min(self.max as f64);
        }
        Self::whole(&s, self.min, self.max)
    }

    /// The limit as the answers so far have moved it.
    pub fn current(&self) -> usize {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        Self::whole(&s, self.min, self.max)
    }

    /// How often it was cut (a throttled or slow storage), for logs and metrics.
    pub fn decreases(&self) -> u64 {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .decreases
    }

    /// The highest it goes.
    pub fn max(&self) -> usize {
        self.max
    }

    fn whole(s: &State, min: usize, max: usize) -> usize {
        if s.limit >= max as f64 {
            return max;
        }
        (s.limit.floor() as usize).clamp(min, max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGET: Duration = Duration::from_millis(100);

    #[tokio::test(start_paused = true)]
    async fn slow_answers_cut_it_and_quick_ones_grow_it_back() {
        let limit = LoadLimit::new(32, TARGET);
        assert_eq!(limit.current(), 32);
        let mut seen = vec![];
        for _ in 0..3 {
            seen.push(limit.record(Answer::Took(TARGET * 3)));
            tokio::time::advance(TARGET).await;
        }
        assert_eq!(seen, vec![24, 18, 13]);
        for _ in 0..40 {
            limit.record(Answer::PushedBack);
            tokio::time::advance(TARGET).await;
        }
        assert_eq!(limit.current(), MIN_LIMIT, "never below the minimum");
        assert_eq!(limit.decreases(), 43);
        for _ in 0..200 {
            limit.record(Answer::Took(TARGET / 10));
        }
        assert!(limit.current() > 10, "quick answers grow it back");
        for _ in 0..2000 {
            limit.record(Answer::Took(TARGET / 10));
        }
        assert_eq!(limit.current(), 32, "never above the maximum");
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_pushback_counts_once() {
        let limit = LoadLimit::new(32, TARGET);
        for _ in 0..16 {
            limit.record(Answer::PushedBack);
        }
        assert_eq!(limit.current(), 24);
        tokio::time::advance(TARGET).await;
        assert_eq!(limit.record(Answer::PushedBack), 18);
    }

    #[test]
    fn an_unlimited_one_does_not_move() {
        let limit = LoadLimit::unlimited();
        limit.record(Answer::Took(Duration::from_secs(3600)));
        limit.record(Answer::PushedBack);
        assert_eq!(limit.current(), usize::MAX);
    }
}
