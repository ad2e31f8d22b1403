//! Which VIPs this director announces (`[announce]`). A VIP is announced while the
//! director can serve it: its reconciler is alive and can read the table, and at
//! least `min_up` real servers of some service on that VIP, one the kernel has not
//! refused, have weight in the kernel. Only director-wide trouble (no pass yet, a
//! stuck reconciler, a table that cannot be read) withdraws every VIP; a refused op
//! withdraws only the VIPs with no other service able to serve, and sync daemon
//! trouble withdraws nothing.
//! BIRD's `direct` protocol turns the address on the device into a route; the director
//! needs no BIRD-specific code. Pure: the director's announcer task applies it.

pub mod device;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use lvsdr::ipvs::ServiceKey;
use lvsdr::model::Desired;
use lvsdr::reconcile::ReconcileState;

/// One VIP's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The VIP.
    pub vip: IpAddr,
    /// Whether it should be announced.
    pub announced: bool,
    /// Why (or why not).
    pub why: String,
    /// With `bird_socket`: the BGP protocols BIRD exports it to.
    #[serde(default)]
    pub exported_to: Vec<String>,
}

/// The VIPs of the config: each service's own, and for fwmark services those its
/// config lists. (The fwmark services of checks through the DR path have none.)
fn vips(desired: &Desired) -> BTreeMap<IpAddr, Vec<usize>> {
    let mut m: BTreeMap<IpAddr, Vec<usize>> = BTreeMap::new();
    for (i, s) in desired.services.iter().enumerate() {
        match &s.service.key {
            ServiceKey::Addr { addr, .. } => m.entry(*addr).or_default().push(i),
            ServiceKey::Fwmark { .. } => {
                for v in &s.vips {
                    m.entry(*v).or_default().push(i);
                }
            }
        }
    }
    m
}

/// The VIPs of the config.
pub fn all_vips(desired: &Desired) -> Vec<IpAddr> {
    vips(desired).into_keys().collect()
}

