//! Blob-backed stores: JSON records with create-only and ETag-conditional writes, and write-once
//! results streamed in chunks and shared through read-only SAS links.

use std::sync::Arc;

use async_trait::async_trait;
use azure_core::auth::Secret;
use azure_core::request_options::IfMatchCondition;
use azure_storage::shared_access_signature::service_sas::{
    BlobSasPermissions, BlobSharedAccessSignature, BlobSignedResource,
};
use azure_storage::shared_access_signature::{SasProtocol, SasToken};
use azure_storage_blobs::blob::operations::{GetBlobResponse, PutBlockBlobResponse};
use azure_storage_blobs::prelude::{BlobContentType, ContainerClient};
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use time::OffsetDateTime;

use super::account::{StorageAccount, StorageAuth};
use super::delegation::DelegationKeys;
use super::errors::{is_missing_parent, status_of, store_error};
use crate::domain::ports::{ETag, PutOutcome, RecordStore, ResultBody, ResultStore, StoreError};

/// The range each read asks for. The crate adds `x-ms-range-get-content-crc64: true` to any
/// ranged read shorter than 4 MiB, which Azurite in its default (strict) mode refuses with
/// `500 FeatureNotSupported`, so every range is exactly 4 MiB: an open-ended first range keeps
/// the crate's follow-up ranges at that length too. Memory stays bounded anyway: bodies are
/// streamed, never collected a range at a time.
const RANGE: u64 = 4 * 1024 * 1024;

/// Reads a blob from its start, in ranges of [`RANGE`] (see there why).
fn read_ranges(
    blob: &azure_storage_blobs::prelude::BlobClient,
) -> azure_core::Pageable<GetBlobResponse, azure_core::Error> {
    blob.get()
        .range(azure_core::request_options::Range::RangeFrom(0..))
        .chunk_size(RANGE)
        .into_stream()
}

async fn create_container(container: &ContainerClient) -> Result<(), StoreError> {
    match container.create().await {
        Ok(_) => Ok(()),
        Err(e) if status_of(&e).map(u16::from) == Some(409) => Ok(()),
        Err(e) => Err(store_error("create container", &e)),
    }
}

/// Re-creates a container found missing, so the next write succeeds instead of failing forever.
async fn heal_container(container: &ContainerClient) -> Result<(), StoreError> {
    tracing::warn!(
        container = container.container_name(),
        "container missing; re-creating it"
    );
    create_container(container).await
}

/// Creates a blob only if none exists (`If-None-Match: *`). A missing container is re-created
/// and the put tried once more; a failure to re-create comes back as the put's own error.
async fn put_create_only(
    container: &ContainerClient,
    name: &str,
    body: Bytes,
    content_type: &str,
) -> azure_core::Result<PutBlockBlobResponse> {
    let put = || {
        container
            .blob_client(name)
            .put_block_blob(body.clone())
            .content_type(BlobContentType::from(content_type.to_string()))
            .if_match(IfMatchCondition::NotMatch("*".into()))
            .into_future()
    };
    match put().await {
        Err(e) if is_missing_parent(&e) => {
            if heal_container(container).await.is_err() {
                return Err(e);
            }
            put().await
        }
        other => other,
    }
}

/// Reads a whole (small) blob with its ETag.
async fn read_all(
    container: &ContainerClient,
    name: &str,
) -> Result<Option<(Bytes, ETag)>, StoreError> {
    let mut stream = read_ranges(&container.blob_client(name));
    let mut buf = BytesMut::new();
    let mut etag = None;
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => match store_error("read blob", &e) {
                StoreError::NotFound => return Ok(None),
                other => return Err(other),
            },
        };
        etag.get_or_insert_with(|| chunk.blob.properties.etag.to_string());
        let data = chunk
            .data
            .collect()
            .await
            .map_err(|e| store_error("read blob", &e))?;
        buf.extend_from_slice(&data);
    }
    Ok(etag.map(|etag| (buf.freeze(), etag)))
}

pub struct BlobRecordStore {
    container: ContainerClient,
}

impl BlobRecordStore {
    pub fn new(container: ContainerClient) -> Self {
        Self { container }
    }

    pub async fn create_container(&self) -> Result<(), StoreError> {
        create_container(&self.container).await
    }

    fn blob_name(key: &str) -> String {
        format!("{key}.json")
    }
}

#[async_trait]
impl RecordStore for BlobRecordStore {
    async fn insert(&self, key: &str, doc: Bytes) -> Result<ETag, StoreError> {
        let r = put_create_only(
            &self.container,
            &Self::blob_name(key),
            doc,
            "application/json",
        )
        .await
        .map_err(|e| store_error("insert record", &e))?;
        Ok(r.etag.to_string())
    }

