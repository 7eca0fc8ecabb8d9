//! Identity-based storage, black-box: the real binary with no account key anywhere in its
//! environment, on OAuth Azurite over HTTPS (trusting the test CA through `SSL_CERT_FILE`),
//! its tokens from a managed identity endpoint, workload identity or the Azure CLI as the
//! tests play them. Tokens are refreshed when they expire, never logged, and settings that
//! cannot work stop start-up naming the setting.

mod support;

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::azurite::{Azurite, Names, KEY};
use support::host::{handler_command, Handler};
use support::identity::token;
use support::{as_refs, eventually};

/// The handler's settings on `azurite` without the managed identity (the test adds its source).
fn storage_only(azurite: &Azurite, names: &Names) -> Vec<(&'static str, String)> {
    azurite
        .handler_settings(names)
        .into_iter()
        .filter(|(k, _)| {
            !matches!(
                *k,
                "AzureWebJobsStorage__credential" | "IDENTITY_ENDPOINT" | "IDENTITY_HEADER"
            )
        })
        .collect()
}

/// Submits, waits for the standalone worker, follows the 302 to the user-delegation SAS and
/// reads the result from Azurite; answers the link.
async fn round_trip(azurite: &Azurite, handler: &Handler, id: &str) -> String {
    let http = azurite.http();
    let r = http
        .post(format!("{}/api/AsyncProcessingWorkAcceptor", handler.base))
        .json(&json!({ "id": id, "customername": "Contoso" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let status_url = r.headers()["location"].to_str().unwrap().to_string();
    let done = eventually(
        format_args!("{status_url} ending"),
        Duration::from_millis(50),
        Duration::from_secs(30),
        async || {
            let r = http.get(&status_url).send().await.unwrap();
            (r.status() != StatusCode::ACCEPTED).then_some(r)
        },
    )
    .await;
    assert_eq!(done.status(), StatusCode::FOUND);
    let link = done.headers()["location"].to_str().unwrap().to_string();
    assert!(
        link.starts_with(&azurite.blob_endpoint())
            && link.contains("skoid=")
            && link.contains("spr=https"),
        "a user-delegation SAS over https: {link}"
    );
    let result = http.get(&link).send().await.unwrap();
    assert_eq!(result.status(), StatusCode::OK, "{link}");
    let body: Value = result.json().await.unwrap();
    assert_eq!(body["id"], id);
    link
}

fn no_key_in(env: &[(&str, String)]) {
    for (k, v) in env {
        assert!(
            !v.contains(KEY) && !v.contains("AccountKey") && *k != "AzureWebJobsStorage",
            "{k} holds a key"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_replaced_and_nothing_secret_is_logged() {
    let azurite = Azurite::shared_identity();
    let names = Names::unique();
    // Tokens that live a few seconds: the handler must fetch a new one rather than present an
    // expired token, which Azurite refuses.
    azurite.tokens().set_lifetime(Duration::from_secs(4));
    let env = azurite.handler_settings(&names);
    no_key_in(&env);
    let log = std::env::temp_dir().join(format!("identity-{}.log", uuid::Uuid::new_v4()));
    let handler = Handler::start_standalone_logged(&as_refs(&env), log.clone()).await;
    round_trip(&azurite, &handler, "first").await;
    let first = azurite.tokens().issued();
    assert!(first >= 1);
    let expired_at = SystemTime::now() + Duration::from_secs(5);
    // Every token issued so far has expired once the clock passes `expired_at`.
    eventually(
        "the first tokens to expire",
        Duration::from_millis(100),
        Duration::from_secs(10),
        async || (SystemTime::now() > expired_at).then_some(()),
    )
    .await;
    azurite.tokens().set_lifetime(Duration::from_secs(3600));
    round_trip(&azurite, &handler, "second").await;
    assert!(
        azurite.tokens().issued() > first,
        "a new token was fetched after the old one expired"
    );
    // Every request carried the secret header, and asked for storage.
    for r in azurite.tokens().requests() {
        assert_eq!(
            r.identity_header.as_deref(),
            Some(azurite.tokens().header())
        );
        assert!(
            r.target
                .contains("resource=https%3A%2F%2Fstorage.azure.com"),
            "{}",
            r.target
        );
    }
    drop(handler);
    let logged = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    assert!(logged.contains("storage token obtained"), "{logged}");
    assert!(
        !logged.contains(azurite.tokens().header()),
        "the identity header is never logged"
    );
    // A JWT's header segment starts `eyJ`; no token appears in any line.
    assert!(!logged.contains("eyJ"), "no token is logged:\n{logged}");
    assert!(
        !logged.contains("sig="),
        "no SAS signature is logged:\n{logged}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_assigned_identity_asks_for_its_client_id() {
    let azurite = Azurite::shared_identity();
    let names = Names::unique();
    let mut env = azurite.handler_settings(&names);
    env.push((
        "AzureWebJobsStorage__clientId",
        "6c4b0e0a-5c6a-4c39-9d1e-0a4e2d1f0b7e".into(),
    ));
    let handler = Handler::start_standalone(&as_refs(&env)).await;
    round_trip(&azurite, &handler, "ua").await;
    let requests = azurite.tokens().requests();
    assert!(!requests.is_empty());
    for r in requests {
        assert!(
            r.target
                .contains("client_id=6c4b0e0a-5c6a-4c39-9d1e-0a4e2d1f0b7e"),
            "{}",
            r.target
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_identity_exchanges_the_federated_token() {
    let azurite = Azurite::shared_identity();
    let names = Names::unique();
    let file = std::env::temp_dir().join(format!("federated-{}", uuid::Uuid::new_v4()));
    std::fs::write(&file, "the-federated-assertion\n").unwrap();
    let tokens = azurite.tokens();
    let mut env = storage_only(&azurite, &names);
    env.extend([
        ("AZURE_FEDERATED_TOKEN_FILE", file.display().to_string()),
        ("AZURE_CLIENT_ID", "wi-client".to_string()),
        ("AZURE_TENANT_ID", tokens.tenant.clone()),
        ("AZURE_AUTHORITY_HOST", tokens.authority()),
    ]);
    no_key_in(&env);
    let handler = Handler::start_standalone(&as_refs(&env)).await;
    round_trip(&azurite, &handler, "wi").await;
    let _ = std::fs::remove_file(&file);
    let requests = tokens.requests();
    assert!(!requests.is_empty());
    for r in requests {
        assert_eq!(r.method, "POST");
        assert_eq!(r.target, format!("/{}/oauth2/v2.0/token", tokens.tenant));
        let form: Vec<(String, String)> = form_urlencoded::parse(r.body.as_bytes())
            .into_owned()
            .collect();
        let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(field("client_assertion"), Some("the-federated-assertion"));
        assert_eq!(field("client_id"), Some("wi-client"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_azure_cli_login_is_used_off_azure() {
    let azurite = Azurite::shared_identity();
    let names = Names::unique();
    // A stand-in for `az` that prints what `az account get-access-token` prints.
    let bin = std::env::temp_dir().join(format!("fake-az-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&bin).unwrap();
    let tokens = azurite.tokens();
    let expires_on = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let answer = json!({
        "accessToken": token(&tokens.tenant, &tokens.object_id, Duration::from_secs(3600)),
        "expiresOn": "2099-01-01 00:00:00.000000",
        "expires_on": expires_on,
        "subscription": "00000000-0000-0000-0000-000000000000",
        "tenant": tokens.tenant,
        "tokenType": "Bearer"
    });
    let calls = bin.join("calls");
    let script = format!(
        "#!/bin/sh\necho \"$@\" >> '{}'\ncat <<'JSON'\n{answer}\nJSON\n",
        calls.display()
    );
    let az = bin.join("az");
    std::fs::write(&az, script).unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&az)
        .status()
        .unwrap();
    let mut env = storage_only(&azurite, &names);
    env.push(("PATH", format!("{}:/usr/bin:/bin", bin.display())));
    no_key_in(&env);
    let handler = Handler::start_standalone(&as_refs(&env)).await;
    round_trip(&azurite, &handler, "cli").await;
    let called = std::fs::read_to_string(&calls).unwrap();
    assert!(
        called
            .lines()
            .all(|l| l
                == "account get-access-token --output json --resource https://storage.azure.com"),
        "{called}"
    );
    assert_eq!(
        called.lines().count(),
        1,
        "the CLI's token is cached: {called}"
    );
    let _ = std::fs::remove_dir_all(&bin);
}

/// Start-up with settings that cannot work ends at once, naming the setting.
#[test]
fn settings_that_cannot_work_stop_startup_naming_the_setting() {
    let acct = ("AzureWebJobsStorage__accountName", "myaccount");
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![acct, ("AzureWebJobsStorage__clientId", "x")],
            "AzureWebJobsStorage__clientId",
        ),
        (
            vec![acct, ("AzureWebJobsStorage__credential", "managedidentity")],
            "IDENTITY_ENDPOINT",
        ),
        (
            vec![acct, ("AzureWebJobsStorage", "UseDevelopmentStorage=true")],
            "AzureWebJobsStorage__accountName",
        ),
        (
            vec![
                acct,
                ("AzureWebJobsStorage__credential", "managedidentity"),
                ("IDENTITY_ENDPOINT", "http://127.0.0.1:1/msi/token"),
                ("IDENTITY_HEADER", "h"),
                ("SAS_EXPIRY_SECONDS", "604800"),
            ],
            "SAS_EXPIRY_SECONDS",
        ),
    ];
    for (env, named) in cases {
        let out = handler_command()
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("the binary runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env:?}: {stderr}");
        assert!(stderr.contains(named), "{named}: {stderr}");
    }
    // No credential at all (no identity endpoint, no workload identity, no `az`): start-up
    // fails at once and says what to do.
    let out = handler_command()
        .env("AzureWebJobsStorage__accountName", "myaccount")
        .env("PATH", "/nonexistent")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("Azure CLI") && stderr.contains("AzureWebJobsStorage__"),
        "{stderr}"
    );
}
