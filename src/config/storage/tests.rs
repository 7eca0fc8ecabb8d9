//! The storage settings: every combination that cannot work is refused naming a setting.

use std::collections::HashMap;

use super::*;
use crate::adapters::azure::StorageAuth;

fn read(pairs: &[(&str, &str)]) -> Result<Option<StorageAccount>, ConfigError> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    account(&Vars(&map))
}

fn refused(pairs: &[(&str, &str)]) -> ConfigError {
    read(pairs).expect_err("refused")
}

const MI: [(&str, &str); 2] = [
    ("IDENTITY_ENDPOINT", "http://localhost:8081/msi/token"),
    ("IDENTITY_HEADER", "the-header-secret"),
];

#[test]
fn nothing_set_is_no_account() {
    assert_eq!(read(&[]).unwrap(), None);
}

#[test]
fn an_account_name_gives_the_public_endpoints() {
    let mut env = vec![
        ("AzureWebJobsStorage__accountName", "myacct"),
        ("AzureWebJobsStorage__credential", "managedidentity"),
    ];
    env.extend(MI);
    let a = read(&env).unwrap().unwrap();
    assert_eq!(a.name(), "myacct");
    assert_eq!(a.blob_endpoint(), "https://myacct.blob.core.windows.net");
    assert_eq!(a.queue_endpoint(), "https://myacct.queue.core.windows.net");
    match a.auth() {
        StorageAuth::Identity(CredentialSource::ManagedIdentity {
            endpoint,
            client_id,
            ..
        }) => {
            assert_eq!(endpoint, "http://localhost:8081/msi/token");
            assert_eq!(client_id, &None);
        }
        other => panic!("{other:?}"),
    }
    let shown = format!("{a:?}");
    assert!(!shown.contains("the-header-secret"), "{shown}");
}

#[test]
fn setting_names_are_matched_without_regard_to_case() {
    let mut env = vec![
        ("AZUREWEBJOBSSTORAGE__ACCOUNTNAME", "myacct"),
        ("azurewebjobsstorage__credential", "ManagedIdentity"),
        ("AzureWebJobsStorage__ClientId", "1111"),
    ];
    env.extend(MI);
    let a = read(&env).unwrap().unwrap();
    assert!(matches!(
        a.auth(),
        StorageAuth::Identity(CredentialSource::ManagedIdentity { client_id: Some(c), .. }) if c == "1111"
    ));
}

#[test]
fn service_uris_name_the_emulator_account_by_its_path() {
    let mut env = vec![
        (
            "AzureWebJobsStorage__blobServiceUri",
            "https://127.0.0.1:10000/devstoreaccount1/",
        ),
        (
            "AzureWebJobsStorage__queueServiceUri",
            "https://127.0.0.1:10001/devstoreaccount1",
        ),
    ];
    env.extend(MI);
    let a = read(&env).unwrap().unwrap();
    assert_eq!(a.name(), "devstoreaccount1");
    assert_eq!(
        a.blob_endpoint(),
        "https://127.0.0.1:10000/devstoreaccount1"
    );
    let env = [
        (
            "AzureWebJobsStorage__blobServiceUri",
            "https://acct2.blob.core.windows.net",
        ),
        (
            "AzureWebJobsStorage__queueServiceUri",
            "https://acct2.queue.core.windows.net",
        ),
    ];
    let a = read(&env).unwrap().unwrap();
    assert_eq!(a.name(), "acct2");
    assert!(matches!(
        a.auth(),
        StorageAuth::Identity(CredentialSource::AzureCli)
    ));
}

#[test]
fn without_a_credential_setting_the_environment_chooses() {
    let name = ("AzureWebJobsStorage__accountName", "acct");
    let source = |extra: &[(&str, &str)]| {
        let mut env = vec![name];
        env.extend_from_slice(extra);
        match read(&env).unwrap().unwrap().auth() {
            StorageAuth::Identity(s) => s.clone(),
            StorageAuth::Key(_) => panic!("a key"),
        }
    };
    assert!(matches!(source(&[]), CredentialSource::AzureCli));
    assert!(matches!(
        source(&MI),
        CredentialSource::ManagedIdentity {
            client_id: None,
            ..
        }
    ));
    let wi = source(&[
        ("AZURE_FEDERATED_TOKEN_FILE", "/var/run/secrets/token"),
        ("AZURE_CLIENT_ID", "c"),
        ("AZURE_TENANT_ID", "t"),
    ]);
    assert!(
        matches!(&wi, CredentialSource::WorkloadIdentity { authority, tenant_id, .. }
            if authority == "https://login.microsoftonline.com" && tenant_id == "t"),
        "{wi:?}"
    );
}

