//! Storage calls as client spans, with export on: one span per HTTP attempt (the retry policy
//! sits above), with the method, the service, the status and the duration. The URL is kept
//! without its query string, where a SAS would be; no header (the signed `Authorization`) is
//! recorded. With export off the call goes straight through.

use std::sync::Arc;

use async_trait::async_trait;
use azure_core::{HttpClient, Request, Response};
use tracing::field::Empty;
use tracing::Instrument;

use crate::telemetry;

/// A transport whose calls go to one storage service (`blob`, `queue`).
#[derive(Debug)]
pub(super) struct Traced {
    pub(super) inner: Arc<dyn HttpClient>,
    pub(super) service: &'static str,
}

#[async_trait]
impl HttpClient for Traced {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<Response> {
        if !telemetry::exporting() {
            return self.inner.execute_request(request).await;
        }
        let url = request.url();
        let service = self.service;
        let span = tracing::info_span!(
            "storage",
            otel.kind = "client",
            otel.name = %format_args!("{} {service}", request.method()),
            otel.status_code = Empty,
            http.request.method = %request.method(),
            url.full = %without_query(url),
            server.address = url.host_str().unwrap_or(""),
            server.port = url.port_or_known_default(),
            db.system.name = %format_args!("Azure {service}"),
            http.response.status_code = Empty,
        );
        let answer = self
            .inner
            .execute_request(request)
            .instrument(span.clone())
            .await;
        match &answer {
            Ok(response) => {
                let status = u16::from(response.status());
                span.record("http.response.status_code", status);
                if status >= 400 {
                    span.record("otel.status_code", "ERROR");
                }
            }
            Err(_) => {
                span.record("otel.status_code", "ERROR");
            }
        }
        answer
    }
}

/// The URL without query or fragment: a SAS or any other signed parameter stays out of spans.
fn without_query(url: &url::Url) -> String {
    let mut bare = url.clone();
    bare.set_query(None);
    bare.set_fragment(None);
    let _ = bare.set_password(None);
    let _ = bare.set_username("");
    bare.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_query_string_or_credentials_survive() {
        let url = url::Url::parse(
            "https://user:pw@acct.blob.core.windows.net/data/x.blobdata?sv=2022&sig=abc%3D&comp=list",
        )
        .unwrap();
        let bare = without_query(&url);
        assert_eq!(bare, "https://acct.blob.core.windows.net/data/x.blobdata");
    }
}
