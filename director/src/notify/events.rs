//! The events hooks are told of, found by comparing two snapshots of what the director
//! knows: pure functions, one per kind.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use crate::announce::Verdict;
use crate::status::ReloadStatus;
use lvsdr::model::{AdminState, Desired};
use lvsdr_checks::{Health, HealthMap};
use serde::Serialize;

/// One event, as a hook receives it (one JSON object).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Event {
    /// A real server's health went up or down (not from unknown: a start is quiet).
    Server {
        service: String,
        server: String,
        state: &'static str,
        previous: &'static str,
    },
    /// An operator's override set, changed or lifted.
    Admin {
        service: String,
        server: String,
        /// drain | disabled | weight | none.
        state: String,
        weight: Option<u32>,
        reason: String,
        /// The operator's uid (`None` for the host's own drain).
        by: Option<u32>,
        /// Set by the real server's agent (`lvsdr-agent drain | ready`).
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        agent: bool,
    },
    /// A VIP announced or withdrawn.
    Vip {
        vip: IpAddr,
        announced: bool,
        why: String,
    },
    /// A config load accepted or rejected.
    Config {
        generation: u64,
        ok: bool,
        errors: Vec<String>,
    },
}

impl Event {
    /// Its kind, as `events = [...]` names it.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Server { .. } => "server",
            Event::Admin { .. } => "admin",
            Event::Vip { .. } => "vip",
            Event::Config { .. } => "config",
        }
    }
}

fn word(h: Health) -> &'static str {
    match h {
        Health::Up => "up",
        Health::Down => "down",
        Health::Unknown => "unknown",
    }
}

/// Servers whose health went between up and down.
pub fn servers(desired: &Desired, before: &HealthMap, after: &HealthMap) -> Vec<Event> {
    let mut out = Vec::new();
    for svc in &desired.services {
        for rs in &svc.real_servers {
            let Some(c) = &rs.check else { continue };
            let (Some(&was), Some(&now)) = (before.get(c), after.get(c)) else {
                continue;
            };
            if was != now && was != Health::Unknown && now != Health::Unknown {
                out.push(Event::Server {
                    service: svc.name.clone(),
                    server: rs.dest.addr_port(),
                    state: word(now),
                    previous: word(was),
                });
            }
        }
    }
    out
}

type AdminKey = (String, String);

fn admin_states(d: &Desired) -> HashMap<AdminKey, &lvsdr::model::Admin> {
    d.services
        .iter()
        .flat_map(|s| {
            s.real_servers.iter().filter_map(move |rs| {
                rs.admin
                    .as_ref()
                    .map(|a| ((s.name.clone(), rs.dest.addr_port()), a))
            })
        })
        .collect()
}

/// Overrides set, changed or lifted between two configs (as the planner sees them).
pub fn admin(before: &Desired, after: &Desired) -> Vec<Event> {
    let (was, now) = (admin_states(before), admin_states(after));
    let mut out = Vec::new();
    let mut keys: Vec<&AdminKey> = was.keys().chain(now.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let (a, b) = (was.get(k), now.get(k));
        if a == b {
            continue;
        }
        let (state, weight) = match b.map(|b| b.state) {
            None => ("none".to_string(), None),
            Some(AdminState::Drain) => ("drain".into(), Some(0)),
            Some(AdminState::Disabled) => ("disabled".into(), None),
            Some(AdminState::Weight(w)) => ("weight".into(), Some(w)),
        };
        // A lifted override: who set it and why, from the one that went.
        let from = b.or(a);
        out.push(Event::Admin {
            service: k.0.clone(),
            server: k.1.clone(),
            state,
            weight,
            reason: from.map(|x| x.reason.clone()).unwrap_or_default(),
            by: from.filter(|x| !x.agent).map(|x| x.by),
            agent: from.is_some_and(|x| x.agent),
        });
    }
    out
}

/// VIPs whose announcement changed (a VIP seen for the first time counts when it is
/// announced).
pub fn vips(before: &[Verdict], after: &[Verdict]) -> Vec<Event> {
    let was: BTreeMap<IpAddr, bool> = before.iter().map(|v| (v.vip, v.announced)).collect();
    after
        .iter()
        .filter(|v| was.get(&v.vip).copied().unwrap_or(false) != v.announced)
        .map(|v| Event::Vip {
            vip: v.vip,
            announced: v.announced,
            why: v.why.clone(),
        })
        .collect()
}

/// A config load, if one happened since `before`.
pub fn config(before: &ReloadStatus, after: &ReloadStatus) -> Vec<Event> {
    if before.at == after.at {
        return Vec::new();
    }
    vec![Event::Config {
        generation: after.generation,
        ok: after.ok,
        errors: after.errors.clone(),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn config(admin: Option<AdminState>) -> Desired {
        let text = "[[service]]\nname = \"web\"\nvip = \"192.0.2.10\"\nport = 80\n\
                    [[service.real_server]]\naddress = \"10.0.0.11\"\n";
        let mut d = lvsdr::config::parse(text, "d.toml").expect("config");
        std::sync::Arc::make_mut(&mut d.services[0]).real_servers[0].admin =
            admin.map(|state| lvsdr::model::Admin {
                state,
                reason: "kernel upgrade".into(),
                by: 0,
                since: 1,
                agent: false,
            });
        d
    }

    #[test]
    fn up_and_down_are_told_and_a_start_from_unknown_is_not() {
        let d = config(None);
        let c: Arc<_> = d.services[0].real_servers[0].check.clone().expect("check");
        let at = |h| HealthMap::from([(c.clone(), h)]);
        assert!(servers(&d, &at(Health::Unknown), &at(Health::Up)).is_empty());
        let down = servers(&d, &at(Health::Up), &at(Health::Down));
        assert_eq!(
            serde_json::to_value(&down[0]).expect("json"),
            serde_json::json!({"event": "server", "service": "web", "server": "10.0.0.11:80", "state": "down", "previous": "up"})
        );
    }

    #[test]
    fn a_drain_and_its_lifting_are_told_with_who_and_why() {
        let (none, drained) = (config(None), config(Some(AdminState::Drain)));
        let set = admin(&none, &drained);
        assert_eq!(set.len(), 1);
        let json = serde_json::to_value(&set[0]).expect("json");
        assert_eq!(json["state"], "drain");
        assert_eq!(json["reason"], "kernel upgrade");
        let lifted = admin(&drained, &none);
        assert_eq!(
            serde_json::to_value(&lifted[0]).expect("json")["state"],
            "none"
        );
        assert!(admin(&drained, &drained).is_empty());
    }

    #[test]
    fn vips_and_config_loads() {
        let v = |announced| Verdict {
            vip: "192.0.2.10".parse().expect("ip"),
            announced,
            why: String::new(),
            exported_to: Vec::new(),
        };
        assert_eq!(vips(&[], &[v(true)]).len(), 1);
        assert!(vips(&[], &[v(false)]).is_empty());
        assert_eq!(vips(&[v(true)], &[v(false)]).len(), 1);
        let r = |at, ok| ReloadStatus {
            generation: 2,
            at,
            ok,
            errors: Vec::new(),
        };
        assert!(super::config(&r(1.0, true), &r(1.0, true)).is_empty());
        assert_eq!(super::config(&r(1.0, true), &r(2.0, false)).len(), 1);
    }
}
