//! The identity side of the world, played faithfully: a managed identity endpoint speaking the
//! App Service protocol (`GET ?resource=…&api-version=2019-08-01` with `X-IDENTITY-HEADER`,
//! answering `access_token`, `expires_on`, `resource`, `token_type`) and a Microsoft Entra
//! token endpoint for workload identity (`POST /<tenant>/oauth2/v2.0/token`), both issuing
//! tokens OAuth-mode Azurite accepts (issuer `https://sts.windows.net/<tenant>/`, audience
//! `https://storage.azure.com`, UUID `oid`/`tid`, `iat`/`nbf`/`exp`). Azurite does not check a
//! token's signature, so tokens are unsigned (`alg: none`); it checks every claim.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;

/// One token request as the endpoint saw it.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    pub identity_header: Option<String>,
    pub body: String,
}

struct Shared {
    secret: String,
    lifetime: Mutex<Duration>,
    failing: AtomicBool,
    issued: AtomicU64,
    requests: Mutex<Vec<TokenRequest>>,
}

pub struct TokenServer {
    pub port: u16,
    pub tenant: String,
    pub object_id: String,
    shared: Arc<Shared>,
}

impl TokenServer {
    /// Starts on a free loopback port; tokens live `lifetime`.
    pub fn start(lifetime: Duration) -> TokenServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            secret: uuid::Uuid::new_v4().to_string(),
            lifetime: Mutex::new(lifetime),
            failing: AtomicBool::new(false),
            issued: AtomicU64::new(0),
            requests: Mutex::new(Vec::new()),
        });
        let server = TokenServer {
            port,
            tenant: uuid::Uuid::new_v4().to_string(),
            object_id: uuid::Uuid::new_v4().to_string(),
            shared: Arc::clone(&shared),
        };
        let (tenant, oid) = (server.tenant.clone(), server.object_id.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (shared, tenant, oid) = (Arc::clone(&shared), tenant.clone(), oid.clone());
                std::thread::spawn(move || answer(stream, &shared, &tenant, &oid));
            }
        });
        server
    }

    /// `IDENTITY_ENDPOINT`, as App Service sets it.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/msi/token", self.port)
    }

    /// `IDENTITY_HEADER`: the secret the endpoint insists on.
    pub fn header(&self) -> &str {
        &self.shared.secret
    }

    /// `AZURE_AUTHORITY_HOST` for workload identity.
    pub fn authority(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Tokens issued so far.
    pub fn issued(&self) -> u64 {
        self.shared.issued.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<TokenRequest> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// While set, every request gets a `500`.
    pub fn set_failing(&self, failing: bool) {
        self.shared.failing.store(failing, Ordering::SeqCst);
    }

    pub fn set_lifetime(&self, lifetime: Duration) {
        *self.shared.lifetime.lock().unwrap() = lifetime;
    }

    /// The handler's settings for managed identity through this endpoint.
    pub fn managed_identity_settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AzureWebJobsStorage__credential", "managedidentity".into()),
            ("IDENTITY_ENDPOINT", self.endpoint()),
            ("IDENTITY_HEADER", self.header().to_string()),
        ]
    }
}

/// An unsigned JWT with the claims Azure Storage (and Azurite) check.
pub fn token(tenant: &str, oid: &str, lifetime: Duration) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let header = b64(serde_json::json!({ "typ": "JWT", "alg": "none" }));
    let claims = b64(serde_json::json!({
        "aud": "https://storage.azure.com",
        "iss": format!("https://sts.windows.net/{tenant}/"),
        "iat": now - 60,
        "nbf": now - 60,
        "exp": now + lifetime.as_secs(),
        "oid": oid,
        "tid": tenant,
        "sub": oid,
        "ver": "1.0",
    }));
    format!("{header}.{claims}.unsigned")
}

fn answer(stream: TcpStream, shared: &Shared, tenant: &str, oid: &str) {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut identity_header = None;
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = h.trim_end().split_once(':') {
            let value = value.trim().to_string();
            match name.to_ascii_lowercase().as_str() {
                "x-identity-header" => identity_header = Some(value),
                "content-length" => length = value.parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    let body = String::from_utf8_lossy(&body).to_string();
    shared.requests.lock().unwrap().push(TokenRequest {
        method: method.clone(),
        target: target.clone(),
        identity_header: identity_header.clone(),
        body: body.clone(),
    });
    let lifetime = *shared.lifetime.lock().unwrap();
    let query = |t: &str, key: &str| {
        let q = t.split_once('?').map(|(_, q)| q).unwrap_or("");
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.to_string())
    };
    let (status, json) = if shared.failing.load(Ordering::SeqCst) {
        (
            500,
            serde_json::json!({ "error": "temporarily_unavailable" }),
        )
    } else if method == "GET" && target.starts_with("/msi/token") {
        // The App Service protocol: the header secret, the resource and the API version.
        if identity_header.as_deref() != Some(shared.secret.as_str()) {
            (
                401,
                serde_json::json!({ "error": "missing or wrong X-IDENTITY-HEADER" }),
            )
        } else if query(&target, "api-version").as_deref() != Some("2019-08-01")
            || query(&target, "resource").as_deref() != Some("https://storage.azure.com")
        {
            (
                400,
                serde_json::json!({ "error": "bad resource or api-version" }),
            )
        } else {
            shared.issued.fetch_add(1, Ordering::SeqCst);
            let expires_on = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs()
                + lifetime.as_secs();
            (
                200,
                serde_json::json!({
                    "access_token": token(tenant, oid, lifetime),
                    "expires_on": expires_on.to_string(),
                    "resource": "https://storage.azure.com",
                    "token_type": "Bearer",
                    "client_id": query(&target, "client_id").unwrap_or_else(|| oid.to_string()),
                }),
            )
        }
    } else if method == "POST" && target == format!("/{tenant}/oauth2/v2.0/token") {
        let form: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
        let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let ok = field("grant_type") == Some("client_credentials")
            && field("scope") == Some("https://storage.azure.com/.default")
            && field("client_assertion_type")
                == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
            && field("client_assertion").is_some_and(|a| !a.is_empty())
            && field("client_id").is_some();
        if ok {
            shared.issued.fetch_add(1, Ordering::SeqCst);
            (
                200,
                serde_json::json!({
                    "token_type": "Bearer",
                    "expires_in": lifetime.as_secs(),
                    "access_token": token(tenant, oid, lifetime),
                }),
            )
        } else {
            (400, serde_json::json!({ "error": "invalid_request" }))
        }
    } else {
        (404, serde_json::json!({ "error": "not found" }))
    };
    let body = json.to_string();
    let mut stream = reader.into_inner();
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}
