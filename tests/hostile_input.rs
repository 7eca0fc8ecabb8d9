//! Hostile input: a corpus of bad requests sent as raw bytes (so nothing is normalised on the
//! way), each of which must get a 4xx problem+json from the service, or a 4xx / closed
//! connection from the HTTP layer for requests that are not HTTP at all; never a 5xx, a panic
//! or a hang. The same for bad host invocation payloads and bad queue messages.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::app::{Backend, TestApp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a case must get.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// The service's own answer: exactly this status, as `application/problem+json`.
    Problem(u16),
    /// Refused by the HTTP layer: any 4xx, or the connection closed without an answer.
    Refused,
}

struct Case {
    name: &'static str,
    request: Vec<u8>,
    expect: Expect,
}

const SUBMIT: &str = "/api/AsyncProcessingWorkAcceptor";
const UUID: &str = "3fa85f64-5717-4562-b3fc-2c963f66afa6";

fn http(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

fn post_json(body: &[u8]) -> Vec<u8> {
    http(
        "POST",
        SUBMIT,
        &[("Content-Type", "application/json")],
        body,
    )
}

fn get(path: &str) -> Vec<u8> {
    http("GET", path, &[], b"")
}

fn case(name: &'static str, request: Vec<u8>, expect: Expect) -> Case {
    Case {
        name,
        request,
        expect,
    }
}

fn http_corpus() -> Vec<Case> {
    use Expect::*;
    let deep = format!(
        r#"{{"id":"1","customername":"x","n":{}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let huge = format!(
        r#"{{"id":"1","customername":"{}"}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    let status = |suffix: &str| format!("/api/RequestStatus/{suffix}");
    vec![
        // Bodies: malformed, truncated, wrong shapes and types.
        case("truncated object", post_json(b"{"), Problem(400)),
        case(
            "truncated after a key",
            post_json(br#"{"id":"1","customername":"#),
            Problem(400),
        ),
        case("empty body", post_json(b""), Problem(400)),
        case("white space only", post_json(b"  \n\t "), Problem(400)),
        case("null", post_json(b"null"), Problem(400)),
        case("array", post_json(b"[]"), Problem(400)),
        case("array of records", post_json(br#"[{"id":"1","customername":"x"}]"#), Problem(400)),
        case("string", post_json(br#""hello""#), Problem(400)),
        case("number", post_json(b"42"), Problem(400)),
        case("true", post_json(b"true"), Problem(400)),
        case("id is a number", post_json(br#"{"id":1,"customername":"x"}"#), Problem(400)),
        case("id is null", post_json(br#"{"id":null,"customername":"x"}"#), Problem(400)),
        case("id is an array", post_json(br#"{"id":["1"],"customername":"x"}"#), Problem(400)),
        case("id is an object", post_json(br#"{"id":{"a":1},"customername":"x"}"#), Problem(400)),
        case("id is empty", post_json(br#"{"id":"","customername":"x"}"#), Problem(400)),
        case("customername is null", post_json(br#"{"id":"1","customername":null}"#), Problem(400)),
        case("customername is false", post_json(br#"{"id":"1","customername":false}"#), Problem(400)),
        case("customername is missing", post_json(br#"{"id":"1"}"#), Problem(400)),
        case("id is missing", post_json(br#"{"customername":"x"}"#), Problem(400)),
        case("empty object", post_json(b"{}"), Problem(400)),
        case(
            "duplicate id",
            post_json(br#"{"id":"1","customername":"x","id":"2"}"#),
            Problem(400),
        ),
        case(
            "duplicate unknown field",
            post_json(br#"{"id":"1","customername":"x","a":1,"a":2}"#),
            Problem(400),
        ),
        case("deep nesting", post_json(deep.as_bytes()), Problem(400)),
        case("huge string over the limit", post_json(huge.as_bytes()), Problem(413)),
        case(
            "invalid UTF-8",
            post_json(b"{\"id\":\"\xff\xfe\",\"customername\":\"x\"}"),
            Problem(400),
        ),
        case(
            "byte order mark",
            post_json(b"\xef\xbb\xbf{\"id\":\"1\",\"customername\":\"x\"}"),
            Problem(400),
        ),
        case(
            "NaN",
            post_json(br#"{"id":"1","customername":"x","v":NaN}"#),
            Problem(400),
        ),
        case(
            "trailing garbage",
            post_json(br#"{"id":"1","customername":"x"} junk"#),
            Problem(400),
        ),
        case("two objects", post_json(br#"{"id":"1","customername":"x"}{}"#), Problem(400)),
        case(
            "lone surrogate",
            post_json(br#"{"id":"\ud800","customername":"x"}"#),
            Problem(400),
        ),
        case(
            "raw control character",
            post_json(b"{\"id\":\"a\x01b\",\"customername\":\"x\"}"),
            Problem(400),
        ),
        case(
            "single quotes",
            post_json(br#"{'id':'1','customername':'x'}"#),
            Problem(400),
        ),
        case("comment", post_json(br#"{"id":"1", /* c */ "customername":"x"}"#), Problem(400)),
        case("id of white space", post_json(br#"{"id":" \t\n ","customername":"x"}"#), Problem(400)),
        case("customername of white space", post_json(br#"{"id":"1","customername":"   "}"#), Problem(400)),
        // Content types.
        case(
            "text/plain",
            http("POST", SUBMIT, &[("Content-Type", "text/plain")], b"{}"),
            Problem(415),
        ),
        case("no content type", http("POST", SUBMIT, &[], br#"{"id":"1","customername":"x"}"#), Problem(415)),
        case(
            "application/xml",
            http("POST", SUBMIT, &[("Content-Type", "application/xml")], b"<a/>"),
            Problem(415),
        ),
        case(
            "junk content type",
            http("POST", SUBMIT, &[("Content-Type", ";;;")], b"{}"),
            Problem(415),
        ),
        case(
            "form content type",
            http("POST", SUBMIT, &[("Content-Type", "application/x-www-form-urlencoded")], b"id=1"),
            Problem(415),
        ),
        // Framing and headers.
        case(
            "declared length over the limit",
            b"POST /api/AsyncProcessingWorkAcceptor HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n{}".to_vec(),
            Problem(413),
        ),
        case(
            "bad chunk size",
            b"POST /api/AsyncProcessingWorkAcceptor HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n{}\r\n0\r\n\r\n".to_vec(),
            Refused,
        ),
        case(
            "length and chunked together",
            b"POST /api/AsyncProcessingWorkAcceptor HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
            Refused,
        ),
        case(
            "two content lengths",
            b"POST /api/AsyncProcessingWorkAcceptor HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\n{}".to_vec(),
            Refused,
        ),
        case(
            "oversized header",
            http("GET", "/", &[("X-Big", &"a".repeat(200_000))], b""),
            Refused,
        ),
        case(
            "too many headers",
            {
                let many: Vec<(String, String)> =
                    (0..300).map(|i| (format!("X-H{i}"), "v".to_string())).collect();
                let refs: Vec<(&str, &str)> =
                    many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                http("GET", "/", &refs, b"")
            },
            Refused,
        ),
        case("garbage request line", b"GARBAGE\r\n\r\n".to_vec(), Refused),
        case("binary noise", vec![0u8, 159, 146, 150, 255, 10, 13, 10, 13, 10], Refused),
        case(
            "bad header name",
            b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: v\r\n\r\n".to_vec(),
            Refused,
        ),
        case(
            "Idempotency-Key too long",
            http(
                "POST",
                SUBMIT,
                &[("Content-Type", "application/json"), ("Idempotency-Key", &"k".repeat(1000))],
                br#"{"id":"1","customername":"x"}"#,
            ),
            Problem(400),
        ),
        case(
            "Idempotency-Key not visible ASCII",
            {
                let mut r = b"POST /api/AsyncProcessingWorkAcceptor HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nIdempotency-Key: \xc3\xa9\xff\r\n".to_vec();
                let body = br#"{"id":"1","customername":"x"}"#;
                r.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
                r.extend_from_slice(body);
                r
            },
            Problem(400),
        ),
        // Ids and paths.
        case("id not a UUID", get(&status("not-a-uuid")), Problem(400)),
        case("id with a NUL", get(&status("%00")), Problem(400)),
        case("id of dots", get(&status("%2e%2e%2f%2e%2e")), Problem(400)),
        case("path traversal", get("/api/RequestStatus/../../etc/passwd"), Problem(404)),
        case("id of 10,000 characters", get(&status(&"a".repeat(10_000))), Problem(400)),
        case("UUID with trailing space", get(&status(&format!("{UUID}%20"))), Problem(400)),
        case("UUID without dashes", get(&status(&UUID.replace('-', ""))), Problem(400)),
        case("UUID in braces", get(&status(&format!("%7B{UUID}%7D"))), Problem(400)),
        case("nil UUID", get(&status("00000000-0000-0000-0000-000000000000")), Problem(404)),
        case("unknown UUID", get(&status(UUID)), Problem(404)),
        case("extra segment", get(&status(&format!("{UUID}/extra"))), Problem(404)),
        case("monitor with junk id", get("/api/operations/%ff%fe"), Problem(400)),
        case(
            "cancel with junk id",
            http("DELETE", &status("junk"), &[], b""),
            Problem(400),
        ),
        // Query values.
        case("OnComplete junk", get(&status(&format!("{UUID}?OnComplete=Nope"))), Problem(400)),
        case("OnPending empty", get(&status(&format!("{UUID}?OnPending="))), Problem(400)),
        case(
            "OnPending twice, different",
            get(&status(&format!("{UUID}?OnPending=OK&OnPending=Accepted"))),
            Problem(400),
        ),
        case("OnPending not UTF-8", get(&status(&format!("{UUID}?OnPending=%FF"))), Problem(400)),
        case(
            "OnComplete with NUL",
            get(&status(&format!("{UUID}?OnComplete=Stream%00"))),
            Problem(400),
        ),
        case(
            "query of 60,000 characters",
            get(&status(&format!("{UUID}?OnComplete={}", "x".repeat(60_000)))),
            Problem(400),
        ),
        // Methods and routes.
        case("PUT on submit", http("PUT", SUBMIT, &[], b"{}"), Problem(405)),
        case("GET on submit", get(SUBMIT), Problem(405)),
        case("POST on status", http("POST", &status(UUID), &[], b""), Problem(405)),
        case("unknown method", http("FROB", SUBMIT, &[], b""), Problem(405)),
        case("unknown route", get("/api/nothing-here"), Problem(404)),
        case("submit route with a suffix", get("/api/asyncprocessingworkacceptor/extra"), Problem(404)),
    ]
}

/// Sends raw bytes, returns (status, content type, body) or `None` if the connection was
/// closed without an answer. Panics if nothing happens within `limit` (a hang).
async fn exchange(addr: &str, request: &[u8], limit: Duration) -> Option<(u16, String, Vec<u8>)> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let io = async {
        // The server may answer and close before reading everything (413): a failed write is
        // fine as long as an answer can be read.
        let _ = stream.write_all(request).await;
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw).await;
        raw
    };
    let raw = tokio::time::timeout(limit, io)
        .await
        .unwrap_or_else(|_| panic!("no answer and no close within {limit:?} (a hang)"));
    if raw.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(&raw);
    let head_end = text.find("\r\n\r\n").unwrap_or(text.len());
    let head = &text[..head_end];
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {head:?}"));
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    let body = raw[(head_end + 4).min(raw.len())..].to_vec();
    Some((status, content_type, body))
}

fn check(case_name: &str, expect: Expect, answer: Option<(u16, String, Vec<u8>)>) {
    match (expect, answer) {
        (Expect::Refused, None) => {}
        (Expect::Refused, Some((status, _, _))) => assert!(
            (400..500).contains(&status),
            "{case_name}: expected a 4xx or a closed connection, got {status}"
        ),
        (Expect::Problem(want), None) => {
            panic!("{case_name}: expected {want} problem+json, the connection was closed")
        }
        (Expect::Problem(want), Some((status, content_type, body))) => {
            assert_eq!(
                status,
                want,
                "{case_name}: {}",
                String::from_utf8_lossy(&body)
            );
            assert_eq!(content_type, "application/problem+json", "{case_name}");
            let problem: Value = serde_json::from_slice(&body)
                .unwrap_or_else(|e| panic!("{case_name}: problem body is not JSON: {e}"));
            assert_eq!(problem["status"], want, "{case_name}");
            assert!(
                problem["type"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("urn:async-request-reply:problem:")),
                "{case_name}: {problem}"
            );
            assert!(problem["title"].is_string() && problem["detail"].is_string());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_request_gets_a_4xx_and_the_server_stays_healthy() {
    // As under the host: no in-process worker, so the queue shows whether anything got through.
    let app = TestApp::start(Backend::Memory, &[("FUNCTIONS_CUSTOMHANDLER_PORT", "0")]).await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let corpus = http_corpus();
    assert!(corpus.len() >= 60, "the corpus has {} cases", corpus.len());
    for case in &corpus {
        let answer = exchange(&addr, &case.request, Duration::from_secs(10)).await;
        check(case.name, case.expect, answer);
    }
    // Still healthy, and every case was refused: nothing was accepted.
    let r = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let queued = app
        .storage
        .queue
        .receive(32, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(queued.is_empty(), "a bad request was queued");
    println!(
        "hostile input: {} cases, all refused with a 4xx or a closed connection",
        corpus.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_is_cut_off_with_408_not_held_forever() {
    // A 1 s body deadline (30 s by default): the test proves the cut-off, not its length.
    let app = TestApp::start(Backend::Memory, &[("BODY_TIMEOUT_SECONDS", "1")]).await;
    let addr = app.base.trim_start_matches("http://").to_string();
    // Declares 100 bytes, sends 2, then stalls: the body timeout answers for it.
    let request = b"POST /api/AsyncProcessingWorkAcceptor HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"";
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    raw.extend_from_slice(&buf[..n]);
                    if raw.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "a stalled body held the connection for 20 s");
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 408"), "got {text:?}");
}

/// Host mode: invocation payloads the host would never send, and queue messages no submission
/// would produce. Bad payloads are refused with 400 (the host retries, then poisons them); bad
/// messages are completed (200) with a log line, and never loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_invocations_and_bad_messages_have_defined_outcomes() {
    let app = TestApp::start(Backend::Memory, &[("FUNCTIONS_CUSTOMHANDLER_PORT", "0")]).await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let invoke = |body: Vec<u8>| {
        http(
            "POST",
            "/AsyncProcessingBackgroundWorker",
            &[("Content-Type", "application/json")],
            &body,
        )
    };
    let with_item = |item: Value| {
        serde_json::to_vec(&serde_json::json!({
            "Data": { "myQueueItem": item },
            "Metadata": { "DequeueCount": "1" }
        }))
        .unwrap()
    };
    let b64 = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    let refused: Vec<(&str, Vec<u8>)> = vec![
        ("not JSON", b"nope".to_vec()),
        ("empty", b"".to_vec()),
        ("no Data", br#"{"Metadata":{}}"#.to_vec()),
        ("Data is a string", br#"{"Data":"x"}"#.to_vec()),
        ("Data is null", br#"{"Data":null}"#.to_vec()),
        (
            "two unknown bindings",
            br#"{"Data":{"a":"x","b":"y"}}"#.to_vec(),
        ),
        ("item is a number", with_item(serde_json::json!(5))),
        ("item is null", with_item(Value::Null)),
        ("item is an array", with_item(serde_json::json!([1, 2]))),
        (
            "over the size limit",
            with_item(Value::String("x".repeat(2 * 1024 * 1024))),
        ),
    ];
    for (name, body) in refused {
        let answer = exchange(&addr, &invoke(body), Duration::from_secs(10)).await;
        let (status, content_type, _) =
            answer.unwrap_or_else(|| panic!("{name}: connection closed"));
        assert!((400..500).contains(&status), "{name}: {status}");
        assert_eq!(content_type, "application/problem+json", "{name}");
    }
    let completed: Vec<(&str, Value)> = vec![
        (
            "not base64",
            Value::String(serde_json::to_string("%%% not base64 %%%").unwrap()),
        ),
        (
            "base64 of junk",
            Value::String(serde_json::to_string(&b64("\u{1}\u{2}junk")).unwrap()),
        ),
        (
            "base64 of a JSON array",
            Value::String(serde_json::to_string(&b64("[1,2]")).unwrap()),
        ),
        (
            "no RequestGUID",
            Value::String(serde_json::to_string(&b64(r#"{"id":"1"}"#)).unwrap()),
        ),
        (
            "RequestGUID not a UUID",
            Value::String(
                serde_json::to_string(&b64(r#"{"RequestGUID":"x","id":"1","customername":"c"}"#))
                    .unwrap(),
            ),
        ),
        (
            "unknown operation",
            Value::String(
                serde_json::to_string(&b64(&format!(
                    r#"{{"RequestGUID":"{UUID}","id":"1","customername":"c"}}"#
                )))
                .unwrap(),
            ),
        ),
        ("a bare object", serde_json::json!({"RequestGUID": 7})),
    ];
    for (name, item) in completed {
        let answer = exchange(&addr, &invoke(with_item(item)), Duration::from_secs(10)).await;
        let (status, _, body) = answer.unwrap_or_else(|| panic!("{name}: connection closed"));
        assert_eq!(status, 200, "{name}: {}", String::from_utf8_lossy(&body));
        let reply: Value = serde_json::from_slice(&body).unwrap();
        assert!(
            reply["Logs"].as_array().is_some_and(|l| !l.is_empty()),
            "{name}"
        );
    }
}

/// `MAX_CONNECTIONS` bounds the connections served at once: past it, a new client waits (in
/// the listen backlog) until one closes, instead of the server taking on unbounded work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_bound_wait_for_a_free_slot() {
    let app = TestApp::start(
        Backend::Memory,
        &[("MAX_CONNECTIONS", "2"), ("HEADER_TIMEOUT_SECONDS", "60")],
    )
    .await;
    let addr = app.base.trim_start_matches("http://").to_string();
    // Two clients hold the two slots, mid-request.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        held.push(s);
    }
    let mut third = tokio::spawn({
        let addr = addr.clone();
        async move { exchange(&addr, &get("/"), Duration::from_secs(30)).await }
    });
    // The third is not served while both slots are taken (a bounded negative check).
    let early = tokio::time::timeout(Duration::from_millis(700), &mut third).await;
    assert!(
        early.is_err(),
        "a third connection was served past MAX_CONNECTIONS=2"
    );
    drop(held.pop()); // one client leaves: its slot goes to the waiting one
    let answer = third.await.unwrap().expect("served once a slot was free");
    assert_eq!(answer.0, 200);
}

/// A client that starts a request and never finishes its headers is cut off after
/// `HEADER_TIMEOUT_SECONDS` (slowloris), not held forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_stalling_in_its_headers_is_cut_off() {
    let app = TestApp::start(Backend::Memory, &[("HEADER_TIMEOUT_SECONDS", "1")]).await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf)).await;
    assert!(
        closed.is_ok(),
        "a stalled header section held the connection for 20 s"
    );
    let text = String::from_utf8_lossy(&buf);
    assert!(
        buf.is_empty() || text.starts_with("HTTP/1.1 408"),
        "got {text:?}"
    );
}

/// Reads until the server closes `stream` (EOF or reset), returning what it sent first.
/// Panics if it is still open after `limit`.
async fn closed_by_server(stream: &mut TcpStream, limit: Duration, what: &str) -> Vec<u8> {
    let mut raw = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "{what} was still open after {limit:?}");
    raw
}

/// Clients that connect and send nothing are dropped after `HEADER_TIMEOUT_SECONDS`: before
/// any protocol applies its own timeout, so `MAX_CONNECTIONS` of them would otherwise lock
/// everyone else out for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_dropped_and_do_not_lock_others_out() {
    let app = TestApp::start(
        Backend::Memory,
        &[("MAX_CONNECTIONS", "4"), ("HEADER_TIMEOUT_SECONDS", "1")],
    )
    .await;
    let addr = app.base.trim_start_matches("http://").to_string();
    // Connected first, so they take every slot before the real client is accepted.
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(TcpStream::connect(&addr).await.unwrap());
    }
    // The silent sockets stay open on this side while the real client is served.
    let answer = exchange(&addr, &get("/"), Duration::from_secs(10))
        .await
        .expect("answered, not closed");
    assert_eq!(answer.0, 200);
    for (i, s) in silent.iter_mut().enumerate() {
        let sent =
            closed_by_server(s, Duration::from_secs(10), &format!("silent socket {i}")).await;
        assert!(sent.is_empty(), "a silent socket got {sent:?}");
    }
}

/// A client that sends the start of the HTTP/2 preface and stalls is dropped too: the
/// protocol is still unknown, so no protocol's timeout covers it yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_stalling_in_the_http2_preface_is_cut_off() {
    let app = TestApp::start(Backend::Memory, &[("HEADER_TIMEOUT_SECONDS", "1")]).await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let sent = closed_by_server(&mut s, Duration::from_secs(10), "a half-sent preface").await;
    assert!(sent.is_empty(), "got {sent:?}");
}

/// An HTTP/1.1 keep-alive connection left idle after its response is closed after
/// `HEADER_TIMEOUT_SECONDS` (hyper times the wait for the next request's head), so idle
/// keep-alive clients do not hold slots either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed() {
    let app = TestApp::start(Backend::Memory, &[("HEADER_TIMEOUT_SECONDS", "1")]).await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let sent = closed_by_server(
        &mut s,
        Duration::from_secs(10),
        "an idle keep-alive connection",
    )
    .await;
    let text = String::from_utf8_lossy(&sent);
    assert!(text.starts_with("HTTP/1.1 200"), "got {text:?}");
    assert!(
        !text.to_ascii_lowercase().contains("connection: close"),
        "the server closed by its own choice, not for idleness: {text:?}"
    );
}

/// The frame types an HTTP/2 peer sent, read from its raw bytes (after nothing else).
fn h2_frame_types(mut raw: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    while raw.len() >= 9 {
        let len = u32::from_be_bytes([0, raw[0], raw[1], raw[2]]) as usize;
        types.push(raw[3]);
        raw = &raw[(9 + len).min(raw.len())..];
    }
    types
}

/// An HTTP/2 connection that sent its preface and settings and then no request is closed after
/// `HEADER_TIMEOUT_SECONDS`, gracefully (`GOAWAY`), like an idle HTTP/1 keep-alive one: nothing
/// in hyper bounds it, and each holds one of `MAX_CONNECTIONS`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_is_closed() {
    let app = TestApp::start(Backend::Memory, &[("HEADER_TIMEOUT_SECONDS", "1")]).await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    // An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
    s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    let sent = closed_by_server(&mut s, Duration::from_secs(10), "an idle HTTP/2 connection").await;
    let types = h2_frame_types(&sent);
    assert_eq!(
        types.first(),
        Some(&4),
        "the server's SETTINGS first: {types:?}"
    );
    assert!(types.contains(&7), "closed with a GOAWAY: {types:?}");
}

/// A request in progress keeps its HTTP/2 connection open past `HEADER_TIMEOUT_SECONDS`: only
/// a connection with none is idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_http2_request_is_not_cut_by_the_idle_limit() {
    let app = TestApp::start(
        Backend::Memory,
        &[
            ("HEADER_TIMEOUT_SECONDS", "1"),
            ("PROCESSING_DELAY_MS", "2500"),
        ],
    )
    .await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let accepted = client
        .post(format!("{}/api/AsyncProcessingWorkAcceptor", app.base))
        .json(&serde_json::json!({"id": "1", "customername": "Contoso"}))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.version(), reqwest::Version::HTTP_2);
    let status = accepted.status();
    let location = accepted
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_string());
    assert_eq!(status, 202, "{}", accepted.text().await.unwrap());
    let location = location.unwrap();
    let started = std::time::Instant::now();
    let done = client
        .get(format!("{location}?OnPending=Synchronous"))
        .send()
        .await
        .expect("the synchronous wait answered on its HTTP/2 connection");
    assert!(
        started.elapsed() > Duration::from_secs(1),
        "the wait outlasted the idle limit"
    );
    assert_eq!(done.status(), 302);
}

/// A connection still silent when shutdown begins does not hold shutdown up for its header
/// timeout (nor for the grace period): it is dropped at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_does_not_delay_shutdown() {
    let mut app = TestApp::start(
        Backend::Memory,
        &[
            ("HEADER_TIMEOUT_SECONDS", "60"),
            ("SHUTDOWN_GRACE_SECONDS", "30"),
        ],
    )
    .await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    // Accepted in order: once a later client is answered, the silent one is being served.
    let answer = exchange(&addr, &get("/"), Duration::from_secs(10)).await;
    assert_eq!(answer.map(|a| a.0), Some(200));
    let stopped = tokio::time::timeout(Duration::from_secs(10), app.stop()).await;
    assert!(stopped.is_ok(), "shutdown waited on a silent connection");
    let sent = closed_by_server(&mut silent, Duration::from_secs(5), "the silent socket").await;
    assert!(sent.is_empty(), "got {sent:?}");
}
