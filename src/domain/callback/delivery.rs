//! Delivering one attempt of a completion callback: one message of the callbacks queue. The
//! receiver's answer decides: `2xx` delivered; `410`, another `4xx` or a redirect given up on;
//! `5xx`, `429`, a timeout or a broken connection retried, by queuing the next attempt with a
//! delay (exponential, jittered, at least the receiver's `Retry-After`), within a bounded
//! number of attempts and time. The platform's own retries are kept for this handler's own
//! failures (storage it cannot reach), which answer `Retry`.

use std::time::Duration;

use time::OffsetDateTime;
use tracing::{info, info_span, warn, Instrument};

use super::event::{cloud_event, CONTENT_TYPE};
use super::message::CallbackMessage;
use super::record::CallbackRecord;
use super::{CallbackSettings, Callbacks};
use crate::domain::monitor::CallbackState;
use crate::domain::operation::{Operation, OperationError};
use crate::domain::ports::{ETag, StoreError, WebhookAnswer, WebhookRequest};
use crate::domain::process::Outcome;
use crate::domain::service::Service;

/// What one attempt's answer means.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Delivered,
    /// Never retried.
    GiveUp(OperationError),
    /// Worth another attempt, not before `not_before` (the receiver's `Retry-After`).
    Retry {
        error: OperationError,
        not_before: Option<Duration>,
    },
}

/// The receiver's answer, judged as a user of webhooks expects.
pub fn judge(answer: &WebhookAnswer) -> Verdict {
    let error = |code: &str, message: String| OperationError::new(code, message);
    match answer {
        WebhookAnswer::Status { status, .. } if (200..300).contains(status) => Verdict::Delivered,
        WebhookAnswer::Status { status: 410, .. } => Verdict::GiveUp(error(
            "ReceiverGone",
            "the receiver answered 410 Gone; delivery stopped".into(),
        )),
        WebhookAnswer::Status {
            status,
            retry_after,
        } if *status == 429 || *status >= 500 => Verdict::Retry {
            error: error(
                "ReceiverUnavailable",
                format!("the receiver answered {status}"),
            ),
            not_before: *retry_after,
        },
        WebhookAnswer::Status { status, .. } if (300..400).contains(status) => {
            Verdict::GiveUp(error(
                "RedirectNotFollowed",
                format!("the receiver answered {status}; redirects are not followed"),
            ))
        }
        WebhookAnswer::Status { status, .. } => Verdict::GiveUp(error(
            "ReceiverRefused",
            format!("the receiver answered {status}"),
        )),
        WebhookAnswer::Unreachable(reason) => Verdict::Retry {
            error: error("ReceiverUnreachable", reason.clone()),
            not_before: None,
        },
        WebhookAnswer::Refused(reason) => Verdict::GiveUp(error("AddressRefused", reason.clone())),
    }
}

/// The wait before the attempt after `failed` (1 for the first): the first delay doubled per
/// attempt up to the maximum, then jittered down by up to half so that receivers coming back
/// are not met by every sender at once; never less than `not_before`.
pub fn retry_delay(
    settings: &CallbackSettings,
    failed: u32,
    not_before: Option<Duration>,
    jitter: f64,
) -> Duration {
    let doubled = settings
        .first_retry_delay
        .saturating_mul(2u32.saturating_pow(failed.saturating_sub(1)))
        .min(settings.max_retry_delay);
    let jittered = doubled.mul_f64(1.0 - 0.5 * jitter.clamp(0.0, 1.0));
    jittered.max(not_before.unwrap_or_default())
}

/// A number in `0..1`, for jitter.
fn jitter() -> f64 {
    (uuid::Uuid::new_v4().as_u128() % 1_000_000) as f64 / 1_000_000.0
}

impl Service {
    /// Handles one message of the callbacks queue. `Done` for anything but this handler's own
    /// failure to reach storage (then `Retry`): a receiver's failure is retried by a new message.
    pub async fn deliver_callback(&self, text: &str) -> Outcome {
        let message = match CallbackMessage::decode(text) {
            Ok(m) => m,
            Err(reason) => {
                warn!(%reason, "undecodable callback message; dropping it");
                return Outcome::Done;
            }
        };
        let span = info_span!(
            "callback",
            operation_id = %message.operation_id,
            attempt = message.attempt
        );
        self.deliver(message).instrument(span).await
    }

