//! Progress the work reports while it runs: a percentage and an optional small JSON status.
//! Reports only set the latest value; a writer beside the work (in `process`) records it at most once per
//! `WRITE_INTERVAL` (the latest wins), each write a compare-and-swap that changes only a
//! `Running` operation, so progress never overwrites an end or a cancel.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Notify;

/// The largest `customStatus` kept, as JSON.
pub const MAX_CUSTOM_STATUS_BYTES: usize = 16 * 1024;

/// At most one progress write per operation this often.
pub const WRITE_INTERVAL: Duration = Duration::from_secs(1);

/// A report the service will not keep (the work's error, not a crash).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProgressError {
    #[error("percentComplete must be 0 to 100, not {0}")]
    OutOfRange(u8),
    #[error("customStatus is {0} bytes as JSON; at most {MAX_CUSTOM_STATUS_BYTES} are kept")]
    TooLarge(usize),
}

/// One report: how far, and what the work wants to say about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub percent: u8,
    pub custom_status: Option<Value>,
}

#[derive(Default)]
struct Latest {
    report: Mutex<Option<Report>>,
    changed: Notify,
}

/// Where the work reports progress (`WorkContext::progress`).
#[derive(Clone, Default)]
pub struct Progress(Option<Arc<Latest>>);

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Progress"
        } else {
            "Progress(detached)"
        })
    }
}

impl Progress {
    /// A reporter and the feed its reports arrive on.
    pub(super) fn channel() -> (Self, ProgressFeed) {
        let latest = Arc::new(Latest::default());
        (Self(Some(latest.clone())), ProgressFeed(latest))
    }

    /// Reports progress: `percent` from 0 to 100, and optionally a JSON status of at most
    /// 16 KiB. Cheap and never waits: the service records the latest report about once a second.
    pub fn report(&self, percent: u8, custom_status: Option<Value>) -> Result<(), ProgressError> {
        if percent > 100 {
            return Err(ProgressError::OutOfRange(percent));
        }
        if let Some(status) = &custom_status {
            let size = serde_json::to_vec(status).map_or(usize::MAX, |v| v.len());
            if size > MAX_CUSTOM_STATUS_BYTES {
                return Err(ProgressError::TooLarge(size));
            }
        }
        if let Some(latest) = &self.0 {
            *latest.report.lock().unwrap_or_else(|p| p.into_inner()) = Some(Report {
                percent,
                custom_status,
            });
            latest.changed.notify_one();
        }
        Ok(())
    }
}

/// The writer's side: the latest report, once there is one.
pub(super) struct ProgressFeed(Arc<Latest>);

impl ProgressFeed {
    pub(super) async fn next(&self) -> Report {
        loop {
            let taken = self
                .0
                .report
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            if let Some(report) = taken {
                return report;
            }
            // `notify_one` keeps a permit when nobody waits, so no report is missed.
            self.0.changed.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_out_of_bounds_are_the_works_error() {
        let (progress, feed) = Progress::channel();
        assert_eq!(
            progress.report(101, None),
            Err(ProgressError::OutOfRange(101))
        );
        let big = Value::String("x".repeat(MAX_CUSTOM_STATUS_BYTES));
        assert!(matches!(
            progress.report(5, Some(big)),
            Err(ProgressError::TooLarge(_))
        ));
        assert!(feed.0.report.lock().unwrap().is_none());
        progress.report(5, None).unwrap();
        progress
            .report(7, Some(serde_json::json!({"step": 2})))
            .unwrap();
        let latest = feed.0.report.lock().unwrap().clone().unwrap();
        assert_eq!(latest.percent, 7, "the latest report wins");
        assert!(Progress::default().report(50, None).is_ok());
    }
}
