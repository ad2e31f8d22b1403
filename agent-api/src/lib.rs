//! The director↔agent wire types, the only code the two binaries share (the agent
//! carries none of the director's dependencies). JSON over HTTPS with mutual TLS:
//! `PUT /v1/vips` with a [`PushVips`], answered with an [`AgentStatus`];
//! `GET /v1/status` answers the same; `POST /v1/drain` with a [`DrainPoll`] (each
//! director's long poll for the real server's own drain, `lvsdr-agent drain`, carrying
//! that director's connection counts) answered with a [`DrainAnswer`].
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

/// The real server drained itself (`lvsdr-agent drain`): every director gives it
/// weight 0 in every service on this host until `lvsdr-agent ready`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentDrain {
    /// Why, as the deploy script said (may be empty).
    #[serde(default)]
    pub reason: String,
    /// When (seconds since the Unix epoch).
    pub since: u64,
}

/// The longest an agent holds a [`DrainPoll`] before it answers (milliseconds).
pub const MAX_POLL_WAIT_MS: u64 = 30_000;

/// `POST /v1/drain`: a director asks for the agent's drain and tells it its counts.
/// The agent answers at once when its drain's version is not `known`; otherwise when
/// it changes, or after `wait_ms` (at most [`MAX_POLL_WAIT_MS`]). A director polls
/// again as soon as it has the answer: every `wait_ms` while the server is drained
/// (its counts then reach the agent that often), a long wait otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrainPoll {
    /// The drain version the director has (`None`: it has none yet).
    #[serde(default)]
    pub known: Option<u64>,
    /// How long the agent may hold the answer.
    pub wait_ms: u64,
    /// This real server's destinations in the director's kernel, as last read.
    #[serde(default)]
    pub servers: Vec<ServerCount>,
}

/// One destination of this real server in a director's kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerCount {
    /// The service's name in the director's config.
    pub service: String,
    /// The destination (this real server's address and port).
    pub server: std::net::SocketAddr,
    /// Its weight in the kernel (`None`: not in the kernel).
    pub weight: Option<u32>,
    /// Established connections.
    pub active: u32,
    /// Other connections.
    pub inactive: u32,
}

/// The answer to a [`DrainPoll`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainAnswer {
    /// The drain state's version: changes with every drain and ready (and differs
    /// between runs of the agent, so a restarted agent is never mistaken for known).
    pub version: u64,
    /// The drain in force, if any.
    pub drain: Option<AgentDrain>,
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
    fn a_drain_poll_and_its_answer_round_trip() {
        let text = r#"{"known":7,"wait_ms":1000,"servers":[{"service":"web","server":"10.0.0.11:80","weight":0,"active":2,"inactive":1}]}"#;
        let p: DrainPoll = serde_json::from_str(text).expect("parse");
        assert_eq!(p.servers[0].active, 2);
        assert_eq!(serde_json::to_string(&p).expect("encode"), text);
        let first: DrainPoll = serde_json::from_str(r#"{"wait_ms":20000}"#).expect("parse");
        assert_eq!((first.known, first.servers.len()), (None, 0));
        let a = r#"{"version":8,"drain":{"reason":"deploy","since":1796300000}}"#;
        let answer: DrainAnswer = serde_json::from_str(a).expect("parse");
        assert_eq!(serde_json::to_string(&answer).expect("encode"), a);
    }

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