/// Every VIP's verdict, given the reconciler's last published state.
pub fn decide(
    desired: &Desired,
    state: &ReconcileState,
    started: Instant,
    now: Instant,
) -> Vec<Verdict> {
    let min_up = desired.announce.as_ref().map_or(1, |a| a.min_up) as usize;
    let director_problem = if state.last_pass.is_none() {
        Some("no reconcile pass yet".to_string())
    } else if state.read_failed {
        let e = state.errors.last().map_or("", String::as_str);
        Some(format!(
            "the last reconcile pass could not read the table: {e}"
        ))
    } else {
        lvsdr::reconcile::liveness(state, desired.director.resync_interval, started, now)
            .err()
            .map(|e| e.to_string())
    };
    vips(desired)
        .into_iter()
        .map(|(vip, services)| {
            if let Some(why) = &director_problem {
                return Verdict {
                    vip,
                    announced: false,
                    why: why.clone(),
                    exported_to: Vec::new(),
                };
            }
            // The service on this VIP with the most real servers that have weight,
            // among those the kernel has not refused.
            let (failing, able): (Vec<usize>, Vec<usize>) = services
                .iter()
                .partition(|i| state.failing.contains(&desired.services[**i].service.key));
            if able.is_empty() {
                let names: Vec<&str> = failing
                    .iter()
                    .map(|i| desired.services[*i].name.as_str())
                    .collect();
                return Verdict {
                    vip,
                    announced: false,
                    why: format!("the kernel refused an op of every service on it: {names:?}"),
                    exported_to: Vec::new(),
                };
            }
            let best = able
                .iter()
                .map(|i| {
                    let s = &desired.services[*i];
                    let obs = state.observed.services.get(&s.service.key);
                    let up = s
                        .real_servers
                        .iter()
                        .filter(|rs| {
                            obs.and_then(|o| o.dests.get(&(rs.dest.addr, rs.dest.port)))
                                .is_some_and(|d| d.dest.settings.weight > 0)
                        })
                        .count();
                    (up, s.real_servers.len(), s.name.as_str())
                })
                .max_by_key(|(up, _, _)| *up);
            match best {
                Some((up, of, name)) if up >= min_up => Verdict {
                    vip,
                    announced: true,
                    why: format!("{up} of {of} real servers of service {name:?} have weight"),
                    exported_to: Vec::new(),
                },
                Some((up, of, name)) => Verdict {
                    vip,
                    announced: false,
                    why: format!(
                        "{up} of {of} real servers of service {name:?} have weight (min_up {min_up})"
                    ),
                    exported_to: Vec::new(),
                },
                None => Verdict {
                    vip,
                    announced: false,
                    why: "no service".into(),
                    exported_to: Vec::new(),
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lvsdr::ipvs::{DestEntry, ServiceEntry, Stats};
    use lvsdr::reconcile::Observed;
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    /// The monotonic origin of the tests' clocks.
    fn t0() -> Instant {
        static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *T0.get_or_init(Instant::now)
    }

    fn config() -> Desired {
        lvsdr::config::parse(
            "[announce]\nmin_up = 2\n\
             [[service]]\nname = \"web\"\nvip = \"192.0.2.10\"\nport = 80\n\
             [service.check]\ntype = \"none\"\n\
             [[service.real_server]]\naddress = \"10.0.0.11\"\n\
             [[service.real_server]]\naddress = \"10.0.0.12\"\n\
             [[service]]\nname = \"dns\"\nvip = \"192.0.2.11\"\nport = 53\nprotocol = \"udp\"\n\
             [service.check]\ntype = \"none\"\n\
             [[service.real_server]]\naddress = \"10.0.0.11\"\n",
            "t.toml",
        )
        .expect("config")
    }

    fn state(d: &Desired, weights: &[u32]) -> ReconcileState {
        let mut table = Vec::new();
        for s in &d.services {
            let dests = s
                .real_servers
                .iter()
                .zip(weights.iter().chain(std::iter::repeat(&1)))
                .map(|(rs, w)| {
                    let mut dest = rs.dest;
                    dest.settings.weight = *w;
                    DestEntry {
                        dest,
                        active_conns: 0,
                        inactive_conns: 0,
                        persistent_conns: 0,
                        stats: Stats::default(),
                    }
                })
                .collect();
            table.push((
                ServiceEntry {
                    service: s.service.clone(),
                    stats: Stats::default(),
                },
                dests,
            ));
        }
        ReconcileState {
            observed: Arc::new(Observed::from(&table)),
            last_pass: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(100)),
            last_pass_at: Some(t0() + Duration::from_secs(100)),
            ..Default::default()
        }
    }

    #[test]
    fn a_vip_is_announced_while_min_up_servers_have_weight_and_the_reconciler_converges() {
        let d = config();
        let t0 = t0();
        let now = t0 + Duration::from_secs(101);
        let v = decide(&d, &state(&d, &[1, 1]), t0, now);
        assert_eq!(v.len(), 2);
        assert!(v[0].announced, "{v:?}");
        // dns has one real server: fewer than min_up.
        assert!(!v[1].announced && v[1].why.contains("min_up 2"), "{v:?}");
        // One of web's two goes to weight 0: withdrawn.
        let v = decide(&d, &state(&d, &[0, 1]), t0, now);
        assert!(!v[0].announced && v[0].why.starts_with("1 of 2"), "{v:?}");
        // A table that cannot be read, no pass yet, or a stuck reconciler: nothing
        // announced.
        let mut st = state(&d, &[1, 1]);
        st.errors = vec!["EPERM".into()];
        st.read_failed = true;
        assert!(decide(&d, &st, t0, now).iter().all(|v| !v.announced));
        let mut st = state(&d, &[1, 1]);
        st.last_pass = None;
        st.last_pass_at = None;
        assert!(decide(&d, &st, t0, now)
            .iter()
            .all(|v| v.why == "no reconcile pass yet"));
        let late = now + Duration::from_secs(3600);
        assert!(decide(&d, &state(&d, &[1, 1]), t0, late)
            .iter()
            .all(|v| !v.announced));
    }

    /// One service's refused op, or sync daemon trouble, withdrew every VIP before
    /// (`decide` took `state.errors.first()`), and the next scoped pass, with no
    /// error, announced them again: a flap on every VIP.
    #[test]
    fn a_refused_service_withdraws_only_its_own_vip_and_sync_trouble_nothing() {
        let mut d = config();
        d.announce.as_mut().expect("announce").min_up = 1;
        let t0 = t0();
        let now = t0 + Duration::from_secs(101);
        let web = d.services[0].service.key.clone();
        let dns = d.services[1].service.key.clone();
        let mut st = state(&d, &[1, 1]);
        st.errors = vec!["sync daemon: EINVAL".into()];
        assert!(
            decide(&d, &st, t0, now).iter().all(|v| v.announced),
            "sync trouble"
        );
        st.errors = vec!["add 192.0.2.11:53: No such file or directory".into()];
        st.failing = vec![dns.clone()];
        let v = decide(&d, &st, t0, now);
        assert!(v[0].announced, "web's VIP is not dns's: {v:?}");
        assert!(!v[1].announced && v[1].why.contains("dns"), "{v:?}");
        // A second service on the refused one's VIP keeps it announced.
        let mut d2 = d.clone();
        let mut other = (*d2.services[0]).clone();
        other.name = "web-alt".into();
        if let ServiceKey::Addr { port, .. } = &mut other.service.key {
            *port = 8080;
        }
        d2.services.push(other.into());
        let mut st = state(&d2, &[1, 1]);
        st.failing = vec![web];
        let v = decide(&d2, &st, t0, now);
        assert!(v[0].announced && v[0].why.contains("web-alt"), "{v:?}");
    }
}
