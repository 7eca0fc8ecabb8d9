//! Submitting work: the operation is recorded, then its message queued, and only then is the
//! submission accepted; with an `Idempotency-Key`, a repeat of the same request answers the
//! same operation and queues nothing twice. A `Callback-Url` is checked (form and addresses)
//! before anything is recorded.

use serde_json::{Map, Value};
use tracing::field::Empty;
use tracing::{info, info_span, warn, Instrument, Span};

use super::error::DomainError;
use super::message::{Payload, WorkMessage};
use super::operation::{CallbackTarget, Operation, OperationId};
use super::operations::{sha256_hex, IdempotencyEntry};
use super::ports::StoreError;
use super::service::Service;
use super::submission::InvalidSubmission;
use crate::telemetry::{self, metrics};

/// The header a submission names its callback in (refusals name it).
pub const CALLBACK_URL_HEADER: &str = "Callback-Url";

/// How many times an idempotency key is re-read when it keeps changing under us.
const KEY_ATTEMPTS: usize = 8;

/// What a submission carries into the domain.
#[derive(Debug, Clone)]
pub struct SubmitRequest {
    pub record: Map<String, Value>,
    pub idempotency_key: Option<String>,
    pub traceparent: Option<String>,
    /// The `Callback-Url` the submission named, as sent.
    pub callback_url: Option<String>,
}

/// A submission's answer: the operation, and whether it is a replay of an earlier submission.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub operation: Operation,
    pub replayed: bool,
}

impl Service {
    /// Accepts work: checks it with the work's own rules, records the operation, then queues its
    /// message. Answers only once the message is durably queued; on any failure nothing is
    /// accepted.
    pub async fn submit(
        &self,
        request: SubmitRequest,
        status_url: &(dyn Fn(OperationId) -> String + Sync),
    ) -> Result<Accepted, DomainError> {
        self.work
            .validate(&request.record)
            .map_err(DomainError::Invalid)?;
        let callback = match &request.callback_url {
            None => None,
            Some(raw) => Some(self.check_callback(raw).await?),
        };
        let callback = callback.as_ref();
        match request.idempotency_key.clone() {
            None => {
                let id = OperationId::new_random();
                let span = info_span!("submit", operation_id = %id);
                async {
                    let op = self
                        .accept(id, &request, callback, status_url(id), false)
                        .await
                        .inspect_err(|e| warn!(error = %e, "submission not accepted"))?;
                    info!("accepted");
                    Ok(Accepted {
                        operation: op,
                        replayed: false,
                    })
                }
                .instrument(span)
                .await
            }
            Some(key) => {
                self.submit_idempotent(&key, &request, callback, status_url)
                    .await
            }
        }
    }

    /// Checks a `Callback-Url`: its form, then every address its host resolves to.
    async fn check_callback(&self, raw: &str) -> Result<CallbackTarget, DomainError> {
        let refuse = |detail: String| {
            DomainError::Invalid(InvalidSubmission::field(
                CALLBACK_URL_HEADER,
                format!("the {CALLBACK_URL_HEADER} header {detail}"),
            ))
        };
        let Some(callbacks) = &self.callbacks else {
            return Err(refuse(
                "cannot be used: callbacks are not enabled here".into(),
            ));
        };
        let url = callbacks.settings.policy.check_url(raw).map_err(refuse)?;
        if url.ip.is_none() {
            callbacks.webhooks.check(&url.url).await.map_err(refuse)?;
        }
        Ok(CallbackTarget { url: url.url })
    }

