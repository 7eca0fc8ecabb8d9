//! Where a completion callback may go: an absolute `https` URL (or `http` for a host the
//! operator listed), whose host resolves only to public addresses unless it is listed, so the
//! service cannot be aimed at its own network (loopback, private ranges, link-local, the cloud
//! metadata endpoints).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The longest callback URL accepted (it is stored with the operation).
pub const MAX_URL_BYTES: usize = 2048;

/// The operator's exceptions (`CALLBACK_ALLOWED_HOSTS`): hosts that may be called over plain
/// `http` and whatever they resolve to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallbackPolicy {
    /// Lower-case host names and IP addresses (IPv6 without brackets).
    allowed_hosts: Vec<String>,
}

/// A callback URL whose form passed the policy; its addresses are checked when resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackUrl {
    pub url: String,
    /// The host as the URL names it (lower case, IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// The host itself, when it is an IP address (nothing to resolve).
    pub ip: Option<IpAddr>,
}

impl CallbackPolicy {
    pub fn new(allowed_hosts: impl IntoIterator<Item = String>) -> Self {
        Self {
            allowed_hosts: allowed_hosts
                .into_iter()
                .map(|h| normalize_host(&h))
                .collect(),
        }
    }

    pub fn is_listed(&self, host: &str) -> bool {
        let host = normalize_host(host);
        self.allowed_hosts.contains(&host)
    }

    /// Checks the URL's form (absolute, `https` or a listed `http` host, no credentials) and,
    /// for an IP-address host, the address. Names are checked once resolved (`check_address`).
    pub fn check_url(&self, raw: &str) -> Result<CallbackUrl, String> {
        if raw.len() > MAX_URL_BYTES {
            return Err(format!("is longer than {MAX_URL_BYTES} bytes"));
        }
        let url = url::Url::parse(raw).map_err(|e| match e {
            url::ParseError::RelativeUrlWithoutBase => "must be an absolute URL".to_string(),
            e => format!("is not a URL ({e})"),
        })?;
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_ascii_lowercase(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err("must name a host".into()),
        };
        let listed = self.is_listed(&host);
        match url.scheme() {
            "https" => {}
            "http" if listed => {}
            "http" => {
                return Err(format!(
                    "must use https (http only for a host listed in CALLBACK_ALLOWED_HOSTS, \
                     which `{host}` is not)"
                ))
            }
            other => return Err(format!("must use https, not `{other}`")),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not carry credentials".into());
        }
        let ip = host.parse::<IpAddr>().ok();
        if let Some(ip) = ip {
            self.check_address(&host, ip)?;
        }
        Ok(CallbackUrl {
            port: url.port_or_known_default().unwrap_or(443),
            url: url.into(),
            host,
            ip,
        })
    }

    /// Whether `host` may be reached at `ip`: a listed host anywhere, any other only at a
    /// public address.
    pub fn check_address(&self, host: &str, ip: IpAddr) -> Result<(), String> {
        if self.is_listed(host) || !is_internal(ip) {
            return Ok(());
        }
        Err(format!(
            "names a host that resolves to {ip}, a loopback, private, link-local or metadata \
             address (allowed only for hosts listed in CALLBACK_ALLOWED_HOSTS)"
        ))
    }
}

fn normalize_host(h: &str) -> String {
    h.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

/// Addresses a callback must not reach unless its host is listed: anything but the public
/// internet, and the cloud platforms' metadata and host endpoints.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return is_internal_v4(v4);
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local (AWS metadata fd00:ec2::254 too)
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x0100 && s[1..4] == [0, 0, 0]) // discard-only
        }
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // 169.254.0.0/16: the metadata endpoint 169.254.169.254
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // shared address space (carrier NAT)
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking
        || o[0] >= 240 // reserved
        || o == [168, 63, 129, 16] // Azure's host endpoint (wireserver)
}

/// The IPv4 address inside an IPv4-mapped, IPv4-compatible or NAT64 IPv6 address.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = v6.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    let nat64 = s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0];
    let compatible = s[..6] == [0, 0, 0, 0, 0, 0] && !v6.is_loopback() && !v6.is_unspecified();
    (nat64 || compatible).then_some(tail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_known() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "168.63.129.16",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "20.50.2.1", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn urls_are_checked_for_form() {
        let policy = CallbackPolicy::new(["127.0.0.1".to_string(), "Hooks.Local".to_string()]);
        assert!(policy.check_url("https://example.com/hook?a=1").is_ok());
        let ok = policy.check_url("http://127.0.0.1:8080/cb").unwrap();
        assert_eq!((ok.host.as_str(), ok.port), ("127.0.0.1", 8080));
        assert!(policy.check_url("http://hooks.local/cb").is_ok());
        for bad in [
            "/relative",
            "example.com/hook",
            "ftp://example.com/",
            "http://example.com/",
            "https://user:pw@example.com/",
            "https://10.0.0.1/",
            "https://[::1]/",
            "https://169.254.169.254/latest/meta-data",
            "http://127.0.0.2/",
        ] {
            assert!(policy.check_url(bad).is_err(), "{bad}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_BYTES));
        assert!(policy.check_url(&long).is_err());
    }
}
