//! The read-only snapshot the HTTP endpoint renders: config, kernel table, health and
//! reload state joined per service and real server. A pure function of its inputs.

pub mod counters;
pub mod history;
pub mod metrics;
pub mod page;
pub mod sampler;

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use lvsdr::clock::epoch;

use crate::agents::{AgentMap, AgentState};
use lvsdr::ipvs::{ServiceKey, Stats};
use lvsdr::model::{Desired, RealServer};
use lvsdr::reconcile::ReconcileState;
use lvsdr::reconcile::{effective_weight, health_of, Gate, GateVerdict};
use lvsdr_checks::{DetailMap, Health, HealthMap};

/// A `[[notify]]` hook's deliveries since start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookStatus {
    /// The hook: its program or URL.
    pub hook: String,
    /// Events it took (the program exited 0, the URL answered 2xx).
    pub delivered: u64,
    /// Events it did not take after every try.
    pub failed: u64,
    /// Events dropped because its queue was full (a slow hook).
    pub dropped: u64,
}

/// The outcome of the last config load.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReloadStatus {
    /// Config generation in force (1 for the config read at start).
    pub generation: u64,
    /// When the last load or reload was attempted (seconds since the epoch).
    pub at: f64,
    /// Whether it was accepted.
    pub ok: bool,
    /// Its errors, if rejected (the previous config then stays in force).
    pub errors: Vec<String>,
}

/// `GET /status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Status {
    /// Config generation and the last reload's result.
    pub config: ReloadStatus,
    /// Reconciler counters.
    pub reconcile: ReconcileStatus,
    /// Managed services.
    pub services: Vec<ServiceStatus>,
    /// Services in the kernel that the config does not name: never touched.
    pub unmanaged_services: Vec<String>,
    /// Services dropped from the config, draining before deletion.
    pub retired_services: Vec<String>,
    /// Real-server agents (empty without `[agents]`).
    pub agents: Vec<AgentState>,
    /// With `[announce]`: per VIP, whether it is announced and why (or why not).
    #[serde(default)]
    pub announce: Vec<crate::announce::Verdict>,
    /// With `[sync]`: the connection sync daemons running, e.g. "master on eth0, sync id 1".
    #[serde(default)]
    pub sync_daemons: Vec<String>,
    /// The config's VIPs this host holds on an interface that answers ARP (not `lo`,
    /// not the announce device): with keepalived's VRRP, whether this director is the
    /// master.
    #[serde(default)]
    pub vips_held: Vec<std::net::IpAddr>,
    /// With `[announce] bird_socket`: BIRD's BGP sessions as it reports them, or why it
    /// could not be asked.
    #[serde(default)]
    pub bird: Option<BirdStatus>,
    /// Kernel settings the config needs that differ (`lvsdr-director prepare` sets them).
    #[serde(default)]
    pub kernel_settings: Vec<String>,
    /// Health checks completed since the start (every run that ended: passed, failed
    /// or timed out).
    #[serde(default)]
    pub checks_completed: u64,
    /// Of those, the runs this host could not carry out (a local error: out of file
    /// descriptors, a fork refused by `TasksMax`); their servers kept their weight.
    #[serde(default)]
    pub checks_local_errors: u64,
    /// Timeouts not counted against their server: this director stalled for a
    /// quarter of the check's timeout or more meanwhile.
    #[serde(default)]
    pub checks_inconclusive: u64,
    /// How long, in all, the director's thread was seen stalled since the start.
    #[serde(default)]
    pub stalled_seconds: f64,
    /// How late the health checks' scheduler looked at the clock: counts per bucket
    /// of `health::lag::LATENESS_BUCKETS` (seconds, the last +Inf), and their sum.
    #[serde(default)]
    pub check_lateness: lvsdr_checks::lag::LatenessCounts,
    /// The `[[notify]]` hooks' deliveries.
    #[serde(default)]
    pub notify: Vec<HookStatus>,
}

/// BIRD's view, read over its control socket.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BirdStatus {
    /// Its BGP sessions.
    pub sessions: Vec<crate::bird::Session>,
    /// Why BIRD could not be asked, if it could not.
    pub error: Option<String>,
}

