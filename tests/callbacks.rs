//! Completion callbacks, black-box: a real receiver on loopback checks every header and the
//! signature, fails the first deliveries on purpose (503, 429 with Retry-After, a dropped
//! connection) and sees exactly the events it should, on both backends, standalone and under
//! the host's invocation protocol, from every path that ends an operation (the work's success
//! and failure, a cancel, the last attempt, the poison function); a Callback-Url that could reach inside is refused; a 410
//! stops delivery; and the callback survives a `kill -9` between the end and its delivery.

mod support;

use std::time::Duration;

use async_request_reply::domain::ports::{Delivery, WorkQueue};
use serde_json::{json, Value};
use support::app::{record, Backend, TestApp};
use support::azurite::{Azurite, Names};
use support::host::{queue_invocation, Handler};
use support::receiver::{signed_by, Received, Receiver, Reply};
use support::{as_refs, contract, eventually};

/// The Standard Webhooks specification's example secret, and a second for rotation.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const PREVIOUS: &str = "whsec_cGxlbnR5LW9mLWJ5dGVzLWZvci1hLWtleQ==";

const LIMIT: Duration = Duration::from_secs(30);

/// Settings that let the test's receiver on 127.0.0.1 be called, sign with both secrets, and
/// retry quickly (the defaults wait minutes).
fn settings() -> Vec<(&'static str, String)> {
    vec![
        ("CALLBACK_ALLOWED_HOSTS", "127.0.0.1".into()),
        ("CALLBACK_SIGNING_SECRET", SECRET.into()),
        ("CALLBACK_SIGNING_SECRET_PREVIOUS", PREVIOUS.into()),
        ("CALLBACK_RETRY_DELAY_MS", "100".into()),
        ("CALLBACK_MAX_RETRY_DELAY_SECONDS", "2".into()),
        ("CALLBACK_TIMEOUT_SECONDS", "5".into()),
        ("QUEUE_MAX_POLL_MS", "200".into()),
    ]
}

