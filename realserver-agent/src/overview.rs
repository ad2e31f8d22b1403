//! `lvsdr-agent status`: what the agent holds, read back from the kernel: each
//! director's VIPs and whether each is on the device and suppressed, when each director
//! last pushed, and how many VIPs the agent has put back after they went missing.

use std::net::IpAddr;

use lvsdr_agent_api::VipStatus;
use serde::{Deserialize, Serialize};

/// The agent as a whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Overview {
    /// "nft", "sysctl" or "arptables".
    pub arp_mode: String,
    /// The device VIPs go on.
    pub vip_device: String,
    /// The real server's own address.
    pub real_ip: Option<IpAddr>,
    /// Each director's set.
    pub directors: Vec<DirectorView>,
    /// VIPs found missing from the device (removed by hand, a network restart) and put
    /// back, since the agent started.
    pub vip_repairs: u64,
    /// The last error applying, if any.
    pub last_error: Option<String>,
}

/// One director's set as the kernel has it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirectorView {
    /// The director (its certificate name and address).
    pub director: String,
    /// The generation of its set.
    pub generation: u64,
    /// Seconds since its last push (`None`: not since the agent started).
    pub last_push_s: Option<f64>,
    /// Recovered at start, held until a director pushes.
    pub provisional: bool,
    /// Its VIPs.
    pub vips: Vec<VipStatus>,
}

/// The lines `lvsdr-agent status` prints.
pub fn describe(o: &Overview) -> Vec<String> {
    let mut out = vec![format!(
        "VIPs on {}, ARP suppressed by {}, real IP {}; {} VIPs repaired since the start{}",
        o.vip_device,
        o.arp_mode,
        o.real_ip.map_or("unknown".into(), |ip| ip.to_string()),
        o.vip_repairs,
        o.last_error
            .as_ref()
            .map_or(String::new(), |e| format!("; last error: {e}"))
    )];
    for d in &o.directors {
        let pushed = match d.last_push_s {
            Some(s) => format!("pushed {s:.0} s ago"),
            None if d.provisional => "recovered at start, not pushed yet".into(),
            None => "not pushed since the agent started".into(),
        };
        out.push(format!(
            "director {}: generation {}, {pushed}",
            d.director, d.generation
        ));
        for v in &d.vips {
            let state = match (&v.refused, v.on_device, v.arp_suppressed) {
                (Some(why), _, _) => format!("refused: {why}"),
                (None, true, true) => "held, ARP suppressed".into(),
                (None, on, arp) => format!(
                    "NOT in place ({}, {})",
                    if on {
                        "on the device"
                    } else {
                        "not on the device"
                    },
                    if arp { "suppressed" } else { "not suppressed" }
                ),
            };
            out.push(format!("  {}: {state}", v.vip));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_director_and_each_vip_is_one_line() {
        let vip = |v: &str, ok: bool| VipStatus {
            vip: v.parse().expect("ip"),
            on_device: ok,
            arp_suppressed: ok,
            refused: None,
        };
        let o = Overview {
            arp_mode: "nft".into(),
            vip_device: "lo".into(),
            real_ip: Some("10.0.0.11".parse().expect("ip")),
            directors: vec![DirectorView {
                director: "d1 at 10.0.0.1".into(),
                generation: 3,
                last_push_s: Some(2.2),
                provisional: false,
                vips: vec![vip("192.0.2.10", true), vip("192.0.2.11", false)],
            }],
            vip_repairs: 1,
            last_error: None,
        };
        let lines = describe(&o);
        assert_eq!(
            lines[0],
            "VIPs on lo, ARP suppressed by nft, real IP 10.0.0.11; 1 VIPs repaired since the start"
        );
        assert_eq!(
            lines[1],
            "director d1 at 10.0.0.1: generation 3, pushed 2 s ago"
        );
        assert_eq!(lines[2], "  192.0.2.10: held, ARP suppressed");
        assert_eq!(
            lines[3],
            "  192.0.2.11: NOT in place (not on the device, not suppressed)"
        );
    }
}
