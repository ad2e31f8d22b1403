//! The read-only snapshot the HTTP endpoint renders: config, kernel table, health and
//! reload state joined per service and real server. A pure function of its inputs.

mod build;
pub mod counters;
pub mod history;
pub mod metrics;
pub mod page;
pub mod sampler;

pub use build::build;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use lvsdr::clock::epoch;

use crate::agents::{AgentMap, AgentState};
use lvsdr::ipvs::Stats;
use lvsdr::model::Desired;
use lvsdr::reconcile::Gate;
use lvsdr::reconcile::ReconcileState;
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

/// Everything the status document is built from, cloned out of the channels at one
/// moment (no lock is held while building).
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The config in force, with the operators' overrides marked on it.
    pub desired: Arc<Desired>,
    /// The reconciler's last pass (its table with the traffic counters overlaid).
    pub state: ReconcileState,
    /// Each check's health, and its latest result.
    pub health: HealthMap,
    pub details: DetailMap,
    /// Config generations and the last reload.
    pub reload: ReloadStatus,
    /// The agents' gate, and the agents as the pusher sees them.
    pub gate: Gate,
    pub agents: AgentMap,
    /// The announcer's verdicts, the VIPs held on an ARP interface, BIRD's view.
    pub announce: Vec<crate::announce::Verdict>,
    pub held: Vec<IpAddr>,
    pub bird: Option<BirdStatus>,
    /// The `[[notify]]` hooks' deliveries.
    pub notify: Vec<HookStatus>,
    /// The health checks' counters.
    pub checks: CheckCounts,
}

/// The health checks' counters since the start (see [`Status`]'s fields of the same
/// names).
#[derive(Debug, Default, Clone)]
pub struct CheckCounts {
    pub completed: u64,
    pub local_errors: u64,
    pub inconclusive: u64,
    pub stalled_seconds: f64,
    pub lateness: lvsdr_checks::lag::LatenessCounts,
}
