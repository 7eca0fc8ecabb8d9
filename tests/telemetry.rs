//! Traces and metrics as Application Insights receives them: the real binary, its connection
//! string pointing at a fake ingestion endpoint on loopback (`support::ingestion`), and the
//! envelopes it was sent read back. One submission is one trace, the caller's: the requests
//! for the POST and the status read, the enqueue, the delivery as the enqueue's child, the
//! storage calls (with no SAS or key in them); metrics arrive; with no connection string
//! nothing is sent; a dead endpoint slows nothing down; a bad sampling ratio stops start-up.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::app::client;
use support::azurite::{Azurite, Names, KEY};
use support::free_port;
use support::host::{handler_command, Handler};
use support::ingestion::{connection_string_for, Ingestion};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// `00-<trace id>-<span id>-<flags>`, lower-case hex: the parts, or a failed test.
fn traceresponse(r: &reqwest::Response) -> (String, String, String) {
    let value = r
        .headers()
        .get("traceresponse")
        .unwrap_or_else(|| panic!("no traceresponse on a {}", r.status()))
        .to_str()
        .unwrap()
        .to_string();
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    assert!(
        parts.len() == 4
            && parts[0] == "00"
            && hex(parts[1], 32)
            && hex(parts[2], 16)
            && hex(parts[3], 2),
        "traceresponse `{value}`"
    );
    (parts[1].into(), parts[2].into(), parts[3].into())
}

fn base_type(e: &Value) -> &str {
    e["data"]["baseType"].as_str().unwrap_or("")
}

fn operation_id(e: &Value) -> &str {
    e["tags"]["ai.operation.id"].as_str().unwrap_or("")
}

fn parent_id(e: &Value) -> &str {
    e["tags"]["ai.operation.parentId"].as_str().unwrap_or("")
}

fn name(e: &Value) -> &str {
    e["data"]["baseData"]["name"].as_str().unwrap_or("")
}

/// Submits with the caller's `traceparent` and reads the status with it until the `302`.
async fn submit_and_read(base: &str) -> (reqwest::Response, reqwest::Response) {
    let http = client();
    let submitted = http
        .post(format!("{base}/api/AsyncProcessingWorkAcceptor"))
        .header("traceparent", TRACEPARENT)
        .json(&json!({"id": "1", "customername": "Contoso"}))
        .send()
        .await
        .unwrap();
    assert_eq!(submitted.status(), 202);
    let location = submitted.headers()["location"]
        .to_str()
        .unwrap()
        .to_string();
    let read = http
        .get(format!("{location}?OnPending=Synchronous"))
        .header("traceparent", TRACEPARENT)
        .send()
        .await
        .unwrap();
    assert_eq!(
        read.status(),
        302,
        "the work ended and its result is linked"
    );
    (submitted, read)
}

