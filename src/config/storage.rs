//! The storage account settings, with the names the Functions host itself reads: a connection
//! string in `AzureWebJobsStorage`, or an identity-based connection in `AzureWebJobsStorage__*`
//! (`accountName` or `blobServiceUri` + `queueServiceUri`; `credential`; `clientId`), whose
//! tokens come from the managed identity endpoint, workload identity or the Azure CLI.

use std::path::PathBuf;

use azure_core::auth::Secret;

use super::vars::{invalid, ConfigError, Vars};
use crate::adapters::azure::{CredentialSource, StorageAccount, StorageConnection};

pub const CONNECTION: &str = "AzureWebJobsStorage";
const PREFIX: &str = "AzureWebJobsStorage__";

/// The identity-based settings this handler reads (compared case-insensitively, as the host
/// does), and the host's own table setting, which it ignores.
const KNOWN: &[&str] = &[
    "accountName",
    "blobServiceUri",
    "queueServiceUri",
    "tableServiceUri",
    "credential",
    "clientId",
];

/// The account the settings name, or `None` when they name none.
pub fn account(v: &Vars) -> Result<Option<StorageAccount>, ConfigError> {
    let identity = IdentitySettings::read(v)?;
    match (v.get(CONNECTION), identity.is_empty()) {
        (None, true) => Ok(None),
        (Some(conn), true) => StorageConnection::parse(conn)
            .map(|c| Some(c.into()))
            .map_err(|e| invalid(CONNECTION, e.to_string())),
        (Some(_), false) => Err(invalid(
            &identity.first_name(),
            format!(
                "is set beside the connection string {CONNECTION}: use one or the other \
                 (remove {CONNECTION} to connect by identity)"
            ),
        )),
        (None, false) => identity.account(v).map(Some),
    }
}

/// The `AzureWebJobsStorage__*` settings, by their lower-cased suffix.
struct IdentitySettings {
    /// (suffix in lower case, the setting's full name, its value)
    set: Vec<(String, String, String)>,
}

