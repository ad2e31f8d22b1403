//! The planner: a pure function from what should be, what is, and what the checks
//! say, to the kernel changes that close the gap. Nothing here does I/O.
//!
//! Rules, per managed service:
//! - missing → add it; settings differ → edit it;
//! - each real server gets its *effective* weight: configured when up, 0 when down
//!   (or removed, with `on_failure = "remove"`), and when not yet known: what the
//!   kernel already has (a restart adopts), or 0 for a server the kernel lacks;
//! - with `[agents] require`, a real server whose agent has not confirmed its VIPs
//!   gets weight 0 (traffic must not reach a server without the VIP); while its agent
//!   has not yet been heard from in this run (a restart), the server keeps what the
//!   kernel has and gains nothing: the weight came through an earlier run's gate, and
//!   zeroing it before the first push round ends would cut a working server;
//! - an operator's override (`lvsdr-director ctl`) comes last: `drain` gives weight 0,
//!   `disable` takes the server out at once, `weight` replaces the configured weight;
//! - a server in a slow start gets a step of its weight ([`super::ramp`]);
//! - the sorry server is present exactly while no real server has weight > 0;
//! - a destination the config no longer names drains: set to weight 0 first, then
//!   deleted once it has had weight 0 for [`SETTLE`] with no active connections, or
//!   the drain timeout passes;
//! - a service dropped from the config (retired) drains the same way as a whole.
//!
//! Services neither desired nor retired are not managed and never touched.
//! Applying a plan and planning again yields nothing (property-tested).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::observed::Observed;
use super::op::Op;
use crate::health::{Health, HealthMap};
use crate::ipvs::{Dest, DestEntry, ServiceKey};
use crate::model::{AdminState, Desired, DesiredService, OnFailure, RealServer};

/// How long a destination leaving the config keeps weight 0 before it may be deleted
/// with no active connections. A connection scheduled just before its weight fell is
/// still in its handshake (counted inactive); within this it is established (active)
/// and waited for. Deleting at once dropped such connections (`expire_nodest_conn`),
/// and their clients waited a 1 s SYN retransmission.
pub const SETTLE: Duration = Duration::from_secs(2);

/// What is draining since when, and which services left the config.
#[derive(Debug, Clone, Default)]
pub struct Drains {
    /// Services dropped from the config while the director ran.
    pub retired: HashSet<ServiceKey>,
    /// When each draining destination (or, with `None`, service) was first seen draining.
    pub since: HashMap<(ServiceKey, Option<(IpAddr, u16)>), Instant>,
    /// The time of this pass.
    pub now: Option<Instant>,
    /// Servers in a slow start: since when, over how long (see [`super::ramp`]).
    pub ramps: HashMap<super::slow_start::RampId, (Instant, Duration)>,
}

impl Drains {
    fn expired(&self, id: &(ServiceKey, Option<(IpAddr, u16)>), timeout: Duration) -> bool {
        match (self.since.get(id), self.now) {
            (Some(since), Some(now)) => now.saturating_duration_since(*since) >= timeout,
            _ => false,
        }
    }
}

/// Which VIPs each agent has confirmed. With `require` off (or no `[agents]`),
/// nothing waits for an agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gate {
    /// Whether a real server needs its agent's confirmation to get weight.
    pub require: bool,
    /// (agent, VIP): the agent holds the VIP with ARP suppressed (or did, within the
    /// grace period for failed pushes).
    pub confirmed: HashSet<(IpAddr, IpAddr)>,
    /// The agents a push round has ended for in this run (answered or failed). An
    /// agent not in here is *pending*: nothing is known yet, so nothing changes.
    pub heard: HashSet<IpAddr>,
}

/// What the gate says of one real server of one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateVerdict {
    /// It may get weight.
    Open,
    /// Its agent has not confirmed every VIP of the service: weight 0.
    Closed,
    /// Its agent has not been heard from yet in this run: keep the kernel's weight,
    /// gain none.
    Pending,
}

impl Gate {
    /// The gate before any agent has answered: pending for every real server that
    /// needs its agent. (`Gate::default()` is open: the reconciler's first pass can
    /// come before the first push round ends, and must not give such a server weight;
    /// nor take away the weight an earlier run gave it.)
    pub fn closed_for(d: &crate::model::Desired) -> Gate {
        Gate {
            require: d.agents.as_ref().is_some_and(|a| a.require),
            confirmed: HashSet::new(),
            heard: HashSet::new(),
        }
    }

