//! Checks every function folder's `function.json` against the handler: the HTTP functions have
//! exactly the bindings request forwarding needs, and each declared route and method is served;
//! the queue trigger names the queue and binding the handler uses.

mod support;

use std::path::Path;

use serde_json::Value;
use support::app::{Backend, TestApp};

fn function_json(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(name)
        .join("function.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const HTTP_FUNCTIONS: [&str; 4] = [
    "AsyncProcessingWorkAcceptor",
    "AsyncOperationStatusChecker",
    "AsyncOperationStatusMonitor",
    "AsyncOperationCancel",
];

/// The queue triggers: the work queue's, its poison queue's, and the callbacks queue's.
const QUEUE_FUNCTIONS: [&str; 3] = [
    "AsyncProcessingBackgroundWorker",
    "AsyncProcessingPoisonWorker",
    "AsyncProcessingCallbackWorker",
];

#[test]
fn every_function_folder_is_known() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("function.json").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    let mut expected: Vec<String> = HTTP_FUNCTIONS
        .iter()
        .chain(QUEUE_FUNCTIONS.iter())
        .map(|s| s.to_string())
        .collect();
    expected.sort();
    assert_eq!(found, expected);
}

#[test]
fn http_functions_have_exactly_the_forwarding_bindings() {
    for name in HTTP_FUNCTIONS {
        let f = function_json(name);
        let bindings = f["bindings"].as_array().unwrap();
        assert_eq!(
            bindings.len(),
            2,
            "{name}: forwarding needs exactly httpTrigger + http"
        );
        assert_eq!(bindings[0]["type"], "httpTrigger", "{name}");
        assert_eq!(bindings[0]["direction"], "in", "{name}");
        assert_eq!(bindings[1]["type"], "http", "{name}");
        assert_eq!(bindings[1]["direction"], "out", "{name}");
    }
}

#[test]
fn the_queue_triggers_match_the_handler() {
    use async_request_reply::edges::http::invocation::{
        CALLBACK_ITEM_BINDING, POISON_ITEM_BINDING, QUEUE_ITEM_BINDING,
    };
    let work = function_json("AsyncProcessingBackgroundWorker");
    let poison = function_json("AsyncProcessingPoisonWorker");
    let callbacks = function_json("AsyncProcessingCallbackWorker");
    for (f, binding) in [
        (&work, QUEUE_ITEM_BINDING),
        (&poison, POISON_ITEM_BINDING),
        (&callbacks, CALLBACK_ITEM_BINDING),
    ] {
        let b = &f["bindings"].as_array().unwrap()[0];
        assert_eq!(f["bindings"].as_array().unwrap().len(), 1);
        assert_eq!(b["type"], "queueTrigger");
        assert_eq!(b["direction"], "in");
        assert_eq!(b["name"], binding);
        assert_eq!(b["connection"], "AzureWebJobsStorage");
    }
    let b = &work["bindings"][0];
    let config = async_request_reply::config::Config::from_vars(
        &[(
            "AzureWebJobsStorage".to_string(),
            "UseDevelopmentStorage=true".to_string(),
        )]
        .into(),
    )
    .unwrap();
    let async_request_reply::config::StorageConfig::Azure(azure) = config.storage else {
        panic!("storage configured");
    };
    assert_eq!(
        b["queueName"],
        azure.queue_name.as_str(),
        "the default WORK_QUEUE_NAME"
    );
    assert_eq!(
        poison["bindings"][0]["queueName"],
        format!("{}-poison", azure.queue_name),
        "the host's poison queue for the work queue"
    );
    assert_eq!(
        callbacks["bindings"][0]["queueName"],
        azure.callback_queue_name().as_str(),
        "the callbacks queue beside the default WORK_QUEUE_NAME"
    );
}

#[test]
fn host_json_forwards_http_and_starts_the_handler() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("host.json")).unwrap();
    let host: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(host["version"], "2.0");
    assert_eq!(
        host["customHandler"]["description"]["defaultExecutablePath"],
        "handler"
    );
    assert_eq!(host["customHandler"]["enableForwardingHttpRequest"], true);
    assert_eq!(host["extensions"]["http"]["routePrefix"], "api");
    assert_eq!(host["extensions"]["queues"]["messageEncoding"], "base64");
    assert_eq!(
        host["extensions"]["queues"]["maxDequeueCount"], 5,
        "the handler's default MAX_DEQUEUE_COUNT"
    );
}

/// Every declared route and method reaches a handler (not the router's 404/405).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_declared_route_and_method_is_served() {
    let app = TestApp::start(Backend::Memory, &[("FUNCTIONS_CUSTOMHANDLER_PORT", "0")]).await;
    for name in HTTP_FUNCTIONS {
        let f = function_json(name);
        let trigger = &f["bindings"][0];
        let route = trigger["route"].as_str().unwrap();
        // Fill route parameters as the host does: the concrete value in the path (a segment
        // such as `{operationId}:cancel` keeps its literal part).
        let concrete: String = route
            .split('/')
            .map(|seg| match (seg.find('{'), seg.find('}')) {
                (Some(open), Some(close)) => format!(
                    "{}{}{}",
                    &seg[..open],
                    uuid::Uuid::new_v4(),
                    &seg[close + 1..]
                ),
                _ => seg.to_string(),
            })
            .collect::<Vec<_>>()
            .join("/");
        for method in trigger["methods"].as_array().unwrap() {
            let method =
                reqwest::Method::from_bytes(method.as_str().unwrap().to_uppercase().as_bytes())
                    .unwrap();
            let r = app
                .client
                .request(method.clone(), app.url(&format!("/api/{concrete}")))
                .header("content-type", "application/json")
                .body(r#"{"id":"1","customername":"C"}"#)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            assert!(
                status != 405 && body["type"] != "urn:async-request-reply:problem:route-not-found",
                "{name}: {method} /api/{concrete} is not served ({status} {body})"
            );
        }
    }
    // The queue triggers' invocation routes, each with the payload the host would post.
    for (function, binding) in [
        ("AsyncProcessingBackgroundWorker", "myQueueItem"),
        ("AsyncProcessingPoisonWorker", "poisonQueueItem"),
        ("AsyncProcessingCallbackWorker", "callbackQueueItem"),
    ] {
        let r = app
            .client
            .post(app.url(&format!("/{function}")))
            .json(&support::host::queue_invocation(function, binding, "{}", 1))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            200,
            "{function}'s invocation route is served under the host"
        );
    }
}
