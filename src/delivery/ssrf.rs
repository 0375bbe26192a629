//! The SSRF guard of contract §3: outbound deliveries must not reach
//! loopback, private, link-local or metadata addresses unless
//! `network.allow_private_targets` covers them.
//!
//! The check happens on resolved IPs, inside the HTTP client's DNS step
//! ([`GuardedResolver`]): the client connects only to addresses the resolver
//! returned, so a name cannot resolve to a public IP when checked and a
//! private one when connected (DNS rebinding). IP-literal URLs never reach a
//! resolver, so the sender checks those itself with [`SsrfGuard::permits`].
//!
//! This module decides "may we connect to this IP"; it does not send, retry,
//! or record anything.

use std::error::Error as StdError;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;
use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::policy::PolicySet;

/// IPv4 ranges no webhook may reach by default: (network, prefix length).
const FORBIDDEN_V4: &[(u32, u8)] = &[
    (0x0000_0000, 8),  // 0.0.0.0/8 "this network", incl. the unspecified address
    (0x0A00_0000, 8),  // 10/8 private
    (0x6440_0000, 10), // 100.64/10 carrier-grade NAT
    (0x7F00_0000, 8),  // 127/8 loopback
    (0xA9FE_0000, 16), // 169.254/16 link-local, incl. cloud metadata 169.254.169.254
    (0xAC10_0000, 12), // 172.16/12 private
    (0xC000_0000, 24), // 192.0.0/24 IETF protocol assignments
    (0xC000_0200, 24), // 192.0.2/24 TEST-NET-1
    (0xC058_6300, 24), // 192.88.99/24 deprecated 6to4 relay anycast
    (0xC0A8_0000, 16), // 192.168/16 private
    (0xC612_0000, 15), // 198.18/15 benchmarking
    (0xC633_6400, 24), // 198.51.100/24 TEST-NET-2
    (0xCB00_7100, 24), // 203.0.113/24 TEST-NET-3
    (0xE000_0000, 4),  // 224/4 multicast
    (0xF000_0000, 4),  // 240/4 reserved, incl. broadcast 255.255.255.255
];

/// IPv6 ranges forbidden outright. Ranges that embed an IPv4 address
/// (mapped, compatible, NAT64, 6to4, Teredo) are judged by that address
/// instead, in [`embedded_v4`].
const FORBIDDEN_V6: &[(u128, u8)] = &[
    (0x0100_0000_0000_0000_0000_0000_0000_0000, 64), // 100::/64 discard-only
    (0x0064_ff9b_0001_0000_0000_0000_0000_0000, 48), // 64:ff9b:1::/48 local-use NAT64
    (0x2001_0002_0000_0000_0000_0000_0000_0000, 48), // 2001:2::/48 benchmarking
    (0x2001_0010_0000_0000_0000_0000_0000_0000, 28), // 2001:10::/28 ORCHID (deprecated)
    (0x2001_0db8_0000_0000_0000_0000_0000_0000, 32), // 2001:db8::/32 documentation
    (0x3fff_0000_0000_0000_0000_0000_0000_0000, 20), // 3fff::/20 documentation
    (0xfc00_0000_0000_0000_0000_0000_0000_0000, 7), // fc00::/7 ULA, incl. AWS metadata fd00:ec2::254
    (0xfe80_0000_0000_0000_0000_0000_0000_0000, 10), // fe80::/10 link-local
    (0xfec0_0000_0000_0000_0000_0000_0000_0000, 10), // fec0::/10 site-local (deprecated)
    (0xff00_0000_0000_0000_0000_0000_0000_0000, 8), // ff00::/8 multicast
];

/// Whether `ip` is a destination deliveries must not reach by default.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_forbidden_v4(v4),
        IpAddr::V6(v6) => is_forbidden_v6(v6),
    }
}

fn is_forbidden_v4(ip: Ipv4Addr) -> bool {
    let bits = u32::from(ip);
    FORBIDDEN_V4
        .iter()
        .any(|&(net, len)| bits >> (32 - len) == net >> (32 - len))
}

fn is_forbidden_v6(ip: Ipv6Addr) -> bool {
    // `::` and `::1` sit inside ::/96 (IPv4-compatible) and would be judged
    // as 0.0.0.0 and 0.0.0.1 — forbidden either way, but say so plainly.
    if ip.is_unspecified() || ip.is_loopback() {
        return true;
    }
    if let Some(v4) = embedded_v4(ip) {
        return is_forbidden_v4(v4);
    }
    let bits = u128::from(ip);
    // The rest of ::/8 is IETF-reserved (e.g. SIIT's ::ffff:0:0:0/96):
    // nothing a webhook legitimately lives on, and easy to smuggle v4 through.
    bits >> 120 == 0
        || FORBIDDEN_V6
            .iter()
            .any(|&(net, len)| bits >> (128 - len) == net >> (128 - len))
}