    /// Whether `rs` of `svc` may get weight as far as its agent is concerned: its
    /// agent holds every VIP of the service (one refused VIP closes only the services
    /// of that VIP).
    pub fn open(&self, svc: &DesiredService, rs: &RealServer) -> bool {
        self.verdict(svc, rs) == GateVerdict::Open
    }

    /// Open, closed, or pending (agent not yet heard from) for `rs` of `svc`.
    pub fn verdict(&self, svc: &DesiredService, rs: &RealServer) -> GateVerdict {
        let Some(agent) = rs.agent.filter(|_| self.require) else {
            return GateVerdict::Open;
        };
        let all = !svc.vips.is_empty()
            && svc
                .vips
                .iter()
                .all(|v| self.confirmed.contains(&(agent, *v)));
        match (all, self.heard.contains(&agent)) {
            (true, _) => GateVerdict::Open,
            (false, true) => GateVerdict::Closed,
            (false, false) => GateVerdict::Pending,
        }
    }
}

/// The health of a real server: always up without a check.
pub fn health_of(rs: &RealServer, health: &HealthMap) -> Health {
    match &rs.check {
        None => Health::Up,
        Some(c) => health.get(c).copied().unwrap_or(Health::Unknown),
    }
}

/// The weight a real server should have in the kernel, or `None` if it should be absent.
pub fn effective_weight(
    svc: &DesiredService,
    rs: &RealServer,
    health: &HealthMap,
    gate: &Gate,
    observed: Option<&DestEntry>,
) -> Option<u32> {
    let by_health = weight_by_health(svc, rs, health, observed);
    let by_gate = match gate.verdict(svc, rs) {
        GateVerdict::Open => by_health,
        // Traffic would reach a server that may not hold the VIP yet.
        GateVerdict::Closed => Some(0),
        // Lower as health says, never raise above what the kernel has.
        GateVerdict::Pending => {
            let kernel = observed.map_or(0, |d| d.dest.settings.weight);
            by_health.map(|w| w.min(kernel))
        }
    };
    // An operator's word comes last: a drained server keeps its place (and its
    // connections) at weight 0; a disabled one leaves the table.
    match rs.admin.as_ref().map(|a| a.state) {
        Some(AdminState::Disabled) => None,
        Some(AdminState::Drain) => by_gate.map(|_| 0),
        Some(AdminState::Weight(_)) | None => by_gate,
    }
}

/// The weight by health alone (`None`: absent).
fn weight_by_health(
    svc: &DesiredService,
    rs: &RealServer,
    health: &HealthMap,
    observed: Option<&DestEntry>,
) -> Option<u32> {
    match health_of(rs, health) {
        Health::Up => Some(rs.weight()),
        Health::Down => match svc.on_failure {
            // A UDP flow has no end the kernel sees: at weight 0 a client sending from
            // one port keeps going to the failed server for as long as it sends.
            // Deleted, its entries expire at the next datagram (expire_nodest_conn,
            // set by `prepare`) and the flow is scheduled again.
            OnFailure::Weight0 if svc.is_udp() => None,
            OnFailure::Weight0 => Some(0),
            OnFailure::Remove => None,
        },
        Health::Unknown => Some(observed.map_or(0, |d| d.dest.settings.weight)),
    }
}

/// Computes the changes that make the kernel match the desired state.
pub fn plan(
    desired: &Desired,
    observed: &Observed,
    health: &HealthMap,
    gate: &Gate,
    drains: &Drains,
) -> Vec<Op> {
    let mut ops = Vec::new();
    let timeout = desired.director.drain_timeout;
    for svc in &desired.services {
        plan_service(svc, observed, health, gate, drains, timeout, &mut ops);
    }
    for key in &drains.retired {
        if desired.service(key).is_some() {
            continue;
        }
        let Some(obs) = observed.services.get(key) else {
            continue;
        };
        let active: u32 = obs.dests.values().map(|d| d.active_conns).sum();
        if active == 0 || drains.expired(&(key.clone(), None), timeout) {
            ops.push(Op::DelService(key.clone()));
        } else {
            for d in obs.dests.values().filter(|d| d.dest.settings.weight > 0) {
                ops.push(Op::EditDest(key.clone(), with_weight(d.dest, 0)));
            }
        }
    }
    ops.sort_by_key(Op::phase);
    ops
}