    async fn get(&self, key: &str) -> Result<Option<(Bytes, ETag)>, StoreError> {
        read_all(&self.container, &Self::blob_name(key)).await
    }

    async fn is_at(&self, key: &str, etag: &str) -> Result<bool, StoreError> {
        let blob = self.container.blob_client(Self::blob_name(key));
        let r = blob
            .get_properties()
            .if_match(IfMatchCondition::Match(etag.to_string()))
            .await;
        match r {
            Ok(_) => Ok(true),
            Err(e) => match store_error("check record version", &e) {
                // As with `replace`: a missing blob fails If-Match with 412 too.
                StoreError::PreconditionFailed => match blob.get_properties().await {
                    Ok(_) => Ok(false),
                    Err(e) => Err(store_error("check record version", &e)),
                },
                other => Err(other),
            },
        }
    }

    async fn replace(&self, key: &str, doc: Bytes, etag: &str) -> Result<ETag, StoreError> {
        let blob = self.container.blob_client(Self::blob_name(key));
        let r = blob
            .put_block_blob(doc)
            .content_type(BlobContentType::from("application/json"))
            .if_match(IfMatchCondition::Match(etag.to_string()))
            .await;
        match r {
            Ok(r) => Ok(r.etag.to_string()),
            Err(e) => match store_error("replace record", &e) {
                // A deleted blob fails If-Match with 412 too; the contract tells the two apart.
                StoreError::PreconditionFailed => match blob.get_properties().await {
                    Ok(_) => Err(StoreError::PreconditionFailed),
                    Err(e) => Err(store_error("replace record", &e)),
                },
                other => Err(other),
            },
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self
            .container
            .blob_client(Self::blob_name(key))
            .delete()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match store_error("delete record", &e) {
                StoreError::NotFound => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn list_written_before(
        &self,
        prefix: &str,
        cutoff: OffsetDateTime,
    ) -> Result<Vec<String>, StoreError> {
        let mut pages = self
            .container
            .list_blobs()
            .prefix(prefix.to_string())
            .into_stream();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| store_error("list records", &e))?;
            for blob in page.blobs.blobs() {
                // Last-Modified has whole seconds: a document may be listed up to a second
                // early, which only costs the sweep one read.
                if blob.properties.last_modified >= cutoff {
                    continue;
                }
                if let Some(key) = blob.name.strip_suffix(".json") {
                    keys.push(key.to_string());
                }
            }
        }
        Ok(keys)
    }
}

/// What signs result links: the account key, or a user-delegation key when storage is reached
/// by identity.
pub enum LinkSigner {
    AccountKey(Secret),
    UserDelegation(Arc<DelegationKeys>),
}

impl LinkSigner {
    /// The signer for `account`; identity-based accounts need their delegation keys.
    pub fn for_account(account: &StorageAccount, keys: Option<Arc<DelegationKeys>>) -> Self {
        match (account.auth(), keys) {
            (_, Some(keys)) => Self::UserDelegation(keys),
            (StorageAuth::Key(key), None) => Self::AccountKey(key.clone()),
            (StorageAuth::Identity(_), None) => {
                unreachable!("identity-based storage is built with its delegation keys")
            }
        }
    }
}

pub struct BlobResultStore {
    container: ContainerClient,
    account: String,
    signer: LinkSigner,
    /// Result links are `https` only unless storage itself is plain http (Azurite).
    protocol: SasProtocol,
}

impl BlobResultStore {
    pub fn new(container: ContainerClient, account: &StorageAccount, signer: LinkSigner) -> Self {
        let protocol = if account.blob_endpoint().starts_with("https://") {
            SasProtocol::Https
        } else {
            SasProtocol::HttpHttps
        };
        Self {
            container,
            account: account.name().to_string(),
            signer,
            protocol,
        }
    }