/// The reconciler's counters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReconcileStatus {
    /// Passes run.
    pub passes: u64,
    /// Ops applied.
    pub ops_applied: u64,
    /// Failed ops and dumps.
    pub failures: u64,
    /// When the last pass ran (seconds since the epoch).
    pub last_pass: Option<f64>,
    /// How long it took, in milliseconds.
    pub last_pass_ms: f64,
    /// How it read the kernel, e.g. "/proc/net/ip_vs, 0 services read again".
    #[serde(default)]
    pub last_read: String,
    /// When the table was last read in full over netlink (thresholds, tunnel settings
    /// and scheduler flags are as of then; services with traffic are read every pass).
    #[serde(default)]
    pub last_full_read: Option<f64>,
    /// Errors of the last pass.
    pub errors: Vec<String>,
    /// Ops held back after a permanent refusal (EINVAL, a missing scheduler, EPERM):
    /// not retried until the config or the kernel changes.
    #[serde(default)]
    pub held: Vec<String>,
}

/// One managed service.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// Its name in the config.
    pub name: String,
    /// e.g. "tcp 192.0.2.10:80".
    pub key: String,
    /// Virtual IP (address services).
    pub vip: Option<IpAddr>,
    /// Virtual port (address services).
    pub port: Option<u16>,
    /// "tcp", "udp", "sctp" (address services).
    pub protocol: Option<String>,
    /// Firewall mark (fwmark services).
    pub fwmark: Option<u32>,
    /// Scheduler.
    pub scheduler: String,
    /// Whether the kernel has it.
    pub in_kernel: bool,
    /// Its counters and rates, as the kernel reports them.
    pub stats: Stats,
    /// Its real servers.
    pub real_servers: Vec<ServerStatus>,
    /// The sorry server, when configured.
    pub sorry_server: Option<ServerStatus>,
}

/// One real server (or the sorry server).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerStatus {
    /// Address.
    pub address: IpAddr,
    /// Port.
    pub port: u16,
    /// Weight in the config.
    pub configured_weight: u32,
    /// Weight the director wants now (0 while down or not yet checked).
    pub target_weight: Option<u32>,
    /// Weight as read from IPVS; absent if the kernel lacks it.
    pub kernel_weight: Option<u32>,
    /// up | down | unknown.
    pub health: Health,
    /// Since when (seconds since the epoch): the last change of health, or the check's
    /// start.
    #[serde(default)]
    pub health_since: Option<f64>,
    /// How many times its health changed since its check started.
    #[serde(default)]
    pub transitions: u32,
    /// The check, e.g. "http 10.0.0.11:80/healthz"; absent for `type = "none"`.
    pub check: Option<String>,
    /// When it last ran (seconds since the epoch).
    pub last_check: Option<f64>,
    /// How long it took, in milliseconds.
    pub latency_ms: Option<f64>,
    /// Why it failed.
    pub error: Option<String>,
    /// Why the server gets no traffic, when it gets none.
    pub reason: Option<String>,
    /// An operator's override (`lvsdr-director ctl`): drain | disabled | weight | none.
    #[serde(default = "no_admin")]
    pub admin_state: String,
    /// Why, as the operator said.
    #[serde(default)]
    pub admin_reason: Option<String>,
    /// Since when (seconds since the epoch).
    #[serde(default)]
    pub admin_since: Option<f64>,
    /// The uid that set it (none when the real server drained itself).
    #[serde(default)]
    pub admin_by: Option<u32>,
    /// The real server drained itself (`lvsdr-agent drain`; `ready` lifts it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub admin_agent: bool,
    /// In a slow start (`target_weight` is its step): seconds until the full weight.
    #[serde(default)]
    pub slow_start_left: Option<f64>,
    /// Established connections.
    pub active_conns: u32,
    /// Other connections.
    pub inactive_conns: u32,
    /// Counters and rates.
    pub stats: Stats,
}

fn no_admin() -> String {
    "none".into()
}

