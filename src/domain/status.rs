//! Reading an operation: its state, a wait for it to end (`OnPending=Synchronous`), its
//! cancellation, its callback's state, and its result (a short-lived link, or the bytes).

use std::time::Duration;

use tracing::{info, info_span, Instrument};

use super::error::DomainError;
use super::monitor::CallbackView;
use super::operation::{Operation, OperationId, Status};
use super::operations::Update;
use super::ports::ResultBody;
use super::service::Service;

impl Service {
    /// The operation, unless it is unknown or past its retention.
    pub async fn get(&self, id: OperationId) -> Result<Operation, DomainError> {
        match self.requests.operations.load(id).await? {
            Some((op, _)) if !op.is_expired(self.clock.now()) => Ok(op),
            _ => Err(DomainError::NotFound),
        }
    }

    /// The state of `op`'s completion callback, when it asked for one. Before the end there is
    /// nothing to read (delivery starts at the end); after it, one read of the callback state.
    pub async fn callback_view(&self, op: &Operation) -> Result<Option<CallbackView>, DomainError> {
        if op.callback.is_none() {
            return Ok(None);
        }
        if !op.status.is_terminal() {
            return Ok(Some(CallbackView::pending()));
        }
        let record = self.requests.operations.load_callback(op.id).await?;
        Ok(Some(
            record.map_or_else(CallbackView::pending, |(r, _)| r.view()),
        ))
    }

    /// Cancels a pending operation; one that already ended answers `AlreadyEnded`.
    pub async fn cancel(&self, id: OperationId) -> Result<Operation, DomainError> {
        let span = info_span!("cancel", operation_id = %id);
        async {
            let update = self
                .requests
                .operations
                .update(id, None, |op, now| {
                    op.transition(Status::Canceled, None, now)
                })
                .await?;
            match update {
                Update::Changed(op, _) => {
                    info!("canceled");
                    crate::telemetry::metrics::ended(Status::Canceled.as_str());
                    Ok(op)
                }
                Update::AlreadyEnded(op) => Err(DomainError::AlreadyEnded(op.status)),
            }
        }
        .instrument(span)
        .await
    }

    /// Waits until the operation ends or `max` passes, woken at once when this process ends it
    /// and otherwise re-reading storage every `sync_poll_interval`. When too many waits are
    /// already running, answers at once with the current state; when the process begins to
    /// stop, answers with the state it last read.
    pub async fn wait(&self, id: OperationId, max: Duration) -> Result<Operation, DomainError> {
        let Ok(_permit) = self.wait_permits.try_acquire() else {
            return self.get(id).await;
        };
        let deadline = tokio::time::Instant::now() + max;
        let mut ended_here: Option<Operation> = None;
        loop {
            let waiter = self.notifier.subscribe(id);
            let notified = waiter.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let op = match ended_here.take() {
                Some(op) if !op.is_expired(self.clock.now()) => op,
                _ => self.get(id).await?,
            };
            let now = tokio::time::Instant::now();
            if op.status.is_terminal() || now >= deadline || self.shutdown.is_cancelled() {
                return Ok(op);
            }
            let nap = self.settings.sync_poll_interval.min(deadline - now);
            tokio::select! {
                _ = &mut notified => ended_here = waiter.ended(),
                _ = tokio::time::sleep(nap) => {}
                _ = self.shutdown.cancelled() => return Ok(op),
            }
        }
    }

    /// A short-lived read-only link to the result, or `None` when the store has no links
    /// of its own (then the HTTP edge streams the result itself).
    pub async fn result_link(&self, op: &Operation) -> Result<Option<String>, DomainError> {
        let expiry =
            time::Duration::try_from(self.settings.sas_expiry).unwrap_or(time::Duration::MAX);
        let expires = (self.clock.now() + expiry).min(op.expiration_date_time);
        Ok(self
            .requests
            .results
            .read_link(&op.id.result_name(), expires)
            .await?)
    }

    /// Opens the result of a succeeded operation for streaming.
    pub async fn open_result(&self, op: &Operation) -> Result<ResultBody, DomainError> {
        self.requests
            .results
            .open(&op.id.result_name())
            .await?
            .ok_or(DomainError::NotFound)
    }
}
