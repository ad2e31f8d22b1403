//! Turns the parsed file into the desired state, collecting every error with its place
//! instead of stopping at the first. One file per part of the config: the global
//! sections, a service, a real server, a check (one file per check type), and what is
//! checked across services (the DR path).
//!
//! Two ways in: [`validate`] takes the whole file and reports every error with its
//! place; [`unit`] and [`assemble`] take the file as [`super::loader`] reads it, one
//! `[[service]]` block at a time (a reload reuses the blocks that did not change), and
//! only say whether it is valid: on any error the loader validates the whole file for
//! the places.

mod check;
mod dr_path;
mod real_server;
mod sections;
mod service;
mod values;

use dr_path::{add_check_services, dr_path_checks, dr_path_clash, vips_against_real_servers};
use sections::{agents, announce, director, notify, sync};
use service::service;
use values::V;

use std::collections::HashMap;
use std::sync::Arc;

use fnv::FnvHashSet;

use super::schema::{DirectorSection, File};
use super::{ConfigErrors, Host};
use crate::ipvs::ServiceKey;
use crate::model::{Desired, DesiredService, DirectorSettings, RealServer};

/// The largest weight ipvsadm accepts; operators' tooling assumes it.
pub const MAX_WEIGHT: i64 = 65_535;

/// One `[[service]]` block, valid on its own: what the checks across services need
/// (its name and key) and the service (shared with the configs built from it).
#[derive(Debug)]
pub struct Unit {
    pub name: String,
    pub key: ServiceKey,
    pub service: Arc<DesiredService>,
}

impl Unit {
    /// Whether the checks across services see the two the same: name, key, VIPs,
    /// and each real server's address, agent and check path. A reload that changes
    /// only what they do not see (a weight, a check's timing) keeps their verdict.
    pub fn same_across(&self, other: &Unit) -> bool {
        let (a, b) = (&self.service, &other.service);
        let seen = |rs: &RealServer| (rs.dest.addr, rs.agent.is_some(), dr_path::via(rs));
        self.name == other.name
            && self.key == other.key
            && a.vips == b.vips
            && a.real_servers.len() == b.real_servers.len()
            && a.real_servers
                .iter()
                .zip(&b.real_servers)
                .all(|(x, y)| seen(x) == seen(y))
    }
}

pub fn validate(raw: &File, text: &str, file: &str, host: &Host) -> Result<Desired, ConfigErrors> {
    let mut v = V::new(text, file, host);
    let director = director_of(&mut v, raw);
    let mut services: Vec<Arc<DesiredService>> = Vec::new();
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut keys: HashMap<ServiceKey, String> = HashMap::new();
    for s in &raw.services {
        let name = s.get_ref().name.get_ref();
        if let Some(first) = names.get(name.as_str()) {
            let line = v.line_of(*first);
            let span = s.get_ref().name.span();
            v.err(
                span,
                "",
                format!("duplicate service name {name:?} (first at line {line})"),
            );
        } else {
            names.insert(name, s.get_ref().name.span().start);
        }
        let (key, ds) = service(&mut v, s);
        if let Some(key) = key {
            if let Some(other) = keys.get(&key) {
                let msg = format!("service {key} is already defined by service {other:?}");
                v.err(s.span(), &format!("service {name:?}"), msg);
            } else {
                keys.insert(key, name.clone());
            }
        }
        services.extend(ds.map(Arc::new));
    }
    let desired = globals(&mut v, raw, director, services, |v, services| {
        vips_against_real_servers(v, raw, services);
        dr_path_checks(v, raw, services);
    });
    match (desired, v.errors.is_empty()) {
        (Some(d), true) => Ok(d),
        _ => Err(ConfigErrors(v.errors)),
    }
}

/// A file of one `[[service]]` and nothing else, validated: `None` on any error.
/// `agents`: whether the config it is part of has `[agents]` (without, its real
/// servers have none).
pub fn unit(raw: &File, text: &str, host: &Host, agents: bool) -> Option<Unit> {
    let [s] = raw.services.as_slice() else {
        return None;
    };
    if raw.director.is_some()
        || raw.agents.is_some()
        || raw.announce.is_some()
        || raw.sync.is_some()
        || !raw.notify.is_empty()
    {
        return None;
    }
    let mut v = V::new(text, "", host);
    let (key, ds) = service(&mut v, s);
    match (key, ds, v.errors.is_empty()) {
        (Some(key), Some(mut service), true) => {
            if !agents {
                without_agents(&mut service);
            }
            Some(Unit {
                name: s.get_ref().name.get_ref().clone(),
                key,
                service: Arc::new(service),
            })
        }
        _ => None,
    }
}

/// The global sections (`rest`, a file without services) and the service units, put
/// together and checked across: `None` on any error. `checked`: the units passed
/// the checks across services before, and nothing those see changed since.
pub fn assemble<'u>(
    rest: &File,
    text: &str,
    host: &Host,
    units: impl ExactSizeIterator<Item = &'u Unit> + Clone,
    checked: bool,
) -> Option<Desired> {
    if !rest.services.is_empty() || !(checked || unique(units.clone())) {
        return None;
    }
    let mut v = V::new(text, "", host);
    let director = director_of(&mut v, rest);
    let services = units.map(|u| u.service.clone()).collect();
    let mut clash = false;
    let desired = globals(&mut v, rest, director, services, |_, services| {
        clash = !checked && (dr_path::vips_clash(services) || dr_path_clash(services));
        if !clash {
            add_check_services(services);
        }
    });
    desired.filter(|_| v.errors.is_empty() && !clash)
}

/// Whether no two units have the same name or the same key.
fn unique<'u>(units: impl ExactSizeIterator<Item = &'u Unit>) -> bool {
    // FNV: short keys, hashed 10,000 times a reload of a big config.
    let mut names = FnvHashSet::with_capacity_and_hasher(units.len(), Default::default());
    let mut keys = FnvHashSet::with_capacity_and_hasher(units.len(), Default::default());
    { units }.all(|u| names.insert(u.name.as_str()) && keys.insert(&u.key))
}

/// Without `[agents]`, every real server is set up by hand.
fn without_agents(s: &mut DesiredService) {
    for rs in &mut s.real_servers {
        rs.agent = None;
    }
}

/// `[director]`, or its defaults.
fn director_of(v: &mut V<'_>, raw: &File) -> Option<DirectorSettings> {
    let default = DirectorSection::default();
    director(v, raw.director.as_ref().map_or(&default, |d| d.get_ref()))
}

/// The other global sections validated and the services put in them; `across` checks
/// the services against each other once their agents are settled.
fn globals(
    v: &mut V<'_>,
    raw: &File,
    director: Option<DirectorSettings>,
    mut services: Vec<Arc<DesiredService>>,
    across: impl FnOnce(&mut V<'_>, &mut Vec<Arc<DesiredService>>),
) -> Option<Desired> {
    let agents = raw.agents.as_ref().and_then(|a| agents(v, a.get_ref()));
    if agents.is_none() {
        for s in &mut services {
            if s.real_servers.iter().any(|rs| rs.agent.is_some()) {
                without_agents(Arc::make_mut(s));
            }
        }
    }
    across(v, &mut services);
    let announce = raw.announce.as_ref().and_then(|a| announce(v, a.get_ref()));
    let sync = raw.sync.as_ref().and_then(|s| sync(v, s.get_ref()));
    let notify: Vec<_> = raw.notify.iter().filter_map(|n| notify(v, n)).collect();
    Some(Desired {
        director: director?,
        services,
        agents,
        announce,
        sync,
        notify,
    })
}
