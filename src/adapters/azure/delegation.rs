//! User-delegation keys, which sign result links when storage is reached by identity (no
//! account key exists to sign with). A key is fetched once and reused for many links until
//! shortly before it could no longer cover a whole link's life; it is renewed in the
//! background halfway through that time, or on demand when there is none, and a status
//! request waits on at most one fetch.
//!
//! The call is made here rather than through the storage crate, whose response parsing insists
//! on `x-ms-request-id`/`x-ms-version` headers this service has no use for.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use azure_storage::shared_access_signature::service_sas::UserDeligationKey;
use time::OffsetDateTime;
use tracing::{info, warn};

use super::credential::{CachedCredential, TokenError, STORAGE_RESOURCE};
use crate::domain::ports::StoreError;

/// The storage API version the request speaks (user-delegation keys need 2018-11-09 or later;
/// this is the one the crate signs SAS tokens with).
const API_VERSION: &str = "2022-11-02";
/// Clocks differ: a key starts a little in the past and is retired a little early.
const SKEW: Duration = Duration::from_secs(300);
/// Azure refuses keys that live longer than seven days.
const MAX_KEY_LIFE: Duration = Duration::from_secs(7 * 24 * 3600);
/// The longest link a user-delegation key can cover with room to renew it: half its life.
pub const MAX_LINK_LIFE: Duration = Duration::from_secs(3 * 24 * 3600);

struct Held {
    key: UserDeligationKey,
    /// After this, a link of full length would outlive the key: fetch before signing.
    usable_until: OffsetDateTime,
    /// After this, fetch a new key in the background while still signing with this one.
    renew_after: OffsetDateTime,
}

pub struct DelegationKeys {
    credential: Arc<CachedCredential>,
    http: reqwest::Client,
    url: String,
    link_life: Duration,
    held: Mutex<Option<Held>>,
    fetching: tokio::sync::Mutex<()>,
    /// Fetches finished, so a caller that waited on another's fetch takes its outcome.
    finished: AtomicU64,
    last_error: Mutex<Option<StoreError>>,
}

impl DelegationKeys {
    /// Keys from `blob_endpoint` for links that live `link_life` (at most [`MAX_LINK_LIFE`]).
    pub fn new(
        credential: Arc<CachedCredential>,
        http: reqwest::Client,
        blob_endpoint: &str,
        link_life: Duration,
    ) -> Self {
        Self {
            credential,
            http,
            url: format!(
                "{}/?restype=service&comp=userdelegationkey",
                blob_endpoint.trim_end_matches('/')
            ),
            link_life: link_life.min(MAX_LINK_LIFE),
            held: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
            finished: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    /// A key that covers a link made now, fetching one if none does; a key due for renewal is
    /// renewed in the background.
    pub async fn key(self: &Arc<Self>) -> Result<UserDeligationKey, StoreError> {
        let now = OffsetDateTime::now_utc();
        if let Some((key, renew)) = self.usable(now) {
            if renew {
                let keys = Arc::clone(self);
                tokio::spawn(async move {
                    if let Ok(_one) = keys.fetching.try_lock() {
                        if let Err(e) = keys.fetch_and_hold().await {
                            warn!(error = %e, "could not renew the user delegation key; the current one is still good");
                        }
                    }
                });
            }
            return Ok(key);
        }
        self.fetch_once().await
    }

    /// Fetches a key now (start-up uses it to prove the identity may make links), unless
    /// another caller's fetch finishes while this one waits: then that outcome is the answer.
    pub async fn fetch_once(&self) -> Result<UserDeligationKey, StoreError> {
        let seen = self.finished.load(Ordering::Acquire);
        let _one = self.fetching.lock().await;
        if self.finished.load(Ordering::Acquire) != seen {
            if let Some((key, _)) = self.usable(OffsetDateTime::now_utc()) {
                return Ok(key);
            }
            if let Some(e) = lock(&self.last_error).clone() {
                return Err(e);
            }
        }
        self.fetch_and_hold().await
    }

    fn usable(&self, now: OffsetDateTime) -> Option<(UserDeligationKey, bool)> {
        lock(&self.held)
            .as_ref()
            .filter(|h| now < h.usable_until)
            .map(|h| (h.key.clone(), now >= h.renew_after))
    }

    async fn fetch_and_hold(&self) -> Result<UserDeligationKey, StoreError> {
        let result = self.fetch().await;
        match &result {
            Ok(key) => {
                let now = OffsetDateTime::now_utc();
                let usable_until = key.signed_expiry - self.link_life - SKEW;
                *lock(&self.held) = Some(Held {
                    key: key.clone(),
                    usable_until,
                    renew_after: now + (usable_until - now) / 2,
                });
                *lock(&self.last_error) = None;
                info!(expires = %key.signed_expiry, "user delegation key obtained");
            }
            Err(e) => *lock(&self.last_error) = Some(e.clone()),
        }
        self.finished.fetch_add(1, Ordering::Release);
        result
    }

    async fn fetch(&self) -> Result<UserDeligationKey, StoreError> {
        const WHAT: &str = "get a user delegation key";
        let token = self
            .credential
            .token(STORAGE_RESOURCE)
            .await
            .map_err(|e| token_error(WHAT, &e))?;
        let now = OffsetDateTime::now_utc();
        let life = (self.link_life * 4).clamp(Duration::from_secs(3600), MAX_KEY_LIFE);
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><KeyInfo><Start>{}</Start><Expiry>{}</Expiry></KeyInfo>",
            xml_date(now - SKEW),
            xml_date(now + life - SKEW)
        );
        let response = self
            .http
            .post(&self.url)
            .bearer_auth(token.token.secret())
            .header("x-ms-version", API_VERSION)
            .header("x-ms-date", azure_core::date::to_rfc1123(&now))
            .header("content-type", "application/xml")
            .body(body)
            .send()
            .await
            .map_err(|_| StoreError::Unavailable(format!("{WHAT}: storage did not answer")))?;
        let status = response.status();
        let code = response
            .headers()
            .get("x-ms-error-code")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let text = response
            .text()
            .await
            .map_err(|_| StoreError::Unavailable(format!("{WHAT}: the answer was cut off")))?;
        if !status.is_success() {
            let msg = format!("{WHAT}: HTTP {} {code}", status.as_u16());
            return Err(match status.as_u16() {
                408 | 429 | 500..=599 => StoreError::Unavailable(msg),
                403 => StoreError::Fatal(format!(
                    "{msg} (the identity needs a role with generateUserDelegationKey, such as Storage Blob Delegator)"
                )),
                _ => StoreError::Fatal(msg),
            });
        }
        azure_core::xml::read_xml_str::<UserDeligationKey>(&text).map_err(|_| {
            StoreError::Fatal(format!("{WHAT}: the answer is not a UserDelegationKey"))
        })
    }
}

/// A token failure in the domain's terms.
pub(super) fn token_error(what: &str, e: &TokenError) -> StoreError {
    let msg = format!("{what}: no storage token: {e}");
    if e.transient {
        StoreError::Unavailable(msg)
    } else {
        StoreError::Fatal(msg)
    }
}

fn xml_date(t: OffsetDateTime) -> String {
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests;
