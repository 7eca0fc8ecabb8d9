//! What every token source shares: the token it hands over, why it could not, and reading a
//! token endpoint's JSON answer without ever quoting the token.

use azure_core::auth::Secret;
use time::OffsetDateTime;

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

/// The non-empty `access_token` of a token endpoint's answer.
pub(crate) fn access_token(who: &str, body: &serde_json::Value) -> Result<Secret, TokenError> {
    body.get("access_token")
        .and_then(|v| v.as_str())
        .filter(|t| !t.is_empty())
        .map(|t| Secret::new(t.to_string()))
        .ok_or_else(|| TokenError::refused(format!("{who} answered without an access_token")))
}