fn with_weight(mut d: Dest, weight: u32) -> Dest {
    d.settings.weight = weight;
    d
}

fn plan_service(
    svc: &DesiredService,
    observed: &Observed,
    health: &HealthMap,
    gate: &Gate,
    drains: &Drains,
    timeout: Duration,
    ops: &mut Vec<Op>,
) {
    let key = &svc.service.key;
    let obs = observed.services.get(key);
    match obs {
        None => ops.push(Op::AddService(svc.service.clone())),
        Some(o) if o.settings != svc.service.settings => {
            ops.push(Op::EditService(svc.service.clone()))
        }
        Some(_) => {}
    }
    let observed_dest = |addr: IpAddr, port: u16| obs.and_then(|o| o.dests.get(&(addr, port)));

    // Where each destination should end up: (dest with its weight) per (addr, port).
    // Ordered: destinations are added in one canonical order (by address), so that
    // every director builds the same `mh` (Maglev) table from the same config.
    let mut want: std::collections::BTreeMap<(IpAddr, u16), Dest> = Default::default();
    for rs in &svc.real_servers {
        let id = (rs.dest.addr, rs.dest.port);
        if let Some(w) = effective_weight(svc, rs, health, gate, observed_dest(id.0, id.1)) {
            let w = match (drains.ramps.get(&(key.clone(), id.0, id.1)), drains.now) {
                (Some((since, over)), Some(now)) => {
                    super::slow_start::ramped(w, now.saturating_duration_since(*since), *over)
                }
                _ => w,
            };
            want.insert(id, with_weight(rs.dest, w));
        }
    }
    if let Some(sorry) = svc.sorry_server {
        let id = (sorry.addr, sorry.port);
        if !want.values().any(|d| d.settings.weight > 0) && !want.contains_key(&id) {
            want.insert(id, sorry);
        }
    }

    for (id, d) in &want {
        match observed_dest(id.0, id.1) {
            None => ops.push(Op::AddDest(key.clone(), *d)),
            Some(o) if o.dest.settings != d.settings => ops.push(Op::EditDest(key.clone(), *d)),
            Some(_) => {}
        }
    }
    let Some(obs) = obs else { return };
    for (id, o) in &obs.dests {
        if want.contains_key(id) {
            continue;
        }
        let is_rs = svc
            .real_servers
            .iter()
            .any(|r| (r.dest.addr, r.dest.port) == *id);
        // A failed server under on_failure = "remove" goes at once: it serves nothing.
        let drain = (key.clone(), Some(*id));
        let settled = o.dest.settings.weight == 0
            && o.active_conns == 0
            && drains.expired(&drain, SETTLE.min(timeout));
        let drained = is_rs || settled || drains.expired(&drain, timeout);
        if drained {
            ops.push(Op::DelDest(key.clone(), id.0, id.1));
        } else if o.dest.settings.weight > 0 {
            ops.push(Op::EditDest(key.clone(), with_weight(o.dest, 0)));
        }
    }
}

/// The destinations and services that are draining in `observed` (for the driver,
/// which stamps when each was first seen so).
pub fn draining(
    desired: &Desired,
    observed: &Observed,
    drains: &Drains,
) -> Vec<(ServiceKey, Option<(IpAddr, u16)>)> {
    let mut out = Vec::new();
    for svc in &desired.services {
        let Some(obs) = observed.services.get(&svc.service.key) else {
            continue;
        };
        for id in obs.dests.keys() {
            let named = svc
                .real_servers
                .iter()
                .any(|r| (r.dest.addr, r.dest.port) == *id)
                || svc.sorry_server.is_some_and(|s| (s.addr, s.port) == *id);
            if !named {
                out.push((svc.service.key.clone(), Some(*id)));
            }
        }
    }
    for key in &drains.retired {
        if desired.service(key).is_none() && observed.services.contains_key(key) {
            out.push((key.clone(), None));
        }
    }
    out
}
