//! Storage connection strings (`AzureWebJobsStorage`): `UseDevelopmentStorage=true` (Azurite),
//! account name and key with a protocol and endpoint suffix, or explicit endpoints. The key is
//! kept out of every `Debug`, `Display` and error message.

use std::fmt;

use base64::Engine;

/// The documented, public key of the storage emulator's `devstoreaccount1`.
pub const EMULATOR_ACCOUNT: &str = "devstoreaccount1";
pub const EMULATOR_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A parsed connection string.
#[derive(Clone, PartialEq, Eq)]
pub struct StorageConnection {
    account: String,
    key: String,
    blob_endpoint: String,
    queue_endpoint: String,
}

impl fmt::Debug for StorageConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorageConnection")
            .field("account", &self.account)
            .field("key", &"<redacted>")
            .field("blob_endpoint", &self.blob_endpoint)
            .field("queue_endpoint", &self.queue_endpoint)
            .finish()
    }
}

/// What is wrong with a connection string (never quoting the key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionStringError {
    #[error("the connection string is empty")]
    Empty,
    #[error("`{0}` is not a `Name=value` pair")]
    MalformedPair(String),
    #[error("`{0}` is missing")]
    Missing(&'static str),
    #[error("AccountKey is not valid base64")]
    BadKey,
    #[error("DefaultEndpointsProtocol must be `https` or `http`, not `{0}`")]
    BadProtocol(String),
    #[error("{0} must be an http:// or https:// URL")]
    BadEndpoint(&'static str),
    #[error("SharedAccessSignature connection strings are not supported: the service signs result links with the account key")]
    SasNotSupported,
    #[error("UseDevelopmentStorage must be `true`")]
    BadDevelopmentStorage,
}

impl StorageConnection {
    pub fn parse(s: &str) -> Result<Self, ConnectionStringError> {
        let mut account = None;
        let mut key = None;
        let mut protocol = "https".to_string();
        let mut suffix = "core.windows.net".to_string();
        let mut blob_endpoint = None;
        let mut queue_endpoint = None;
        let mut development = false;
        let mut any = false;
        for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            any = true;
            let Some((name, value)) = part.split_once('=') else {
                // Show the name only: a stray fragment could be part of a key.
                let shown: String = part.chars().take(24).collect();
                return Err(ConnectionStringError::MalformedPair(format!("{shown}…")));
            };
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "usedevelopmentstorage" => {
                    if !value.eq_ignore_ascii_case("true") {
                        return Err(ConnectionStringError::BadDevelopmentStorage);
                    }
                    development = true;
                }
                "accountname" => account = Some(value.to_string()),
                "accountkey" => key = Some(value.to_string()),
                "defaultendpointsprotocol" => protocol = value.to_ascii_lowercase(),
                "endpointsuffix" => suffix = value.to_string(),
                "blobendpoint" => blob_endpoint = Some(endpoint(value, "BlobEndpoint")?),
                "queueendpoint" => queue_endpoint = Some(endpoint(value, "QueueEndpoint")?),
                "sharedaccesssignature" => return Err(ConnectionStringError::SasNotSupported),
                // Table and file endpoints, proxies and the like do not concern this service.
                _ => {}
            }
        }
        if !any {
            return Err(ConnectionStringError::Empty);
        }
        if development {
            return Ok(Self {
                account: EMULATOR_ACCOUNT.into(),
                key: EMULATOR_KEY.into(),
                blob_endpoint: format!("http://127.0.0.1:10000/{EMULATOR_ACCOUNT}"),
                queue_endpoint: format!("http://127.0.0.1:10001/{EMULATOR_ACCOUNT}"),
            });
        }
        let account = account
            .filter(|a| !a.is_empty())
            .ok_or(ConnectionStringError::Missing("AccountName"))?;
        let key = key
            .filter(|k| !k.is_empty())
            .ok_or(ConnectionStringError::Missing("AccountKey"))?;
        if base64::engine::general_purpose::STANDARD
            .decode(&key)
            .is_err()
        {
            return Err(ConnectionStringError::BadKey);
        }
        if protocol != "https" && protocol != "http" {
            return Err(ConnectionStringError::BadProtocol(protocol));
        }
        let blob_endpoint =
            blob_endpoint.unwrap_or_else(|| format!("{protocol}://{account}.blob.{suffix}"));
        let queue_endpoint =
            queue_endpoint.unwrap_or_else(|| format!("{protocol}://{account}.queue.{suffix}"));
        Ok(Self {
            account,
            key,
            blob_endpoint,
            queue_endpoint,
        })
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    /// The account key (base64). Only the storage clients and the SAS signer see it.
    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    pub fn blob_endpoint(&self) -> &str {
        &self.blob_endpoint
    }

    pub fn queue_endpoint(&self) -> &str {
        &self.queue_endpoint
    }
}

