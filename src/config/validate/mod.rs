//! Turns the parsed file into the desired state, collecting every error with its place
//! instead of stopping at the first. One file per part of the config: the global
//! sections, a service, a real server, a check (one file per check type), and what is
//! checked across services (the DR path).

mod check;
mod dr_path;
mod real_server;
mod sections;
mod service;
mod values;

use dr_path::{dr_path_checks, vips_against_real_servers};
use sections::{agents, announce, director, notify, sync};
use service::service;
use values::V;

use std::collections::HashMap;

use super::schema::{DirectorSection, File};
use super::{ConfigErrors, Host};
use crate::ipvs::ServiceKey;
use crate::model::{Desired, DesiredService};

/// The largest weight ipvsadm accepts; operators' tooling assumes it.
pub const MAX_WEIGHT: i64 = 65_535;

pub fn validate(raw: &File, text: &str, file: &str, host: &Host) -> Result<Desired, ConfigErrors> {
    let mut v = V {
        text,
        file,
        host,
        errors: Vec::new(),
    };
    let default = DirectorSection::default();
    let director = director(
        &mut v,
        raw.director.as_ref().map_or(&default, |d| d.get_ref()),
    );
    let mut services: Vec<DesiredService> = Vec::new();
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
        services.extend(ds);
    }
    let agents = raw
        .agents
        .as_ref()
        .and_then(|a| agents(&mut v, a.get_ref()));
    if agents.is_none() {
        // Without [agents], every real server is set up by hand.
        for rs in services.iter_mut().flat_map(|s| s.real_servers.iter_mut()) {
            rs.agent = None;
        }
    }
    vips_against_real_servers(&mut v, raw, &services);
    dr_path_checks(&mut v, raw, &mut services);
    let announce = raw
        .announce
        .as_ref()
        .and_then(|a| announce(&mut v, a.get_ref()));
    let sync = raw.sync.as_ref().and_then(|s| sync(&mut v, s.get_ref()));
    let notify: Vec<_> = raw
        .notify
        .iter()
        .filter_map(|n| notify(&mut v, n))
        .collect();
    match (director, v.errors.is_empty()) {
        (Some(director), true) => Ok(Desired {
            director,
            services,
            agents,
            announce,
            sync,
            notify,
        }),
        _ => Err(ConfigErrors(v.errors)),
    }
}
