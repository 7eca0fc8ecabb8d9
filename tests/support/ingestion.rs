//! A fake Application Insights ingestion endpoint on loopback: accepts the exporter's
//! `POST /v2/track` (gzip-compressed JSON arrays of envelopes), keeps every envelope, and
//! answers `200` as the real one does. Anything else it receives is kept too, as a request
//! that should not have come. Over TLS with a throw-away CA (`scripts/make-test-ca.sh`): the
//! exporter sends only over `https`, and the handler trusts the CA through `SSL_CERT_FILE`.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use std::path::{Path, PathBuf};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use serde_json::Value;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{crypto, ServerConfig};
use tokio_rustls::TlsAcceptor;
use warp::Filter;

#[derive(Default)]
struct Seen {
    envelopes: Vec<Value>,
    /// Every request, as `METHOD path`.
    requests: Vec<String>,
}

pub struct Ingestion {
    pub addr: SocketAddr,
    /// The CA its certificate is signed by: the handler's `SSL_CERT_FILE`.
    pub ca: PathBuf,
    seen: Arc<Mutex<Seen>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Ingestion {
    pub async fn start() -> Ingestion {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let kept = seen.clone();
        let route = warp::method()
            .and(warp::path::full())
            .and(warp::header::optional::<String>("content-encoding"))
            .and(warp::body::bytes())
            .map(
                move |method: warp::http::Method,
                      path: warp::path::FullPath,
                      encoding: Option<String>,
                      body: bytes::Bytes| {
                    let mut seen = kept.lock().unwrap();
                    seen.requests.push(format!("{method} {}", path.as_str()));
                    let mut text = String::new();
                    if encoding.as_deref() == Some("gzip") {
                        flate2::read::GzDecoder::new(&body[..])
                            .read_to_string(&mut text)
                            .expect("a gzip body");
                    } else {
                        text = String::from_utf8_lossy(&body).into_owned();
                    }
                    let items: Vec<Value> = serde_json::from_str(&text).unwrap_or_default();
                    let n = items.len();
                    seen.envelopes.extend(items);
                    warp::reply::json(&serde_json::json!({
                        "itemsReceived": n, "itemsAccepted": n, "errors": []
                    }))
                },
            );
        let certs = std::env::temp_dir().join(format!("ingestion-ca-{}", uuid::Uuid::new_v4()));
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/make-test-ca.sh");
        let made = std::process::Command::new("bash")
            .arg(script)
            .arg(&certs)
            .status()
            .expect("bash runs");
        assert!(made.success(), "scripts/make-test-ca.sh failed");
        let tls = TlsAcceptor::from(Arc::new(server_config(&certs)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("its address");
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => continue,
                    },
                    _ = &mut stopped => return,
                };
                let (tls, route) = (tls.clone(), route.clone());
                tokio::spawn(async move {
                    let Ok(stream) = tls.accept(stream).await else {
                        return;
                    };
                    let service = TowerToHyperService::new(warp::service(route));
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ingestion {
            addr,
            ca: certs.join("ca.pem"),
            seen,
            stop: Some(stop),
        }
    }

    /// The connection string that sends the handler's telemetry here.
    pub fn connection_string(&self) -> String {
        connection_string_for(self.addr)
    }

    pub fn envelopes(&self) -> Vec<Value> {
        self.seen.lock().unwrap().envelopes.clone()
    }

    pub fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().requests.clone()
    }
}

impl Drop for Ingestion {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A connection string for an ingestion endpoint at `addr` (the all-zero key: a test's).
pub fn connection_string_for(addr: SocketAddr) -> String {
    format!(
        "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=https://{addr}/"
    )
}

/// The leaf certificate for 127.0.0.1 that `make-test-ca.sh` made in `dir`.
fn server_config(dir: &Path) -> ServerConfig {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("leaf.pem"))
        .expect("leaf.pem")
        .map(|c| c.expect("a certificate"))
        .collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("leaf.key")).expect("leaf.key");
    ServerConfig::builder_with_provider(Arc::new(crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("a server certificate")
}
