//! Where a webhook may point, and the HTTP client that posts to it.
//!
//! On a shared host a webhook URL is a door into the platform's own network (SSRF): a customer
//! could aim it at the cloud's metadata service (169.254.169.254), a database on loopback or a
//! private subnet. So, unless [`super::NotifyConfig::allow_private_destinations`] says otherwise
//! (tests, a single-tenant install), an address that is not globally routable is refused twice:
//! when the destination is created (an IP literal, `localhost`), and at every attempt by the
//! client's own resolver, which drops every non-public address a name resolves to — the check
//! and the connection use the same addresses, so DNS rebinding after the check gains nothing.
//! Redirects are not followed (a 3xx is a failed attempt), and no proxy from the environment is
//! used.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;

use crate::error::{Error, Result};

/// The longest URL a destination may have.
pub const MAX_URL_LEN: usize = 2048;

/// Whether `ip` is a public, globally routable unicast address.
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // Unique local fc00::/7, link-local fe80::/10, documentation 2001:db8::/32,
                // the NAT64 well-known prefix 64:ff9b::/96 (it reaches IPv4 space).
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first == 0x2001 && v6.segments()[1] == 0x0db8)
                || (first == 0x0064 && v6.segments()[1] == 0xff9b))
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_unspecified()
        || ip.is_documentation()
        || a == 0
        // Shared address space (carrier-grade NAT) 100.64.0.0/10.
        || (a == 100 && (64..128).contains(&b))
        // Benchmarking 198.18.0.0/15, reserved 240.0.0.0/4.
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240)
}

/// A destination URL, checked: `http` or `https`, at most [`MAX_URL_LEN`] characters, a host, no
/// user name or password, no fragment, and (unless `allow_private`) no host that is an address
/// outside the public internet or a name of loopback. Answers the URL as it will be stored.
pub(crate) fn check_url(raw: &str, allow_private: bool) -> Result<Url> {
    let bad = |why: &str| Err(Error::InvalidRequest(format!("url {why}")));
    if raw.is_empty() {
        return bad("is empty: give the webhook's http:// or https:// URL");
    }
    if raw.len() > MAX_URL_LEN {
        return Err(Error::InvalidRequest(format!(
            "url is {} characters long, more than the limit of {MAX_URL_LEN}",
            raw.len()
        )));
    }
    let Ok(url) = Url::parse(raw) else {
        return bad("is not a valid absolute URL");
    };
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err(Error::InvalidRequest(format!(
            "url has the scheme {:?}: only https (or http) webhooks are sent",
            url.scheme()
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return bad(
            "must not carry credentials (user:password@): the signature authenticates keyward \
             to the receiver; put any token of the receiver in the path",
        );
    }
    if url.fragment().is_some() {
        return bad("must not have a #fragment");
    }
    let private = match url.host() {
        None => return bad("has no host"),
        Some(url::Host::Ipv4(v4)) => !is_public(IpAddr::V4(v4)),
        Some(url::Host::Ipv6(v6)) => !is_public(IpAddr::V6(v6)),
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
    };
    if private && !allow_private {
        return Err(Error::InvalidRequest(format!(
            "url's host {} is a loopback, private or link-local address: webhooks go only to \
             public addresses on this platform",
            url.host_str().unwrap_or_default()
        )));
    }
    Ok(url)
}

/// The client's resolver: the system's, keeping only public addresses unless private ones are
/// allowed.
struct PublicOnly {
    allow_private: bool,
}

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            type BoxError = Box<dyn std::error::Error + Send + Sync>;
            let found: Vec<SocketAddr> = match tokio::net::lookup_host((host.as_str(), 0)).await {
                Ok(addrs) => addrs
                    .filter(|addr| allow_private || is_public(addr.ip()))
                    .collect(),
                Err(error) => return Err(Box::new(error) as BoxError),
            };
            if found.is_empty() {
                return Err(format!(
                    "{host} resolves to no public address (webhooks go only to public addresses)"
                )
                .into());
            }
            Ok::<reqwest::dns::Addrs, BoxError>(Box::new(found.into_iter()))
        })
    }
}

/// The HTTP client of the deliveries: bounded connect and total time, no redirects, no proxy,
/// no idle connections kept, the guarded resolver.
pub(crate) fn client(allow_private: bool, attempt_timeout: Duration) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(PublicOnly { allow_private }))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(attempt_timeout.min(Duration::from_secs(5)))
        .timeout(attempt_timeout)
        .pool_max_idle_per_host(0)
        .user_agent(concat!("keyward-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::Internal(format!("the webhook HTTP client: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn urls_are_checked() {
        check_url("https://hooks.slack.com/services/T0/B0/x", false).unwrap();
        check_url("http://93.184.216.34:8080/hook", false).unwrap();
        for (url, says) in [
            ("", "is empty"),
            ("ftp://example.com/", "the scheme \"ftp\""),
            ("https://user:pw@example.com/", "must not carry credentials"),
            ("https://token@example.com/", "must not carry credentials"),
            ("not a url", "not a valid absolute URL"),
            ("https://example.com/#x", "#fragment"),
            ("http://127.0.0.1:9/", "loopback, private or link-local"),
            (
                "http://169.254.169.254/latest/meta-data",
                "loopback, private",
            ),
            ("http://[::1]:80/", "loopback, private"),
            ("http://localhost:80/", "loopback, private"),
            ("http://10.0.0.1/", "loopback, private"),
        ] {
            let refused = check_url(url, false).unwrap_err().to_string();
            assert!(refused.contains(says), "{url}: {refused}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(check_url(&long, false)
            .unwrap_err()
            .to_string()
            .contains("more than the limit of 2048"));
        check_url("http://127.0.0.1:9/", true).unwrap();
    }
}
