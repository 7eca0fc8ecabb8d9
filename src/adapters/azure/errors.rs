//! Storage errors in the domain's terms: which failures mean "not there", "taken", "lost a
//! race", "try later" or "never", named by the call and the storage error code, never by a key
//! or a signature.

use azure_core::error::ErrorKind;
use azure_core::StatusCode;

use super::credential::TokenError;
use crate::domain::ports::StoreError;

/// The token failure somewhere in `e`'s chain of causes.
fn token_error_in(e: &azure_core::Error) -> Option<&TokenError> {
    let mut cause: &(dyn std::error::Error + 'static) = e;
    loop {
        if let Some(t) = cause.downcast_ref::<TokenError>() {
            return Some(t);
        }
        cause = cause.source()?;
    }
}

/// The HTTP status of a failed storage call, if it got that far.
pub(super) fn status_of(e: &azure_core::Error) -> Option<StatusCode> {
    match e.kind() {
        ErrorKind::HttpResponse { status, .. } => Some(*status),
        _ => None,
    }
}

/// Whether a failed call found its container or queue missing, rather than the blob.
pub(super) fn is_missing_parent(e: &azure_core::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::HttpResponse { error_code: Some(code), .. }
            if code == "ContainerNotFound" || code == "QueueNotFound"
    )
}

/// Maps a storage error to the domain's terms. The message names the operation and the
/// storage error code, never a key or signature.
pub(super) fn store_error(what: &str, e: &azure_core::Error) -> StoreError {
    match e.kind() {
        ErrorKind::HttpResponse { status, error_code } => {
            let code = error_code.as_deref().unwrap_or("");
            let msg = format!("{what}: HTTP {} {code}", u16::from(*status));
            match u16::from(*status) {
                // The container or queue itself is gone (deleted by hand, or a storage reset):
                // not "no such record" but an outage, which the adapters heal by re-creating it.
                404 if is_missing_parent(e) => StoreError::Unavailable(msg),
                404 => StoreError::NotFound,
                // A pop receipt spent by a later delivery or update: that delivery is gone.
                400 if code == "PopReceiptMismatch" => StoreError::NotFound,
                409 => StoreError::AlreadyExists,
                412 => StoreError::PreconditionFailed,
                408 | 429 | 500..=599 => StoreError::Unavailable(msg),
                _ => StoreError::Fatal(msg),
            }
        }
        ErrorKind::Io | ErrorKind::Other => {
            StoreError::Unavailable(format!("{what}: storage did not answer"))
        }
        // No token from the identity: an endpoint that did not answer is an outage, a refusal
        // is not (the message says which, without the token).
        ErrorKind::Credential => match token_error_in(e) {
            Some(t) => super::delegation::token_error(what, t),
            None => StoreError::Fatal(format!("{what}: no storage credential")),
        },
        _ => StoreError::Fatal(format!("{what}: {}", e.kind())),
    }
}
