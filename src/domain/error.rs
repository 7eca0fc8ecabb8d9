//! The domain's error type: what a use case can answer besides success. The HTTP edge maps
//! each variant to a problem+json response in one place (`edges::http::problem`).

use super::operation::Status;
use super::ports::StoreError;
use super::submission::InvalidSubmission;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The submission is not one the work accepts (the HTTP edge answers `400`).
    #[error("{0}")]
    Invalid(InvalidSubmission),
    /// No such operation, or it is past its retention.
    #[error("no such operation")]
    NotFound,
    /// A change was asked of an operation that already ended.
    #[error("the operation already ended ({0})")]
    AlreadyEnded(Status),
    /// The same `Idempotency-Key` came with a different body.
    #[error("this Idempotency-Key was already used with a different request body")]
    IdempotencyMismatch,
    /// Storage could not be reached: worth retrying later; nothing was accepted.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Something that should not happen (a storage fault that retrying will not fix).
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for DomainError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => DomainError::Unavailable(m),
            other => DomainError::Internal(other.to_string()),
        }
    }
}
