//! Which services a pass reads and plans: all of them, or only those whose inputs
//! changed since the last pass. Pure: computed from the old and new inputs.
//!
//! A change of one real server's weight, health or agent touches one service; reading
//! and planning the other 9,999 would cost a full read for nothing. The periodic
//! resync and every retry still take the whole table ([`Scope::All`]).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use super::plan::Gate;
use crate::health::HealthMap;
use crate::ipvs::ServiceKey;
use crate::model::{Desired, DesiredService};

/// The services a pass covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The whole table.
    All,
    /// These services only (possibly none).
    Services(HashSet<ServiceKey>),
}

impl Default for Scope {
    fn default() -> Scope {
        Scope::Services(HashSet::new())
    }
}

impl Scope {
    /// Nothing at all.
    pub fn none() -> Scope {
        Scope::default()
    }

    /// Whether the pass has nothing to look at.
    pub fn is_empty(&self) -> bool {
        matches!(self, Scope::Services(s) if s.is_empty())
    }

    /// Whether `key` is covered.
    pub fn covers(&self, key: &ServiceKey) -> bool {
        match self {
            Scope::All => true,
            Scope::Services(s) => s.contains(key),
        }
    }

    /// Widens this scope by `other`.
    pub fn merge(&mut self, other: Scope) {
        match (&mut *self, other) {
            (Scope::All, _) => {}
            (_, Scope::All) => *self = Scope::All,
            (Scope::Services(a), Scope::Services(b)) => a.extend(b),
        }
    }

    /// The config limited to the covered services.
    pub fn restrict(&self, desired: &Desired) -> Desired {
        match self {
            Scope::All => desired.clone(),
            Scope::Services(keys) => Desired {
                director: desired.director.clone(),
                agents: desired.agents.clone(),
                announce: desired.announce.clone(),
                sync: desired.sync.clone(),
                notify: Vec::new(), // not the planner's concern
                services: desired
                    .services
                    .iter()
                    .filter(|s| keys.contains(&s.service.key))
                    .cloned()
                    .collect(),
            },
        }
    }
}

/// The services a new config changes: added, removed or different in any way. A change
/// to the `[director]` or `[agents]` sections touches everything.
pub fn config_change(old: &Desired, new: &Desired) -> Scope {
    if old.director != new.director || old.agents != new.agents {
        return Scope::All;
    }
    // A service a reload did not touch is the same one, shared: no compare.
    let same = |a: &Arc<DesiredService>, b: &Arc<DesiredService>| Arc::ptr_eq(a, b) || a == b;
    if same_keys(old, new) {
        // The services where they were (most reloads): compared in place, no hashing.
        let changed = old.services.iter().zip(&new.services);
        return Scope::Services(
            changed
                .filter(|(a, b)| !same(a, b))
                .map(|(_, b)| b.service.key.clone())
                .collect(),
        );
    }
    let index = |d: &Desired| -> HashMap<ServiceKey, usize> {
        d.services
            .iter()
            .enumerate()
            .map(|(i, s)| (s.service.key.clone(), i))
            .collect()
    };
    let (o, n) = (index(old), index(new));
    let mut keys = HashSet::new();
    for (k, &i) in &n {
        if o.get(k)
            .is_none_or(|&j| !same(&old.services[j], &new.services[i]))
        {
            keys.insert(k.clone());
        }
    }
    keys.extend(o.keys().filter(|k| !n.contains_key(*k)).cloned());
    Scope::Services(keys)
}

/// Whether the two configs have the same services in the same order (by key).
pub fn same_keys(old: &Desired, new: &Desired) -> bool {
    old.services.len() == new.services.len()
        && old
            .services
            .iter()
            .zip(&new.services)
            .all(|(a, b)| a.service.key == b.service.key)
}

/// The services with a real server whose check result changed.
pub fn health_change(desired: &Desired, old: &HealthMap, new: &HealthMap) -> Scope {
    let flipped: HashSet<_> = old
        .iter()
        .filter(|(c, h)| new.get(*c) != Some(*h))
        .map(|(c, _)| c)
        .chain(new.keys().filter(|c| !old.contains_key(*c)))
        .collect();
    if flipped.is_empty() {
        return Scope::none();
    }
    Scope::Services(
        desired
            .services
            .iter()
            .filter(|s| {
                s.real_servers
                    .iter()
                    .any(|r| r.check.as_ref().is_some_and(|c| flipped.contains(c)))
            })
            .map(|s| s.service.key.clone())
            .collect(),
    )
}

/// The services with a real server whose agent confirmation changed.
pub fn gate_change(desired: &Desired, old: &Gate, new: &Gate) -> Scope {
    if old.require != new.require {
        return Scope::All;
    }
    // An agent moves when a confirmation changes or it is first heard from (pending
    // → open or closed).
    let moved: HashSet<IpAddr> = old
        .confirmed
        .symmetric_difference(&new.confirmed)
        .map(|(agent, _)| *agent)
        .chain(old.heard.symmetric_difference(&new.heard).copied())
        .collect();
    if moved.is_empty() {
        return Scope::none();
    }
    Scope::Services(
        desired
            .services
            .iter()
            .filter(|s| {
                s.real_servers
                    .iter()
                    .any(|r| r.agent.is_some_and(|a| moved.contains(&a)))
            })
            .map(|s| s.service.key.clone())
            .collect(),
    )
}
