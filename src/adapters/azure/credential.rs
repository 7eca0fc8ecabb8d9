//! Tokens for identity-based storage: where they come from (`CredentialSource`), and one cache
//! in front of it that the storage clients and the delegation-key fetch share, so a token is
//! fetched once, refreshed before it expires, and never written to a log.

mod cli;
mod managed;
mod token;
mod workload;

#[cfg(test)]
use token::unix_expiry;
use token::Fetched;
pub use token::TokenError;

use std::fmt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::auth::{AccessToken, Secret, TokenCredential};
use azure_core::error::ErrorKind;
use time::OffsetDateTime;
use tracing::{info, warn};

/// The storage resource every token is for.
pub const STORAGE_RESOURCE: &str = "https://storage.azure.com";

/// Where tokens come from.
#[derive(Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// The App Service / Functions managed identity endpoint (`IDENTITY_ENDPOINT` with
    /// `IDENTITY_HEADER`): the system-assigned identity, or the user-assigned one `client_id`.
    ManagedIdentity {
        endpoint: String,
        header: Secret,
        client_id: Option<String>,
    },
    /// Workload identity federation (AKS): a federated token in a file, exchanged at Microsoft
    /// Entra ID for a storage token.
    WorkloadIdentity {
        authority: String,
        tenant_id: String,
        client_id: String,
        token_file: PathBuf,
    },
    /// A developer's `az login`.
    AzureCli,
}

impl fmt::Debug for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ManagedIdentity {
                endpoint,
                client_id,
                ..
            } => f
                .debug_struct("ManagedIdentity")
                .field("endpoint", endpoint)
                .field("header", &"<redacted>")
                .field("client_id", client_id)
                .finish(),
            Self::WorkloadIdentity {
                authority,
                tenant_id,
                client_id,
                token_file,
            } => f
                .debug_struct("WorkloadIdentity")
                .field("authority", authority)
                .field("tenant_id", tenant_id)
                .field("client_id", client_id)
                .field("token_file", token_file)
                .finish(),
            Self::AzureCli => f.write_str("AzureCli"),
        }
    }
}

impl CredentialSource {
    /// A short name for logs and errors.
    pub fn describe(&self) -> &'static str {
        match self {
            Self::ManagedIdentity {
                client_id: None, ..
            } => "the system-assigned managed identity",
            Self::ManagedIdentity { .. } => "the user-assigned managed identity",
            Self::WorkloadIdentity { .. } => "workload identity",
            Self::AzureCli => "the Azure CLI login",
        }
    }
}

/// How long before expiry a token is replaced: five minutes, or half its life when it lives
/// shorter than ten.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

struct Cached {
    resource: String,
    token: AccessToken,
    refresh_at: OffsetDateTime,
}

/// The shared token cache over one source. Concurrent callers that find no fresh token wait for
/// one fetch between them; a token that could not be refreshed is used until it really expires.
pub struct CachedCredential {
    source: CredentialSource,
    http: reqwest::Client,
    cached: Mutex<Option<Cached>>,
    fetching: tokio::sync::Mutex<()>,
}

impl fmt::Debug for CachedCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedCredential")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl CachedCredential {
    pub fn new(source: CredentialSource, http: reqwest::Client) -> Self {
        Self {
            source,
            http,
            cached: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// A token for `resource`: the cached one while fresh, else a new one.
    pub async fn token(&self, resource: &str) -> Result<AccessToken, TokenError> {
        if let Some(t) = self.fresh(resource) {
            return Ok(t);
        }
        let _one_fetch = self.fetching.lock().await;
        // Whoever held the lock before may just have refreshed it.
        if let Some(t) = self.fresh(resource) {
            return Ok(t);
        }
        match self.fetch(resource).await {
            Ok(f) => {
                let now = OffsetDateTime::now_utc();
                let life = (f.expires_on - now).max(time::Duration::ZERO);
                let margin = REFRESH_MARGIN.min((life / 2i32).unsigned_abs());
                let token = AccessToken::new(f.token, f.expires_on);
                info!(
                    credential = self.source.describe(),
                    expires_in_seconds = life.whole_seconds(),
                    "storage token obtained"
                );
                *self.lock() = Some(Cached {
                    resource: resource.to_string(),
                    token: token.clone(),
                    refresh_at: f.expires_on - margin,
                });
                Ok(token)
            }
            Err(e) => {
                // Refreshing ahead of time failed: the old token still works until it expires.
                let still_valid = self.lock().as_ref().and_then(|c| {
                    (c.resource == resource && OffsetDateTime::now_utc() < c.token.expires_on)
                        .then(|| c.token.clone())
                });
                match still_valid {
                    Some(t) => {
                        warn!(credential = self.source.describe(), error = %e, "could not refresh the storage token; using the current one until it expires");
                        Ok(t)
                    }
                    None => Err(e),
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Cached>> {
        self.cached.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fresh(&self, resource: &str) -> Option<AccessToken> {
        let now = OffsetDateTime::now_utc();
        self.lock()
            .as_ref()
            .filter(|c| c.resource == resource && now < c.refresh_at)
            .map(|c| c.token.clone())
    }

    async fn fetch(&self, resource: &str) -> Result<Fetched, TokenError> {
        match &self.source {
            CredentialSource::ManagedIdentity {
                endpoint,
                header,
                client_id,
            } => managed::fetch(&self.http, endpoint, header, client_id.as_deref(), resource).await,
            CredentialSource::WorkloadIdentity {
                authority,
                tenant_id,
                client_id,
                token_file,
            } => {
                workload::fetch(
                    &self.http, authority, tenant_id, client_id, token_file, resource,
                )
                .await
            }
            CredentialSource::AzureCli => cli::fetch(resource).await,
        }
    }
}

/// The storage clients ask through the crate's trait, with an OAuth scope (`<resource>/.default`).
#[async_trait]
impl TokenCredential for CachedCredential {
    async fn get_token(&self, scopes: &[&str]) -> azure_core::Result<AccessToken> {
        let resource = scopes
            .first()
            .map(|s| s.trim_end_matches(azure_core::auth::DEFAULT_SCOPE_SUFFIX))
            .unwrap_or(STORAGE_RESOURCE);
        self.token(resource)
            .await
            .map_err(|e| azure_core::Error::new(ErrorKind::Credential, e))
    }

    async fn clear_cache(&self) -> azure_core::Result<()> {
        *self.lock() = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
