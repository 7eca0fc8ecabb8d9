//! The absolute URLs handed to clients (`Location`, `Operation-Location`): a configured public
//! base URL wins; on Azure `WEBSITE_HOSTNAME` gives `https://`; otherwise they follow the request.

use warp::http::HeaderMap;

/// Whether `s` is a plausible `host[:port]`: a DNS name or IPv4 address, or `[IPv6]`.
pub fn valid_authority(s: &str) -> bool {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        match rest.split_once(']') {
            Some((v6, after)) => {
                if v6.parse::<std::net::Ipv6Addr>().is_err() {
                    return false;
                }
                match after {
                    "" => return true,
                    p => match p.strip_prefix(':') {
                        Some(port) => ("v6", Some(port)),
                        None => return false,
                    },
                }
            }
            None => return false,
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.parse::<u16>().is_ok());
    host_ok && port_ok
}

fn is_loopback(authority: &str) -> bool {
    let host = if authority.starts_with('[') {
        authority
            .split(']')
            .next()
            .unwrap_or("")
            .trim_start_matches('[')
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    host.eq_ignore_ascii_case("localhost") || host.starts_with("127.") || host == "::1"
}

/// The rules for a base URL, from settings.
#[derive(Debug, Clone, Default)]
pub struct UrlPolicy {
    pub public_base_url: Option<String>,
    pub website_hostname: Option<String>,
    pub trust_forwarded_headers: bool,
}

/// The request carries no usable host to build URLs from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadHost(pub String);

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

impl UrlPolicy {
    /// `scheme://host[:port]` (no trailing slash) for this request.
    pub fn base(&self, headers: &HeaderMap) -> Result<String, BadHost> {
        if let Some(base) = &self.public_base_url {
            return Ok(base.clone());
        }
        if let Some(host) = &self.website_hostname {
            // `func start` sets localhost:7071 and serves plain http; App Service serves https.
            let scheme = if is_loopback(host) { "http" } else { "https" };
            return Ok(format!("{scheme}://{host}"));
        }
        let mut scheme = "http".to_string();
        let mut host = header(headers, "host").map(str::to_string);
        if self.trust_forwarded_headers {
            if let Some(proto) = header(headers, "x-forwarded-proto") {
                let proto = proto
                    .split(',')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                if proto != "http" && proto != "https" {
                    return Err(BadHost(format!(
                        "X-Forwarded-Proto `{proto}` is not http or https"
                    )));
                }
                scheme = proto;
            }
            if let Some(fwd) = header(headers, "x-forwarded-host") {
                host = Some(fwd.split(',').next().unwrap_or("").trim().to_string());
            }
        }
        match host {
            Some(h) if valid_authority(&h) => Ok(format!("{scheme}://{h}")),
            Some(_) => Err(BadHost("the Host header is not a valid host[:port]".into())),
            None => Err(BadHost("the request has no Host header".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warp::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn azure_gets_https_and_func_start_keeps_http() {
        let on_azure = UrlPolicy {
            website_hostname: Some("myapp.azurewebsites.net".into()),
            ..Default::default()
        };
        assert_eq!(
            on_azure
                .base(&headers(&[("host", "127.0.0.1:33333")]))
                .unwrap(),
            "https://myapp.azurewebsites.net"
        );
        let func_start = UrlPolicy {
            website_hostname: Some("localhost:7071".into()),
            ..Default::default()
        };
        assert_eq!(
            func_start.base(&HeaderMap::new()).unwrap(),
            "http://localhost:7071"
        );
    }

    #[test]
    fn configured_base_wins() {
        let p = UrlPolicy {
            public_base_url: Some("https://api.contoso.com".into()),
            website_hostname: Some("myapp.azurewebsites.net".into()),
            trust_forwarded_headers: true,
        };
        assert_eq!(
            p.base(&headers(&[("x-forwarded-host", "evil.example")]))
                .unwrap(),
            "https://api.contoso.com"
        );
    }

    #[test]
    fn forwarded_headers_only_when_trusted() {
        let h = headers(&[
            ("host", "10.0.0.4:8080"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "api.contoso.com, proxy.internal"),
        ]);
        assert_eq!(
            UrlPolicy::default().base(&h).unwrap(),
            "http://10.0.0.4:8080"
        );
        let trusting = UrlPolicy {
            trust_forwarded_headers: true,
            ..Default::default()
        };
        assert_eq!(trusting.base(&h).unwrap(), "https://api.contoso.com");
        let bad = headers(&[("host", "x"), ("x-forwarded-proto", "gopher")]);
        assert!(trusting.base(&bad).is_err());
    }

    #[test]
    fn authorities() {
        for ok in [
            "localhost",
            "localhost:7071",
            "a.b-c.net",
            "127.0.0.1:1",
            "[::1]",
            "[::1]:80",
        ] {
            assert!(valid_authority(ok), "{ok}");
        }
        for bad in [
            "", "a b", "a:", "a:99999", "[::1", "[zz]:1", "a/b", "a@b", "a:1:2",
        ] {
            assert!(!valid_authority(bad), "{bad}");
        }
    }
}
