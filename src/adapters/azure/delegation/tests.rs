//! The delegation-key cache against a storage endpoint played here, whose keys expire when
//! the test says: one fetch for concurrent callers, a key too short for a whole link never
//! signs one, a key due for renewal is renewed in the background while it keeps signing.

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;

use azure_core::auth::Secret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::adapters::azure::credential::CredentialSource;

/// Serves `/msi/token` (a token for an hour) and Get User Delegation Key, whose keys expire
/// `key_life` seconds from the request; counts the key requests.
struct Storage {
    base: String,
    key_life: Arc<AtomicI64>,
    key_requests: Arc<AtomicUsize>,
}

async fn storage() -> Storage {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let key_life = Arc::new(AtomicI64::new(3600));
    let key_requests = Arc::new(AtomicUsize::new(0));
    let (life, count) = (Arc::clone(&key_life), Arc::clone(&key_requests));
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (life, count) = (Arc::clone(&life), Arc::clone(&count));
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let now = OffsetDateTime::now_utc();
                let body = if head.starts_with("GET /msi/token") {
                    format!(
                        r#"{{"access_token":"t","expires_on":"{}"}}"#,
                        now.unix_timestamp() + 3600
                    )
                } else {
                    count.fetch_add(1, Ordering::SeqCst);
                    let expiry = now + time::Duration::seconds(life.load(Ordering::SeqCst));
                    format!(
                        "<?xml version=\"1.0\" encoding=\"utf-8\"?><UserDelegationKey>\
                         <SignedOid>11111111-1111-1111-1111-111111111111</SignedOid>\
                         <SignedTid>22222222-2222-2222-2222-222222222222</SignedTid>\
                         <SignedStart>{}</SignedStart><SignedExpiry>{}</SignedExpiry>\
                         <SignedService>b</SignedService><SignedVersion>2022-11-02</SignedVersion>\
                         <Value>a2V5</Value></UserDelegationKey>",
                        xml_date(now - SKEW),
                        xml_date(expiry)
                    )
                };
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(reply.as_bytes()).await;
            });
        }
    });
    Storage {
        base,
        key_life,
        key_requests,
    }
}

fn keys(storage: &Storage, link_life: Duration) -> Arc<DelegationKeys> {
    let credential = Arc::new(CachedCredential::new(
        CredentialSource::ManagedIdentity {
            endpoint: format!("{}/msi/token", storage.base),
            header: Secret::new("h"),
            client_id: None,
        },
        reqwest::Client::new(),
    ));
    Arc::new(DelegationKeys::new(
        credential,
        reqwest::Client::new(),
        &format!("{}/devstoreaccount1", storage.base),
        link_life,
    ))
}

#[tokio::test]
async fn concurrent_links_share_one_key_fetch() {
    let s = storage().await;
    let k = keys(&s, Duration::from_secs(600));
    let calls: Vec<_> = (0..16)
        .map(|_| {
            let k = Arc::clone(&k);
            tokio::spawn(async move { k.key().await })
        })
        .collect();
    for c in calls {
        let key = c.await.unwrap().unwrap();
        assert_eq!(key.signed_service, "b");
    }
    k.key().await.unwrap();
    assert_eq!(s.key_requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_key_that_cannot_cover_a_whole_link_is_never_kept() {
    let s = storage().await;
    // The endpoint hands out keys shorter than a link plus the margin: each is replaced.
    s.key_life.store(600, Ordering::SeqCst);
    let k = keys(&s, Duration::from_secs(600));
    k.key().await.unwrap();
    k.key().await.unwrap();
    assert_eq!(s.key_requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_key_due_for_renewal_still_signs_while_a_new_one_is_fetched() {
    let s = storage().await;
    // A key usable for 2 s more (its life less a link and the skew margin): renewal is due
    // after 1 s.
    s.key_life.store(600 + 300 + 2, Ordering::SeqCst);
    let k = keys(&s, Duration::from_secs(600));
    let first = k.key().await.unwrap();
    assert_eq!(s.key_requests.load(Ordering::SeqCst), 1);
    s.key_life.store(3600, Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    // Once renewal is due, a call answers with the key it has and starts one fetch behind it.
    loop {
        let key = k.key().await.unwrap();
        if s.key_requests.load(Ordering::SeqCst) >= 2 {
            break;
        }
        assert_eq!(key.signed_expiry, first.signed_expiry);
        assert!(tokio::time::Instant::now() < deadline, "no renewal");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The renewed key arrives (bounded), and then no more fetches happen.
    while k.key().await.unwrap().signed_expiry == first.signed_expiry {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the renewed key never arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let settled = s.key_requests.load(Ordering::SeqCst);
    k.key().await.unwrap();
    assert_eq!(s.key_requests.load(Ordering::SeqCst), settled);
}