/// The IPv4 address an IPv6 address stands for, where the mapping is fixed
/// by the address itself: an attacker can reach 127.0.0.1 through
/// `::ffff:127.0.0.1`, a NAT64 gateway, or a 6to4/Teredo relay.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(ip);
    let low32 = Ipv4Addr::from(bits as u32);
    let high96 = bits >> 32;
    // ::a.b.c.d compatible (deprecated) and ::ffff:a.b.c.d mapped.
    if high96 == 0 || high96 == 0xffff {
        return Some(low32);
    }
    // 64:ff9b::/96, the well-known NAT64 prefix.
    if high96 == 0x0064_ff9b_0000_0000_0000_0000 {
        return Some(low32);
    }
    match bits >> 96 {
        // 2001:0::/32 Teredo: the client's v4 address is the low 32 bits, inverted.
        0x2001_0000 => Some(Ipv4Addr::from(!(bits as u32))),
        // 2002:AABB:CCDD::/48 6to4: the v4 address is bits 16..48.
        n if n >> 16 == 0x2002 => Some(Ipv4Addr::from((bits >> 80) as u32)),
        _ => None,
    }
}

/// The forbidden-range check plus the policy's allow-list. In the engine
/// the list is read from the live policy on every check
/// ([`SsrfGuard::following`]), so a reload that changes
/// `network.allow_private_targets` applies to the next connection.
#[derive(Debug)]
pub struct SsrfGuard {
    allow: AllowList,
}

#[derive(Debug)]
enum AllowList {
    Fixed(ArcSwap<Vec<IpNet>>),
    Policy(Arc<ArcSwap<PolicySet>>),
}

impl SsrfGuard {
    /// A guard with a fixed allow-list (replaceable with [`Self::set_allow`]).
    pub fn new(allow: Vec<IpNet>) -> Self {
        Self {
            allow: AllowList::Fixed(ArcSwap::from_pointee(allow)),
        }
    }

    /// A guard that always uses the allow-list of the policy in force.
    pub fn following(policy: Arc<ArcSwap<PolicySet>>) -> Self {
        Self {
            allow: AllowList::Policy(policy),
        }
    }

    /// Replaces a fixed allow-list; in-flight checks finish against the list
    /// they started with. A guard that follows the policy ignores this.
    pub fn set_allow(&self, allow: Vec<IpNet>) {
        if let AllowList::Fixed(list) = &self.allow {
            list.store(Arc::new(allow));
        }
    }

    /// Whether a delivery may connect to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        if !is_forbidden(ip) {
            return true;
        }
        // An admin who allows 127.0.0.0/8 means the host, however spelled:
        // a v4-mapped v6 address is also matched against the v4 entries.
        let mapped = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        let allowed = |list: &[IpNet]| {
            list.iter()
                .any(|net| net.contains(&ip) || mapped.is_some_and(|v4| net.contains(&v4)))
        };
        match &self.allow {
            AllowList::Fixed(list) => allowed(&list.load()),
            AllowList::Policy(policy) => allowed(&policy.load().network().allow_private_targets),
        }
    }
}

/// A resolver answer in which every address was refused by the guard.
///
/// The sender walks the error's source chain looking for this type to
/// record `blocked_destination` rather than a generic connect error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockedDestination {
    pub host: String,
}

impl fmt::Display for BlockedDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} resolves only to addresses the SSRF guard forbids \
             (allow them with network.allow_private_targets)",
            self.host
        )
    }
}

impl StdError for BlockedDestination {}

/// DNS for the delivery client: the system resolver, minus forbidden
/// addresses.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    pub guard: Arc<SsrfGuard>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = Arc::clone(&self.guard);
        Box::pin(async move {
            let host = name.as_str().to_owned();
            // Port 0: reqwest substitutes the URL's port.
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let permitted: Vec<SocketAddr> = resolved
                .iter()
                .copied()
                .filter(|addr| guard.permits(addr.ip()))
                .collect();
            if permitted.is_empty() && !resolved.is_empty() {
                return Err(
                    Box::new(BlockedDestination { host }) as Box<dyn StdError + Send + Sync>
                );
            }
            // A name with some public and some private addresses keeps only
            // the public ones rather than failing outright.
            Ok(Box::new(permitted.into_iter()) as Addrs)
        })
    }
}

