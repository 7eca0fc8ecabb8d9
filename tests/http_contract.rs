//! The HTTP contract (docs/api.md sections 1 to 4), black-box against a real server on port 0,
//! run once on the in-memory backend and once on Azure Storage (Azurite).

mod support;

use std::time::Duration;

use async_request_reply::domain::operations::PoisonCopy;
use async_request_reply::domain::Status;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::app::{record, Backend, TestApp};
use support::eventually;
use support::host::{invocation_payload, queue_invocation};

const HOST_MODE: (&str, &str) = ("FUNCTIONS_CUSTOMHANDLER_PORT", "0");

support::contract!(
    root_answers_for_the_readiness_probe,
    submit_then_poll_then_fetch_the_result,
    routes_and_query_are_case_insensitive,
    bad_bodies_get_400_naming_the_field,
    other_content_types_get_415,
    oversized_bodies_get_413,
    pending_answers_202_or_200,
    stream_returns_the_result_with_type_and_length,
    unknown_and_malformed_ids,
    bad_query_values_get_400,
    queue_message_carries_the_samples_fields,
    host_invocation_processes_the_message_idempotently,
    idempotency_key_replays_and_refuses_another_body,
    cancel_a_pending_operation,
    a_permanent_failure_is_a_4xx_problem,
    transient_failures_are_retried_then_failed_on_the_last_attempt,
    undecodable_messages_do_not_loop,
    synchronous_waits_are_woken_and_bounded,
    status_monitor_follows_the_guidelines,
    large_records_travel_by_claim_check,
    operations_expire_after_retention,
    unknown_routes_and_methods_are_problems,
    a_poison_message_ends_its_operation_failed_and_is_kept,
    a_record_cannot_forge_the_hosts_metadata,
    a_message_that_shadows_the_metadata_is_not_trusted,
    standalone_gives_up_through_the_poison_queue,
    cancel_through_the_guidelines_action,
    location_can_lead_to_the_result_itself,
);

async fn json_of(r: reqwest::Response) -> Value {
    r.json().await.expect("a JSON body")
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .expect("text header")
        .to_string()
}

async fn assert_problem(r: reqwest::Response, status: u16, kind: &str) -> Value {
    assert_eq!(r.status().as_u16(), status);
    assert_eq!(header(&r, "content-type"), "application/problem+json");
    let body = json_of(r).await;
    assert_eq!(
        body["type"],
        format!("urn:async-request-reply:problem:{kind}"),
        "{body}"
    );
    assert_eq!(body["status"], status);
    assert!(body["title"].is_string() && body["detail"].is_string());
    body
}