    async fn deliver(&self, message: CallbackMessage) -> Outcome {
        let Some(callbacks) = &self.callbacks else {
            warn!("callbacks are not configured here; dropping a callback message");
            return Outcome::Done;
        };
        let operations = &self.accepted.operations;
        let id = message.operation_id;
        let now = self.clock.now();
        let op = match operations.load(id).await {
            Ok(Some((op, _))) if !op.is_expired(now) => op,
            Ok(_) => {
                info!("no such operation (expired?); dropping its callback");
                return Outcome::Done;
            }
            Err(e) => return own_failure(&e.to_string()),
        };
        let Some(target) = op.callback.clone() else {
            return Outcome::Done;
        };
        if !op.status.is_terminal() {
            // Announced but not (yet) written: the writer is about to, or it stopped, and
            // whoever ends the operation later announces the end again. Look once more later.
            return self
                .schedule_next(callbacks, &message, None, "the operation has not ended yet")
                .await;
        }
        if op.status != message.status {
            info!(status = %op.status, "the operation ended otherwise; its own message announces it");
            return Outcome::Done;
        }
        let (record, etag) = match operations.load_callback(id).await {
            Ok(Some((r, e))) => (Some(r), Some(e)),
            Ok(None) => (None, None),
            Err(e) => return own_failure(&e.to_string()),
        };
        if let Some(r) = &record {
            if r.is_settled() {
                info!(state = ?r.state, "callback already settled; nothing to do");
                return Outcome::Done;
            }
            if let Some(until) = r.lease_until.filter(|u| *u > now) {
                return self.wait_for_lease(callbacks, &message, until - now).await;
            }
        }
        // Claim the attempt, so a second copy of this message does not call the receiver too.
        let lease = now + callbacks.settings.timeout * 2 + Duration::from_secs(5);
        let claimed = CallbackRecord {
            operation_id: id,
            state: CallbackState::Pending,
            attempts: record.as_ref().map_or(0, |r| r.attempts) + 1,
            last_error: record.and_then(|r| r.last_error),
            lease_until: Some(lease),
            last_updated_date_time: now,
            expiration_date_time: op.expiration_date_time,
        };
        let etag = match operations.save_callback(&claimed, etag.as_deref()).await {
            Ok(etag) => etag,
            Err(StoreError::AlreadyExists | StoreError::PreconditionFailed) => {
                return self
                    .wait_for_lease(callbacks, &message, time::Duration::ZERO)
                    .await
            }
            Err(e) => return own_failure(&e.to_string()),
        };
        let answer = match self.request_for(callbacks, &op, &target.url, now) {
            Ok(request) => callbacks.webhooks.post(request).await,
            Err(reason) => WebhookAnswer::Refused(reason),
        };
        let verdict = judge(&answer);
        crate::telemetry::metrics::callback_attempt(verdict == Verdict::Delivered);
        self.settle(callbacks, &message, claimed, etag, verdict)
            .await
    }

    /// The signed request for `op`'s end event.
    fn request_for(
        &self,
        callbacks: &Callbacks,
        op: &Operation,
        url: &str,
        now: OffsetDateTime,
    ) -> Result<WebhookRequest, String> {
        let (event_id, body) = cloud_event(op)?;
        let timestamp = now.unix_timestamp();
        let mut headers = vec![
            ("content-type", CONTENT_TYPE.to_string()),
            ("webhook-id", event_id.clone()),
            ("webhook-timestamp", timestamp.to_string()),
        ];
        if let Some(signature) = callbacks.settings.signing.sign(&event_id, timestamp, &body) {
            headers.push(("webhook-signature", signature));
        }
        Ok(WebhookRequest {
            url: url.to_string(),
            headers,
            body,
        })
    }

    /// Records how the attempt went and, when it is worth another, queues the next one.
    async fn settle(
        &self,
        callbacks: &Callbacks,
        message: &CallbackMessage,
        claimed: CallbackRecord,
        etag: ETag,
        verdict: Verdict,
    ) -> Outcome {
        let settings = &callbacks.settings;
        let now = self.clock.now();
        let mut record = CallbackRecord {
            lease_until: None,
            last_updated_date_time: now,
            ..claimed
        };
        let mut next = None;
        match verdict {
            Verdict::Delivered => {
                info!(attempts = record.attempts, "callback delivered");
                record.state = CallbackState::Delivered;
                record.last_error = None;
            }
            Verdict::GiveUp(error) => {
                warn!(code = %error.code, reason = %error.message, "callback given up on");
                record.state = CallbackState::Failed;
                record.last_error = Some(error);
            }
            Verdict::Retry { error, not_before } => {
                let delay = retry_delay(settings, message.attempt, not_before, jitter());
                let deadline = message.since + settings.max_age;
                if message.attempt >= settings.max_attempts || now + delay > deadline {
                    warn!(reason = %error.message, "callback failed; no attempts left");
                    record.state = CallbackState::Failed;
                    record.last_error = Some(OperationError::new(
                        error.code,
                        format!(
                            "gave up after {} attempts: {}",
                            record.attempts, error.message
                        ),
                    ));
                } else {
                    warn!(reason = %error.message, delay_ms = delay.as_millis() as u64, "callback failed; retrying later");
                    record.last_error = Some(error);
                    next = Some(delay);
                }
            }
        }
        if let Err(e) = self
            .accepted
            .operations
            .save_callback(&record, Some(&etag))
            .await
        {
            // The attempt happened but is not recorded: the message comes back and the receiver
            // may see the event again (same webhook-id), which at-least-once allows.
            return own_failure(&e.to_string());
        }
        match next {
            None => Outcome::Done,
            Some(delay) => self.enqueue(message.next(), delay).await,
        }
    }