#[test]
fn combinations_that_cannot_work_name_a_setting() {
    let acct = ("AzureWebJobsStorage__accountName", "acct");
    let mi = ("AzureWebJobsStorage__credential", "managedidentity");
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("AzureWebJobsStorage__clientId", "1"), acct],
            "AzureWebJobsStorage__clientId",
        ),
        (vec![acct, mi], "IDENTITY_ENDPOINT"),
        (
            vec![acct, mi, ("IDENTITY_ENDPOINT", "http://localhost/msi")],
            "IDENTITY_HEADER",
        ),
        (
            vec![acct, mi, ("IDENTITY_ENDPOINT", "file:///x"), MI[1]],
            "IDENTITY_ENDPOINT",
        ),
        (
            vec![acct, ("AzureWebJobsStorage__credential", "clientsecret")],
            "AzureWebJobsStorage__credential",
        ),
        (
            vec![acct, ("AzureWebJobsStorage__clientSecret", "s")],
            "AzureWebJobsStorage__clientSecret",
        ),
        (
            vec![acct, ("AzureWebJobsStorage__acountName", "typo")],
            "AzureWebJobsStorage__acountName",
        ),
        (
            vec![acct, ("AzureWebJobsStorage", "UseDevelopmentStorage=true")],
            "AzureWebJobsStorage__accountName",
        ),
        (
            vec![("AzureWebJobsStorage__accountName", "Not_An_Account")],
            "AzureWebJobsStorage__accountName",
        ),
        (
            vec![(
                "AzureWebJobsStorage__blobServiceUri",
                "https://a.blob.core.windows.net",
            )],
            "AzureWebJobsStorage__queueServiceUri",
        ),
        (
            vec![
                (
                    "AzureWebJobsStorage__blobServiceUri",
                    "http://a.blob.core.windows.net",
                ),
                acct,
            ],
            "AzureWebJobsStorage__blobServiceUri",
        ),
        (
            vec![acct, ("AzureWebJobsStorage__queueServiceUri", "queue")],
            "AzureWebJobsStorage__queueServiceUri",
        ),
        (
            vec![
                acct,
                ("AZURE_FEDERATED_TOKEN_FILE", "/t"),
                ("AZURE_TENANT_ID", "t"),
            ],
            "AZURE_CLIENT_ID",
        ),
        (
            vec![
                acct,
                ("AZURE_FEDERATED_TOKEN_FILE", "/t"),
                ("AZURE_CLIENT_ID", "c"),
            ],
            "AZURE_TENANT_ID",
        ),
        (
            vec![
                acct,
                ("AZURE_FEDERATED_TOKEN_FILE", "/t"),
                ("AZURE_CLIENT_ID", "c"),
                ("AZURE_TENANT_ID", "t"),
                ("AZURE_AUTHORITY_HOST", "http://login.example.com"),
            ],
            "AZURE_AUTHORITY_HOST",
        ),
    ];
    for (env, named) in cases {
        let e = refused(&env);
        assert_eq!(e.setting, named, "{env:?}: {e}");
    }
}

#[test]
fn a_connection_string_still_works_and_keeps_its_key_out_of_debug() {
    let a = read(&[("AzureWebJobsStorage", "UseDevelopmentStorage=true")])
        .unwrap()
        .unwrap();
    assert!(matches!(a.auth(), StorageAuth::Key(_)));
    assert!(!format!("{a:?}").contains("Eby8vdM02"));
}

#[test]
fn extra_roots_must_be_readable_certificates() {
    let map = |v: &str| HashMap::from([("SSL_CERT_FILE".to_string(), v.to_string())]);
    let e = extra_roots(&Vars(&map("/nonexistent/ca.pem"))).unwrap_err();
    assert_eq!(e.setting, "SSL_CERT_FILE");
    let dir = std::env::temp_dir().join(format!("roots-{}", uuid::Uuid::new_v4()));
    std::fs::write(&dir, "not a certificate").unwrap();
    let e = extra_roots(&Vars(&map(dir.to_str().unwrap()))).unwrap_err();
    assert_eq!(e.setting, "SSL_CERT_FILE");
    let _ = std::fs::remove_file(&dir);
    assert!(extra_roots(&Vars(&HashMap::new())).unwrap().is_empty());
}
