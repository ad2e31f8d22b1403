//! The director↔agent wire types, shared by both binaries. JSON over HTTPS with mutual
//! TLS: `PUT /v1/vips` with a [`PushVips`], answered with an [`AgentStatus`];
//! `GET /v1/status` answers the same.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The complete set of VIPs a real server should hold. Idempotent: pushing the same
/// set again changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushVips {
    /// Grows with every config the director loads (it is the load time in
    /// milliseconds, so it grows across director restarts too). An agent refuses a
    /// generation older than the one it applied (409).
    pub generation: u64,
    /// The VIPs.
    pub vips: Vec<IpAddr>,
}

/// What an agent has in place, read back from the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// The generation of the VIP set applied.
    pub generation: u64,
    /// "nft", "sysctl" or "arptables".
    pub arp_mode: String,
    /// The real server's own address (ARP announcements use it instead of a VIP).
    pub real_ip: Option<IpAddr>,
    /// The device VIPs go on.
    pub vip_device: String,
    /// Each desired VIP and whether it is in place.
    pub vips: Vec<VipStatus>,
    /// Whether everything desired is in place.
    pub in_place: bool,
    /// The last error applying, if any.
    pub last_error: Option<String>,
}

/// One VIP on a real server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipStatus {
    /// The VIP.
    pub vip: IpAddr,
    /// On the VIP device as /32 (/128).
    pub on_device: bool,
    /// ARP suppression in place for it (always true for IPv6: no ARP).
    pub arp_suppressed: bool,
}

impl AgentStatus {
    /// Whether `vips` are all applied and in place.
    pub fn confirms(&self, vips: &[IpAddr]) -> bool {
        vips.iter().all(|v| {
            self.vips
                .iter()
                .any(|s| s.vip == *v && s.on_device && s.arp_suppressed)
        })
    }
}

/// Why an address cannot be a VIP, if it cannot.
pub fn vip_problem(vip: &IpAddr, real_ip: Option<IpAddr>) -> Option<&'static str> {
    if Some(*vip) == real_ip {
        return Some("is the real server's own address");
    }
    match vip {
        IpAddr::V4(a) if a.is_unspecified() => Some("is unspecified"),
        IpAddr::V4(a) if a.is_loopback() => Some("is a loopback address"),
        IpAddr::V4(a) if a.is_multicast() => Some("is multicast"),
        IpAddr::V4(a) if a.is_link_local() => Some("is link-local"),
        IpAddr::V4(a) if a.is_broadcast() => Some("is the broadcast address"),
        IpAddr::V6(a) if a.is_unspecified() => Some("is unspecified"),
        IpAddr::V6(a) if a.is_loopback() => Some("is a loopback address"),
        IpAddr::V6(a) if a.is_multicast() => Some("is multicast"),
        IpAddr::V6(a) if a.is_unicast_link_local() => Some("is link-local"),
        _ => None,
    }
}
