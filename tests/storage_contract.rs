//! The storage ports' contract, written once and run against both adapters: in memory, and
//! Azure Storage on Azurite. The two cannot drift apart without one of these failing.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_request_reply::adapters::azure;
use async_request_reply::domain::ports::{Delivery, PutOutcome, StoreError, Stores, WorkQueue};
use base64::Engine;
use bytes::Bytes;
use futures::StreamExt;
use support::app::Backend;
use support::azurite::{Azurite, Names, KEY};
use support::eventually;

/// A backend's storage, with what keeps it alive and names it (Azurite only).
struct Store {
    /// The request side's stores: the adapters over the transport that holds calls back (the
    /// work side's are the same adapters over the plain client).
    storage: Stores,
    azurite: Option<(Azurite, Names)>,
}

/// The storage of `backend`: in memory, or this test's own queue and containers on the run's
/// shared Azurite.
async fn store(backend: Backend) -> Store {
    match backend.azurite() {
        None => Store {
            storage: async_request_reply::adapters::memory::storage().requests,
            azurite: None,
        },
        Some(azurite) => {
            let names = Names::unique();
            let s = azure::connect(&names.azure_settings(&azurite, 3000, 2))
                .await
                .expect("Azurite is reachable");
            Store {
                storage: s.requests,
                azurite: Some((azurite, names)),
            }
        }
    }
}

support::contract!(with store;
    records_are_created_once_and_swapped_by_etag,
    records_list_by_prefix_and_age,
    results_are_written_once_and_streamed_exactly,
    queue_hides_received_messages_until_the_timeout,
    queue_extend_keeps_a_message_hidden_and_renews_its_receipt,
    queue_delete_and_dead_letter,
);

async fn records_are_created_once_and_swapped_by_etag(b: Store) {
    let r = &b.storage.records;
    assert_eq!(r.get("operations/a").await.unwrap(), None);
    let e1 = r
        .insert("operations/a", Bytes::from_static(b"{\"v\":1}"))
        .await
        .unwrap();
    assert_eq!(
        r.insert("operations/a", Bytes::from_static(b"{\"v\":9}"))
            .await,
        Err(StoreError::AlreadyExists)
    );
    let (doc, etag) = r.get("operations/a").await.unwrap().unwrap();
    assert_eq!(&doc[..], b"{\"v\":1}");
    assert_eq!(etag, e1);
    let e2 = r
        .replace("operations/a", Bytes::from_static(b"{\"v\":2}"), &e1)
        .await
        .unwrap();
    assert_ne!(e1, e2);
    assert_eq!(r.is_at("operations/a", &e2).await, Ok(true));
    assert_eq!(
        r.is_at("operations/a", &e1).await,
        Ok(false),
        "an old version is not current"
    );
    assert_eq!(
        r.replace("operations/a", Bytes::from_static(b"{\"v\":3}"), &e1)
            .await,
        Err(StoreError::PreconditionFailed),
        "a stale ETag loses"
    );
    assert_eq!(
        &r.get("operations/a").await.unwrap().unwrap().0[..],
        b"{\"v\":2}"
    );
    r.delete("operations/a").await.unwrap();
    r.delete("operations/a").await.unwrap();
    assert_eq!(r.get("operations/a").await.unwrap(), None);
    assert_eq!(
        r.is_at("operations/a", &e2).await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        r.replace("operations/a", Bytes::from_static(b"{}"), &e2)
            .await,
        Err(StoreError::NotFound)
    );
}

async fn records_list_by_prefix_and_age(b: Store) {
    let r = &b.storage.records;
    for k in ["operations/1", "operations/2", "idempotency/x"] {
        r.insert(k, Bytes::from_static(b"{}")).await.unwrap();
    }
    // Everything was written before a cutoff a little ahead (storage keeps whole seconds).
    let later = time::OffsetDateTime::now_utc() + time::Duration::seconds(2);
    let mut ops = r.list_written_before("operations/", later).await.unwrap();
    ops.sort();
    assert_eq!(ops, vec!["operations/1", "operations/2"]);
    assert_eq!(
        r.list_written_before("idempotency/", later).await.unwrap(),
        vec!["idempotency/x"]
    );
    // Nothing was written before a cutoff a minute ago.
    let earlier = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
    assert!(r
        .list_written_before("operations/", earlier)
        .await
        .unwrap()
        .is_empty());
}

