//! Completion callbacks over HTTP (reqwest on rustls). The client resolves names itself and
//! hands the connector only addresses the callback policy allows, so the connection goes to an
//! address that was checked, however DNS answers next time; no redirect is followed, no proxy
//! from the environment is used, and no connection is kept, so every delivery checks anew.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use time::format_description::well_known::Rfc2822;
use time::OffsetDateTime;

use crate::domain::callback::address::CallbackPolicy;
use crate::domain::ports::{WebhookAnswer, WebhookRequest, Webhooks};

const USER_AGENT: &str = concat!("async-request-reply/", env!("CARGO_PKG_VERSION"));

/// Why a host cannot be called.
#[derive(Debug, thiserror::Error)]
enum ResolveError {
    /// It resolves to an address the policy forbids.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Failed(String),
}

/// Resolves a host and checks every address it has: one forbidden address refuses the host,
/// so a name cannot smuggle an internal address in beside a public one.
async fn resolve_checked(
    policy: &CallbackPolicy,
    host: &str,
    timeout: Duration,
) -> Result<Vec<SocketAddr>, ResolveError> {
    let lookup = tokio::net::lookup_host((host, 0));
    let addrs: Vec<SocketAddr> = match tokio::time::timeout(timeout, lookup).await {
        Ok(Ok(addrs)) => addrs.collect(),
        Ok(Err(e)) => {
            return Err(ResolveError::Failed(format!(
                "names a host that does not resolve ({e})"
            )))
        }
        Err(_) => {
            return Err(ResolveError::Failed(
                "names a host that did not resolve in time".into(),
            ))
        }
    };
    if addrs.is_empty() {
        return Err(ResolveError::Failed(
            "names a host with no addresses".into(),
        ));
    }
    for addr in &addrs {
        policy
            .check_address(host, addr.ip())
            .map_err(ResolveError::Refused)?;
    }
    Ok(addrs)
}

struct CheckingResolver {
    policy: Arc<CallbackPolicy>,
    timeout: Duration,
}

impl Resolve for CheckingResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let timeout = self.timeout;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs = resolve_checked(&policy, &host, timeout).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The webhook sender.
pub struct HttpWebhooks {
    client: reqwest::Client,
    policy: Arc<CallbackPolicy>,
    timeout: Duration,
}

impl HttpWebhooks {
    /// A sender whose every attempt is bounded by `timeout`.
    pub fn new(policy: CallbackPolicy, timeout: Duration) -> Result<Self, String> {
        let policy = Arc::new(policy);
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(CheckingResolver {
                policy: policy.clone(),
                timeout,
            }))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .pool_max_idle_per_host(0)
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(USER_AGENT)
            .build()
            .map_err(|e| format!("cannot build the callbacks' HTTP client: {e}"))?;
        Ok(Self {
            client,
            policy,
            timeout,
        })
    }

    /// The host of `url`, as an address when it is one.
    fn host_of(url: &reqwest::Url) -> Option<(String, Option<IpAddr>)> {
        match url.host()? {
            url::Host::Domain(d) => Some((d.to_ascii_lowercase(), None)),
            url::Host::Ipv4(ip) => Some((ip.to_string(), Some(IpAddr::V4(ip)))),
            url::Host::Ipv6(ip) => Some((ip.to_string(), Some(IpAddr::V6(ip)))),
        }
    }
}

#[async_trait]
impl Webhooks for HttpWebhooks {
    async fn check(&self, url: &str) -> Result<(), String> {
        let url = reqwest::Url::parse(url).map_err(|e| format!("is not a URL ({e})"))?;
        match Self::host_of(&url) {
            None => Err("must name a host".into()),
            Some((host, Some(ip))) => self.policy.check_address(&host, ip),
            Some((host, None)) => resolve_checked(&self.policy, &host, self.timeout)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
        }
    }

    async fn post(&self, request: WebhookRequest) -> WebhookAnswer {
        let url = match reqwest::Url::parse(&request.url) {
            Ok(url) => url,
            Err(e) => return WebhookAnswer::Refused(format!("not a URL ({e})")),
        };
        // An address in the URL never reaches the resolver: it is checked here.
        if let Some((host, Some(ip))) = Self::host_of(&url) {
            if let Err(reason) = self.policy.check_address(&host, ip) {
                return WebhookAnswer::Refused(reason);
            }
        }
        let mut builder = self.client.post(url).body(request.body);
        for (name, value) in request.headers {
            builder = builder.header(name, value);
        }
        match builder.send().await {
            Ok(response) => WebhookAnswer::Status {
                status: response.status().as_u16(),
                retry_after: response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after),
            },
            Err(e) => match refusal(&e) {
                Some(reason) => WebhookAnswer::Refused(reason),
                None => WebhookAnswer::Unreachable(describe(e)),
            },
        }
    }
}

/// The policy's refusal, when that is why the request failed.
fn refusal(e: &reqwest::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(ResolveError::Refused(reason)) = err.downcast_ref::<ResolveError>() {
            return Some(reason.clone());
        }
        source = err.source();
    }
    None
}

/// What went wrong, without the URL (it may carry a token).
fn describe(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "the connection failed"
    };
    let mut detail = String::new();
    let mut source = std::error::Error::source(&e);
    while let Some(err) = source {
        detail = err.to_string();
        source = err.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    }
}

/// `Retry-After` as seconds or an HTTP date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = OffsetDateTime::parse(&value.replace("GMT", "+0000"), &Rfc2822).ok()?;
    Some(Duration::try_from(at - OffsetDateTime::now_utc()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_in_both_forms() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[tokio::test]
    async fn a_delivery_to_a_forbidden_address_is_refused_before_connecting() {
        let webhooks =
            HttpWebhooks::new(CallbackPolicy::default(), Duration::from_secs(5)).unwrap();
        for url in ["http://localhost:9/hook", "http://127.0.0.1:9/hook"] {
            let answer = webhooks
                .post(WebhookRequest {
                    url: url.into(),
                    headers: Vec::new(),
                    body: bytes::Bytes::from_static(b"{}"),
                })
                .await;
            assert!(
                matches!(answer, WebhookAnswer::Refused(_)),
                "{url}: {answer:?}"
            );
        }
        // Listed, the same address is called (nothing listens there: unreachable, not refused).
        let listed = HttpWebhooks::new(
            CallbackPolicy::new(["localhost".to_string()]),
            Duration::from_secs(5),
        )
        .unwrap();
        let answer = listed
            .post(WebhookRequest {
                url: "http://localhost:9/hook".into(),
                headers: Vec::new(),
                body: bytes::Bytes::from_static(b"{}"),
            })
            .await;
        assert!(
            matches!(answer, WebhookAnswer::Unreachable(_)),
            "{answer:?}"
        );
    }

    #[tokio::test]
    async fn names_resolving_to_internal_addresses_are_refused() {
        let policy = CallbackPolicy::default();
        let err = resolve_checked(&policy, "localhost", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, ResolveError::Refused(_)), "{err}");
        let listed = CallbackPolicy::new(["localhost".to_string()]);
        assert!(
            resolve_checked(&listed, "localhost", Duration::from_secs(5))
                .await
                .is_ok()
        );
    }
}
