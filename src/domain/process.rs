//! Processing one delivery of a work message: the operation moves to `Running`, the work runs,
//! its result is written once, and the operation ends; a transient failure is retried until the
//! last allowed delivery, which fails the operation before the message goes to the poison queue.
//! Every step tolerates redelivery: a terminal state never changes.

use std::sync::Mutex;
use std::time::Instant;

use serde_json::{Map, Value};
use tracing::field::Empty;
use tracing::{debug, info, info_span, warn, Instrument};

use super::error::DomainError;
use super::message::{Payload, WorkMessage};
use super::operation::{AlreadyEnded, Operation, OperationError, OperationId, Status};
use super::operations::{self, Update};
use super::ports::ETag;
use super::progress::{Progress, ProgressFeed, WRITE_INTERVAL};
use super::service::Service;
use super::work::{WorkContext, WorkError};
use crate::telemetry::{self, metrics};

/// What to do with a delivered message once `process` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Handled for good (done, failed for good, or nothing to do): delete the message.
    Done,
    /// Not handled for good: let the message come back later, or, after the last allowed
    /// attempt, go to the poison queue (the operation was failed first where storage allowed).
    Retry,
}

impl Service {
    /// Processes one delivery of a work message. `dequeue_count` is this delivery's number
    /// (1 on the first); on the last allowed one a transient failure fails the operation.
    pub async fn process(&self, text: &str, dequeue_count: u32) -> Outcome {
        let message = match WorkMessage::decode(text) {
            Ok(m) => m,
            Err(e) => {
                return match e.id {
                    Some(id) => {
                        let span = info_span!("process", operation_id = %id, dequeue_count);
                        async {
                            warn!(reason = %e.reason, "undecodable message; failing the operation");
                            let error = OperationError::new("InvalidMessage", e.reason.clone());
                            self.finish(id, None, Status::Failed, Some(error), dequeue_count)
                                .await
                        }
                        .instrument(span)
                        .await
                    }
                    None => {
                        warn!(reason = %e.reason, dequeue_count, "undecodable message names no operation; dropping it");
                        Outcome::Done
                    }
                };
            }
        };
        // The delivery's consumer span: in the submitter's trace, the child of its enqueue.
        let span = info_span!(
            "process",
            otel.kind = Empty,
            otel.name = Empty,
            otel.status_code = Empty,
            operation_id = %message.id,
            dequeue_count,
            outcome = Empty,
            queue_wait_ms = Empty,
            traceparent = message.traceparent.as_deref(),
            trace_id = Empty,
        );
        telemetry::for_export(&span, "consumer", "process work message");
        telemetry::begin_from(&span, message.traceparent.as_deref());
        if dequeue_count == 1 {
            if let Ok(wait) = std::time::Duration::try_from(self.clock.now() - message.submitted_at)
            {
                span.record("queue_wait_ms", wait.as_millis() as u64);
                metrics::queue_wait(wait);
            }
        }
        let started = Instant::now();
        let outcome = self
            .process_message(message, dequeue_count)
            .instrument(span.clone())
            .await;
        let name = match outcome {
            Outcome::Done => "done",
            Outcome::Retry => "retry",
        };
        span.record("outcome", name);
        if outcome == Outcome::Retry {
            span.record("otel.status_code", "ERROR");
        }
        metrics::processed(started.elapsed(), name);
        outcome
    }

    async fn process_message(&self, message: WorkMessage, dequeue_count: u32) -> Outcome {
        let id = message.id;
        // The record as submitted, rebuilt from the message, at the version the message names:
        // if it is still that version nothing has touched it, and no write needs a read first;
        // if anything did (a cancel, an earlier delivery), a write from it loses the ETag race
        // and `update` reads the record as usual. (The rebuilt expiry uses this instance's
        // retention setting, which all instances of an app share.)
        let as_submitted = message.record_version.clone().map(|version| {
            let op = Operation::new(
                id,
                message.status_url.clone(),
                message.submitted_at,
                self.retention(),
            );
            (op, version)
        });
        let (started, version, running) = match self.start(id, as_submitted, dequeue_count).await {
            Ok(start) => start,
            Err(outcome) => return outcome,
        };
        let record = match self.record_of(message.payload, id).await {
            Ok(record) => record,
            Err(Fault::Invalid(reason)) => {
                return self
                    .fail(id, "InvalidMessage", &reason, dequeue_count)
                    .await
            }
            Err(Fault::Transient(reason)) => {
                return self.transient(id, reason, dequeue_count).await
            }
        };
        if let Err(e) = self.work.validate(&record) {
            return self
                .fail(id, "InvalidMessage", &e.detail, dequeue_count)
                .await;
        }
        info!("working");
        let (progress, feed) = Progress::channel();
        let context = WorkContext {
            operation_id: id,
            submitted_at: message.submitted_at,
            started_at: self.clock.now(),
            status_url: started.status_url.clone(),
            dequeue_count,
            progress,
        };
        // Progress is written beside the work and stops with it, before the end is written;
        // it needs `Running`, so it starts once that is written.
        let known = Mutex::new((started, version));
        let work = self.work.perform(&context, record);
        tokio::pin!(work);
        if !running {
            tokio::select! {
                biased;
                output = &mut work => return self.performed(id, output, known, dequeue_count).await,
                _ = tokio::time::sleep(self.settings.running_after) => {}
            }
            if let Err(outcome) = self.mark_running(id, &known, dequeue_count).await {
                return outcome;
            }
        }
        let performed = tokio::select! {
            biased;
            output = work => output,
            never = self.write_progress(id, &feed, &known) => match never {},
        };
        self.performed(id, performed, known, dequeue_count).await
    }