/// Whether `err` or anything in its source chain is a [`BlockedDestination`].
pub fn is_blocked_destination(err: &(dyn StdError + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(e) = current {
        if e.is::<BlockedDestination>() {
            return true;
        }
        current = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn forbidden_addresses() {
        for s in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.0.1",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "fc00::1",
            "fd12:3456::1",
            "fd00:ec2::254",
            "ff02::1",
            "2001:db8::1",
            "3fff::1",
            "100::1",
            "2001:2::1",
            "64:ff9b:1::1",
        ] {
            assert!(is_forbidden(ip(s)), "{s} should be forbidden");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for s in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "126.255.255.255",
            "128.0.0.1",
            "169.253.255.255",
            "172.15.255.255",
            "172.32.0.1",
            "192.167.255.255",
            "192.169.0.1",
            "198.17.255.255",
            "198.20.0.1",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "2a00:1450::1",
            "fbff::1",
            "fe7f::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(!is_forbidden(ip(s)), "{s} should be allowed");
        }
    }

    #[test]
    fn v6_addresses_embedding_a_private_v4_are_forbidden() {
        for s in [
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.1.2.3",
            "::127.0.0.1",
            "64:ff9b::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::1",
            "2002:c0a8:101::",
            // Teredo with client 127.0.0.1 (stored inverted: 80ff:fffe).
            "2001:0:4136:e378:8000:63bf:80ff:fffe",
            // SIIT (::ffff:0:a.b.c.d) and the rest of the reserved ::/8.
            "::ffff:0:7f00:1",
            "::1:0:0:1",
        ] {
            assert!(is_forbidden(ip(s)), "{s} should be forbidden");
        }
    }

    #[test]
    fn allow_list_overrides_and_is_swappable() {
        let guard = SsrfGuard::new(nets(&["127.0.0.0/8", "fd00::/8"]));
        assert!(guard.permits(ip("127.0.0.1")));
        assert!(
            guard.permits(ip("::ffff:127.0.0.1")),
            "mapped v4 matches v4 entries"
        );
        assert!(guard.permits(ip("fd00:ec2::254")));
        assert!(!guard.permits(ip("10.0.0.1")));
        assert!(!guard.permits(ip("::1")), "::1 is not in 127.0.0.0/8");
        assert!(guard.permits(ip("8.8.8.8")));

        guard.set_allow(Vec::new());
        assert!(!guard.permits(ip("127.0.0.1")));
        assert!(!guard.permits(ip("::ffff:127.0.0.1")));
        assert!(guard.permits(ip("8.8.8.8")));
    }

    #[test]
    fn blocked_destination_is_found_in_a_source_chain() {
        #[derive(Debug)]
        struct Wrapper(BlockedDestination);
        impl fmt::Display for Wrapper {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("wrapped")
            }
        }
        impl StdError for Wrapper {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let err = Wrapper(BlockedDestination { host: "x".into() });
        assert!(is_blocked_destination(&err));
        assert!(!is_blocked_destination(&std::io::Error::other("nope")));
    }

    #[tokio::test]
    async fn resolver_refuses_localhost_unless_allowed() {
        let guard = Arc::new(SsrfGuard::new(Vec::new()));
        let resolver = GuardedResolver {
            guard: Arc::clone(&guard),
        };
        let err = match resolver.resolve("localhost".parse().unwrap()).await {
            Ok(_) => panic!("localhost must be refused"),
            Err(e) => e,
        };
        assert!(is_blocked_destination(&*err), "{err}");
        assert!(err.to_string().contains("localhost"));

        guard.set_allow(nets(&["127.0.0.0/8", "::1/128"]));
        let addrs: Vec<SocketAddr> = match resolver.resolve("localhost".parse().unwrap()).await {
            Ok(addrs) => addrs.collect(),
            Err(e) => panic!("allowed localhost failed: {e}"),
        };
        assert!(!addrs.is_empty());
        assert!(addrs.iter().all(|a| a.ip().is_loopback()));
    }

    #[tokio::test]
    async fn resolver_keeps_only_permitted_addresses() {
        // Only v4 loopback allowed: a dual-stack localhost loses its ::1.
        let guard = Arc::new(SsrfGuard::new(nets(&["127.0.0.0/8"])));
        let resolver = GuardedResolver { guard };
        if let Ok(addrs) = resolver.resolve("localhost".parse().unwrap()).await {
            assert!(addrs.into_iter().all(|a| a.is_ipv4()));
        }
    }
}
