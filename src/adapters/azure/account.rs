//! The storage account the service uses and how it proves who it is: the account key from a
//! connection string, or an identity's tokens (then no key exists anywhere in the process).

use std::fmt;

use azure_core::auth::Secret;

use super::connection::StorageConnection;
use super::credential::CredentialSource;

/// How requests to storage are authorized.
#[derive(Clone, PartialEq, Eq)]
pub enum StorageAuth {
    /// Shared key, and result links signed with it (an account-key SAS).
    Key(Secret),
    /// Bearer tokens from an identity, and result links signed with a user-delegation key.
    Identity(CredentialSource),
}

impl fmt::Debug for StorageAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Key(_) => f.write_str("account key <redacted>"),
            Self::Identity(source) => f.debug_tuple("Identity").field(source).finish(),
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct StorageAccount {
    name: String,
    blob_endpoint: String,
    queue_endpoint: String,
    auth: StorageAuth,
}

impl fmt::Debug for StorageAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorageAccount")
            .field("name", &self.name)
            .field("blob_endpoint", &self.blob_endpoint)
            .field("queue_endpoint", &self.queue_endpoint)
            .field("auth", &self.auth)
            .finish()
    }
}

impl From<StorageConnection> for StorageAccount {
    fn from(c: StorageConnection) -> Self {
        Self {
            name: c.account().to_string(),
            blob_endpoint: c.blob_endpoint().to_string(),
            queue_endpoint: c.queue_endpoint().to_string(),
            auth: StorageAuth::Key(Secret::new(c.key().to_string())),
        }
    }
}

impl StorageAccount {
    /// An account reached by identity. Endpoints are `http(s)://` URLs without a trailing `/`.
    pub fn with_identity(
        name: String,
        blob_endpoint: String,
        queue_endpoint: String,
        source: CredentialSource,
    ) -> Self {
        Self {
            name,
            blob_endpoint,
            queue_endpoint,
            auth: StorageAuth::Identity(source),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn blob_endpoint(&self) -> &str {
        &self.blob_endpoint
    }

    pub fn queue_endpoint(&self) -> &str {
        &self.queue_endpoint
    }

    pub fn auth(&self) -> &StorageAuth {
        &self.auth
    }
}
