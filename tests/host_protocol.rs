//! Plays the Functions host against the real `handler` binary: starts it with
//! `FUNCTIONS_CUSTOMHANDLER_PORT`, waits for `GET /`, sends forwarded HTTP requests (lower-case
//! paths too), reads the queue message from Azurite itself, posts the invocation payload the
//! host would post, then follows the status redirect to the SAS URL and downloads the result.

mod support;

use base64::Engine;
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::app::{client, Backend};
use support::azurite::{Azurite, Names, ACCOUNT, KEY};
use support::host::{handler_command, invocation_payload, wait_ready, Handler};
use support::{as_refs, free_port};

/// Receives one message from the test's work queue with a plain SDK client, as the host does,
/// and returns its text decoded from base64 (the queue trigger's default encoding).
async fn host_reads_the_queue(azurite: &Azurite, names: &Names) -> String {
    let queue = azurite.queue_service().queue_client(&names.queue);
    let got = queue
        .get_messages()
        .number_of_messages(32)
        .await
        .expect("Azurite answers");
    assert_eq!(got.messages.len(), 1, "exactly one message queued");
    let m = &got.messages[0];
    assert_eq!(m.dequeue_count, 1);
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&m.message_text)
        .expect("the message text is base64, as the queue trigger expects");
    queue
        .pop_receipt_client(m.clone())
        .delete()
        .await
        .expect("the host deletes a processed message");
    String::from_utf8(raw).expect("UTF-8 message text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_drives_a_request_end_to_end_on_azurite() {
    drives_a_request_end_to_end(Backend::Azurite).await
}

/// The same with identity-based storage on OAuth Azurite: no account key anywhere in the
/// handler's environment, and the result link a user-delegation SAS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_drives_a_request_end_to_end_by_identity() {
    drives_a_request_end_to_end(Backend::AzuriteIdentity).await
}

