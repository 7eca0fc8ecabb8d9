//! The local retention sweep: deletes operations (with their results and payloads),
//! idempotency keys, poison message copies and callback states past their retention. On Azure a storage
//! lifecycle rule does this; the standalone service calls it now and then.

use tracing::warn;

use super::error::DomainError;
use super::operations::{Expiry, Kind};
use super::service::Service;

impl Service {
    /// Sweeps once and answers how many operations it removed. Only documents not written for
    /// a whole retention period are read: a document expires a retention period after it was
    /// written, so a younger one cannot have expired, and a sweep over many live operations
    /// costs one listing instead of a read each. (Should `RETENTION_SECONDS` grow, documents
    /// written under the shorter one are removed a little later than they expire; reads answer
    /// 404 from their expiry on regardless.)
    pub async fn purge_expired(&self) -> Result<usize, DomainError> {
        let operations = &self.requests.operations;
        let now = self.clock.now();
        let cutoff = now - self.retention();
        let mut purged = 0;
        for kind in [
            Kind::Operation,
            Kind::Idempotency,
            Kind::PoisonCopy,
            Kind::Callback,
        ] {
            for key in operations.written_before(kind, cutoff).await? {
                match operations.expiry_of(kind, &key).await? {
                    None => {}
                    Some(Expiry::At { at, .. }) if at > now => {}
                    Some(Expiry::At {
                        operation: Some(id),
                        ..
                    }) => {
                        self.requests.results.delete(&id.result_name()).await?;
                        operations.remove(id).await?;
                        purged += 1;
                    }
                    Some(Expiry::Unreadable) if matches!(kind, Kind::Operation) => {
                        warn!(key, "unreadable operation record left in place");
                    }
                    Some(_) => operations.delete_key(&key).await?,
                }
            }
        }
        Ok(purged)
    }
}
