//! The token cache: one fetch serves concurrent callers and later ones while the token is
//! fresh; an endpoint's refusal or silence is told apart.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// A managed identity endpoint answering `status` with `body`, counting its requests.
async fn endpoint(status: u16, body: String) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/msi/token", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            seen.fetch_add(1, Ordering::SeqCst);
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(reply.as_bytes()).await;
            });
        }
    });
    (url, count)
}

fn credential(url: String) -> Arc<CachedCredential> {
    Arc::new(CachedCredential::new(
        CredentialSource::ManagedIdentity {
            endpoint: url,
            header: Secret::new("h"),
            client_id: None,
        },
        reqwest::Client::new(),
    ))
}

#[tokio::test]
async fn one_fetch_serves_concurrent_and_later_callers() {
    let expires = OffsetDateTime::now_utc().unix_timestamp() + 3600;
    let (url, count) = endpoint(
        200,
        format!(r#"{{"access_token":"tok","expires_on":"{expires}","token_type":"Bearer"}}"#),
    )
    .await;
    let c = credential(url);
    let calls: Vec<_> = (0..16)
        .map(|_| {
            let c = Arc::clone(&c);
            tokio::spawn(async move { c.token(STORAGE_RESOURCE).await })
        })
        .collect();
    for call in calls {
        let t = call.await.unwrap().unwrap();
        assert_eq!(t.token.secret(), "tok");
        assert_eq!(t.expires_on.unix_timestamp(), expires);
    }
    c.token(STORAGE_RESOURCE).await.unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 1);
    // The crate asks with an OAuth scope; it is the same resource.
    c.get_token(&["https://storage.azure.com/.default"])
        .await
        .unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn refusals_and_outages_are_told_apart_without_the_token() {
    let (url, _) = endpoint(
        400,
        r#"{"error":"invalid_request","error_description":"no identity"}"#.into(),
    )
    .await;
    let e = credential(url).token(STORAGE_RESOURCE).await.unwrap_err();
    assert!(!e.transient && e.message.contains("no identity"), "{e}");
    let (url, _) = endpoint(503, r#"{"error":"busy"}"#.into()).await;
    let e = credential(url).token(STORAGE_RESOURCE).await.unwrap_err();
    assert!(e.transient, "{e}");
    let (url, _) = endpoint(200, r#"{"access_token":"tok"}"#.into()).await;
    let e = credential(url).token(STORAGE_RESOURCE).await.unwrap_err();
    assert!(!e.transient && e.message.contains("expires_on"), "{e}");
    let e = credential("http://127.0.0.1:1/msi/token".into())
        .token(STORAGE_RESOURCE)
        .await
        .unwrap_err();
    assert!(e.transient && !e.message.contains("tok"), "{e}");
}

#[test]
fn expiry_comes_as_a_number_or_a_string() {
    assert_eq!(
        unix_expiry(&serde_json::json!(1_700_000_000)).map(|t| t.unix_timestamp()),
        Some(1_700_000_000)
    );
    assert_eq!(
        unix_expiry(&serde_json::json!("1700000000")).map(|t| t.unix_timestamp()),
        Some(1_700_000_000)
    );
    assert_eq!(unix_expiry(&serde_json::json!("soon")), None);
}