    pub async fn create_container(&self) -> Result<(), StoreError> {
        create_container(&self.container).await
    }
}

#[async_trait]
impl ResultStore for BlobResultStore {
    async fn put_if_absent(
        &self,
        name: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<PutOutcome, StoreError> {
        match put_create_only(&self.container, name, body, content_type).await {
            Ok(_) => Ok(PutOutcome::Created),
            Err(e) => match store_error("write result", &e) {
                StoreError::AlreadyExists => Ok(PutOutcome::AlreadyExisted),
                other => Err(other),
            },
        }
    }

    async fn open(&self, name: &str) -> Result<Option<ResultBody>, StoreError> {
        let blob = self.container.blob_client(name);
        let props = match blob.get_properties().await {
            Ok(p) => p,
            Err(e) => match store_error("read result", &e) {
                StoreError::NotFound => return Ok(None),
                other => return Err(other),
            },
        };
        let content_length = props.blob.properties.content_length;
        let content_type = props.blob.properties.content_type.clone();
        if content_length == 0 {
            // A ranged read of an empty blob answers 416; there is nothing to read anyway.
            return Ok(Some(ResultBody {
                content_type,
                content_length,
                chunks: futures::stream::empty().boxed(),
            }));
        }
        let chunks = read_ranges(&blob)
            .map_ok(|page| page.data)
            .try_flatten()
            .map_err(|e| store_error("read result", &e))
            .boxed();
        Ok(Some(ResultBody {
            content_type,
            content_length,
            chunks,
        }))
    }

    async fn read_link(
        &self,
        name: &str,
        expires: OffsetDateTime,
    ) -> Result<Option<String>, StoreError> {
        let blob = self.container.blob_client(name);
        let resource = format!(
            "/blob/{}/{}/{}",
            self.account,
            self.container.container_name(),
            name
        );
        let permissions = BlobSasPermissions {
            read: true,
            ..Default::default()
        };
        let sas = match &self.signer {
            LinkSigner::AccountKey(key) => BlobSharedAccessSignature::new(
                key.clone(),
                resource,
                permissions,
                expires,
                BlobSignedResource::Blob,
            ),
            LinkSigner::UserDelegation(keys) => {
                let key = keys.key().await?;
                // The key covers a whole link by construction; never sign past it anyway.
                let expires = expires.min(key.signed_expiry);
                BlobSharedAccessSignature::new(
                    key,
                    resource,
                    permissions,
                    expires,
                    BlobSignedResource::Blob,
                )
            }
        }
        .protocol(self.protocol);
        let token = sas
            .token()
            .map_err(|e| StoreError::Fatal(format!("cannot sign a result link: {}", e.kind())))?;
        let mut url = blob
            .url()
            .map_err(|e| StoreError::Fatal(format!("bad result URL: {}", e.kind())))?;
        url.set_query(Some(&token));
        Ok(Some(url.to_string()))
    }

    async fn delete(&self, name: &str) -> Result<(), StoreError> {
        match self.container.blob_client(name).delete().await {
            Ok(_) => Ok(()),
            Err(e) => match store_error("delete result", &e) {
                StoreError::NotFound => Ok(()),
                other => Err(other),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use azure_storage::{CloudLocation, StorageCredentials};
    use azure_storage_blobs::prelude::ClientBuilder;

    fn store(conn: &str) -> BlobResultStore {
        let conn = super::super::connection::StorageConnection::parse(conn).unwrap();
        let container = ClientBuilder::with_location(
            CloudLocation::Custom {
                account: conn.account().into(),
                uri: conn.blob_endpoint().into(),
            },
            StorageCredentials::access_key(conn.account().to_string(), conn.key().to_string()),
        )
        .container_client("data");
        let account = StorageAccount::from(conn);
        let signer = LinkSigner::for_account(&account, None);
        BlobResultStore::new(container, &account, signer)
    }

    fn query_of(url: &str) -> Vec<(String, String)> {
        let q = url.split_once('?').unwrap().1;
        form_urlencoded::parse(q.as_bytes()).into_owned().collect()
    }

    #[tokio::test]
    async fn links_on_azure_are_https_only_read_only_and_for_one_blob() {
        let s = store("AccountName=acct;AccountKey=c2VjcmV0LWtleQ==");
        let expires = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        let url = s.read_link("x.blobdata", expires).await.unwrap().unwrap();
        assert!(
            url.starts_with("https://acct.blob.core.windows.net/data/x.blobdata?"),
            "{url}"
        );
        let q = query_of(&url);
        let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("spr"), Some("https"));
        assert_eq!(get("sp"), Some("r"));
        assert_eq!(get("sr"), Some("b"));
        assert!(get("se").unwrap().starts_with("2024-"));
        assert!(
            !url.contains("c2VjcmV0LWtleQ"),
            "the key never appears in a link"
        );
    }

    #[tokio::test]
    async fn links_on_plain_http_storage_allow_http() {
        let s = store("UseDevelopmentStorage=true");
        let url = s
            .read_link("x.blobdata", OffsetDateTime::now_utc())
            .await
            .unwrap()
            .unwrap();
        let q = query_of(&url);
        assert!(
            q.iter().any(|(k, v)| k == "spr" && v == "http,https"),
            "{url}"
        );
    }
}
