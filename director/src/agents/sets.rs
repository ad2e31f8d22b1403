//! Which VIPs each agent is told to hold: the config's, and every VIP a destination on
//! that agent's host still carries in the kernel.
//!
//! A real server that leaves one service (but stays in another), or a retired service,
//! drains in the kernel: its clients' connections go on to it until they end or the
//! drain times out. Those connections arrive for the VIP, so the real server must hold
//! the VIP until the kernel lets go of the destination. Told at once to drop it, the
//! agent took the VIP off `lo` and the draining connections died.
//!
//! A real server that leaves every service is a *former* agent ([`Former`]): it is
//! still told the VIPs its draining destinations carry, then, once the kernel let go of
//! them, an empty set, once. (It was told nothing more: its VIPs stayed on it until the
//! agent's `set_expiry`.)

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

use lvsdr::ipvs::ServiceKey;
use lvsdr::model::Desired;
use lvsdr::reconcile::ReconcileState;

/// The agents of earlier configs that the config in force has no more: a real
/// server's address → its agent's. Each gets an empty set once its destinations have
/// drained, then is forgotten ([`Former::forget`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Former(HashMap<IpAddr, IpAddr>);

impl Former {
    /// After a config change from `before` to `after`: the agents `before` had and
    /// `after` has not join; those `after` has leave.
    pub fn update(&mut self, before: &Desired, after: &Desired) {
        let now = agents_by_server(after);
        let kept: HashSet<&IpAddr> = now.values().collect();
        for (server, agent) in agents_by_server(before) {
            if !kept.contains(&agent) {
                self.0.insert(server, agent);
            }
        }
        self.0.retain(|_, agent| !kept.contains(agent));
    }

    /// Forgets the agents whose (empty) set went out.
    pub fn forget(&mut self, told_empty: &[IpAddr]) {
        self.0.retain(|_, agent| !told_empty.contains(agent));
    }

    /// Whether `agent` is a former one.
    pub fn contains(&self, agent: &IpAddr) -> bool {
        self.0.values().any(|a| a == agent)
    }
}

/// Each real server's agent in `d` (by the server's address).
fn agents_by_server(d: &Desired) -> HashMap<IpAddr, IpAddr> {
    d.services
        .iter()
        .flat_map(|s| &s.real_servers)
        .filter_map(|r| Some((r.dest.addr, r.agent?)))
        .collect()
}

/// The VIP set per agent address, sorted: [`Desired::agent_vips`], widened by the VIPs
/// of managed or retired services whose kernel destinations belong to that agent's
/// host (by address, as the config names it); a [`Former`] agent has what its host's
/// destinations carry (nothing, once drained). Services lvsdr does not manage add
/// nothing. A retired fwmark service's VIPs are not known any more: it adds none.
pub fn vip_sets(
    d: &Desired,
    state: &ReconcileState,
    former: &Former,
) -> BTreeMap<IpAddr, Vec<IpAddr>> {
    let mut sets = d.agent_vips();
    let mut agent_of = former.0.clone();
    agent_of.extend(agents_by_server(d));
    for agent in former.0.values() {
        sets.entry(*agent).or_default();
    }
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
    use lvsdr::reconcile::Observed;

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
        lvsdr::config::parse(&text, "t.toml").expect("config")
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
                    let entry = lvsdr::ipvs::DestEntry {
                        dest: r.dest,
                        active_conns: 1,
                        inactive_conns: 0,
                        persistent_conns: 0,
                        stats: Default::default(),
                    };
                    ((r.dest.addr, r.dest.port), entry)
                })
                .collect();
            let o = lvsdr::reconcile::ObservedService {
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
            set(&vip_sets(&after, &drained, &Former::default()), "10.0.0.11"),
            ["192.0.2.10", "192.0.2.20"]
        );
        // The kernel let go of the destination: now it goes.
        assert_eq!(
            set(
                &vip_sets(&after, &kernel_of(&after), &Former::default()),
                "10.0.0.11"
            ),
            ["192.0.2.20"]
        );
        // The other server is untouched either way.
        assert_eq!(
            set(&vip_sets(&after, &drained, &Former::default()), "10.0.0.12"),
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
            set(
                &vip_sets(&after, &draining, &Former::default()),
                "10.0.0.11"
            ),
            ["192.0.2.10", "192.0.2.20"]
        );
        draining.retired.clear(); // deleted: no longer retired, and unmanaged .30 stays out
        assert_eq!(
            set(
                &vip_sets(&after, &draining, &Former::default()),
                "10.0.0.11"
            ),
            ["192.0.2.20"]
        );
    }

    #[test]
    fn a_server_leaving_every_service_is_told_its_draining_vips_then_an_empty_set_once() {
        let before = config(true, true);
        let after = config(true, false); // 10.0.0.12 was only in "a", which is retired
        let mut former = Former::default();
        former.update(&before, &after);
        let twelve: IpAddr = "10.0.0.12".parse().expect("ip");
        assert!(former.contains(&twelve));
        assert!(
            !former.contains(&"10.0.0.11".parse().expect("ip")),
            "still configured"
        );
        let mut draining = kernel_of(&before);
        draining.retired = vec![before.services[0].service.key.clone()];
        assert_eq!(
            set(&vip_sets(&after, &draining, &former), "10.0.0.12"),
            ["192.0.2.10"]
        );
        // Drained: an empty set, to go out once.
        let drained = kernel_of(&after);
        assert_eq!(
            set(&vip_sets(&after, &drained, &former), "10.0.0.12"),
            Vec::<String>::new()
        );
        former.forget(&[twelve]);
        assert!(!vip_sets(&after, &drained, &former).contains_key(&twelve));
        // Back in the config: not a former agent any more.
        let mut former = Former::default();
        former.update(&before, &after);
        former.update(&after, &before);
        assert_eq!(former, Former::default());
    }
}