/// The `admin_state` word and, when the override takes its traffic, why.
fn admin_words(a: Option<&lvsdr::model::Admin>) -> (String, Option<String>) {
    use lvsdr::model::AdminState;
    let Some(a) = a else {
        return (no_admin(), None);
    };
    let why = |what: &str| {
        let mut s = match a.agent {
            true => format!("{what} by its agent (lvsdr-agent drain)"),
            false => format!("{what} by uid {}", a.by),
        };
        if !a.reason.is_empty() {
            s.push_str(": ");
            s.push_str(&a.reason);
        }
        s
    };
    match a.state {
        AdminState::Drain => ("drain".into(), Some(why("drained"))),
        AdminState::Disabled => ("disabled".into(), Some(why("disabled"))),
        AdminState::Weight(0) => ("weight".into(), Some(why("weight 0 set"))),
        AdminState::Weight(_) => ("weight".into(), None),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Joins everything into the status document.
#[allow(clippy::too_many_arguments)]
pub fn build(
    desired: &Desired,
    state: &ReconcileState,
    health: &HealthMap,
    gate: &Gate,
    agents: &AgentMap,
    details: &DetailMap,
    reload: &ReloadStatus,
) -> Status {
    let observed = &state.observed;
    let services = desired
        .services
        .iter()
        .map(|svc| {
            let obs = observed.services.get(&svc.service.key);
            let server = |rs: &RealServer| {
                let entry = obs.and_then(|o| o.dests.get(&(rs.dest.addr, rs.dest.port)));
                let h = health_of(rs, health);
                let detail = rs.check.as_ref().and_then(|c| details.get(c));
                let full = effective_weight(svc, rs, health, gate, entry);
                let ramp = state
                    .ramps
                    .get(&(svc.service.key.clone(), rs.dest.addr, rs.dest.port));
                let target =
                    match (full, ramp) {
                        (Some(w), Some((since, over))) => Some(
                            lvsdr::reconcile::slow_start::ramped(w, since.elapsed(), *over),
                        ),
                        _ => full,
                    };
                let kernel_weight = entry.map(|e| e.dest.settings.weight);
                let (admin_state, admin_why) = admin_words(rs.admin.as_ref());
                let reason = match (h, kernel_weight) {
                    _ if admin_why.is_some() => admin_why,
                    _ if gate.verdict(svc, rs) == GateVerdict::Pending => {
                        Some("its agent not yet heard from since start (kernel weight kept)".into())
                    }
                    _ if !gate.open(svc, rs) => {
                        Some("waiting for its agent to confirm the VIPs".to_string())
                    }
                    (Health::Down, _) => Some("health check failing".to_string()),
                    (Health::Unknown, _) => Some("health not yet known (rise not reached)".into()),
                    (Health::Up, None) => Some("not yet in the kernel".into()),
                    (Health::Up, Some(0)) if rs.dest.settings.weight > 0 => {
                        Some("weight 0 in the kernel; the next pass restores it".into())
                    }
                    (Health::Up, Some(0)) => Some("configured weight is 0".into()),
                    _ => None,
                };
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
            };
            let (vip, port, protocol, fwmark) = match &svc.service.key {
                ServiceKey::Addr {
                    protocol,
                    addr,
                    port,
                } => (Some(*addr), Some(*port), Some(protocol.to_string()), None),
                ServiceKey::Fwmark { mark, .. } => (None, None, None, Some(*mark)),
            };
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
                real_servers: svc.real_servers.iter().map(server).collect(),
                sorry_server: svc.sorry_server.map(|d| {
                    let rs = RealServer {
                        dest: d,
                        check: None,
                        agent: None,
                        admin: None,
                        slow_start: None,
                    };
                    let mut s = server(&rs);
                    s.reason = None;
                    s.target_weight = None;
                    s
                }),
            }
        })
        .collect();
    let managed: std::collections::HashSet<&ServiceKey> =
        desired.services.iter().map(|s| &s.service.key).collect();
    let mut unmanaged: Vec<String> = observed
        .services
        .keys()
        .filter(|k| !managed.contains(k) && !state.retired.contains(k))
        .map(ToString::to_string)
        .collect();
    unmanaged.sort();
    Status {
        config: reload.clone(),
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
        unmanaged_services: unmanaged,
        retired_services: state.retired.iter().map(ToString::to_string).collect(),
        agents: agents.values().cloned().collect(),
        announce: Vec::new(),
        vips_held: Vec::new(),
        bird: None,
        kernel_settings: Vec::new(),
        checks_completed: 0,
        checks_local_errors: 0,
        checks_inconclusive: 0,
        stalled_seconds: 0.0,
        check_lateness: Default::default(),
        notify: Vec::new(),
        sync_daemons: state
            .sync_daemons
            .iter()
            .map(|d| format!("{} on {}, sync id {}", d.state, d.ifname, d.sync_id))
            .collect(),
    }
}
