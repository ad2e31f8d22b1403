//! The validated desired state that config produces and the planner consumes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::health::CheckSpec;
use crate::ipvs::{Dest, Service, ServiceKey};

/// What shutdown does to the services the director manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnExit {
    /// Leave them in the kernel: traffic keeps flowing while the director is down.
    Keep,
    /// Delete them.
    Flush,
}

/// What a failed check does to a real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Weight 0: no new connections, established ones drain (the default).
    Weight0,
    /// Delete the destination.
    Remove,
}

/// The `[director]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectorSettings {
    /// Where the HTTP status endpoint listens.
    pub status_listen: SocketAddr,
    /// How often the whole table is compared, whatever else happens.
    pub resync_interval: Duration,
    /// How often that compare reads every service over netlink rather than
    /// `/proc/net/ip_vs` plus the services it shows changed.
    pub full_resync_interval: Duration,
    /// What shutdown does.
    pub on_exit: OnExit,
    /// How long a removed real server may drain before it is deleted anyway.
    pub drain_timeout: Duration,
    /// Where the director records the services it manages (see
    /// `reconcile::managed`); `None`: not recorded.
    pub state_file: Option<std::path::PathBuf>,
    /// The control socket of `lvsdr-director ctl` (runtime drain, enable, weights).
    pub control_socket: std::path::PathBuf,
    /// A group whose members may use the control socket besides root.
    pub control_group: Option<String>,
    /// Where the operators' overrides are kept across restarts.
    pub admin_file: std::path::PathBuf,
}

/// The `[agents]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSettings {
    /// The agents' port.
    pub port: u16,
    /// CA that signed the agents' certificates.
    pub ca: std::path::PathBuf,
    /// The director's client certificate.
    pub cert: std::path::PathBuf,
    /// Its key.
    pub key: std::path::PathBuf,
    /// A real server gets weight only once its agent has confirmed every VIP.
    pub require: bool,
    /// How often every agent is pushed its set again.
    pub push_interval: Duration,
    /// How long an agent that confirmed its VIPs stays confirmed through failed pushes
    /// (a VIP it refuses is unconfirmed at once).
    pub confirm_grace: Duration,
}

/// One real server of a service.
#[derive(Debug, Clone, PartialEq)]
pub struct RealServer {
    /// The destination with its configured weight.
    pub dest: Dest,
    /// Its health check; `None` for `type = "none"` (always up).
    pub check: Option<Arc<CheckSpec>>,
    /// The agent that sets it up, by the address the director reaches it on: the
    /// real server's own by default, another (`agent = "ADDR"`) for a host with
    /// several addresses; `None` without `[agents]` or with `agent = false`.
    pub agent: Option<std::net::IpAddr>,
    /// An operator's override at runtime (`lvsdr-director ctl`), not from the config.
    pub admin: Option<Admin>,
    /// Coming back into service, its weight rises in steps over this long.
    pub slow_start: Option<Duration>,
}

/// What an operator set on a real server at runtime (see [`crate::admin`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    /// What it does to the server's weight.
    pub state: AdminState,
    /// Why, as the operator said.
    pub reason: String,
    /// The uid that set it (0 when `agent`).
    pub by: u32,
    /// When (seconds since the epoch).
    pub since: u64,
    /// Set by the real server itself (`lvsdr-agent drain`), not by an operator here.
    pub agent: bool,
}

/// An override's effect on the planner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminState {
    /// Weight 0 in the kernel: its connections go on, no new ones come.
    Drain,
    /// Out of the kernel: its connections move, as with `on_failure = "remove"`.
    Disabled,
    /// This weight instead of the configured one (health still applies).
    Weight(u32),
}

impl RealServer {
    /// The weight it has when up: the configured one, or an operator's.
    pub fn weight(&self) -> u32 {
        match self.admin.as_ref().map(|a| a.state) {
            Some(AdminState::Weight(w)) => w,
            _ => self.dest.settings.weight,
        }
    }
}

/// Firewall marks from this one up go to checks through the DR path (`via = "vip"`),
/// one per real server address (`lv` in ASCII, then a counter).
pub const CHECK_MARK_BASE: u32 = 0x6c76_0000;

/// One managed virtual service.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredService {
    /// The operator's name for it.
    pub name: String,
    /// Key and settings as the kernel should have them.
    pub service: Service,
    /// What a failed check does.
    pub on_failure: OnFailure,
    /// Added with weight 1 while no real server is up.
    pub sorry_server: Option<Dest>,
    /// The real servers.
    pub real_servers: Vec<RealServer>,
    /// The VIPs its real servers must hold: the service's own, or for a fwmark
    /// service those its config lists (`vips`).
    pub vips: Vec<std::net::IpAddr>,
}