async fn read_all(b: &Store, name: &str) -> (String, u64, Vec<u8>) {
    let body = b
        .storage
        .results
        .open(name)
        .await
        .unwrap()
        .expect("a result");
    let mut bytes = Vec::new();
    let mut chunks = body.chunks;
    while let Some(c) = chunks.next().await {
        bytes.extend_from_slice(&c.unwrap());
    }
    (body.content_type, body.content_length, bytes)
}

async fn results_are_written_once_and_streamed_exactly(b: Store) {
    let res = &b.storage.results;
    assert!(res.open("missing.blobdata").await.unwrap().is_none());
    let first = res
        .put_if_absent(
            "a.blobdata",
            Bytes::from_static(b"{\"first\":true}"),
            "application/json",
        )
        .await
        .unwrap();
    assert_eq!(first, PutOutcome::Created);
    let second = res
        .put_if_absent(
            "a.blobdata",
            Bytes::from_static(b"{\"second\":true}"),
            "text/plain",
        )
        .await
        .unwrap();
    assert_eq!(second, PutOutcome::AlreadyExisted);
    assert_eq!(
        read_all(&b, "a.blobdata").await,
        ("application/json".into(), 14, b"{\"first\":true}".to_vec())
    );
    // Empty and multi-chunk results.
    res.put_if_absent("empty.blobdata", Bytes::new(), "application/octet-stream")
        .await
        .unwrap();
    assert_eq!(read_all(&b, "empty.blobdata").await.2, Vec::<u8>::new());
    // Over two of the Azure adapter's 4 MiB ranges, so its follow-up ranges are read too.
    let big: Vec<u8> = (0..9 * 1024 * 1024 + 17).map(|i| (i % 251) as u8).collect();
    res.put_if_absent(
        "big.blobdata",
        Bytes::from(big.clone()),
        "application/octet-stream",
    )
    .await
    .unwrap();
    let (_, len, bytes) = read_all(&b, "big.blobdata").await;
    assert_eq!(len, big.len() as u64);
    assert!(bytes == big, "the multi-chunk result streams back exactly");
    for name in ["a.blobdata", "big.blobdata", "empty.blobdata"] {
        assert!(res.open(name).await.unwrap().is_some(), "{name} is kept");
    }
    res.delete("a.blobdata").await.unwrap();
    res.delete("a.blobdata").await.unwrap();
    assert!(res.open("a.blobdata").await.unwrap().is_none());
}

/// Receives (hiding for 30 s) as soon as anything is visible again; polls every 100 ms for at
/// most 10 s, then fails naming `what`.
async fn receive_once_back(q: &dyn WorkQueue, what: &str) -> Vec<Delivery> {
    eventually(
        format_args!("{what} coming back"),
        Duration::from_millis(100),
        Duration::from_secs(10),
        async || {
            Some(q.receive(32, Duration::from_secs(30)).await.unwrap()).filter(|g| !g.is_empty())
        },
    )
    .await
}

async fn queue_hides_received_messages_until_the_timeout(b: Store) {
    let q = &b.storage.queue;
    q.send("{\"n\":1}").await.unwrap();
    let got = q.receive(32, Duration::from_secs(1)).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].text, "{\"n\":1}");
    assert_eq!(got[0].dequeue_count, 1);
    assert!(
        q.receive(32, Duration::from_secs(1))
            .await
            .unwrap()
            .is_empty(),
        "hidden while being worked on"
    );
    // Not deleted: it comes back after the timeout (bounded poll), one delivery later.
    let again = receive_once_back(q.as_ref(), "the message").await;
    assert_eq!(again[0].text, "{\"n\":1}");
    assert_eq!(again[0].dequeue_count, 2);
    // The first delivery's receipt is stale now.
    assert!(q.delete(&got[0].receipt).await.is_err());
    q.delete(&again[0].receipt).await.unwrap();
}

