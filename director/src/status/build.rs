//! The status document built from one [`Snapshot`]: each service and real server
//! with the weight the planner gives it (its own [`effective_weight`] and slow-start
//! step, not a copy) and, when it gets no traffic, why.

use lvsdr::ipvs::ServiceKey;
use lvsdr::model::{DesiredService, RealServer};
use lvsdr::reconcile::{effective_weight, health_of, GateVerdict, ObservedService};
use lvsdr_checks::Health;

use super::{
    admin_words, epoch, ms, ReconcileStatus, ServerStatus, ServiceStatus, Snapshot, Status,
};

/// The status document, whole, from one snapshot.
pub fn build(snap: &Snapshot) -> Status {
    let state = &snap.state;
    let services = snap
        .desired
        .services
        .iter()
        .map(|svc| service(snap, svc))
        .collect();
    Status {
        config: snap.reload.clone(),
        reconcile: ReconcileStatus {
            passes: state.passes,
            ops_applied: state.ops_applied,
            failures: state.failures,
            last_pass: state.last_pass.map(epoch),
            last_pass_ms: ms(state.last_pass_duration),
            last_read: state.last_read.to_string(),
            last_full_read: state.last_full_read.map(epoch),
            errors: state.errors.clone(),
            held: state.held.clone(),
        },
        services,
        unmanaged_services: unmanaged(snap),
        retired_services: state.retired.iter().map(ToString::to_string).collect(),
        agents: snap.agents.values().cloned().collect(),
        announce: snap.announce.clone(),
        vips_held: snap.held.clone(),
        bird: snap.bird.clone(),
        kernel_settings: lvsdr::sysctl::differing(&snap.desired),
        checks_completed: snap.checks.completed,
        checks_local_errors: snap.checks.local_errors,
        checks_inconclusive: snap.checks.inconclusive,
        stalled_seconds: snap.checks.stalled_seconds,
        check_lateness: snap.checks.lateness.clone(),
        notify: snap.notify.clone(),
        sync_daemons: state
            .sync_daemons
            .iter()
            .map(|d| format!("{} on {}, sync id {}", d.state, d.ifname, d.sync_id))
            .collect(),
    }
}

/// Services in the kernel the config does not name (and not retired): never touched.
fn unmanaged(snap: &Snapshot) -> Vec<String> {
    let managed: std::collections::HashSet<&ServiceKey> = snap
        .desired
        .services
        .iter()
        .map(|s| &s.service.key)
        .collect();
    let mut unmanaged: Vec<String> = snap
        .state
        .observed
        .services
        .keys()
        .filter(|k| !managed.contains(k) && !snap.state.retired.contains(k))
        .map(ToString::to_string)
        .collect();
    unmanaged.sort();
    unmanaged
}

fn service(snap: &Snapshot, svc: &DesiredService) -> ServiceStatus {
    let obs = snap.state.observed.services.get(&svc.service.key);
    let (vip, port, protocol, fwmark) = match &svc.service.key {
        ServiceKey::Addr {
            protocol,
            addr,
            port,
        } => (Some(*addr), Some(*port), Some(protocol.to_string()), None),
        ServiceKey::Fwmark { mark, .. } => (None, None, None, Some(*mark)),
    };
    let sorry_server = svc.sorry_server.map(|d| {
        let rs = RealServer {
            dest: d,
            check: None,
            agent: None,
            admin: None,
            slow_start: None,
        };
        ServerStatus {
            reason: None,
            target_weight: None,
            ..server(snap, svc, obs, &rs)
        }
    });
    ServiceStatus {
        name: svc.name.clone(),
        key: svc.service.key.to_string(),
        vip,
        port,
        protocol,
        fwmark,
        scheduler: svc.service.settings.scheduler.to_string(),
        in_kernel: obs.is_some(),
        stats: obs.map(|o| o.stats).unwrap_or_default(),
        real_servers: svc
            .real_servers
            .iter()
            .map(|rs| server(snap, svc, obs, rs))
            .collect(),
        sorry_server,
    }
}

fn server(
    snap: &Snapshot,
    svc: &DesiredService,
    obs: Option<&std::sync::Arc<ObservedService>>,
    rs: &RealServer,
) -> ServerStatus {
    let entry = obs.and_then(|o| o.dests.get(&(rs.dest.addr, rs.dest.port)));
    let h = health_of(rs, &snap.health);
    let detail = rs.check.as_ref().and_then(|c| snap.details.get(c));
    let full = effective_weight(svc, rs, &snap.health, &snap.gate, entry);
    let ramp = snap
        .state
        .ramps
        .get(&(svc.service.key.clone(), rs.dest.addr, rs.dest.port));
    let target = match (full, ramp) {
        (Some(w), Some((since, over))) => Some(lvsdr::reconcile::slow_start::ramped(
            w,
            since.elapsed(),
            *over,
        )),
        _ => full,
    };
    let kernel_weight = entry.map(|e| e.dest.settings.weight);
    let (admin_state, admin_why) = admin_words(rs.admin.as_ref());
    let reason = admin_why.or_else(|| no_traffic(snap, svc, rs, h, kernel_weight));
    ServerStatus {
        address: rs.dest.addr,
        port: rs.dest.port,
        configured_weight: rs.dest.settings.weight,
        admin_state,
        admin_reason: rs.admin.as_ref().map(|a| a.reason.clone()),
        admin_since: rs.admin.as_ref().map(|a| a.since as f64),
        admin_by: rs.admin.as_ref().filter(|a| !a.agent).map(|a| a.by),
        admin_agent: rs.admin.as_ref().is_some_and(|a| a.agent),
        slow_start_left: ramp
            .map(|(since, over)| over.saturating_sub(since.elapsed()).as_secs_f64()),
        target_weight: target,
        kernel_weight,
        health: h,
        health_since: detail.and_then(|d| d.since).map(epoch),
        transitions: detail.map_or(0, |d| d.transitions),
        check: rs.check.as_ref().map(|c| c.label()),
        last_check: detail.and_then(|d| d.last_check).map(epoch),
        latency_ms: detail.and_then(|d| d.latency).map(ms),
        error: detail.and_then(|d| d.error.clone()),
        reason,
        active_conns: entry.map_or(0, |e| e.active_conns),
        inactive_conns: entry.map_or(0, |e| e.inactive_conns),
        stats: entry.map(|e| e.stats).unwrap_or_default(),
    }
}

/// Why a server (with no operator's override) gets no traffic, if it gets none.
fn no_traffic(
    snap: &Snapshot,
    svc: &DesiredService,
    rs: &RealServer,
    h: Health,
    kernel_weight: Option<u32>,
) -> Option<String> {
    let gate = &snap.gate;
    match (h, kernel_weight) {
        _ if gate.verdict(svc, rs) == GateVerdict::Pending => {
            Some("its agent not yet heard from since start (kernel weight kept)".into())
        }
        _ if !gate.open(svc, rs) => Some("waiting for its agent to confirm the VIPs".into()),
        (Health::Down, _) => Some("health check failing".into()),
        (Health::Unknown, _) => Some("health not yet known (rise not reached)".into()),
        (Health::Up, None) => Some("not yet in the kernel".into()),
        (Health::Up, Some(0)) if rs.dest.settings.weight > 0 => {
            Some("weight 0 in the kernel; the next pass restores it".into())
        }
        (Health::Up, Some(0)) => Some("configured weight is 0".into()),
        _ => None,
    }
}