impl DesiredService {
    /// Whether it carries UDP (a fwmark service may carry either: not counted).
    pub fn is_udp(&self) -> bool {
        matches!(
            self.service.key,
            crate::ipvs::ServiceKey::Addr {
                protocol: crate::ipvs::Protocol::Udp,
                ..
            }
        )
    }

    /// Whether it keeps clients on one real server (persistence).
    pub fn is_persistent(&self) -> bool {
        self.service
            .settings
            .flags
            .contains(crate::ipvs::ServiceFlags::PERSISTENT)
    }
}

/// Everything the config asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// Daemon settings.
    pub director: DirectorSettings,
    /// Managed services, in config order. Shared: a reload that changes one
    /// service of 10,000 builds its new config from the other 9,999 as they were,
    /// without copying them.
    pub services: Vec<Arc<DesiredService>>,
    /// Agents, if the config has an `[agents]` section.
    pub agents: Option<AgentSettings>,
    /// `[announce]`: healthy VIPs on a device of lvsdr's own, for BIRD to announce.
    pub announce: Option<AnnounceSettings>,
    /// `[sync]`: the kernel's connection sync daemon, in both roles.
    pub sync: Option<SyncSettings>,
    /// `[[notify]]`: hooks told of events.
    pub notify: Vec<NotifySettings>,
}

/// Where a hook's events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookTarget {
    /// A program and its arguments (the event on stdin).
    Exec(Vec<String>),
    /// An http:// URL (a JSON POST).
    Url(String),
}

/// The kinds of events a hook may ask for.
pub const EVENT_KINDS: [&str; 4] = ["server", "admin", "vip", "config"];

/// One `[[notify]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifySettings {
    /// Where its events go.
    pub target: HookTarget,
    /// The kinds it is told of (from [`EVENT_KINDS`]).
    pub events: Vec<String>,
    /// How long one delivery may take.
    pub timeout: Duration,
}

/// `[announce]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AnnounceSettings {
    /// The dummy interface lvsdr creates and owns.
    pub device: String,
    /// A VIP is announced while at least this many real servers of some service on
    /// it have weight in the kernel.
    pub min_up: u32,
    /// On shutdown: every VIP is withdrawn, then the director waits this long.
    pub withdraw_grace: Duration,
    /// BIRD's control socket: `/status` then shows BIRD's view (sessions, exports).
    pub bird_socket: Option<std::path::PathBuf>,
}

/// `[sync]`: both daemons (master and backup) run with these settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncSettings {
    /// The interface the daemons multicast on.
    pub interface: String,
    /// The sync id (0-255), the same on every director.
    pub sync_id: u32,
    /// Multicast group (the kernel's 224.0.0.81 when absent).
    pub mcast_group: Option<std::net::IpAddr>,
    /// UDP port (8848 when absent).
    pub port: Option<u16>,
    /// Multicast TTL (1 when absent).
    pub ttl: Option<u8>,
    /// Largest sync message payload (the kernel picks when absent).
    pub maxlen: Option<u16>,
}

impl Desired {
    /// The managed service with this key.
    pub fn service(&self, key: &ServiceKey) -> Option<&DesiredService> {
        self.services
            .iter()
            .find(|s| &s.service.key == key)
            .map(|s| &**s)
    }

    /// The VIP set each agent should hold, by agent address: the VIPs of every service
    /// one of its real servers belongs to (a host reached over IPv4 and IPv6 that names
    /// one `agent` gets one set).
    pub fn agent_vips(
        &self,
    ) -> std::collections::BTreeMap<std::net::IpAddr, Vec<std::net::IpAddr>> {
        let mut out: std::collections::BTreeMap<_, Vec<_>> = Default::default();
        for svc in &self.services {
            for agent in svc.real_servers.iter().filter_map(|r| r.agent) {
                let vips: &mut Vec<_> = out.entry(agent).or_default();
                for v in &svc.vips {
                    if !vips.contains(v) {
                        vips.push(*v);
                    }
                }
            }
        }
        for v in out.values_mut() {
            v.sort();
        }
        out
    }

    /// Every distinct health check the config asks for.
    pub fn checks(&self) -> Vec<Arc<CheckSpec>> {
        let mut seen = std::collections::HashSet::new();
        let mut out: Vec<Arc<CheckSpec>> = Vec::new();
        for rs in self.services.iter().flat_map(|s| &s.real_servers) {
            if let Some(c) = &rs.check {
                if seen.insert(c.clone()) {
                    out.push(c.clone());
                }
            }
        }
        out
    }
}
