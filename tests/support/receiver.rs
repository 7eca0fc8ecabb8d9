//! A webhook receiver on loopback for the callback tests: a bare HTTP/1.1 server that records
//! every request it gets (its path, headers and body) and answers each from a script (a
//! status with headers, or a connection dropped without an answer), then `200` once the
//! script is spent. Written by hand so that a dropped connection is a real one. It also
//! verifies Standard Webhooks signatures, independently of the service's own signing code.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use super::eventually;

/// How the receiver answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    Status(u16, Vec<(&'static str, String)>),
    /// Close the connection without answering.
    Drop,
    /// Never answer: hold the connection until the sender closes it.
    Hang,
}

impl Reply {
    pub fn status(code: u16) -> Self {
        Reply::Status(code, Vec::new())
    }
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Lower-case names.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    /// The status answered; `None` when the connection was dropped.
    pub answered: Option<u16>,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }

    pub fn is_2xx(&self) -> bool {
        self.answered.is_some_and(|s| (200..300).contains(&s))
    }
}

pub struct Receiver {
    /// `http://127.0.0.1:<port>`
    pub base: String,
    log: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<Reply>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// A receiver on a free loopback port answering `script` first, then `200`.
    pub async fn start(script: Vec<Reply>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let log = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let (l, s) = (log.clone(), script.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (l, s) = (l.clone(), s.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, l, s).await;
                });
            }
        });
        Receiver {
            base,
            log,
            script,
            task,
        }
    }

    /// Replies to use next, before the default `200`.
    pub fn then(&self, replies: Vec<Reply>) {
        self.script.lock().unwrap().extend(replies);
    }

    pub fn received(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }

    /// The requests for one operation (by the event's `subject`).
    pub fn for_operation(&self, id: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.json()["subject"] == id)
            .collect()
    }

    /// Waits (bounded) until a request for operation `id` was answered `2xx`; answers all of
    /// that operation's requests so far.
    pub async fn delivered(&self, id: &str, limit: Duration) -> Vec<Received> {
        eventually(
            format_args!("a 2xx delivery of the callback for {id}"),
            Duration::from_millis(20),
            limit,
            async || {
                let got = self.for_operation(id);
                got.iter().any(Received::is_2xx).then_some(got)
            },
        )
        .await
    }
}

async fn serve(
    mut stream: TcpStream,
    log: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<Reply>>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        assert!(buf.len() < 1 << 20, "a request head over 1 MiB");
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or("").split(' ');
    let method = request_line.next().unwrap_or("").to_string();
    let target = request_line.next().unwrap_or("").to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let reply = script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(Reply::status(200));
    let answered = match &reply {
        Reply::Status(code, _) => Some(*code),
        Reply::Drop | Reply::Hang => None,
    };
    log.lock().unwrap().push(Received {
        at: Instant::now(),
        method,
        target,
        headers,
        body,
        answered,
    });
    match reply {
        Reply::Drop => drop(stream),
        Reply::Hang => while stream.read(&mut chunk).await? > 0 {},
        Reply::Status(code, extra) => {
            let mut answer =
                format!("HTTP/1.1 {code} Scripted\r\nContent-Length: 0\r\nConnection: close\r\n");
            for (k, v) in extra {
                answer.push_str(&format!("{k}: {v}\r\n"));
            }
            answer.push_str("\r\n");
            stream.write_all(answer.as_bytes()).await?;
            stream.shutdown().await?;
        }
    }
    Ok(())
}

/// Whether `received` carries a `webhook-signature` that `secret` (`whsec_<base64>`) made,
/// as the Standard Webhooks specification defines it.
pub fn signed_by(received: &Received, secret: &str) -> bool {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").expect("a whsec_ secret"))
        .expect("base64");
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("any key length");
    mac.update(
        format!(
            "{}.{}.",
            received.header("webhook-id"),
            received.header("webhook-timestamp")
        )
        .as_bytes(),
    );
    mac.update(&received.body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    received
        .header("webhook-signature")
        .split(' ')
        .any(|s| s == expected)
}