async fn root_answers_for_the_readiness_probe(backend: Backend) {
    let app = TestApp::start(backend, &[]).await;
    let r = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

async fn submit_then_poll_then_fetch_the_result(backend: Backend) {
    let app = TestApp::start(backend, &[]).await;
    let r = app
        .submit(&json!({"id": "1234", "customername": "Contoso", "extra": [1, 2]}))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = header(&r, "location");
    let retry_after: u64 = header(&r, "retry-after").parse().unwrap();
    assert!(retry_after >= 1);
    let op_location = header(&r, "operation-location");
    let body = json_of(r).await;
    let id = body["id"].as_str().unwrap().to_string();
    assert_eq!(location, format!("{}/api/RequestStatus/{id}", app.base));
    assert_eq!(op_location, format!("{}/api/operations/{id}", app.base));
    assert_eq!(body["status"], "NotStarted");
    assert_eq!(body["statusUrl"], location);
    assert!(body["createdDateTime"].is_string());
    uuid::Uuid::parse_str(&id).unwrap();

    let done = app.poll_until_done(&location).await;
    assert_eq!(done.status(), StatusCode::FOUND);
    let result_url = header(&done, "location");
    let result = app.client.get(&result_url).send().await.unwrap();
    assert_eq!(result.status(), StatusCode::OK);
    assert!(header(&result, "content-type").starts_with("application/json"));
    let result = json_of(result).await;
    assert_eq!(result["id"], "1234");
    assert_eq!(result["customername"], "Contoso");
    assert_eq!(result["extra"], json!([1, 2]));
    assert_eq!(result["RequestGUID"], id);
    assert!(result["ProcessedAt"].is_string());
    if let Some(names) = &app.names {
        assert!(
            result_url.contains(&format!("/{}/{id}.blobdata?", names.results)),
            "{result_url}"
        );
        assert!(
            result_url.contains("sp=r") && result_url.contains("sr=b"),
            "{result_url}"
        );
    }
}

async fn routes_and_query_are_case_insensitive(backend: Backend) {
    let app = TestApp::start(backend, &[]).await;
    let r = app
        .client
        .post(app.url("/api/asyncprocessingworkacceptor"))
        .json(&record("lower"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let id = json_of(r).await["id"].as_str().unwrap().to_string();
    let lower = app.url(&format!(
        "/API/requeststatus/{}?oncomplete=STREAM",
        id.to_uppercase()
    ));
    let r = app.poll_until_done(&lower).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(json_of(r).await["id"], "lower");
}

async fn bad_bodies_get_400_naming_the_field(backend: Backend) {
    let app = TestApp::start(backend, &[]).await;
    let cases: Vec<(&str, Option<&str>)> = vec![
        (r#"{"customername":"C"}"#, Some("id")),
        (r#"{"id":"","customername":"C"}"#, Some("id")),
        (r#"{"id":7,"customername":"C"}"#, Some("id")),
        (r#"{"id":"1"}"#, Some("customername")),
        (r#"{"id":"1","customername":["C"]}"#, Some("customername")),
        (r#"[{"id":"1","customername":"C"}]"#, None),
        (r#"{"id":"1","customername":"C""#, None),
        ("", None),
        ("null", None),
    ];
    for (body, field) in cases {
        let r = app
            .client
            .post(app.url("/api/AsyncProcessingWorkAcceptor"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let p = assert_problem(r, 400, "invalid-request").await;
        match field {
            Some(f) => assert_eq!(p["field"], f, "{body}"),
            None => assert!(p.get("field").is_none(), "{body}"),
        }
    }
    // An empty POST as the Functions host forwards it: no body, so no Content-Type either.
    let r = app
        .client
        .post(app.url("/api/AsyncProcessingWorkAcceptor"))
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    let p = assert_problem(r, 400, "invalid-request").await;
    assert!(p["detail"].as_str().unwrap().contains("empty"), "{p}");
}

async fn other_content_types_get_415(backend: Backend) {
    let app = TestApp::start(backend, &[]).await;
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut req = app
            .client
            .post(app.url("/api/AsyncProcessingWorkAcceptor"))
            .body(r#"{"id":"1","customername":"C"}"#);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        assert_problem(req.send().await.unwrap(), 415, "unsupported-media-type").await;
    }
}

async fn oversized_bodies_get_413(backend: Backend) {
    let app = TestApp::start(backend, &[("MAX_BODY_BYTES", "2048")]).await;
    let big = json!({"id": "1", "customername": "x".repeat(4096)});
    let p = assert_problem(app.submit(&big).await, 413, "payload-too-large").await;
    assert_eq!(p["limit"], 2048);
    // Without a Content-Length (chunked), the limit still holds.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![
        Ok(b"{\"id\":\"1\",\"customername\":\"".to_vec()),
        Ok(vec![b'x'; 4096]),
        Ok(b"\"}".to_vec()),
    ];
    let r = app
        .client
        .post(app.url("/api/AsyncProcessingWorkAcceptor"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_problem(r, 413, "payload-too-large").await;
}

async fn pending_answers_202_or_200(backend: Backend) {
    // Under the host nobody processes the message, so the operation stays pending.
    let app = TestApp::start(backend, &[HOST_MODE, ("RETRY_AFTER_SECONDS", "3")]).await;
    let r = app.submit(&record("p")).await;
    let location = header(&r, "location");
    let r = app.client.get(&location).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&r, "location"), location);
    assert_eq!(header(&r, "retry-after"), "3");
    assert_eq!(header(&r, "cache-control"), "no-store");
    assert_eq!(json_of(r).await["status"], "NotStarted");
    let r = app
        .client
        .get(format!("{location}?OnPending=OK"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "location"), location);
    let body = json_of(r).await;
    assert_eq!(body["status"], "NotStarted");
    assert_eq!(body["statusUrl"], location);
}

async fn stream_returns_the_result_with_type_and_length(backend: Backend) {
    let app = TestApp::start(backend, &[]).await;
    let location = header(&app.submit(&record("s")).await, "location");
    let r = app
        .poll_until_done(&format!("{location}?OnComplete=Stream"))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-type"), "application/json");
    let len: usize = header(&r, "content-length").parse().unwrap();
    let bytes = r.bytes().await.unwrap();
    assert_eq!(bytes.len(), len);
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["id"], "s");
}

async fn unknown_and_malformed_ids(backend: Backend) {
    let app = TestApp::start(backend, &[]).await;
    let unknown = uuid::Uuid::new_v4();
    for path in [
        format!("/api/RequestStatus/{unknown}"),
        format!("/api/operations/{unknown}"),
    ] {
        let r = app.client.get(app.url(&path)).send().await.unwrap();
        assert_problem(r, 404, "operation-not-found").await;
    }
    let r = app
        .client
        .delete(app.url(&format!("/api/RequestStatus/{unknown}")))
        .send()
        .await
        .unwrap();
    assert_problem(r, 404, "operation-not-found").await;
    for bad in [
        "not-a-uuid",
        "..%2F..%2Fetc",
        "00000000000000000000000000000000",
        "%7B00000000-0000-0000-0000-000000000000%7D",
    ] {
        let r = app
            .client
            .get(app.url(&format!("/api/RequestStatus/{bad}")))
            .send()
            .await
            .unwrap();
        assert_problem(r, 400, "invalid-operation-id").await;
    }
}

async fn bad_query_values_get_400(backend: Backend) {
    let app = TestApp::start(backend, &[HOST_MODE]).await;
    let location = header(&app.submit(&record("q")).await, "location");
    for q in [
        "OnComplete=Later",
        "OnPending=Maybe",
        "OnPending=",
        "OnPending=OK&OnPending=Accepted",
    ] {
        let r = app
            .client
            .get(format!("{location}?{q}"))
            .send()
            .await
            .unwrap();
        let p = assert_problem(r, 400, "invalid-query").await;
        assert!(p["parameter"].is_string());
    }
    // Unknown parameters, such as a function key, are ignored.
    let r = app
        .client
        .get(format!("{location}?code=abc&onpending=ok"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

async fn queue_message_carries_the_samples_fields(backend: Backend) {
    let app = TestApp::start(backend, &[HOST_MODE]).await;
    let r = app
        .submit(&json!({"id": "m1", "customername": "Contoso", "note": "kept"}))
        .await;
    let location = header(&r, "location");
    let id = json_of(r).await["id"].as_str().unwrap().to_string();
    let got = app
        .storage
        .queue
        .receive(32, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].dequeue_count, 1);
    let m: Value = serde_json::from_str(&got[0].text).unwrap();
    // The record is nested, so none of its fields reaches the host's Metadata.
    assert_eq!(m["RequestRecord"]["id"], "m1");
    assert_eq!(m["RequestRecord"]["customername"], "Contoso");
    assert_eq!(m["RequestRecord"]["note"], "kept");
    assert_eq!(m["RequestGUID"], id);
    assert_eq!(m["RequestStatusURL"], location);
    assert!(m["RequestSubmittedAt"].as_str().unwrap().ends_with('Z'));
}

/// Takes the one message from the queue, as the host would.
async fn take_message(app: &TestApp) -> String {
    let got = app
        .storage
        .queue
        .receive(32, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(got.len(), 1, "exactly one message queued");
    app.storage.queue.delete(&got[0].receipt).await.unwrap();
    got[0].text.clone()
}

async fn invoke(app: &TestApp, text: &str, dequeue_count: u32) -> reqwest::Response {
    post_invocation(app, &invocation_payload(text, dequeue_count)).await
}

/// Posts an invocation payload to the work queue's function, as the host does.
async fn post_invocation(app: &TestApp, payload: &Value) -> reqwest::Response {
    app.client
        .post(app.url("/AsyncProcessingBackgroundWorker"))
        .json(payload)
        .send()
        .await
        .unwrap()
}

async fn assert_invocation_ok(r: reqwest::Response) {
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-type"), "application/json");
    let body = json_of(r).await;
    assert!(
        body["Outputs"].is_object() && body["Logs"].is_array(),
        "{body}"
    );
    assert!(body.as_object().unwrap().contains_key("ReturnValue"));
}

async fn host_invocation_processes_the_message_idempotently(backend: Backend) {
    let app = TestApp::start(backend, &[HOST_MODE]).await;
    let location = header(&app.submit(&record("h")).await, "location");
    let text = take_message(&app).await;
    assert_invocation_ok(invoke(&app, &text, 1).await).await;
    let first = app
        .client
        .get(format!("{location}?OnComplete=Stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let first = first.bytes().await.unwrap();
    // A redelivery (and two at once, as two instances would) changes nothing.
    let (a, b) = tokio::join!(invoke(&app, &text, 2), invoke(&app, &text, 2));
    assert_invocation_ok(a).await;
    assert_invocation_ok(b).await;
    let again = app
        .client
        .get(format!("{location}?OnComplete=Stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.bytes().await.unwrap(), first);
    // The standalone-only invocation route does not exist off the host.
    let standalone = TestApp::start(Backend::Memory, &[]).await;
    let r = invoke(&standalone, &text, 1).await;
    assert_problem(r, 404, "route-not-found").await;
}

async fn idempotency_key_replays_and_refuses_another_body(backend: Backend) {
    let app = TestApp::start(backend, &[HOST_MODE]).await;
    let send = |body: Value, key: &'static str| {
        app.client
            .post(app.url("/api/AsyncProcessingWorkAcceptor"))
            .header("idempotency-key", key)
            .json(&body)
            .send()
    };
    let first = send(record("i"), "key-1").await.unwrap();
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first_location = header(&first, "location");
    // Same body, keys in another order: the same operation.
    let again = send(json!({"customername": "Contoso", "id": "i"}), "key-1")
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&again, "location"), first_location);
    let got = app
        .storage
        .queue
        .receive(32, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(got.len(), 1, "nothing enqueued twice");
    let other = send(record("different"), "key-1").await.unwrap();
    assert_problem(other, 422, "idempotency-key-reused").await;
    let bad = app
        .client
        .post(app.url("/api/AsyncProcessingWorkAcceptor"))
        .header("idempotency-key", "x".repeat(300))
        .json(&record("i"))
        .send()
        .await
        .unwrap();
    assert_problem(bad, 400, "invalid-request").await;
}

async fn cancel_a_pending_operation(backend: Backend) {
    let app = TestApp::start(backend, &[HOST_MODE]).await;
    let location = header(&app.submit(&record("c")).await, "location");
    let r = app.client.delete(&location).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(json_of(r).await["status"], "Canceled");
    let p = assert_problem(
        app.client.get(&location).send().await.unwrap(),
        410,
        "operation-canceled",
    )
    .await;
    assert_eq!(p["operationStatus"], "Canceled");
    let again = app.client.delete(&location).send().await.unwrap();
    assert_problem(again, 409, "operation-ended").await;
    // The worker skips it: no result appears.
    let text = take_message(&app).await;
    assert_invocation_ok(invoke(&app, &text, 1).await).await;
    assert_problem(
        app.client.get(&location).send().await.unwrap(),
        410,
        "operation-canceled",
    )
    .await;
}

async fn a_permanent_failure_is_a_4xx_problem(backend: Backend) {
    let app = TestApp::start(backend, &[]).await;
    let r = app
        .submit(&json!({"id": "f", "customername": "C", "simulateFailure": "permanent"}))
        .await;
    let location = header(&r, "location");
    let monitor = header(&r, "operation-location");
    let r = app.poll_until_done(&location).await;
    let p = assert_problem(r, 422, "operation-failed").await;
    assert_eq!(p["operationStatus"], "Failed");
    assert_eq!(p["error"]["code"], "WorkFailed");
    let m = json_of(app.client.get(&monitor).send().await.unwrap()).await;
    assert_eq!(m["status"], "Failed");
    assert_eq!(m["error"]["code"], "WorkFailed");
    let r = app.client.delete(&location).send().await.unwrap();
    assert_problem(r, 409, "operation-ended").await;
}

async fn transient_failures_are_retried_then_failed_on_the_last_attempt(backend: Backend) {
    let app = TestApp::start(backend, &[HOST_MODE, ("MAX_DEQUEUE_COUNT", "3")]).await;
    let r = app
        .submit(&json!({"id": "t", "customername": "C", "simulateFailure": "transient"}))
        .await;
    let location = header(&r, "location");
    let text = take_message(&app).await;
    for attempt in 1..3 {
        let r = invoke(&app, &text, attempt).await;
        assert!(
            r.status().is_server_error(),
            "attempt {attempt} asks for a retry"
        );
        // Quick work that failed wrote no `Running` (see RUNNING_AFTER_MS): it waits for its
        // retry as it was.
        assert_eq!(
            json_of(app.client.get(&location).send().await.unwrap()).await["status"],
            "NotStarted"
        );
    }
    // The last attempt fails the operation, and still answers as a failed invocation: the host
    // moves the message to the poison queue, as it does with every message it gives up on.
    let r = invoke(&app, &text, 3).await;
    assert!(
        r.status().is_server_error(),
        "the last attempt goes to poison"
    );
    assert_failed(&app, &location, "RetriesExhausted").await;
    // The poison function finds it ended, keeps a copy, and completes.
    assert_invocation_ok(invoke_poison(&app, &text).await).await;
    let copies = poison_copies(&app).await;
    assert_eq!(copies.len(), 1);
    assert_eq!(copies[0].status, Some(Status::Failed));
    assert_eq!(copies[0].last_error.code, "RetriesExhausted");
}

/// Asserts that the status URL answers the failure problem with this error code.
async fn assert_failed(app: &TestApp, location: &str, code: &str) {
    let r = app.client.get(location).send().await.unwrap();
    let p = assert_problem(r, 422, "operation-failed").await;
    assert_eq!(p["error"]["code"], code, "{p}");
}

async fn invoke_poison(app: &TestApp, text: &str) -> reqwest::Response {
    app.client
        .post(app.url("/AsyncProcessingPoisonWorker"))
        .json(&queue_invocation(
            "AsyncProcessingPoisonWorker",
            "poisonQueueItem",
            text,
            1,
        ))
        .send()
        .await
        .unwrap()
}

async fn poison_copies(app: &TestApp) -> Vec<PoisonCopy> {
    let service = &app.app.as_ref().expect("running").service;
    service.poison_copies().await.expect("storage answers")
}

async fn a_poison_message_ends_its_operation_failed_and_is_kept(backend: Backend) {
    let app = TestApp::start(backend, &[HOST_MODE]).await;
    let r = app.submit(&record("p")).await;
    let location = header(&r, "location");
    let id = json_of(r).await["id"].as_str().unwrap().to_string();
    // As after a crash on the last attempt: the host moves the message without calling the
    // work function, and the poison function is the first to hear of it.
    let text = take_message(&app).await;
    assert_invocation_ok(invoke_poison(&app, &text).await).await;
    assert_failed(&app, &location, "RetriesExhausted").await;
    // Delivered twice: the same outcome, one copy.
    assert_invocation_ok(invoke_poison(&app, &text).await).await;
    let copies = poison_copies(&app).await;
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(copies[0].operation_id.map(|i| i.to_string()), Some(id));
    assert_eq!(copies[0].text, text);
    assert_eq!(copies[0].last_error.code, "RetriesExhausted");
    // Anything at all on the poison queue completes (it has no poison queue), with a copy.
    for junk in ["not json", "[]", r#"{"RequestGUID":"nope"}"#] {
        assert_invocation_ok(invoke_poison(&app, junk).await).await;
    }
    let copies = poison_copies(&app).await;
    assert_eq!(copies.len(), 4);
    assert!(copies
        .iter()
        .filter(|c| c.operation_id.is_none())
        .all(|c| c.last_error.code == "InvalidMessage"));
}

async fn a_record_cannot_forge_the_hosts_metadata(backend: Backend) {
    let app = TestApp::start(backend, &[HOST_MODE, ("MAX_DEQUEUE_COUNT", "3")]).await;
    let forged = json!({
        "id": "x", "customername": "C", "simulateFailure": "transient",
        "DequeueCount": 1, "dequeuecount": "1", "Id": "forged", "PopReceipt": "forged",
        "sys": {"MethodName": "forged"},
    });
    let r = app.submit(&forged).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = header(&r, "location");
    let text = take_message(&app).await;
    for attempt in 1..=3 {
        let payload = queue_invocation(
            "AsyncProcessingBackgroundWorker",
            "myQueueItem",
            &text,
            attempt,
        );
        assert_eq!(
            payload["Metadata"]["DequeueCount"],
            attempt.to_string(),
            "the host's own count reaches the handler"
        );
        let r = post_invocation(&app, &payload).await;
        assert!(r.status().is_server_error(), "attempt {attempt}");
    }
    assert_failed(&app, &location, "RetriesExhausted").await;
}

async fn a_message_that_shadows_the_metadata_is_not_trusted(backend: Backend) {
    let app = TestApp::start(backend, &[HOST_MODE, ("MAX_DEQUEUE_COUNT", "3")]).await;
    let r = app
        .submit(&json!({"id": "l", "customername": "C", "simulateFailure": "transient"}))
        .await;
    let location = header(&r, "location");
    let id = json_of(r).await["id"].as_str().unwrap().to_string();
    take_message(&app).await;
    // A message in the flat layout (written before records were nested) whose record says
    // `DequeueCount: 3`: the host's merge puts that in Metadata on the first delivery.
    let flat = json!({
        "RequestGUID": id, "RequestSubmittedAt": "2026-11-24T10:00:00Z",
        "RequestStatusURL": location, "id": "l", "customername": "C",
        "simulateFailure": "transient", "dequeuecount": 3,
    })
    .to_string();
    let payload = queue_invocation("AsyncProcessingBackgroundWorker", "myQueueItem", &flat, 1);
    assert_eq!(
        payload["Metadata"]["DequeueCount"], "\"3\"",
        "the host's merge"
    );
    let r = post_invocation(&app, &payload).await;
    assert!(r.status().is_server_error());
    assert_eq!(
        json_of(app.client.get(&location).send().await.unwrap()).await["status"],
        "Running",
        "a forged count is not taken for the last attempt"
    );
}

async fn standalone_gives_up_through_the_poison_queue(backend: Backend) {
    let app = TestApp::start(
        backend,
        &[
            ("MAX_DEQUEUE_COUNT", "2"),
            ("VISIBILITY_TIMEOUT_SECONDS", "1"),
        ],
    )
    .await;
    let r = app
        .submit(&json!({"id": "s", "customername": "C", "simulateFailure": "transient"}))
        .await;
    let location = header(&r, "location");
    let p = assert_problem(
        app.poll_until_done(&location).await,
        422,
        "operation-failed",
    )
    .await;
    assert_eq!(p["error"]["code"], "RetriesExhausted");
    // The worker's poison loop takes the dead-lettered message and keeps its copy.
    let copies = eventually(
        "a poison copy",
        Duration::from_millis(50),
        Duration::from_secs(30),
        async || Some(poison_copies(&app).await).filter(|c| !c.is_empty()),
    )
    .await;
    assert_eq!(copies.len(), 1);
    assert_eq!(copies[0].status, Some(Status::Failed));
    // And deletes it (a message this look happens to receive comes back after a second, and
    // the loop handles it again, finding its copy kept).
    let poison = app.storage.queue.poison().expect("a poison queue");
    eventually(
        "the poison queue's draining",
        Duration::from_millis(50),
        Duration::from_secs(30),
        async || {
            poison
                .receive(32, Duration::from_secs(1))
                .await
                .unwrap()
                .is_empty()
        },
    )
    .await;
}

async fn cancel_through_the_guidelines_action(backend: Backend) {
    let app = TestApp::start(backend, &[HOST_MODE]).await;
    for colon in [":cancel", "%3ACancel"] {
        let r = app.submit(&record("k")).await;
        let monitor = header(&r, "operation-location");
        let r = app
            .client
            .post(format!("{monitor}{colon}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{colon}");
        assert_eq!(json_of(r).await["status"], "Canceled");
        let again = app
            .client
            .post(format!("{monitor}{colon}"))
            .send()
            .await
            .unwrap();
        assert_problem(again, 409, "operation-ended").await;
        let r = app
            .client
            .get(format!("{monitor}{colon}"))
            .send()
            .await
            .unwrap();
        assert_problem(r, 405, "method-not-allowed").await;
    }
    let unknown = app.url(&format!("/api/operations/{}:cancel", uuid::Uuid::new_v4()));
    assert_problem(
        app.client.post(unknown).send().await.unwrap(),
        404,
        "operation-not-found",
    )
    .await;
}

async fn location_can_lead_to_the_result_itself(backend: Backend) {
    let app = TestApp::start(backend, &[("LOCATION_STREAMS_RESULT", "true")]).await;
    let r = app.submit(&record("loc")).await;
    let location = header(&r, "location");
    assert!(location.ends_with("?OnComplete=Stream"), "{location}");
    // A client that follows Location until the first answer that is not 202.
    let r = app.poll_until_done(&location).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(json_of(r).await["id"], "loc");
}

async fn undecodable_messages_do_not_loop(backend: Backend) {
    let app = TestApp::start(backend, &[HOST_MODE]).await;
    // Nothing identifies an operation: answered 200 (dropped with a log line), not retried.
    for junk in ["not json", "[]", r#"{"RequestGUID":"nope"}"#] {
        assert_invocation_ok(invoke(&app, junk, 1).await).await;
    }
    // An identifiable operation with a broken message ends Failed at once.
    let r = app.submit(&record("u")).await;
    let location = header(&r, "location");
    let id = json_of(r).await["id"].as_str().unwrap().to_string();
    take_message(&app).await;
    let broken = json!({"RequestGUID": id, "RequestSubmittedAt": "2026-11-24T10:00:00Z", "RequestStatusURL": location, "customername": "no id"});
    assert_invocation_ok(invoke(&app, &broken.to_string(), 1).await).await;
    assert_failed(&app, &location, "InvalidMessage").await;
    // A payload that is no invocation at all is refused (the host retries, then poisons it).
    let r = app
        .client
        .post(app.url("/AsyncProcessingBackgroundWorker"))
        .json(&json!({"nope": 1}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 400, "invalid-request").await;
}

async fn synchronous_waits_are_woken_and_bounded(backend: Backend) {
    // Standalone with a slow worker: the wait is woken by completion, long before its bound.
    let app = TestApp::start(
        backend,
        &[("PROCESSING_DELAY_MS", "300"), ("SYNC_POLL_MS", "60000")],
    )
    .await;
    let location = header(&app.submit(&record("w")).await, "location");
    let r = app
        .client
        .get(format!("{location}?OnPending=Synchronous"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::FOUND,
        "answered once done, without polling"
    );
    // Under the host nobody works on it: the wait gives up at its bound with a 202.
    let host = TestApp::start(backend, &[HOST_MODE, ("SYNC_WAIT_SECONDS", "1")]).await;
    let location = header(&host.submit(&record("w2")).await, "location");
    let r = host
        .client
        .get(format!("{location}?onpending=synchronous"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

async fn status_monitor_follows_the_guidelines(backend: Backend) {
    let app = TestApp::start(backend, &[HOST_MODE]).await;
    let r = app.submit(&record("mon")).await;
    let monitor = header(&r, "operation-location");
    let location = header(&r, "location");
    let r = app.client.get(&monitor).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "retry-after"), "1");
    let m = json_of(r).await;
    for field in [
        "id",
        "status",
        "createdDateTime",
        "lastUpdatedDateTime",
        "expirationDateTime",
    ] {
        assert!(m[field].is_string(), "{field} in {m}");
    }
    assert_eq!(m["status"], "NotStarted");
    assert!(m.get("resourceLocation").is_none());
    let text = take_message(&app).await;
    assert_invocation_ok(invoke(&app, &text, 1).await).await;
    let r = app.client.get(&monitor).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().get("retry-after").is_none());
    let m = json_of(r).await;
    assert_eq!(m["status"], "Succeeded");
    assert_eq!(m["resourceLocation"], location);
}

async fn large_records_travel_by_claim_check(backend: Backend) {
    let app = TestApp::start(backend, &[HOST_MODE]).await;
    let big = "x".repeat(200 * 1024);
    let location = header(
        &app.submit(&json!({"id": "big", "customername": "C", "blob": big}))
            .await,
        "location",
    );
    let text = take_message(&app).await;
    assert!(
        text.len() < 4096,
        "the message carries a reference, not the payload"
    );
    assert!(text.contains("RequestPayloadRef"));
    assert_invocation_ok(invoke(&app, &text, 1).await).await;
    let r = app
        .client
        .get(format!("{location}?OnComplete=Stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(json_of(r).await["blob"].as_str().unwrap().len(), 200 * 1024);
}

async fn operations_expire_after_retention(backend: Backend) {
    let app = TestApp::start(
        backend,
        &[("RETENTION_SECONDS", "1"), ("PURGE_INTERVAL_SECONDS", "1")],
    )
    .await;
    let r = app.submit(&record("e")).await;
    let location = header(&r, "location");
    let body = json_of(r).await;
    let created = time::OffsetDateTime::parse(
        body["createdDateTime"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let expires = time::OffsetDateTime::parse(
        body["expirationDateTime"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(expires - created, time::Duration::seconds(1));
    // Bounded poll: the id must answer 404 soon after its retention.
    let r = eventually(
        "a 404 after retention",
        Duration::from_millis(100),
        Duration::from_secs(10),
        async || {
            let r = app.client.get(&location).send().await.unwrap();
            (r.status() == StatusCode::NOT_FOUND).then_some(r)
        },
    )
    .await;
    assert_problem(r, 404, "operation-not-found").await;
}

async fn unknown_routes_and_methods_are_problems(backend: Backend) {
    let app = TestApp::start(backend, &[]).await;
    let r = app
        .client
        .get(app.url("/api/nothing-here"))
        .send()
        .await
        .unwrap();
    assert_problem(r, 404, "route-not-found").await;
    let r = app
        .client
        .get(app.url("/api/AsyncProcessingWorkAcceptor"))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "allow"), "POST");
    assert_problem(r, 405, "method-not-allowed").await;
    let r = app
        .client
        .put(app.url(&format!("/api/RequestStatus/{}", uuid::Uuid::new_v4())))
        .send()
        .await
        .unwrap();
    assert_problem(r, 405, "method-not-allowed").await;
}
