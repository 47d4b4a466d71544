//! Where a transaction callback may point: a server-side request to a URL a client chose must
//! not reach the broker's own machine or its private network (SSRF) unless the operator listed
//! the host in `http.callback_allowed_hosts`.
//!
//! Invariants: a host is allowed when it is listed (by name, or by address), or when every
//! address it resolves to is public — never loopback, unspecified, private (10/8, 172.16/12,
//! 192.168/16, 100.64/10, fc00::/7), link-local (169.254/16, fe80::/10, so cloud metadata
//! endpoints), multicast, broadcast or reserved, also inside IPv4-mapped IPv6. The check runs at
//! registration and again at every request, in the callback client's resolver ([`Resolver`]:
//! a name that now resolves elsewhere — DNS rebinding — fails) and for address literals
//! ([`literal_allowed`]); the client uses no proxy and follows no redirect.
//!
//! Pure, besides name resolution (tokio's `lookup_host`). No state.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// Whether an address is on the public internet.
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => public_v4(v4),
            None => public_v6(v6),
        },
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (18..20).contains(&b))
        || a >= 240)
}

fn public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00
        || (s[0] & 0xffc0) == 0xfe80
        || (s[0] & 0xffc0) == 0xfec0
        || (s[0] == 0x2001 && s[1] == 0x0db8)
        || (s[0] == 0x64 && s[1] == 0xff9b))
}

/// Whether `host` (a name or an address, IPv6 with or without brackets) is listed.
pub(crate) fn listed(host: &str, allowed: &[String]) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    allowed.iter().any(|a| {
        let a = a.trim_start_matches('[').trim_end_matches(']');
        a.eq_ignore_ascii_case(host)
            || matches!(
                (a.parse::<IpAddr>(), host.parse::<IpAddr>()),
                (Ok(x), Ok(y)) if x == y
            )
    })
}

fn address_allowed(ip: IpAddr, allowed: &[String]) -> bool {
    is_public(ip) || listed(&ip.to_string(), allowed)
}

/// The host of `url`: an address literal, or a name.
fn host_of(url: &reqwest::Url) -> Option<Result<IpAddr, &str>> {
    let host = url.host_str()?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    Some(bare.parse::<IpAddr>().map_err(|_| host))
}

/// Whether an address literal in `url` is allowed (names are checked by [`Resolver`]).
pub(crate) fn literal_allowed(url: &reqwest::Url, allowed: &[String]) -> bool {
    match host_of(url) {
        Some(Ok(ip)) => address_allowed(ip, allowed),
        Some(Err(_)) => true,
        None => false,
    }
}

async fn resolve(name: &str, port: u16, allowed: &[String]) -> Result<Vec<SocketAddr>, String> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name, port))
        .await
        .map_err(|_| format!("`{name}` does not resolve"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("`{name}` does not resolve"));
    }
    if !listed(name, allowed) {
        if let Some(a) = addrs.iter().find(|a| !address_allowed(a.ip(), allowed)) {
            return Err(format!(
                "`{name}` resolves to {}, a loopback, private, link-local or reserved address \
                 (list the host in http.callback_allowed_hosts to allow it)",
                a.ip()
            ));
        }
    }
    Ok(addrs)
}

/// Checks a callback URL at registration: its host listed, or every address public.
///
/// # Errors
/// Why it is refused, for the client.
pub(crate) async fn check(url: &reqwest::Url, allowed: &[String]) -> Result<(), String> {
    match host_of(url) {
        Some(Err(name)) => resolve(name, 0, allowed).await.map(|_| ()),
        Some(Ok(ip)) if address_allowed(ip, allowed) => Ok(()),
        Some(Ok(ip)) => Err(format!(
            "{ip} is a loopback, private, link-local or reserved address (list it in \
             http.callback_allowed_hosts to allow it)"
        )),
        None => Err("the URL has no host".into()),
    }
}

/// The callback client's resolver: resolves with the system, refuses names that resolve to an
/// address that is not allowed.
pub(crate) struct Resolver {
    pub(crate) allowed: Arc<Vec<String>>,
}

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allowed = self.allowed.clone();
        Box::pin(async move {
            let addrs = resolve(name.as_str(), 0, &allowed).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_pass_unless_listed() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            let ip: IpAddr = private.parse().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
            assert!(!is_public(ip), "{private}");
        }
        for public in ["1.1.1.1", "93.184.216.34", "2606:4700:4700::1111"] {
            let ip: IpAddr = public.parse().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
            assert!(is_public(ip), "{public}");
        }
        let allowed = vec![
            "127.0.0.1".to_owned(),
            "[::1]".to_owned(),
            "Hooks.Local".to_owned(),
        ];
        assert!(listed("127.0.0.1", &allowed));
        assert!(listed("::1", &allowed));
        assert!(listed("[::1]", &allowed));
        assert!(listed("hooks.local", &allowed));
        assert!(!listed("10.0.0.1", &allowed));
    }
}
