//! Tokens for identity-based storage: where they come from (`CredentialSource`), and one cache
//! in front of it that the storage clients and the delegation-key fetch share, so a token is
//! fetched once, refreshed before it expires, and never written to a log.

mod cli;
mod managed;
mod workload;

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

/// Why no token could be had. `transient` failures (no answer, a 5xx, a throttle) are worth
/// retrying; the others (refused, malformed) are not. The message never holds a token.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TokenError {
    pub transient: bool,
    pub message: String,
}

impl TokenError {
    pub(crate) fn transient(message: impl Into<String>) -> Self {
        Self {
            transient: true,
            message: message.into(),
        }
    }

    pub(crate) fn refused(message: impl Into<String>) -> Self {
        Self {
            transient: false,
            message: message.into(),
        }
    }

    fn with_note(mut self, note: &str) -> Self {
        self.message = format!("{} {note}", self.message);
        self
    }

    /// An HTTP answer other than success from a token endpoint.
    pub(crate) fn from_status(who: &str, status: reqwest::StatusCode) -> Self {
        let message = format!("{who} answered HTTP {}", status.as_u16());
        if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
            Self::transient(message)
        } else {
            Self::refused(message)
        }
    }
}

/// A token as a source hands it over.
pub(crate) struct Fetched {
    pub token: Secret,
    pub expires_on: OffsetDateTime,
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

/// The expiry a token endpoint gave, as Unix seconds in a number or a string.
pub(crate) fn unix_expiry(v: &serde_json::Value) -> Option<OffsetDateTime> {
    let secs = match v {
        serde_json::Value::Number(n) => n.as_i64()?,
        serde_json::Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    OffsetDateTime::from_unix_timestamp(secs).ok()
}

/// A token endpoint's JSON answer, with what it says about why it refused, never the token.
pub(crate) async fn json_answer(
    who: &str,
    response: Result<reqwest::Response, reqwest::Error>,
) -> Result<serde_json::Value, TokenError> {
    let response = response
        .map_err(|e| TokenError::transient(format!("{who} did not answer: {}", kind(&e))))?;
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|_| TokenError::transient(format!("{who}'s answer was cut off")))?;
    let body: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|_| TokenError::from_status(who, status).with_note("without JSON"))?;
    if !status.is_success() {
        let mut e = TokenError::from_status(who, status);
        let reason = ["error_description", "message", "error"]
            .iter()
            .find_map(|k| body.get(k).and_then(|v| v.as_str()));
        if let Some(reason) = reason {
            let reason: String = reason.chars().take(300).collect();
            e.message = format!("{}: {reason}", e.message);
        }
        return Err(e);
    }
    Ok(body)
}

fn kind(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    }
}

#[cfg(test)]
mod tests;