    async fn submit_idempotent(
        &self,
        key: &str,
        request: &SubmitRequest,
        callback: Option<&CallbackTarget>,
        status_url: &(dyn Fn(OperationId) -> String + Sync),
    ) -> Result<Accepted, DomainError> {
        let operations = &self.requests.operations;
        // serde_json's map is ordered by key, so this hash ignores key order and white space.
        // The callback is part of the request: the same body with another callback is not a
        // replay.
        let mut hashed = Value::Object(request.record.clone()).to_string();
        if let Some(callback) = callback {
            hashed.push('\n');
            hashed.push_str(&callback.url);
        }
        let body_hash = sha256_hex(hashed.as_bytes());
        let now = self.clock.now();
        let fresh = IdempotencyEntry {
            operation_id: OperationId::new_random(),
            body_hash: body_hash.clone(),
            enqueued: false,
            expiration_date_time: now + self.retention(),
        };
        for _ in 0..KEY_ATTEMPTS {
            let Some((entry, etag)) = operations.claim_idempotency_key(key, &fresh).await? else {
                continue;
            };
            if entry.expiration_date_time <= now {
                // A key reused after its retention is a new request.
                match operations
                    .replace_idempotency_entry(key, &fresh, &etag)
                    .await
                {
                    Ok(_) | Err(StoreError::PreconditionFailed) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            if entry.body_hash != body_hash {
                return Err(DomainError::IdempotencyMismatch);
            }
            let id = entry.operation_id;
            let span = info_span!("submit", operation_id = %id);
            return async {
                if entry.enqueued {
                    let op = self.get(id).await?;
                    info!("replayed an idempotent submission");
                    return Ok(Accepted {
                        operation: op,
                        replayed: true,
                    });
                }
                // First time here, or an earlier attempt stopped before its message was queued.
                let replayed = entry.operation_id != fresh.operation_id;
                let op = self
                    .accept(id, request, callback, status_url(id), true)
                    .await?;
                let done = IdempotencyEntry {
                    enqueued: true,
                    ..entry
                };
                if let Err(e) = operations
                    .replace_idempotency_entry(key, &done, &etag)
                    .await
                {
                    // Harmless: a later replay queues a duplicate message, which processing ignores.
                    warn!(error = %e, "could not mark the idempotency key as queued");
                }
                info!(replayed, "accepted");
                Ok(Accepted {
                    operation: op,
                    replayed,
                })
            }
            .instrument(span)
            .await;
        }
        Err(DomainError::Unavailable(
            "too much contention on this Idempotency-Key".into(),
        ))
    }

    /// Writes the operation record (and the payload, when it needs a claim check), then queues
    /// the message. `tolerate_existing`: the record may already be there from an earlier attempt.
    async fn accept(
        &self,
        id: OperationId,
        request: &SubmitRequest,
        callback: Option<&CallbackTarget>,
        status_url: String,
        tolerate_existing: bool,
    ) -> Result<Operation, DomainError> {
        let operations = &self.requests.operations;
        let now = self.clock.now();
        let mut operation = Operation::new(id, status_url.clone(), now, self.retention());
        operation.callback = callback.cloned();
        let record_version = match operations.create(&operation).await {
            // The worker rebuilds the record from the message when it names a version; the
            // message does not carry the callback, so a record with one is read instead.
            Ok(_) if callback.is_some() => None,
            Ok(etag) => Some(etag),
            Err(StoreError::AlreadyExists) if tolerate_existing => {
                if let Some((stored, _)) = operations.load(id).await? {
                    operation = stored;
                }
                None
            }
            Err(e) => return Err(e.into()),
        };
        let mut message = WorkMessage {
            id,
            submitted_at: now,
            status_url,
            payload: Payload::Inline(request.record.clone()),
            traceparent: request.traceparent.clone(),
            record_version,
        };
        if let Err(e) = self.send(&mut message, &request.record).await {
            if !tolerate_existing {
                // Nobody knows this id yet; leave no operation behind that would never run.
                let _ = operations.remove(id).await;
            }
            return Err(e.into());
        }
        self.enqueued.notify_one();
        metrics::accepted();
        Ok(operation)
    }

    /// Queues the message, storing the record first and sending a reference instead when it
    /// is too large for one queue message (claim check). With export on, the send is a
    /// producer span, and the message carries that span's `traceparent`, so the delivery's
    /// consumer span is its child.
    async fn send(
        &self,
        message: &mut WorkMessage,
        record: &Map<String, Value>,
    ) -> Result<(), StoreError> {
        let span = if telemetry::exporting() {
            let span = info_span!(
                "enqueue",
                otel.kind = "producer",
                otel.name = "send work message",
                messaging.system = "azure_queue",
                messaging.operation.type = "send",
                otel.status_code = Empty,
            );
            if let Some(tp) = telemetry::traceparent_of(&span) {
                message.traceparent = Some(tp.to_string());
            }
            span
        } else {
            Span::none()
        };
        let sent = async {
            let mut text = encode(message)?;
            if text.len() > self.settings.max_inline_message_bytes {
                self.requests
                    .operations
                    .store_payload(message.id, record)
                    .await?;
                message.payload = Payload::Stored(message.id.payload_key());
                text = encode(message)?;
            }
            self.requests.queue.send(&text).await
        }
        .instrument(span.clone())
        .await;
        if sent.is_err() {
            span.record("otel.status_code", "ERROR");
        }
        sent
    }
}

fn encode(message: &WorkMessage) -> Result<String, StoreError> {
    message
        .encode()
        .map_err(|e| StoreError::Fatal(format!("cannot encode the queue message: {e}")))
}