async fn start(backend: Backend, extra: &[(&'static str, &str)]) -> TestApp {
    let mut env = settings();
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    TestApp::start(backend, &as_refs(&env)).await
}

/// Submits `body` with a `Callback-Url`; answers the operation id.
async fn submit_with_callback(app: &TestApp, body: &Value, url: &str) -> String {
    let r = app
        .client
        .post(app.url("/api/AsyncProcessingWorkAcceptor"))
        .header("Callback-Url", url)
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["callback"]["state"], "pending", "{body}");
    body["id"].as_str().unwrap().to_string()
}

async fn monitor(app: &TestApp, id: &str) -> Value {
    let r = app
        .client
        .get(app.url(&format!("/api/operations/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// Waits (bounded) until the monitor shows the callback `state`; answers the document.
async fn callback_state(app: &TestApp, id: &str, state: &str) -> Value {
    eventually(
        format_args!("the callback of {id} being {state}"),
        Duration::from_millis(20),
        LIMIT,
        async || {
            let doc = monitor(app, id).await;
            (doc["callback"]["state"] == state).then_some(doc)
        },
    )
    .await
}

/// Every header and the body of one delivery, as a Standard Webhooks receiver checks them.
fn check_delivery(app: &TestApp, r: &Received, id: &str, event_type: &str) -> Value {
    assert_eq!(r.method, "POST");
    assert_eq!(r.header("content-type"), "application/cloudevents+json");
    assert!(signed_by(r, SECRET), "signed with the current secret");
    assert!(
        signed_by(r, PREVIOUS),
        "and with the previous one, while rotating"
    );
    assert_eq!(r.header("webhook-signature").split(' ').count(), 2);
    let timestamp: i64 = r.header("webhook-timestamp").parse().expect("Unix seconds");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!((now - timestamp).abs() < 300, "a fresh timestamp");
    let event = r.json();
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["id"], r.header("webhook-id"));
    assert_eq!(event["type"], event_type);
    assert_eq!(event["subject"], id);
    assert_eq!(event["source"], app.base.as_str());
    assert_eq!(event["datacontenttype"], "application/json");
    let time = event["time"].as_str().unwrap();
    time::OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339).unwrap();
    let data = &event["data"];
    assert_eq!(data["id"], id);
    assert_eq!(
        data["operationLocation"],
        app.url(&format!("/api/operations/{id}"))
    );
    assert!(
        data.get("callback").is_none(),
        "data describes the operation"
    );
    event
}

async fn a_signed_event_arrives_once_after_failed_attempts(backend: Backend) {
    let app = start(backend, &[]).await;
    let receiver = Receiver::start(vec![
        Reply::status(503),
        Reply::Status(429, vec![("Retry-After", "1".into())]),
        Reply::Drop,
    ])
    .await;
    let url = format!("{}/hooks/done?token=abc", receiver.base);
    let id = submit_with_callback(&app, &record("1"), &url).await;
    let got = receiver.delivered(&id, LIMIT).await;
    let answers: Vec<Option<u16>> = got.iter().map(|r| r.answered).collect();
    assert_eq!(answers, [Some(503), Some(429), None, Some(200)]);
    let first = check_delivery(&app, &got[0], &id, "AsyncRequestReply.Operation.Succeeded");
    for r in &got {
        assert_eq!(r.target, "/hooks/done?token=abc");
        let event = check_delivery(&app, r, &id, "AsyncRequestReply.Operation.Succeeded");
        assert_eq!(
            event, first,
            "the same event, with the same webhook-id, on every attempt"
        );
    }
    assert_eq!(first["data"]["status"], "Succeeded");
    let after_429 = got[2].at - got[1].at;
    println!(
        "callback attempts: gaps {:?}",
        got.windows(2)
            .map(|w| w[1].at - w[0].at)
            .collect::<Vec<_>>()
    );
    assert!(
        after_429 >= Duration::from_millis(950),
        "Retry-After: 1 is honoured ({after_429:?})"
    );
    let doc = callback_state(&app, &id, "delivered").await;
    assert_eq!(doc["callback"]["attempts"], 4, "{doc}");
    assert!(doc["callback"].get("lastError").is_none(), "{doc}");
    let all = receiver.for_operation(&id);
    assert_eq!(all.len(), 4, "nothing after the delivery");
    assert_eq!(all.iter().filter(|r| r.is_2xx()).count(), 1);
}

async fn every_ending_path_announces_its_end(backend: Backend) {
    let app = start(backend, &[("PROCESSING_DELAY_MS", "3000")]).await;
    let receiver = Receiver::start(vec![]).await;
    let url = format!("{}/hook", receiver.base);
    let failed = json!({"id": "2", "customername": "C", "simulateFailure": "permanent"});
    let failed = submit_with_callback(&app, &failed, &url).await;
    let canceled = submit_with_callback(&app, &record("3"), &url).await;
    let r = app
        .client
        .delete(app.url(&format!("/api/RequestStatus/{canceled}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for (id, status) in [(&failed, "Failed"), (&canceled, "Canceled")] {
        let got = receiver.delivered(id, LIMIT).await;
        assert_eq!(got.len(), 1, "{status}: one delivery");
        let event = check_delivery(
            &app,
            &got[0],
            id,
            &format!("AsyncRequestReply.Operation.{status}"),
        );
        assert_eq!(event["data"]["status"], status);
        callback_state(&app, id, "delivered").await;
    }
    let event = receiver.for_operation(&failed)[0].json();
    assert_eq!(event["data"]["error"]["code"], "WorkFailed");
    // The canceled operation's work runs on and ends; its end is not announced again.
    app.poll_until_done(&app.url(&format!("/api/RequestStatus/{failed}")))
        .await;
    assert_eq!(receiver.for_operation(&canceled).len(), 1);
}

async fn a_receiver_answering_410_is_not_called_again(backend: Backend) {
    let app = start(backend, &[]).await;
    let receiver = Receiver::start(vec![Reply::status(410)]).await;
    let url = format!("{}/gone", receiver.base);
    let gone = submit_with_callback(&app, &record("4"), &url).await;
    let doc = callback_state(&app, &gone, "failed").await;
    assert_eq!(
        doc["callback"]["lastError"]["code"], "ReceiverGone",
        "{doc}"
    );
    assert_eq!(doc["callback"]["attempts"], 1);
    // A second operation's delivery to the same receiver, as a barrier: the first one's
    // callback, settled, is never tried again meanwhile.
    let next = submit_with_callback(&app, &record("5"), &url).await;
    receiver.delivered(&next, LIMIT).await;
    assert_eq!(receiver.for_operation(&gone).len(), 1);
}

async fn callback_urls_that_could_reach_inside_are_refused(backend: Backend) {
    // No CALLBACK_ALLOWED_HOSTS: loopback is as forbidden as any internal address.
    let app = TestApp::start(backend, &[]).await;
    for url in [
        "http://127.0.0.1:9/hook",
        "https://127.0.0.1/hook",
        "https://10.0.0.5/hook",
        "https://192.168.0.1/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hook",
        "https://[::ffff:10.0.0.1]/hook",
        "https://localhost/hook",
        "http://example.com/hook",
        "ftp://example.com/hook",
        "/relative/hook",
        "https://user:secret@example.com/hook",
    ] {
        let r = app
            .client
            .post(app.url("/api/AsyncProcessingWorkAcceptor"))
            .header("Callback-Url", url)
            .json(&record("6"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{url}");
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "{url}"
        );
        let problem: Value = r.json().await.unwrap();
        assert_eq!(problem["field"], "Callback-Url", "{url}: {problem}");
        assert!(!problem["detail"].as_str().unwrap().contains("secret"));
    }
    let r = app
        .client
        .post(app.url("/api/AsyncProcessingWorkAcceptor"))
        .header("Callback-Url", "https://example.com/hook")
        .header("Callback-Events", "progress")
        .json(&record("7"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let problem: Value = r.json().await.unwrap();
    assert_eq!(problem["field"], "Callback-Events");
    // Nothing was accepted: no work was queued.
    let queued = app
        .storage
        .queue
        .receive(32, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(queued.is_empty(), "{} messages queued", queued.len());
}

/// Takes the next message off `queue` (bounded), as the host's queue trigger does.
async fn take_one(queue: &dyn WorkQueue, what: &str) -> Delivery {
    eventually(
        format_args!("a message on the {what} queue"),
        Duration::from_millis(50),
        LIMIT,
        async || {
            let mut got = queue.receive(1, Duration::from_secs(60)).await.unwrap();
            got.pop()
        },
    )
    .await
}

/// Posts one queue message to `function` as the host would, and answers the status.
async fn invoke(app: &TestApp, function: &str, binding: &str, delivery: &Delivery) -> u16 {
    let payload = queue_invocation(function, binding, &delivery.text, delivery.dequeue_count);
    let r = app
        .client
        .post(app.url(&format!("/{function}")))
        .json(&payload)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    assert!(body["Logs"].is_array(), "{body}");
    status
}

async fn under_the_host_each_attempt_is_one_invocation(backend: Backend) {
    let app = start(backend, &[("FUNCTIONS_CUSTOMHANDLER_PORT", "0")]).await;
    let receiver = Receiver::start(vec![Reply::status(503)]).await;
    let id = submit_with_callback(&app, &record("8"), &format!("{}/h", receiver.base)).await;
    let work = take_one(app.storage.queue.as_ref(), "work").await;
    let status = invoke(
        &app,
        "AsyncProcessingBackgroundWorker",
        "myQueueItem",
        &work,
    )
    .await;
    assert_eq!(status, 200);
    app.storage.queue.delete(&work.receipt).await.unwrap();
    // The first attempt: the receiver fails it, and the invocation still answers 200 (the
    // host's retries are far too quick for webhooks): the next attempt is queued, delayed.
    let first = take_one(app.storage.callbacks.as_ref(), "callbacks").await;
    let status = invoke(
        &app,
        "AsyncProcessingCallbackWorker",
        "callbackQueueItem",
        &first,
    )
    .await;
    assert_eq!(status, 200);
    app.storage.callbacks.delete(&first.receipt).await.unwrap();
    assert_eq!(receiver.for_operation(&id).len(), 1);
    let doc = monitor(&app, &id).await;
    assert_eq!(doc["callback"]["state"], "pending", "{doc}");
    assert_eq!(
        doc["callback"]["lastError"]["code"], "ReceiverUnavailable",
        "{doc}"
    );
    let second = take_one(app.storage.callbacks.as_ref(), "callbacks").await;
    assert_eq!(
        second.dequeue_count, 1,
        "a new message, not the host's retry"
    );
    let status = invoke(
        &app,
        "AsyncProcessingCallbackWorker",
        "callbackQueueItem",
        &second,
    )
    .await;
    assert_eq!(status, 200);
    app.storage.callbacks.delete(&second.receipt).await.unwrap();
    let got = receiver.delivered(&id, LIMIT).await;
    assert_eq!(got.len(), 2);
    for r in &got {
        check_delivery(&app, r, &id, "AsyncRequestReply.Operation.Succeeded");
    }
    callback_state(&app, &id, "delivered").await;
    // A redelivery of a settled attempt (the host's at-least-once) calls nobody.
    let status = invoke(
        &app,
        "AsyncProcessingCallbackWorker",
        "callbackQueueItem",
        &second,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(receiver.for_operation(&id).len(), 2);
    let left = app
        .storage
        .callbacks
        .receive(32, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(left.is_empty(), "nothing more queued");
}

/// The poison function's end is announced too: a work message the host gave up on (its last
/// attempt never reported back) fails the operation, and the callback tells the receiver.
async fn the_poison_functions_end_is_announced(backend: Backend) {
    let app = start(backend, &[("FUNCTIONS_CUSTOMHANDLER_PORT", "0")]).await;
    let receiver = Receiver::start(vec![]).await;
    let id = submit_with_callback(&app, &record("10"), &format!("{}/p", receiver.base)).await;
    let work = take_one(app.storage.queue.as_ref(), "work").await;
    let status = invoke(
        &app,
        "AsyncProcessingPoisonWorker",
        "poisonQueueItem",
        &work,
    )
    .await;
    assert_eq!(status, 200);
    let attempt = take_one(app.storage.callbacks.as_ref(), "callbacks").await;
    let status = invoke(
        &app,
        "AsyncProcessingCallbackWorker",
        "callbackQueueItem",
        &attempt,
    )
    .await;
    assert_eq!(status, 200);
    let got = receiver.delivered(&id, LIMIT).await;
    assert_eq!(got.len(), 1);
    let event = check_delivery(&app, &got[0], &id, "AsyncRequestReply.Operation.Failed");
    assert_eq!(event["data"]["error"]["code"], "RetriesExhausted");
    // The work message arriving after all (at-least-once) changes nothing and announces nothing.
    let status = invoke(
        &app,
        "AsyncProcessingBackgroundWorker",
        "myQueueItem",
        &work,
    )
    .await;
    assert_eq!(status, 200);
    let left = app
        .storage
        .callbacks
        .receive(32, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(left.is_empty(), "no second announcement");
}

/// The last allowed attempt failing transiently ends the operation (`RetriesExhausted`) while
/// the invocation still answers 503 for the host's poison queue; that end is announced too.
async fn the_last_attempts_end_is_announced(backend: Backend) {
    let app = start(backend, &[("FUNCTIONS_CUSTOMHANDLER_PORT", "0")]).await;
    let receiver = Receiver::start(vec![]).await;
    let body = json!({"id": "11", "customername": "C", "simulateFailure": "transient"});
    let id = submit_with_callback(&app, &body, &format!("{}/l", receiver.base)).await;
    let mut work = take_one(app.storage.queue.as_ref(), "work").await;
    work.dequeue_count = 5;
    let status = invoke(
        &app,
        "AsyncProcessingBackgroundWorker",
        "myQueueItem",
        &work,
    )
    .await;
    assert_eq!(
        status, 503,
        "the host moves the message to the poison queue"
    );
    let attempt = take_one(app.storage.callbacks.as_ref(), "callbacks").await;
    let status = invoke(
        &app,
        "AsyncProcessingCallbackWorker",
        "callbackQueueItem",
        &attempt,
    )
    .await;
    assert_eq!(status, 200);
    let got = receiver.delivered(&id, LIMIT).await;
    let event = check_delivery(&app, &got[0], &id, "AsyncRequestReply.Operation.Failed");
    assert_eq!(event["data"]["error"]["code"], "RetriesExhausted");
    // Then the poison function finds it ended: no second announcement.
    let status = invoke(
        &app,
        "AsyncProcessingPoisonWorker",
        "poisonQueueItem",
        &work,
    )
    .await;
    assert_eq!(status, 200);
    let left = app
        .storage
        .callbacks
        .receive(32, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(left.is_empty(), "no second announcement");
}

/// The real binary, standalone on Azurite, is killed after the operation ended and its
/// callback's first attempt failed; restarted, it delivers the callback exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_survives_kill_9_between_the_end_and_its_delivery() {
    survives_kill_9(Reply::status(503), "after a failed attempt").await
}

/// As above, killed while the first attempt waits for the receiver's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_survives_kill_9_during_its_delivery() {
    survives_kill_9(Reply::Hang, "during an attempt").await
}

async fn survives_kill_9(first: Reply, when: &str) {
    let azurite = Azurite::shared();
    let names = Names::unique();
    let receiver = Receiver::start(vec![first]).await;
    let mut env = azurite.handler_settings(&names);
    env.extend(settings().into_iter().filter(|(k, _)| {
        !k.starts_with("CALLBACK_RETRY") && !k.contains("DELAY") && !k.contains("TIMEOUT")
    }));
    // Long enough that the kill lands before the second attempt.
    env.push(("CALLBACK_RETRY_DELAY_MS", "4000".into()));
    env.push(("CALLBACK_MAX_RETRY_DELAY_SECONDS", "8".into()));
    // The kill may land while the first attempt is still being recorded: its message then
    // comes back after the visibility timeout (at least three attempts' time), and waits out
    // the attempt's lease. Short ones keep the test short.
    env.push(("CALLBACK_TIMEOUT_SECONDS", "1".into()));
    env.push(("VISIBILITY_TIMEOUT_SECONDS", "2".into()));
    let mut handler = Handler::start_standalone(&as_refs(&env)).await;
    let client = support::app::client();
    let r = client
        .post(format!("{}/api/AsyncProcessingWorkAcceptor", handler.base))
        .header("Callback-Url", format!("{}/crash", receiver.base))
        .json(&record("9"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    eventually(
        "the first attempt",
        Duration::from_millis(10),
        LIMIT,
        async || !receiver.for_operation(&id).is_empty(),
    )
    .await;
    handler.kill9();
    let before = receiver.for_operation(&id);
    assert_eq!(before.len(), 1, "killed before the second attempt");
    assert!(!before[0].is_2xx());
    let killed_at = tokio::time::Instant::now();
    handler.restart().await;
    let got = receiver.delivered(&id, LIMIT).await;
    println!(
        "crash: killed {when}, callback delivered {:?} after the kill, in {} attempts",
        got.last().unwrap().at - killed_at,
        got.len()
    );
    assert_eq!(got.iter().filter(|r| r.is_2xx()).count(), 1);
    assert!(got
        .iter()
        .all(|r| r.header("webhook-id") == got[0].header("webhook-id")));
    let doc: Value = client
        .get(format!("{}/api/operations/{id}", handler.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["status"], "Succeeded");
    let doc = eventually(
        "the callback recorded delivered",
        Duration::from_millis(20),
        LIMIT,
        async || {
            let doc: Value = client
                .get(format!("{}/api/operations/{id}", handler.base))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (doc["callback"]["state"] == "delivered").then_some(doc)
        },
    )
    .await;
    assert_eq!(doc["callback"]["attempts"], got.len(), "{doc}");
}

contract!(
    a_signed_event_arrives_once_after_failed_attempts,
    under_the_host_each_attempt_is_one_invocation,
    the_poison_functions_end_is_announced,
    the_last_attempts_end_is_announced,
    every_ending_path_announces_its_end,
    a_receiver_answering_410_is_not_called_again,
    callback_urls_that_could_reach_inside_are_refused,
);
