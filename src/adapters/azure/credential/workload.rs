//! Workload identity federation, as AKS sets it up (`AZURE_FEDERATED_TOKEN_FILE`,
//! `AZURE_CLIENT_ID`, `AZURE_TENANT_ID`): the federated token is read from its file at every
//! fetch (the platform rotates it) and exchanged at Microsoft Entra ID in a client-credentials
//! grant with a JWT client assertion.

use std::path::Path;

use time::OffsetDateTime;

use super::token::{access_token, json_answer, Fetched, TokenError};

const WHO: &str = "the Microsoft Entra token endpoint";

pub(super) async fn fetch(
    http: &reqwest::Client,
    authority: &str,
    tenant_id: &str,
    client_id: &str,
    token_file: &Path,
    resource: &str,
) -> Result<Fetched, TokenError> {
    let assertion = tokio::fs::read_to_string(token_file).await.map_err(|e| {
        TokenError::transient(format!(
            "cannot read the federated token file {}: {}",
            token_file.display(),
            e.kind()
        ))
    })?;
    let scope = format!("{resource}/.default");
    let url = format!(
        "{}/{tenant_id}/oauth2/v2.0/token",
        authority.trim_end_matches('/')
    );
    let response = http
        .post(url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("scope", &scope),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion.trim()),
        ])
        .send()
        .await;
    let body = json_answer(WHO, response).await?;
    let token = access_token(WHO, &body)?;
    let expires_in = body
        .get("expires_in")
        .and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()))
        .filter(|s| *s > 0)
        .ok_or_else(|| TokenError::refused(format!("{WHO} answered without a valid expires_in")))?;
    Ok(Fetched {
        token,
        expires_on: OffsetDateTime::now_utc() + time::Duration::seconds(expires_in),
    })
}
