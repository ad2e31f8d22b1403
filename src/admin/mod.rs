//! Operators' runtime overrides of real servers (`lvsdr-director ctl`): drain, disable,
//! a runtime weight. Each names a real server by address (and port), in every service
//! or in one; the latest command on a server wins. A real server may also drain itself
//! (`lvsdr-agent drain`, learned from its agent): that drain covers every server of
//! the agent's host and yields only to an operator's drain or disable. They are marked on the config's
//! real servers ([`Overrides::apply`]) before the planner sees them, so that the
//! planner stays a function of its inputs. Kept across restarts ([`file`]); spoken
//! over the control socket ([`protocol`]).

pub mod file;
pub mod handle;
pub mod protocol;
mod target;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::agent_api::AgentDrain;
use crate::model::{Admin, AdminState, Desired, RealServer};
pub use target::{Target, TargetError};

/// Where the control socket is unless the config says (the unit's `RuntimeDirectory=`).
pub const DEFAULT_SOCKET: &str = "/run/lvsdr-director/control.sock";
/// Where overrides are kept unless the config says (the unit's `StateDirectory=`).
pub const DEFAULT_FILE: &str = "/var/lib/lvsdr-director/admin.json";

/// What an override does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Weight 0: connections go on, no new ones (persistent clients included).
    Drain,
    /// Out of the table: connections move.
    Disabled,
    /// A runtime weight.
    Weight,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Drain => "drain",
            Kind::Disabled => "disabled",
            Kind::Weight => "weight",
        })
    }
}

/// A runtime weight: absolute, or a percentage of the configured weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum WeightSpec {
    /// This weight.
    Absolute(u32),
    /// This percentage of the configured weight (at least 1 when above 0).
    Percent(u32),
}

/// The largest absolute weight (as the config allows) and percentage.
const MAX_WEIGHT: u32 = 65_535;
const MAX_PERCENT: u32 = 1_000;

impl WeightSpec {
    /// The weight for a server configured with `configured`.
    pub fn resolve(self, configured: u32) -> u32 {
        match self {
            WeightSpec::Absolute(w) => w,
            WeightSpec::Percent(0) => 0,
            WeightSpec::Percent(p) => {
                let w = (u64::from(configured) * u64::from(p) + 50) / 100;
                u32::try_from(w).unwrap_or(u32::MAX).clamp(1, MAX_WEIGHT)
            }
        }
    }
}

impl TryFrom<String> for WeightSpec {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl std::str::FromStr for WeightSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("weight {s:?}: expected N (0 to {MAX_WEIGHT}) or P% (0% to {MAX_PERCENT}%)");
        match s.strip_suffix('%') {
            Some(p) => match p.trim().parse::<u32>() {
                Ok(p) if p <= MAX_PERCENT => Ok(WeightSpec::Percent(p)),
                _ => Err(bad()),
            },
            None => match s.trim().parse::<u32>() {
                Ok(w) if w <= MAX_WEIGHT => Ok(WeightSpec::Absolute(w)),
                _ => Err(bad()),
            },
        }
    }
}

impl From<WeightSpec> for String {
    fn from(w: WeightSpec) -> String {
        w.to_string()
    }
}

impl fmt::Display for WeightSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WeightSpec::Absolute(w) => write!(f, "{w}"),
            WeightSpec::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// One override, as listed and kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    /// The real server (address, and port if given).
    pub server: Target,
    /// Only in this service (by name); `None`: in every service holding it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// What it does.
    pub state: Kind,
    /// For [`Kind::Weight`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<WeightSpec>,
    /// Why, as the operator said (may be empty).
    #[serde(default)]
    pub reason: String,
    /// The uid that set it.
    pub by: u32,
    /// When (seconds since the epoch).
    pub since: u64,
}

impl Override {
    /// Whether it covers `rs` of the service named `service`.
    pub fn covers(&self, service: &str, rs: &RealServer) -> bool {
        self.server.matches(rs.dest.addr, rs.dest.port)
            && self.service.as_deref().is_none_or(|s| s == service)
    }

    /// What it makes of `rs` in the planner's terms.
    fn mark(&self, rs: &RealServer) -> Admin {
        let state = match (self.state, self.weight) {
            (Kind::Drain, _) => AdminState::Drain,
            (Kind::Disabled, _) => AdminState::Disabled,
            (Kind::Weight, Some(w)) => AdminState::Weight(w.resolve(rs.dest.settings.weight)),
            (Kind::Weight, None) => AdminState::Weight(rs.dest.settings.weight),
        };
        Admin {
            state,
            reason: self.reason.clone(),
            by: self.by,
            since: self.since,
            agent: false,
        }
    }