fn endpoint(value: &str, name: &'static str) -> Result<String, ConnectionStringError> {
    let v = value.trim_end_matches('/');
    let rest = v
        .strip_prefix("https://")
        .or_else(|| v.strip_prefix("http://"))
        .ok_or(ConnectionStringError::BadEndpoint(name))?;
    if rest.is_empty() || rest.contains(char::is_whitespace) {
        return Err(ConnectionStringError::BadEndpoint(name));
    }
    Ok(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "c2VjcmV0LWtleS1zZWNyZXQta2V5LXNlY3JldC1rZXk=";

    #[test]
    fn development_storage_is_azurite() {
        let c = StorageConnection::parse("UseDevelopmentStorage=true").unwrap();
        assert_eq!(c.account(), "devstoreaccount1");
        assert_eq!(c.blob_endpoint(), "http://127.0.0.1:10000/devstoreaccount1");
        assert_eq!(
            c.queue_endpoint(),
            "http://127.0.0.1:10001/devstoreaccount1"
        );
    }

    #[test]
    fn account_key_form() {
        let c = StorageConnection::parse(&format!(
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={KEY};EndpointSuffix=core.windows.net"
        ))
        .unwrap();
        assert_eq!(c.blob_endpoint(), "https://acct.blob.core.windows.net");
        assert_eq!(c.queue_endpoint(), "https://acct.queue.core.windows.net");
        let c = StorageConnection::parse(&format!("AccountName=acct;AccountKey={KEY}")).unwrap();
        assert_eq!(c.blob_endpoint(), "https://acct.blob.core.windows.net");
    }

    #[test]
    fn explicit_endpoints() {
        let c = StorageConnection::parse(&format!(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={KEY};BlobEndpoint=http://127.0.0.1:4000/devstoreaccount1/;QueueEndpoint=http://127.0.0.1:4001/devstoreaccount1;TableEndpoint=http://x"
        ))
        .unwrap();
        assert_eq!(c.blob_endpoint(), "http://127.0.0.1:4000/devstoreaccount1");
        assert_eq!(c.queue_endpoint(), "http://127.0.0.1:4001/devstoreaccount1");
    }

    #[test]
    fn bad_strings_say_what_is_wrong_without_the_key() {
        let cases = [
            ("", ConnectionStringError::Empty),
            (
                "AccountName=a",
                ConnectionStringError::Missing("AccountKey"),
            ),
            (
                &format!("AccountKey={KEY}"),
                ConnectionStringError::Missing("AccountName"),
            ),
            (
                "AccountName=a;AccountKey=not base64!",
                ConnectionStringError::BadKey,
            ),
            (
                &format!("AccountName=a;AccountKey={KEY};DefaultEndpointsProtocol=ftp"),
                ConnectionStringError::BadProtocol("ftp".into()),
            ),
            (
                &format!("AccountName=a;AccountKey={KEY};BlobEndpoint=127.0.0.1:1"),
                ConnectionStringError::BadEndpoint("BlobEndpoint"),
            ),
            (
                "BlobEndpoint=https://a.blob.core.windows.net;SharedAccessSignature=sv=x",
                ConnectionStringError::SasNotSupported,
            ),
            (
                "UseDevelopmentStorage=false",
                ConnectionStringError::BadDevelopmentStorage,
            ),
        ];
        for (s, expected) in cases {
            let e = StorageConnection::parse(s).unwrap_err();
            assert_eq!(e, expected, "{s}");
        }
        let e = StorageConnection::parse(&format!("AccountName=a;{KEY}")).unwrap_err();
        assert!(!e.to_string().contains(KEY));
    }

    #[test]
    fn debug_hides_the_key() {
        let c = StorageConnection::parse(&format!("AccountName=acct;AccountKey={KEY}")).unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains(KEY) && shown.contains("redacted"));
    }
}
