//! The one bounded poll: tests wait for an event by looking again, never by sleeping a guess.

use std::fmt::Display;
use std::time::Duration;

/// What a poll's check answers: `Some`/`true` once the awaited thing happened.
pub trait Settled {
    type Value;
    fn settled(self) -> Option<Self::Value>;
}

impl<T> Settled for Option<T> {
    type Value = T;
    fn settled(self) -> Option<T> {
        self
    }
}

impl Settled for bool {
    type Value = ();
    fn settled(self) -> Option<()> {
        self.then_some(())
    }
}

/// Runs `check` every `interval` until it answers `Some`/`true`, and returns its value; fails
/// the test naming `what` if that has not happened within `limit`.
pub async fn eventually<R: Settled>(
    what: impl Display,
    interval: Duration,
    limit: Duration,
    mut check: impl AsyncFnMut() -> R,
) -> R::Value {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await.settled() {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not happen within {limit:?}"
        );
        tokio::time::sleep(interval).await;
    }
}
