//! A developer's Azure CLI login: `az account get-access-token`, run without a shell, bounded
//! in time. Only its `expires_on` (Unix seconds, Azure CLI 2.54 and later) is trusted; the
//! older local-time `expiresOn` is not parsed, and such a token is treated as living five
//! minutes, so it is fetched again early rather than used past its end.

use std::process::Stdio;
use std::time::Duration;

use azure_core::auth::Secret;
use time::OffsetDateTime;

use super::token::{unix_expiry, Fetched, TokenError};

const LIMIT: Duration = Duration::from_secs(30);

pub(super) async fn fetch(resource: &str) -> Result<Fetched, TokenError> {
    let run = tokio::process::Command::new("az")
        .args([
            "account",
            "get-access-token",
            "--output",
            "json",
            "--resource",
        ])
        .arg(resource)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = match tokio::time::timeout(LIMIT, run).await {
        Err(_) => {
            return Err(TokenError::transient(format!(
                "`az account get-access-token` did not finish within {} s",
                LIMIT.as_secs()
            )))
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(TokenError::refused(
                "the Azure CLI (`az`) is not on PATH: install it and run `az login`, or use a managed or workload identity",
            ))
        }
        Ok(Err(e)) => {
            return Err(TokenError::refused(format!(
                "cannot run the Azure CLI: {}",
                e.kind()
            )))
        }
        Ok(Ok(out)) => out,
    };
    if !out.status.success() {
        return Err(TokenError::refused(format!(
            "`az account get-access-token` failed ({}): run `az login`",
            out.status
        )));
    }
    let body: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|_| TokenError::refused("`az account get-access-token` did not print JSON"))?;
    let token = body
        .get("accessToken")
        .and_then(|v| v.as_str())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            TokenError::refused("`az account get-access-token` printed no accessToken")
        })?;
    let expires_on = body
        .get("expires_on")
        .and_then(unix_expiry)
        .unwrap_or_else(|| OffsetDateTime::now_utc() + time::Duration::minutes(5));
    Ok(Fetched {
        token: Secret::new(token.to_string()),
        expires_on,
    })
}