async fn drives_a_request_end_to_end(backend: Backend) {
    let azurite = backend.azurite().expect("an Azurite backend");
    let names = Names::unique();
    let mut env = azurite.handler_settings(&names);
    env.push(("WEBSITE_HOSTNAME", "myapp.azurewebsites.net".into()));
    if azurite.is_identity() {
        assert!(
            env.iter().all(|(k, v)| !v.contains(KEY)
                && !v.contains("AccountKey")
                && *k != "AzureWebJobsStorage"),
            "no key in the handler's environment"
        );
    }
    let handler = Handler::start(&as_refs(&env)).await;
    let http = azurite.http();

    // The host forwards the caller's request as is: path casing, Host header and body.
    let r = http
        .post(format!("{}/api/asyncprocessingworkacceptor", handler.base))
        .header("host", "myapp.azurewebsites.net")
        .header(
            "x-azure-functions-invocationid",
            "8d6f6a80-2e6c-4b2b-8b7e-cc0c6bde2f7a",
        )
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .json(&json!({"id": "1234", "customername": "Contoso"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        location,
        format!("https://myapp.azurewebsites.net/api/RequestStatus/{id}"),
        "https on Azure, from WEBSITE_HOSTNAME"
    );

    // Pending: the host delivers nothing until we play the queue trigger.
    let status_path = format!("{}/api/requeststatus/{id}", handler.base);
    let r = http.get(&status_path).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    let text = host_reads_the_queue(&azurite, &names).await;
    let message: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(message["RequestGUID"], id);
    assert_eq!(message["RequestStatusURL"], location);
    assert_eq!(message["RequestRecord"]["customername"], "Contoso");
    assert!(message["RequestSubmittedAt"].is_string());

    let r = http
        .post(format!("{}/AsyncProcessingBackgroundWorker", handler.base))
        .json(&invocation_payload(&text, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/json");
    let reply: Value = r.json().await.unwrap();
    assert!(reply["Outputs"].is_object());
    assert!(reply["Logs"].as_array().is_some_and(|l| !l.is_empty()));
    assert!(reply.get("ReturnValue").is_some());

    // Done: a 302 to a read-only SAS URL for this one blob, which downloads the result.
    let r = http.get(&status_path).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let sas = r.headers()["location"].to_str().unwrap().to_string();
    assert!(
        sas.starts_with(&format!(
            "{}/{}/{id}.blobdata?",
            azurite.blob_endpoint(),
            names.results
        )),
        "{sas}"
    );
    let user_delegation = ["skoid=", "sktid=", "ske=", "sig="]
        .iter()
        .all(|p| sas.contains(p));
    assert_eq!(
        user_delegation,
        azurite.is_identity(),
        "a user-delegation SAS exactly when storage is reached by identity: {sas}"
    );
    let result = http.get(&sas).send().await.unwrap();
    assert_eq!(result.status(), StatusCode::OK);
    assert_eq!(result.headers()["content-type"], "application/json");
    let result: Value = result.json().await.unwrap();
    assert_eq!(result["id"], "1234");
    assert_eq!(result["RequestGUID"], id);

    // A tampered signature is refused by storage.
    let tampered = tamper_signature(&sas);
    let r = http.get(&tampered).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // OnComplete=Stream through the handler gives the same bytes.
    let streamed = http
        .get(format!("{status_path}?OnComplete=Stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), StatusCode::OK);
    let mut body = Vec::new();
    let mut chunks = streamed.bytes_stream();
    while let Some(c) = chunks.next().await {
        body.extend_from_slice(&c.unwrap());
    }
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), result);
}

/// Changes one character of the `sig` parameter.
fn tamper_signature(url: &str) -> String {
    let at = url.find("sig=").expect("a SAS signature") + 4;
    let mut bytes = url.as_bytes().to_vec();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_func_start_urls_stay_http_and_the_handler_never_polls() {
    urls_stay_http_and_the_handler_never_polls(Backend::Azurite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_func_start_by_identity_the_handler_never_polls() {
    urls_stay_http_and_the_handler_never_polls(Backend::AzuriteIdentity).await
}

async fn urls_stay_http_and_the_handler_never_polls(backend: Backend) {
    let azurite = backend.azurite().expect("an Azurite backend");
    let names = Names::unique();
    let mut env = azurite.handler_settings(&names);
    env.push(("WEBSITE_HOSTNAME", "localhost:7071".into()));
    let handler = Handler::start(&as_refs(&env)).await;
    let r = client()
        .post(format!("{}/api/AsyncProcessingWorkAcceptor", handler.base))
        .json(&json!({"id": "1", "customername": "Contoso"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with("http://localhost:7071/api/RequestStatus/"),
        "{location}"
    );
    // In host mode the message waits in the queue for the host: the handler did not take it.
    let text = host_reads_the_queue(&azurite, &names).await;
    assert!(text.contains("RequestGUID"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_binary_serves_the_walkthrough_in_memory() {
    // `cargo run` with nothing configured: in memory, worker in-process.
    let port = free_port();
    let mut child = handler_command()
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = client();
    wait_ready(&base).await;
    let r = http
        .post(format!("{base}/api/AsyncProcessingWorkAcceptor"))
        .json(&json!({"id": "1234", "customername": "Contoso"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with(&format!("{base}/api/RequestStatus/")));
    let r = http
        .get(format!("{location}?OnPending=Synchronous"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let result_url = r.headers()["location"].to_str().unwrap().to_string();
    let result: Value = http
        .get(&result_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(result["customername"], "Contoso");
    // The invocation route exists only under the host.
    let r = http
        .post(format!("{base}/AsyncProcessingBackgroundWorker"))
        .json(&invocation_payload("{}", 1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let _ = child.kill();
    let _ = child.wait();
}

/// Under the host, no storage setting is a refusal naming it, never work kept where the host
/// cannot deliver it; a managed identity asked for where there is none is refused by name too.
#[test]
fn under_the_host_missing_storage_stops_startup_naming_the_setting() {
    for (extra, named) in [
        (&[][..], "AzureWebJobsStorage"),
        (
            &[
                ("AzureWebJobsStorage__accountName", "myaccount"),
                ("AzureWebJobsStorage__credential", "managedidentity"),
            ][..],
            "IDENTITY_ENDPOINT",
        ),
    ] {
        let mut cmd = handler_command();
        cmd.env("FUNCTIONS_CUSTOMHANDLER_PORT", free_port().to_string())
            .env("FUNCTIONS_WORKER_RUNTIME", "custom")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        cmd.envs(extra.iter().copied());
        let out = cmd.output().expect("the binary runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(named), "{named}: {stderr}");
    }
}

/// Storage that accepts connections and never answers: under the host, `GET /` still answers
/// within the host's 30 s, and a submission gets a prompt 503 with `Retry-After`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_host_silent_storage_does_not_keep_the_probe_waiting() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    // Accept and hold every connection, answering nothing.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming().flatten() {
            held.push(stream);
        }
    });
    let conn = format!(
        "DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};\
         BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT};QueueEndpoint=http://127.0.0.1:{port}/{ACCOUNT}"
    );
    let started = std::time::Instant::now();
    // `start` fails the test unless GET / answers within 30 s, as the host would give up.
    let handler = Handler::start(&[
        ("AzureWebJobsStorage", conn.as_str()),
        ("STORAGE_TIMEOUT_MS", "1000"),
        ("STORAGE_MAX_RETRIES", "0"),
    ])
    .await;
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    let r = client()
        .post(format!("{}/api/AsyncProcessingWorkAcceptor", handler.base))
        .json(&json!({"id": "1", "customername": "Contoso"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key("retry-after"));
}