    /// Queues the next attempt without calling the receiver now, within the same bounds.
    async fn schedule_next(
        &self,
        callbacks: &Callbacks,
        message: &CallbackMessage,
        not_before: Option<Duration>,
        why: &str,
    ) -> Outcome {
        let settings = &callbacks.settings;
        let delay = retry_delay(settings, message.attempt, not_before, jitter());
        if message.attempt >= settings.max_attempts
            || self.clock.now() + delay > message.since + settings.max_age
        {
            warn!(why, "dropping a callback message that ran out of attempts");
            return Outcome::Done;
        }
        info!(
            why,
            delay_ms = delay.as_millis() as u64,
            "callback deferred"
        );
        self.enqueue(message.next(), delay).await
    }

    /// Another delivery holds the callback: this copy looks again once its lease is over.
    async fn wait_for_lease(
        &self,
        callbacks: &Callbacks,
        message: &CallbackMessage,
        left: time::Duration,
    ) -> Outcome {
        // A lease lost just now to another copy: wait as long as one attempt may take.
        let left = Duration::try_from(left)
            .ok()
            .filter(|d| !d.is_zero())
            .unwrap_or(callbacks.settings.timeout);
        info!("another delivery of this callback is in flight; looking again after it");
        self.enqueue(message.clone(), left).await
    }

    async fn enqueue(&self, message: CallbackMessage, delay: Duration) -> Outcome {
        let text = match message.encode() {
            Ok(text) => text,
            Err(e) => {
                warn!(error = %e, "cannot encode a callback message; dropping it");
                return Outcome::Done;
            }
        };
        match self
            .accepted
            .callbacks
            .send_delayed(&text, delay.min(MAX_QUEUE_DELAY))
            .await
        {
            Ok(()) => {
                self.callback_queued.notify_one();
                Outcome::Done
            }
            Err(e) => own_failure(&e.to_string()),
        }
    }
}

/// The longest visibility delay a storage queue accepts (seven days).
const MAX_QUEUE_DELAY: Duration = Duration::from_secs(7 * 24 * 3600);

fn own_failure(reason: &str) -> Outcome {
    warn!(%reason, "callback delivery could not reach storage; the message will be retried");
    Outcome::Retry
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_judged_as_webhooks_expect() {
        let status = |s| WebhookAnswer::Status {
            status: s,
            retry_after: None,
        };
        assert_eq!(judge(&status(200)), Verdict::Delivered);
        assert_eq!(judge(&status(204)), Verdict::Delivered);
        for s in [410, 400, 404, 301, 302, 307] {
            assert!(matches!(judge(&status(s)), Verdict::GiveUp(_)), "{s}");
        }
        for s in [429, 500, 502, 503] {
            assert!(matches!(judge(&status(s)), Verdict::Retry { .. }), "{s}");
        }
        assert!(matches!(
            judge(&WebhookAnswer::Unreachable("timeout".into())),
            Verdict::Retry { .. }
        ));
        assert!(matches!(
            judge(&WebhookAnswer::Refused("private".into())),
            Verdict::GiveUp(_)
        ));
    }

    #[test]
    fn delays_double_within_bounds_and_honour_retry_after() {
        let s = CallbackSettings::default();
        let d = |n, after, j| retry_delay(&s, n, after, j);
        assert_eq!(d(1, None, 0.0), Duration::from_secs(30));
        assert_eq!(d(2, None, 0.0), Duration::from_secs(60));
        assert_eq!(d(3, None, 1.0), Duration::from_secs(60));
        assert_eq!(d(30, None, 0.0), s.max_retry_delay);
        assert_eq!(
            d(1, Some(Duration::from_secs(120)), 0.0),
            Duration::from_secs(120)
        );
    }
}
