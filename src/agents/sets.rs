//! Which VIPs each agent is told to hold: the config's, and every VIP a destination on
//! that agent's host still carries in the kernel.
//!
//! A real server that leaves one service (but stays in another), or a retired service,
//! drains in the kernel: its clients' connections go on to it until they end or the
//! drain times out. Those connections arrive for the VIP, so the real server must hold
//! the VIP until the kernel lets go of the destination. Told at once to drop it, the
//! agent took the VIP off `lo` and the draining connections died.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

use crate::ipvs::ServiceKey;
use crate::model::Desired;
use crate::reconcile::driver::ReconcileState;

/// The VIP set per agent address, sorted: [`Desired::agent_vips`], widened by the VIPs
/// of managed or retired services whose kernel destinations belong to that agent's
/// host (by address, as the config names it). Services lvsdr does not manage add
/// nothing. A retired fwmark service's VIPs are not known any more: it adds none.
pub fn vip_sets(d: &Desired, state: &ReconcileState) -> BTreeMap<IpAddr, Vec<IpAddr>> {
    let mut sets = d.agent_vips();
    let agent_of: HashMap<IpAddr, IpAddr> = d
        .services
        .iter()
        .flat_map(|s| &s.real_servers)
        .filter_map(|r| Some((r.dest.addr, r.agent?)))
        .collect();
    let configured: HashMap<&ServiceKey, &[IpAddr]> = d
        .services
        .iter()
        .map(|s| (&s.service.key, s.vips.as_slice()))
        .collect();
    let retired: HashSet<&ServiceKey> = state.retired.iter().collect();
    for (key, svc) in &state.observed.services {
        let vips: Vec<IpAddr> = match (configured.get(key), key) {
            (Some(v), _) => v.to_vec(),
            (None, ServiceKey::Addr { addr, .. }) if retired.contains(key) => vec![*addr],
            _ => continue,
        };
        for (addr, _) in svc.dests.keys() {
            let Some(set) = agent_of.get(addr).and_then(|a| sets.get_mut(a)) else {
                continue;
            };
            for v in &vips {
                if !set.contains(v) {
                    set.push(*v);
                }
            }
        }
    }
    for v in sets.values_mut() {
        v.sort();
    }
    sets
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::reconcile::Observed;

    fn config(a_has_server: bool, with_a: bool) -> Desired {
        let server = |addr: &str| {
            format!("[[service.real_server]]\naddress = \"{addr}\"\nagent = \"{addr}\"\n")
        };
        let service = |name: &str, vip: &str, servers: &[&str]| {
            let mut t = format!(
                "[[service]]\nname = \"{name}\"\nvip = \"{vip}\"\nport = 80\n\
                 [service.check]\ntype = \"none\"\n"
            );
            for s in servers {
                t.push_str(&server(s));
            }
            t
        };
        let mut text =
            String::from("[agents]\nca = \"/ca.pem\"\ncert = \"/d.pem\"\nkey = \"/d.key\"\n");
        if with_a {
            let a: &[&str] = if a_has_server {
                &["10.0.0.11", "10.0.0.12"]
            } else {
                &["10.0.0.12"]
            };
            text.push_str(&service("a", "192.0.2.10", a));
        }
        text.push_str(&service("b", "192.0.2.20", &["10.0.0.11"]));
        crate::config::parse(&text, "t.toml").expect("config")
    }

    /// The kernel as the given config programmed it, with an unmanaged service (VIP
    /// .30) on the same host.
    fn kernel_of(d: &Desired) -> ReconcileState {
        let mut observed = Observed::default();
        for s in &d.services {
            let dests = s
                .real_servers
                .iter()
                .map(|r| {
                    let entry = crate::ipvs::DestEntry {
                        dest: r.dest,
                        active_conns: 1,
                        inactive_conns: 0,
                        persistent_conns: 0,
                        stats: Default::default(),
                    };
                    ((r.dest.addr, r.dest.port), entry)
                })
                .collect();
            let o = crate::reconcile::ObservedService {
                settings: s.service.settings.clone(),
                stats: Default::default(),
                dests,
            };
            observed.services.insert(s.service.key.clone(), Arc::new(o));
        }
        let mut other = observed.services[&d.services[0].service.key]
            .as_ref()
            .clone();
        other.dests.retain(|(a, _), _| a.to_string() == "10.0.0.11");
        let ServiceKey::Addr { protocol, port, .. } = d.services[0].service.key.clone() else {
            panic!("address service")
        };
        let unmanaged = ServiceKey::Addr {
            protocol,
            addr: "192.0.2.30".parse().expect("ip"),
            port,
        };
        observed.services.insert(unmanaged, Arc::new(other));
        ReconcileState {
            observed: Arc::new(observed),
            ..ReconcileState::default()
        }
    }

    fn set(sets: &BTreeMap<IpAddr, Vec<IpAddr>>, agent: &str) -> Vec<String> {
        let a: IpAddr = agent.parse().expect("ip");
        sets[&a].iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_server_leaving_one_service_keeps_its_vip_while_the_kernel_drains_it() {
        let before = config(true, true);
        let drained = kernel_of(&before);
        let after = config(false, true);
        // The config alone would take .10 from 10.0.0.11 at once.
        assert_eq!(set(&after.agent_vips(), "10.0.0.11"), ["192.0.2.20"]);
        assert_eq!(
            set(&vip_sets(&after, &drained), "10.0.0.11"),
            ["192.0.2.10", "192.0.2.20"]
        );
        // The kernel let go of the destination: now it goes.
        assert_eq!(
            set(&vip_sets(&after, &kernel_of(&after)), "10.0.0.11"),
            ["192.0.2.20"]
        );
        // The other server is untouched either way.
        assert_eq!(
            set(&vip_sets(&after, &drained), "10.0.0.12"),
            ["192.0.2.10"]
        );
    }

    #[test]
    fn a_retired_service_keeps_its_vip_until_it_is_gone_and_unmanaged_ones_add_nothing() {
        let before = config(true, true);
        let mut draining = kernel_of(&before);
        let after = config(true, false);
        draining.retired = vec![before.services[0].service.key.clone()];
        assert_eq!(
            set(&vip_sets(&after, &draining), "10.0.0.11"),
            ["192.0.2.10", "192.0.2.20"]
        );
        draining.retired.clear(); // deleted: no longer retired, and unmanaged .30 stays out
        assert_eq!(
            set(&vip_sets(&after, &draining), "10.0.0.11"),
            ["192.0.2.20"]
        );
    }
}
