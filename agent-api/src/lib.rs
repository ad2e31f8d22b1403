//! The director↔agent wire types, the only code the two binaries share (the agent
//! carries none of the director's dependencies). JSON over HTTPS with mutual TLS:
//! `PUT /v1/vips` with a [`PushVips`], answered with an [`AgentStatus`];
//! `GET /v1/status` answers the same.
//!
//! An agent keeps one VIP set *per director* (keyed by the director's certificate
//! name) and holds their union, so several directors never fight over one set.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The complete set of VIPs a real server should hold for the director that pushes
/// it. Idempotent: pushing the same set again changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushVips {
    /// Orders this director's pushes within one `epoch`: an agent refuses (409) a
    /// generation older than the one it applied from the same director and epoch.
    pub generation: u64,
    /// The VIPs.
    pub vips: Vec<IpAddr>,
    /// Chosen at random when the director process starts. A push with another epoch
    /// than the applied one is newer (a restarted director), whatever its generation,
    /// so ordering needs no clock. Absent: epoch 0 (pushes ordered by generation only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
}

/// What an agent has in place for the director asking, read back from the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// The generation of this director's VIP set.
    pub generation: u64,
    /// The epoch of this director's VIP set.
    #[serde(default)]
    pub epoch: Option<u64>,
    /// The director's identity as the agent sees it (its certificate's name).
    #[serde(default)]
    pub director: Option<String>,
    /// "nft", "sysctl" or "arptables".
    pub arp_mode: String,
    /// The real server's own address (ARP announcements use it instead of a VIP).
    pub real_ip: Option<IpAddr>,
    /// The device VIPs go on.
    pub vip_device: String,
    /// Each VIP of this director's set and whether it is in place.
    pub vips: Vec<VipStatus>,
    /// Whether everything this director asked for is in place.
    pub in_place: bool,
    /// The last error applying, if any.
    pub last_error: Option<String>,
    /// Every VIP the agent holds (the union of all directors' sets).
    #[serde(default)]
    pub held: Vec<IpAddr>,
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
    /// Why the agent refused to hold it (the rest of the set is held).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

impl VipStatus {
    /// Held, and suppressed.
    pub fn ok(&self) -> bool {
        self.on_device && self.arp_suppressed && self.refused.is_none()
    }
}

impl AgentStatus {
    /// Whether `vips` are all applied and in place.
    pub fn confirms(&self, vips: &[IpAddr]) -> bool {
        vips.iter()
            .all(|v| self.vips.iter().any(|s| s.vip == *v && s.ok()))
    }

    /// The VIPs that are in place.
    pub fn confirmed(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.vips.iter().filter(|s| s.ok()).map(|s| s.vip)
    }

    /// The VIPs the agent refused, with why.
    pub fn refused(&self) -> impl Iterator<Item = (IpAddr, &str)> + '_ {
        self.vips
            .iter()
            .filter_map(|s| Some((s.vip, s.refused.as_deref()?)))
    }
}

/// The body of a 4xx/5xx answer. A 422 (some VIPs refused) carries the status too:
/// the rest of the set was applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, naming the VIP or the step.
    pub error: String,
    /// With 422: what is in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<AgentStatus>,
}

/// Why an address can never be a VIP, if it cannot.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_without_an_epoch_still_parses_and_encodes_the_same() {
        let text = r#"{"generation":7,"vips":["192.0.2.10"]}"#;
        let p: PushVips = serde_json::from_str(text).expect("parse");
        assert_eq!(p.epoch, None);
        assert_eq!(serde_json::to_string(&p).expect("encode"), text);
    }

    #[test]
    fn a_refused_vip_is_not_confirmed() {
        let vip = |v: &str, refused: Option<&str>| VipStatus {
            vip: v.parse().expect("ip"),
            on_device: refused.is_none(),
            arp_suppressed: refused.is_none(),
            refused: refused.map(str::to_string),
        };
        let s = AgentStatus {
            generation: 1,
            epoch: None,
            director: None,
            arp_mode: "nft".into(),
            real_ip: None,
            vip_device: "lo".into(),
            vips: vec![vip("192.0.2.1", None), vip("192.0.2.2", Some("is on eth0"))],
            in_place: false,
            last_error: None,
            held: vec![],
        };
        let good: IpAddr = "192.0.2.1".parse().expect("ip");
        assert!(s.confirms(&[good]));
        assert!(!s.confirms(&[good, "192.0.2.2".parse().expect("ip")]));
        assert_eq!(s.refused().count(), 1);
    }
}