/// SIGTERM, and a bounded wait for the exit: the flush on shutdown sends what is pending.
async fn stop(handler: &mut Handler) {
    handler.signal("TERM");
    let code = handler.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(code, Some(0), "a clean exit after SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_submission_is_one_trace_in_the_callers_name() {
    let ingestion = Ingestion::start().await;
    let azurite = Azurite::shared();
    let names = Names::unique();
    let mut env = azurite.handler_settings(&names);
    env.push((
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        ingestion.connection_string(),
    ));
    env.push(("SSL_CERT_FILE", ingestion.ca.display().to_string()));
    env.push(("OTEL_METRIC_EXPORT_INTERVAL", "500".into()));
    let mut handler = Handler::start_standalone(&support::as_refs(&env)).await;

    let (submitted, read) = submit_and_read(&handler.base).await;
    let (trace, submit_span, flags) = traceresponse(&submitted);
    assert_eq!(trace, TRACE_ID, "the 202 answers in the caller's trace");
    assert_eq!(flags, "01");
    let (read_trace, read_span, _) = traceresponse(&read);
    assert_eq!(read_trace, TRACE_ID, "the status read joins the same trace");
    let sas = read.headers()["location"].to_str().unwrap().to_string();
    let id = submitted.headers()["location"]
        .to_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();

    // Metrics every 500 ms: seen before the shutdown, whose flush then sends the spans left.
    support::eventually(
        "metrics at the ingestion endpoint",
        Duration::from_millis(100),
        Duration::from_secs(30),
        async || {
            ingestion
                .envelopes()
                .iter()
                .any(|e| base_type(e) == "MetricData")
        },
    )
    .await;
    stop(&mut handler).await;

    let envelopes = ingestion.envelopes();
    let all = serde_json::to_string(&envelopes).unwrap();
    let signature = sas
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("sig="))
        .expect("a SAS link");
    for secret in ["sig=", signature, KEY] {
        assert!(!all.contains(secret), "`{secret}` was exported: {all}");
    }
    assert!(
        ingestion.requests().iter().all(|r| r == "POST /v2/track"),
        "{:?}",
        ingestion.requests()
    );
    let ours: Vec<&Value> = envelopes
        .iter()
        .filter(|e| operation_id(e) == TRACE_ID)
        .collect();
    let find = |kind: &str, what: &str| -> &Value {
        ours.iter()
            .copied()
            .find(|e| base_type(e) == kind && name(e) == what)
            .unwrap_or_else(|| panic!("no {kind} `{what}` in the caller's trace: {all}"))
    };
    let post = find("RequestData", "POST /api/AsyncProcessingWorkAcceptor");
    assert_eq!(post["data"]["baseData"]["id"], submit_span.as_str());
    assert_eq!(
        parent_id(post),
        CALLER_SPAN,
        "the caller's span is the parent"
    );
    assert_eq!(post["data"]["baseData"]["responseCode"], "202");
    assert_eq!(
        post["data"]["baseData"]["properties"]["operation_id"],
        id.as_str()
    );
    let get = find("RequestData", "GET /api/RequestStatus/{id}");
    assert_eq!(get["data"]["baseData"]["id"], read_span.as_str());
    assert_eq!(get["data"]["baseData"]["responseCode"], "302");
    let enqueue = find("RemoteDependencyData", "send work message");
    let producer_span = enqueue["data"]["baseData"]["id"].as_str().unwrap();
    let delivery = find("RequestData", "process work message");
    assert_eq!(
        parent_id(delivery),
        producer_span,
        "the delivery is the enqueue's child: {delivery}"
    );
    let props = &delivery["data"]["baseData"]["properties"];
    assert_eq!(props["dequeue_count"], "1", "{delivery}");
    assert_eq!(props["outcome"], "done", "{delivery}");
    assert!(
        props["queue_wait_ms"]
            .as_str()
            .is_some_and(|ms| ms.parse::<u64>().is_ok()),
        "{delivery}"
    );
    let storage: Vec<&&Value> = ours
        .iter()
        .filter(|e| {
            base_type(e) == "RemoteDependencyData"
                && e["data"]["baseData"]["type"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("Azure "))
        })
        .collect();
    assert!(
        storage.iter().any(|e| name(e).ends_with(" queue"))
            && storage.iter().any(|e| name(e).ends_with(" blob")),
        "storage calls to both services in the trace: {all}"
    );
    for call in &storage {
        let data = call["data"]["baseData"]["data"].as_str().unwrap_or("");
        assert!(!data.contains('?'), "a query string in {call}");
        assert!(call["data"]["baseData"]["resultCode"].is_string(), "{call}");
    }
    let metrics: Vec<&str> = envelopes
        .iter()
        .filter(|e| base_type(e) == "MetricData")
        .flat_map(|e| e["data"]["baseData"]["metrics"].as_array().unwrap().iter())
        .filter_map(|m| m["name"].as_str())
        .collect();
    for expected in [
        "operations.accepted",
        "operations.ended",
        "queue.wait",
        "operation.processing.duration",
        "operation.dequeue_count",
    ] {
        assert!(metrics.contains(&expected), "{expected} in {metrics:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_connection_string_nothing_is_sent_and_traceresponse_still_answers() {
    let ingestion = Ingestion::start().await;
    // Everything but the connection string, pointed at the endpoint where it could be.
    let mut handler = Handler::start_standalone(&[
        ("OTEL_TRACES_SAMPLER_ARG", "1"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "100"),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            &format!("https://{}", ingestion.addr),
        ),
        ("SSL_CERT_FILE", &ingestion.ca.display().to_string()),
    ])
    .await;
    let (submitted, read) = submit_and_read(&handler.base).await;
    assert_eq!(traceresponse(&submitted).0, TRACE_ID);
    assert_eq!(traceresponse(&read).0, TRACE_ID);
    stop(&mut handler).await;
    assert!(
        ingestion.requests().is_empty(),
        "{:?}",
        ingestion.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_ingestion_endpoint_costs_requests_nothing() {
    // A port nobody listens on: every upload is refused.
    let dead = connection_string_for(([127, 0, 0, 1], free_port()).into());
    let mut handler = Handler::start_standalone(&[
        ("APPLICATIONINSIGHTS_CONNECTION_STRING", dead.as_str()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "100"),
        ("SHUTDOWN_GRACE_SECONDS", "3"),
    ])
    .await;
    for _ in 0..5 {
        let started = Instant::now();
        let (submitted, _) = submit_and_read(&handler.base).await;
        assert_eq!(traceresponse(&submitted).0, TRACE_ID);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a submit and its read took {:?}",
            started.elapsed()
        );
    }
    // The flush gives up within the grace period.
    let stopping = Instant::now();
    stop(&mut handler).await;
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "{:?}",
        stopping.elapsed()
    );
}

#[test]
fn a_bad_sampling_ratio_stops_start_up_naming_the_setting() {
    for bad in ["1.5", "-1", "often"] {
        let out = handler_command()
            .env("PORT", "0")
            .env("OTEL_TRACES_SAMPLER_ARG", bad)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("OTEL_TRACES_SAMPLER_ARG"),
            "{bad}: {stderr}"
        );
    }
}