impl IdentitySettings {
    fn read(v: &Vars) -> Result<Self, ConfigError> {
        let mut set = Vec::new();
        for name in v.names_with_prefix(PREFIX) {
            let suffix = name[PREFIX.len()..].to_string();
            let Some(known) = KNOWN.iter().find(|k| k.eq_ignore_ascii_case(&suffix)) else {
                let hint = if suffix.eq_ignore_ascii_case("clientSecret")
                    || suffix.eq_ignore_ascii_case("certificate")
                {
                    "client secrets and certificates are not supported: use a managed identity, \
                     workload identity or an Azure CLI login"
                        .to_string()
                } else {
                    format!(
                        "is not a setting this handler reads; it reads {}",
                        KNOWN
                            .iter()
                            .map(|k| format!("{PREFIX}{k}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                return Err(invalid(&name, hint));
            };
            let value = v.get(&name).unwrap_or_default().to_string();
            set.push((known.to_ascii_lowercase(), name, value));
        }
        Ok(Self { set })
    }

    fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    fn first_name(&self) -> String {
        self.set[0].1.clone()
    }

    /// The full name of setting `key` (in `KNOWN`'s spelling when unset) and its value.
    fn get(&self, key: &str) -> (String, Option<&str>) {
        match self
            .set
            .iter()
            .find(|(k, _, _)| k.eq_ignore_ascii_case(key))
        {
            Some((_, name, value)) => (name.clone(), Some(value.as_str())),
            None => (format!("{PREFIX}{key}"), None),
        }
    }

    fn account(&self, v: &Vars) -> Result<StorageAccount, ConfigError> {
        let (account_setting, account_name) = self.get("accountName");
        if let Some(a) = account_name {
            if !valid_account_name(a) {
                return Err(invalid(
                    &account_setting,
                    format!(
                        "`{a}` is not a storage account name (3-24 lower-case letters and digits)"
                    ),
                ));
            }
        }
        let endpoint = |key: &str, service: &str| -> Result<String, ConfigError> {
            match self.get(key) {
                (name, Some(uri)) => service_uri(&name, uri),
                (name, None) => match account_name {
                    Some(a) => Ok(format!("https://{a}.{service}.core.windows.net")),
                    None => Err(invalid(
                        &name,
                        format!(
                            "is required with identity-based storage unless {account_setting} is set"
                        ),
                    )),
                },
            }
        };
        let blob = endpoint("blobServiceUri", "blob")?;
        let queue = endpoint("queueServiceUri", "queue")?;
        let name = match account_name {
            Some(a) => a.to_string(),
            None => account_in(&blob).ok_or_else(|| {
                invalid(
                    &self.get("blobServiceUri").0,
                    format!("cannot tell the account from `{blob}`: set {account_setting} too"),
                )
            })?,
        };
        Ok(StorageAccount::with_identity(
            name,
            blob,
            queue,
            self.credential(v)?,
        ))
    }

    fn credential(&self, v: &Vars) -> Result<CredentialSource, ConfigError> {
        let (credential_setting, credential) = self.get("credential");
        let (client_setting, client_id) = self.get("clientId");
        match credential {
            Some(c) if c.eq_ignore_ascii_case("managedidentity") => {
                managed_identity(v, client_id.map(str::to_string))
            }
            Some(c) => Err(invalid(
                &credential_setting,
                format!(
                    "`{c}` is not supported: set `managedidentity`, or leave it unset to use \
                     workload identity (AZURE_FEDERATED_TOKEN_FILE) or the Azure CLI login"
                ),
            )),
            None if client_id.is_some() => Err(invalid(
                &client_setting,
                format!(
                    "names a user-assigned identity, which needs {credential_setting}=managedidentity"
                ),
            )),
            None if v.get("AZURE_FEDERATED_TOKEN_FILE").is_some() => workload_identity(v),
            None if v.get("IDENTITY_ENDPOINT").is_some() => managed_identity(v, None),
            None => Ok(CredentialSource::AzureCli),
        }
    }
}

fn managed_identity(v: &Vars, client_id: Option<String>) -> Result<CredentialSource, ConfigError> {
    let endpoint = v.get("IDENTITY_ENDPOINT").ok_or_else(|| {
        invalid(
            "IDENTITY_ENDPOINT",
            "is not set, so there is no managed identity here: on Azure, turn on the app's \
             managed identity; elsewhere, leave AzureWebJobsStorage__credential unset to use \
             workload identity or the Azure CLI",
        )
    })?;
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return Err(invalid(
            "IDENTITY_ENDPOINT",
            "must be an http:// or https:// URL",
        ));
    }
    let header = v.get("IDENTITY_HEADER").ok_or_else(|| {
        invalid(
            "IDENTITY_HEADER",
            "is not set; the managed identity endpoint needs it (the platform sets both)",
        )
    })?;
    Ok(CredentialSource::ManagedIdentity {
        endpoint: endpoint.to_string(),
        header: Secret::new(header.to_string()),
        client_id,
    })
}

fn workload_identity(v: &Vars) -> Result<CredentialSource, ConfigError> {
    let required = |name: &str| {
        v.get(name).map(str::to_string).ok_or_else(|| {
            invalid(
                name,
                "is required for workload identity (AZURE_FEDERATED_TOKEN_FILE is set)",
            )
        })
    };
    let authority = v
        .get("AZURE_AUTHORITY_HOST")
        .unwrap_or("https://login.microsoftonline.com");
    let plain_ok = authority
        .strip_prefix("http://")
        .is_some_and(|rest| is_loopback(host_of(rest)));
    if !(authority.starts_with("https://") || plain_ok) {
        return Err(invalid(
            "AZURE_AUTHORITY_HOST",
            "must be an https:// URL (http only on a loopback address)",
        ));
    }
    Ok(CredentialSource::WorkloadIdentity {
        authority: authority.trim_end_matches('/').to_string(),
        tenant_id: required("AZURE_TENANT_ID")?,
        client_id: required("AZURE_CLIENT_ID")?,
        token_file: PathBuf::from(required("AZURE_FEDERATED_TOKEN_FILE")?),
    })
}

/// A service URI: `https://`, or `http://` only on a loopback address (bearer tokens must not
/// cross a network in the clear; Azure Storage refuses them over http anyway).
fn service_uri(setting: &str, uri: &str) -> Result<String, ConfigError> {
    let uri = uri.trim_end_matches('/');
    let (https, rest) = match (uri.strip_prefix("https://"), uri.strip_prefix("http://")) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        _ => return Err(invalid(setting, format!("`{uri}` is not an https:// URL"))),
    };
    let host = host_of(rest);
    if host.is_empty() || rest.contains(char::is_whitespace) || rest.contains(['?', '#']) {
        return Err(invalid(setting, format!("`{uri}` is not a service URL")));
    }
    if !https && !is_loopback(host) {
        return Err(invalid(
            setting,
            format!("`{uri}` must use https: tokens are never sent in the clear"),
        ));
    }
    Ok(uri.to_string())
}

fn host_of(rest: &str) -> &str {
    let authority = rest.split('/').next().unwrap_or("");
    match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The account in a service URL: the first path segment on an address (the emulator's
/// `https://127.0.0.1:10000/devstoreaccount1`), else the first label of the host name.
fn account_in(uri: &str) -> Option<String> {
    let rest = uri.split_once("://")?.1;
    let host = host_of(rest);
    let name = if host.parse::<std::net::IpAddr>().is_ok() || host.eq_ignore_ascii_case("localhost")
    {
        rest.split('/').nth(1)?
    } else {
        host.split('.').next()?
    };
    (!name.is_empty()).then(|| name.to_string())
}

fn valid_account_name(a: &str) -> bool {
    (3..=24).contains(&a.len())
        && a.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// `SSL_CERT_FILE`: PEM certificates to trust beside the built-in roots (a private CA in front
/// of storage or an identity endpoint, or a test's own).
pub fn extra_roots(v: &Vars) -> Result<Vec<reqwest::Certificate>, ConfigError> {
    const NAME: &str = "SSL_CERT_FILE";
    let Some(path) = v.get(NAME) else {
        return Ok(Vec::new());
    };
    let pem = std::fs::read(path)
        .map_err(|e| invalid(NAME, format!("cannot read `{path}`: {}", e.kind())))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|_| invalid(NAME, format!("`{path}` is not a PEM certificate bundle")))?;
    if certs.is_empty() {
        return Err(invalid(NAME, format!("`{path}` holds no certificate")));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests;
