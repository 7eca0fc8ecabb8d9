//! The managed identity endpoint App Service and Azure Functions expose to an app
//! (`IDENTITY_ENDPOINT`, guarded by the `IDENTITY_HEADER` secret), API version 2019-08-01.

use azure_core::auth::Secret;

use super::token::{access_token, json_answer, unix_expiry, Fetched, TokenError};

const API_VERSION: &str = "2019-08-01";
const WHO: &str = "the managed identity endpoint";

pub(super) async fn fetch(
    http: &reqwest::Client,
    endpoint: &str,
    header: &Secret,
    client_id: Option<&str>,
    resource: &str,
) -> Result<Fetched, TokenError> {
    let mut query = vec![("resource", resource), ("api-version", API_VERSION)];
    if let Some(id) = client_id {
        query.push(("client_id", id));
    }
    let response = http
        .get(endpoint)
        .query(&query)
        .header("X-IDENTITY-HEADER", header.secret())
        .send()
        .await;
    let body = json_answer(WHO, response).await?;
    let token = access_token(WHO, &body)?;
    let expires_on = body
        .get("expires_on")
        .and_then(unix_expiry)
        .ok_or_else(|| TokenError::refused(format!("{WHO} answered without a valid expires_on")))?;
    Ok(Fetched { token, expires_on })
}