/// Spans pile up behind an upload that cannot finish; past the bound they are dropped, and the
/// handler says so in one warning, not one per span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_export_queue_drops_spans_with_one_warning() {
    let dead = connection_string_for(([127, 0, 0, 1], free_port()).into());
    let log = std::env::temp_dir().join(format!("telemetry-drops-{}.log", uuid::Uuid::new_v4()));
    let mut handler = Handler::start_standalone_logged(
        &[
            ("APPLICATIONINSIGHTS_CONNECTION_STRING", dead.as_str()),
            ("SHUTDOWN_GRACE_SECONDS", "2"),
        ],
        log.clone(),
    )
    .await;
    let http = client();
    let url = format!("{}/api/AsyncProcessingWorkAcceptor", handler.base);
    let dropped = |text: &str| text.matches("spans dropped").count();
    let mut submitted = 0;
    // Each submission makes a few spans; the bound is 2048 waiting (plus one batch in flight).
    while dropped(&std::fs::read_to_string(&log).unwrap_or_default()) == 0 {
        assert!(
            submitted < 5000,
            "no drop reported after {submitted} submissions"
        );
        let batch = (0..50).map(|i| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let r = http
                    .post(url)
                    .json(&json!({"id": i.to_string(), "customername": "C"}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202);
            }
        });
        futures::future::join_all(batch).await;
        submitted += 50;
    }
    // More drops, within the minute: still the one warning.
    for _ in 0..4 {
        let batch = (0..50).map(|_| {
            http.post(&url)
                .json(&json!({"id": "x", "customername": "C"}))
                .send()
        });
        futures::future::join_all(batch).await;
    }
    stop(&mut handler).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        dropped(&text),
        1,
        "one warning: {}",
        text.lines()
            .filter(|l| l.contains("dropped"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let line = text.lines().find(|l| l.contains("spans dropped")).unwrap();
    assert!(
        line.contains("WARN") && line.contains("dropped_spans="),
        "{line}"
    );
    let _ = std::fs::remove_file(&log);
}

/// Under the host: the forwarded submit answers in the caller's trace, and the delivery the host
/// invokes (with a `traceparent` of its own, as its .NET client adds) joins the submitter's trace
/// through the message, as the enqueue's child; the invocation request itself is not exported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_host_the_delivery_joins_the_trace_in_the_message() {
    use base64::Engine;
    const HOST_TRACE: &str = "11111111111111111111111111111111";
    let ingestion = Ingestion::start().await;
    let azurite = Azurite::shared();
    let names = Names::unique();
    let mut env = azurite.handler_settings(&names);
    env.push((
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        ingestion.connection_string(),
    ));
    env.push(("SSL_CERT_FILE", ingestion.ca.display().to_string()));
    let mut handler = Handler::start(&support::as_refs(&env)).await;
    let http = client();
    let r = http
        .post(format!("{}/api/AsyncProcessingWorkAcceptor", handler.base))
        .header("traceparent", TRACEPARENT)
        .header(
            "x-azure-functions-invocationid",
            "8d6f6a80-2e6c-4b2b-8b7e-cc0c6bde2f7a",
        )
        .json(&json!({"id": "1", "customername": "Contoso"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(traceresponse(&r).0, TRACE_ID);

    // Play the queue trigger: read the message as the host does and invoke the handler.
    let queue = azurite.queue_service().queue_client(&names.queue);
    let got = queue.get_messages().await.expect("Azurite answers");
    let text = base64::engine::general_purpose::STANDARD
        .decode(&got.messages[0].message_text)
        .unwrap();
    let text = String::from_utf8(text).unwrap();
    let r = http
        .post(format!("{}/AsyncProcessingBackgroundWorker", handler.base))
        .header(
            "traceparent",
            format!("00-{HOST_TRACE}-2222222222222222-01"),
        )
        .json(&support::host::invocation_payload(&text, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers().get("traceresponse").is_none(),
        "none for the host"
    );
    stop(&mut handler).await;

    let envelopes = ingestion.envelopes();
    let all = serde_json::to_string(&envelopes).unwrap();
    assert!(
        !all.contains(HOST_TRACE),
        "nothing in the host's trace: {all}"
    );
    assert!(
        !all.contains("/AsyncProcessingBackgroundWorker"),
        "the invocation request is not exported: {all}"
    );
    let ours = |kind: &str, what: &str| {
        envelopes
            .iter()
            .find(|e| base_type(e) == kind && name(e) == what && operation_id(e) == TRACE_ID)
            .unwrap_or_else(|| panic!("no {kind} `{what}` in the caller's trace: {all}"))
            .clone()
    };
    let enqueue = ours("RemoteDependencyData", "send work message");
    let delivery = ours("RequestData", "process work message");
    assert_eq!(
        parent_id(&delivery),
        enqueue["data"]["baseData"]["id"].as_str().unwrap()
    );
}