async fn queue_extend_keeps_a_message_hidden_and_renews_its_receipt(b: Store) {
    let q = &b.storage.queue;
    q.send("{\"n\":\"kept\"}").await.unwrap();
    q.send("{\"n\":\"witness\"}").await.unwrap();
    let got = q.receive(32, Duration::from_secs(1)).await.unwrap();
    assert_eq!(got.len(), 2);
    let kept = got.iter().find(|d| d.text.contains("kept")).unwrap();
    let renewed = q
        .extend(&kept.receipt, &kept.text, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(renewed.message_id, kept.receipt.message_id);
    assert_ne!(renewed.pop_receipt, kept.receipt.pop_receipt);
    // The witness was hidden for the same second; once it is back, that second is over and
    // only the extension still hides the other message.
    let back = receive_once_back(q.as_ref(), "the witness").await;
    assert_eq!(back.len(), 1, "the extended message stays hidden");
    assert!(back[0].text.contains("witness"));
    // The receipt an update replaced is spent, for updates and deletes alike.
    assert!(matches!(
        q.extend(&kept.receipt, &kept.text, Duration::from_secs(60))
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        q.delete(&kept.receipt).await,
        Err(StoreError::NotFound)
    ));
    q.delete(&renewed).await.unwrap();
    q.delete(&back[0].receipt).await.unwrap();
    assert!(q
        .receive(32, Duration::from_secs(30))
        .await
        .unwrap()
        .is_empty());
}

async fn queue_delete_and_dead_letter(b: Store) {
    let q = &b.storage.queue;
    for i in 0..3 {
        q.send(&format!("{{\"n\":{i}}}")).await.unwrap();
    }
    let got = q.receive(2, Duration::from_secs(30)).await.unwrap();
    assert_eq!(got.len(), 2, "at most the number asked for");
    q.delete(&got[0].receipt).await.unwrap();
    q.dead_letter(&got[1]).await.unwrap();
    let rest = q.receive(32, Duration::from_secs(30)).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert!(q
        .receive(32, Duration::from_secs(30))
        .await
        .unwrap()
        .is_empty());
}

// ----- Azure Storage only -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sas_links_read_one_blob_and_refuse_tampering_and_expiry() {
    sas_links(Backend::Azurite).await
}

/// With identity-based storage the link is a user-delegation SAS (no account key exists), and
/// Azurite checks its signature just the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_delegation_links_read_one_blob_and_refuse_tampering_and_expiry() {
    sas_links(Backend::AzuriteIdentity).await
}