    /// Where the work starts from: the operation, its version, and whether it is `Running`.
    /// When the message names the record's version and nothing changed the record since (one
    /// read, no body: a cancel or an earlier delivery would have), the work starts at once and
    /// `Running` is written only if it outlasts `running_after`, saving a write for quick work;
    /// the final compare-and-swap from that version still loses to a cancel that comes later.
    /// Otherwise `Running` is written first, conditionally, as the fence a cancel must pass.
    async fn start(
        &self,
        id: OperationId,
        as_submitted: Option<(Operation, ETag)>,
        dequeue_count: u32,
    ) -> Result<(Operation, ETag, bool), Outcome> {
        let operations = &self.accepted.operations;
        if let Some((op, version)) = &as_submitted {
            if !self.settings.running_after.is_zero() {
                match operations.is_at(id, version).await {
                    Ok(true) => return Ok((op.clone(), version.clone(), false)),
                    // Changed since: the write below loses its race and reads the record.
                    Ok(false) => {}
                    Err(DomainError::NotFound) => {
                        warn!(
                            "no such operation (expired, or never accepted); dropping the message"
                        );
                        return Err(Outcome::Done);
                    }
                    Err(e) => return Err(self.transient(id, e.to_string(), dequeue_count).await),
                }
            }
        }
        let running = operations
            .update(id, as_submitted, |op, now| {
                op.transition(Status::Running, None, now)
            })
            .await;
        match running {
            Ok(Update::Changed(op, etag)) => Ok((op, etag, true)),
            Ok(Update::AlreadyEnded(op)) => {
                info!(status = %op.status, "already ended; nothing to do");
                Err(Outcome::Done)
            }
            Err(DomainError::NotFound) => {
                warn!("no such operation (expired, or never accepted); dropping the message");
                Err(Outcome::Done)
            }
            Err(e) => Err(self.transient(id, e.to_string(), dequeue_count).await),
        }
    }

    /// Writes `Running` for work that outlasted `running_after`, from the version in `known`.
    /// An operation that ended meanwhile (a cancel) stops the work.
    async fn mark_running(
        &self,
        id: OperationId,
        known: &Mutex<(Operation, ETag)>,
        dequeue_count: u32,
    ) -> Result<(), Outcome> {
        let start = known.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let update = self
            .accepted
            .operations
            .update(id, Some(start), |op, now| {
                op.transition(Status::Running, None, now)
            })
            .await;
        match update {
            Ok(Update::Changed(op, etag)) => {
                *known.lock().unwrap_or_else(|p| p.into_inner()) = (op, etag);
                Ok(())
            }
            Ok(Update::AlreadyEnded(op)) => {
                info!(status = %op.status, "ended while the work ran; stopping the work");
                Err(Outcome::Done)
            }
            Err(DomainError::NotFound) => Err(Outcome::Done),
            Err(e) => Err(self.transient(id, e.to_string(), dequeue_count).await),
        }
    }

    /// Records what the work came to: its result written once, then the end.
    async fn performed(
        &self,
        id: OperationId,
        performed: Result<super::work::WorkOutput, WorkError>,
        known: Mutex<(Operation, ETag)>,
        dequeue_count: u32,
    ) -> Outcome {
        match performed {
            Ok(output) => {
                let stored = self
                    .accepted
                    .results
                    .put_if_absent(&id.result_name(), output.body, &output.content_type)
                    .await;
                match stored {
                    Ok(_) => {
                        let known = Some(known.into_inner().unwrap_or_else(|p| p.into_inner()));
                        self.finish(id, known, Status::Succeeded, None, dequeue_count)
                            .await
                    }
                    Err(e) => self.transient(id, e.to_string(), dequeue_count).await,
                }
            }
            Err(WorkError::Permanent(m)) => self.fail(id, "WorkFailed", &m, dequeue_count).await,
            Err(WorkError::Transient(m)) => self.transient(id, m, dequeue_count).await,
        }
    }