    /// Its scope, for messages: "10.0.0.11:80 in web" or "10.0.0.11 in every service".
    pub fn scope(&self) -> String {
        match &self.service {
            Some(s) => format!("{} in {s}", self.server),
            None => format!("{} in every service", self.server),
        }
    }
}

/// Every override in force, oldest first (a later one wins where two cover a server).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    /// The overrides.
    pub overrides: Vec<Override>,
    /// The hosts whose agents said they are drained, by agent address: kept here so
    /// that a restarted director has them from its first pass, before it hears the
    /// agents again.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub agents: BTreeMap<IpAddr, AgentDrain>,
}

impl Overrides {
    /// Sets `o`, replacing one with the same server and service.
    pub fn set(&mut self, o: Override) {
        self.overrides
            .retain(|x| !(x.server == o.server && x.service == o.service));
        self.overrides.push(o);
    }

    /// Removes the overrides within the scope of an `enable`: on `server` (every port
    /// when it names none), in `service` only when given. Returns those removed.
    pub fn clear(&mut self, server: &Target, service: Option<&str>) -> Vec<Override> {
        let (gone, kept) = self.overrides.drain(..).partition(|x: &Override| {
            server.covers(&x.server) && service.is_none_or(|s| x.service.as_deref() == Some(s))
        });
        self.overrides = kept;
        gone
    }

    /// The override in force for `rs` of `service`: the latest that covers it.
    pub fn for_server(&self, service: &str, rs: &RealServer) -> Option<&Override> {
        self.overrides.iter().rev().find(|o| o.covers(service, rs))
    }

    /// `desired` with each real server marked with the override in force for it
    /// (only the services whose marks change are copied).
    pub fn apply(&self, desired: &Desired) -> Desired {
        let mut d = desired.clone();
        for svc in &mut d.services {
            let marks: Vec<Option<Admin>> = svc
                .real_servers
                .iter()
                .map(|rs| self.admin_for(&svc.name, rs))
                .collect();
            if marks
                .iter()
                .zip(&svc.real_servers)
                .all(|(m, rs)| *m == rs.admin)
            {
                continue;
            }
            let svc = Arc::make_mut(svc);
            for (rs, mark) in svc.real_servers.iter_mut().zip(marks) {
                rs.admin = mark;
            }
        }
        d
    }

    /// The mark for `rs` of `service`: the override in force for it, or its host's
    /// drain.
    fn admin_for(&self, service: &str, rs: &RealServer) -> Option<Admin> {
        let admin = self.for_server(service, rs).map(|o| o.mark(rs));
        let Some(drain) = rs.agent.and_then(|a| self.agents.get(&a)) else {
            return admin;
        };
        // The host's own drain wins over a runtime weight; an operator's drain or
        // disable stays (a disable is stronger, and lifting the host's drain must not
        // lift the operator's).
        let stronger = matches!(
            admin.as_ref().map(|a| a.state),
            Some(AdminState::Drain | AdminState::Disabled)
        );
        if stronger {
            return admin;
        }
        Some(Admin {
            state: AdminState::Drain,
            reason: drain.reason.clone(),
            by: 0,
            since: drain.since,
            agent: true,
        })
    }

    /// Whether none is in force (the planner then sees the config as loaded).
    pub fn is_empty(&self) -> bool {
        self.overrides.is_empty() && self.agents.is_empty()
    }

    /// Records what the agent at `agent` said of its drain; whether that changed
    /// anything.
    pub fn set_agent(&mut self, agent: IpAddr, drain: Option<AgentDrain>) -> bool {
        match drain {
            Some(d) => self.agents.insert(agent, d.clone()) != Some(d),
            None => self.agents.remove(&agent).is_some(),
        }
    }

    /// Drops the overrides that cover no real server of `desired` (their server or
    /// service left the config); returns them.
    pub fn prune(&mut self, desired: &Desired) -> Vec<Override> {
        let (kept, gone) = self.overrides.drain(..).partition(|o: &Override| {
            desired
                .services
                .iter()
                .any(|s| s.real_servers.iter().any(|rs| o.covers(&s.name, rs)))
        });
        self.overrides = kept;
        let agents: std::collections::HashSet<IpAddr> = desired
            .services
            .iter()
            .flat_map(|s| s.real_servers.iter().filter_map(|rs| rs.agent))
            .collect();
        self.agents.retain(|a, _| agents.contains(a));
        gone
    }
}

#[cfg(test)]
mod tests;