async fn sas_links(backend: Backend) {
    let b = store(backend).await;
    let azurite = &b.azurite.as_ref().unwrap().0;
    let http = || azurite.http();
    let res = &b.storage.results;
    res.put_if_absent(
        "r.blobdata",
        Bytes::from_static(b"{\"ok\":1}"),
        "application/json",
    )
    .await
    .unwrap();
    res.put_if_absent(
        "other.blobdata",
        Bytes::from_static(b"{}"),
        "application/json",
    )
    .await
    .unwrap();
    let expires = time::OffsetDateTime::now_utc() + time::Duration::minutes(10);
    let url = res.read_link("r.blobdata", expires).await.unwrap().unwrap();
    let query = url.split_once('?').unwrap().1;
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("sp").as_deref(), Some("r"), "read only");
    assert_eq!(get("sr").as_deref(), Some("b"), "this one blob");
    assert!(get("se").is_some() && get("sig").is_some());
    if azurite.is_identity() {
        assert_eq!(get("spr").as_deref(), Some("https"), "storage is https");
        for k in ["skoid", "sktid", "skt", "ske", "sks", "skv"] {
            assert!(get(k).is_some(), "a user-delegation SAS has {k}: {url}");
        }
        assert_eq!(get("skoid"), Some(azurite.tokens().object_id.clone()));
        assert_eq!(get("sktid"), Some(azurite.tokens().tenant.clone()));
        // One delegation key signs many links (not a key request per status read), and one
        // token served every call so far.
        let again = res
            .read_link("other.blobdata", expires)
            .await
            .unwrap()
            .unwrap();
        let key_of = |u: &str| {
            form_urlencoded::parse(u.split_once('?').unwrap().1.as_bytes())
                .filter(|(k, _)| k.starts_with("sk"))
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
        };
        assert_eq!(key_of(&again), key_of(&url));
        assert_eq!(azurite.tokens().issued(), 1, "the token is cached");
    } else {
        assert_eq!(
            get("spr").as_deref(),
            Some("http,https"),
            "Azurite is plain http (on Azure: https only)"
        );
        assert!(get("skoid").is_none(), "an account-key SAS");
    }

    let r = http().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(&r.bytes().await.unwrap()[..], b"{\"ok\":1}");

    // The same signature does not open another blob, nor write.
    let other = url.replace("/r.blobdata?", "/other.blobdata?");
    assert_eq!(http().get(&other).send().await.unwrap().status(), 403);
    let write = http()
        .put(&url)
        .header("x-ms-blob-type", "BlockBlob")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), 403);

    let sig = get("sig").unwrap();
    let mut raw = base64::engine::general_purpose::STANDARD
        .decode(&sig)
        .unwrap();
    raw[0] ^= 1;
    let forged = base64::engine::general_purpose::STANDARD.encode(raw);
    let tampered = url.replace(
        &format!(
            "sig={}",
            form_urlencoded::byte_serialize(sig.as_bytes()).collect::<String>()
        ),
        &format!(
            "sig={}",
            form_urlencoded::byte_serialize(forged.as_bytes()).collect::<String>()
        ),
    );
    assert_ne!(tampered, url);
    assert_eq!(http().get(&tampered).send().await.unwrap().status(), 403);

    let past = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
    let expired = res.read_link("r.blobdata", past).await.unwrap().unwrap();
    assert_eq!(http().get(&expired).send().await.unwrap().status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_text_is_base64_on_the_wire() {
    let b = store(Backend::Azurite).await;
    let (azurite, names) = b.azurite.as_ref().unwrap();
    b.storage.queue.send("{\"hello\":\"wörld\"}").await.unwrap();
    let raw = azurite
        .queue_service()
        .queue_client(&names.queue)
        .peek_messages()
        .await
        .unwrap();
    let text = &raw.messages[0].message_text;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap();
    assert_eq!(String::from_utf8(decoded).unwrap(), "{\"hello\":\"wörld\"}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_storage_answers_unavailable_within_bounds() {
    // Stopped below: its own Azurite, not the shared one.
    let mut azurite = Azurite::start();
    let s = azure::connect(&Names::unique().azure_settings(&azurite, 500, 1))
        .await
        .unwrap()
        .requests;
    azurite.stop();
    let started = Instant::now();
    let e = s.records.get("operations/x").await.unwrap_err();
    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    let e = s.queue.send("{}").await.unwrap_err();
    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    // Nothing secret in what the error says.
    assert!(!format!("{e} {e:?}").contains(KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_creates_what_is_missing_and_is_idempotent() {
    // Fresh names on the shared Azurite: nothing exists yet.
    let azurite = Azurite::shared();
    let s = Names::unique().azure_settings(&azurite, 3000, 2);
    let first = azure::connect(&s).await.unwrap().requests;
    let second: Arc<_> = Arc::new(azure::connect(&s).await.unwrap().work);
    first.queue.send("{}").await.unwrap();
    assert_eq!(
        second
            .queue
            .receive(32, Duration::from_secs(30))
            .await
            .unwrap()
            .len(),
        1
    );
}