    /// Records the feed's reports for `id` until dropped (it never returns): at most one write
    /// per `WRITE_INTERVAL`. `known` is the operation as this process last wrote it, kept
    /// current, so a write needs no read unless something else changed the record.
    async fn write_progress(
        &self,
        id: OperationId,
        feed: &ProgressFeed,
        known: &Mutex<(Operation, ETag)>,
    ) -> std::convert::Infallible {
        loop {
            let report = feed.next().await;
            let start = known.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let update = self
                .accepted
                .operations
                .update(id, Some(start), |op, now| {
                    if op.status != Status::Running {
                        return Err(AlreadyEnded(op.status));
                    }
                    op.percent_complete = Some(report.percent);
                    op.custom_status = report.custom_status.clone();
                    op.last_updated_date_time = now;
                    Ok(())
                })
                .await;
            match update {
                Ok(Update::Changed(op, etag)) => {
                    *known.lock().unwrap_or_else(|p| p.into_inner()) = (op, etag);
                }
                Ok(Update::AlreadyEnded(op)) => {
                    debug!(status = %op.status, "progress not recorded: the operation is no longer running");
                }
                Err(e) => warn!(error = %e, "could not record progress"),
            }
            tokio::time::sleep(WRITE_INTERVAL).await;
        }
    }

    /// The submitted record: in the message, or claim-checked in storage.
    async fn record_of(
        &self,
        payload: Payload,
        id: OperationId,
    ) -> Result<Map<String, Value>, Fault> {
        match payload {
            Payload::Inline(record) => Ok(record),
            Payload::Stored(_) => match self.accepted.operations.load_payload(id).await {
                Ok(operations::Payload::Record(record)) => Ok(record),
                Ok(operations::Payload::NotAnObject) => Err(Fault::Invalid(
                    "the stored payload is not a JSON object".into(),
                )),
                Ok(operations::Payload::Missing) => {
                    Err(Fault::Invalid("the stored payload is missing".into()))
                }
                Err(e) => Err(Fault::Transient(e.to_string())),
            },
        }
    }

    async fn fail(
        &self,
        id: OperationId,
        code: &str,
        message: &str,
        dequeue_count: u32,
    ) -> Outcome {
        warn!(code, message, "operation failed");
        let error = OperationError::new(code, message);
        self.finish(id, None, Status::Failed, Some(error), dequeue_count)
            .await
    }

    /// A failure that may pass: retried. On the last allowed attempt the operation is failed
    /// for good first, and the message still answers `Retry`, so it goes to the poison queue as
    /// the platform does with any message it gives up on (the poison function then finds the
    /// operation ended and keeps a copy of the message).
    async fn transient(&self, id: OperationId, reason: String, dequeue_count: u32) -> Outcome {
        if dequeue_count >= self.settings.max_dequeue_count {
            let message = format!("gave up after {dequeue_count} attempts; last error: {reason}");
            self.fail(id, "RetriesExhausted", &message, dequeue_count)
                .await;
            return Outcome::Retry;
        }
        warn!(%reason, "transient failure; the message will be retried");
        Outcome::Retry
    }

    /// Moves the operation to a terminal state (a no-op if it already ended). `known`: the
    /// state this process last wrote, saving a read (see `Operations::update`).
    async fn finish(
        &self,
        id: OperationId,
        known: Option<(Operation, ETag)>,
        to: Status,
        error: Option<OperationError>,
        dequeue_count: u32,
    ) -> Outcome {
        let update = self
            .accepted
            .operations
            .update(id, known, |op, now| op.transition(to, error.clone(), now))
            .await;
        match update {
            Ok(Update::Changed(..)) => {
                info!(status = %to, "operation ended");
                metrics::ended(to.as_str());
                metrics::ended_on_delivery(dequeue_count);
                Outcome::Done
            }
            Ok(Update::AlreadyEnded(op)) => {
                info!(status = %op.status, "operation had already ended");
                if op.status == Status::Canceled && to == Status::Succeeded {
                    let _ = self.accepted.results.delete(&id.result_name()).await;
                }
                Outcome::Done
            }
            Err(DomainError::NotFound) => Outcome::Done,
            Err(e) => {
                warn!(error = %e, dequeue_count, "could not record the outcome; the message will be retried");
                Outcome::Retry
            }
        }
    }
}

/// Why a message's record could not be had.
enum Fault {
    /// Never will be: the operation fails.
    Invalid(String),
    /// Storage trouble: retried.
    Transient(String),
}
