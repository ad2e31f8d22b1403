//! The typed IPVS model: services, destinations, statistics, sync daemons, timeouts.
//! These are what callers build and what dumps return; `wire` turns them into bytes.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use bitflags::bitflags;

use super::consts as k;

/// The address family of a service or destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// IPv4 (`AF_INET`).
    V4,
    /// IPv6 (`AF_INET6`).
    V6,
}

impl Family {
    /// The family of an address.
    pub fn of(addr: &IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        })
    }
}

/// The transport protocol of an address-keyed service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        })
    }
}

impl FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            "sctp" => Ok(Protocol::Sctp),
            other => Err(format!(
                "unknown protocol {other:?} (expected tcp, udp or sctp)"
            )),
        }
    }
}

/// What identifies a virtual service in the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceKey {
    /// A protocol, virtual IP and port.
    Addr {
        /// TCP, UDP or SCTP.
        protocol: Protocol,
        /// The virtual IP.
        addr: IpAddr,
        /// The virtual port (0: all ports, with persistence).
        port: u16,
    },
    /// A firewall mark set by netfilter, for one address family.
    Fwmark {
        /// Which family's packets the mark matches.
        family: Family,
        /// The mark.
        mark: u32,
    },
}

impl ServiceKey {
    /// The service's address family.
    pub fn family(&self) -> Family {
        match self {
            ServiceKey::Addr { addr, .. } => Family::of(addr),
            ServiceKey::Fwmark { family, .. } => *family,
        }
    }
}

/// Formats an address and port as `1.2.3.4:80` or `[2001:db8::1]:80`.
pub fn fmt_addr_port(addr: &IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceKey::Addr {
                protocol,
                addr,
                port,
            } => {
                write!(f, "{protocol} {}", fmt_addr_port(addr, *port))
            }
            ServiceKey::Fwmark { family, mark } => write!(f, "fwmark {mark} ({family})"),
        }
    }
}

/// An IPVS scheduler. `Other` carries a name this crate does not know (a newer
/// kernel's, or the empty name ipvsadm sends where the kernel ignores it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scheduler {
    /// Round robin.
    Rr,
    /// Weighted round robin.
    Wrr,
    /// Least connection.
    Lc,
    /// Weighted least connection.
    Wlc,
    /// Locality-based least connection.
    Lblc,
    /// Locality-based least connection with replication.
    Lblcr,
    /// Destination hashing.
    Dh,
    /// Source hashing.
    Sh,
    /// Shortest expected delay.
    Sed,
    /// Never queue.
    Nq,
    /// Maglev hashing.
    Mh,
    /// Weighted failover.
    Fo,
    /// Weighted overflow.
    Ovf,
    /// Weighted random twos choice.
    Twos,
    /// A name not in the list above.
    Other(String),
}

const SCHEDULERS: [(&str, Scheduler); 14] = [
    ("rr", Scheduler::Rr),
    ("wrr", Scheduler::Wrr),
    ("lc", Scheduler::Lc),
    ("wlc", Scheduler::Wlc),
    ("lblc", Scheduler::Lblc),
    ("lblcr", Scheduler::Lblcr),
    ("dh", Scheduler::Dh),
    ("sh", Scheduler::Sh),
    ("sed", Scheduler::Sed),
    ("nq", Scheduler::Nq),
    ("mh", Scheduler::Mh),
    ("fo", Scheduler::Fo),
    ("ovf", Scheduler::Ovf),
    ("twos", Scheduler::Twos),
];

impl Scheduler {
    /// The kernel's name of the scheduler (`ip_vs_<name>` is its module).
    pub fn name(&self) -> &str {
        match self {
            Scheduler::Other(name) => name,
            known => SCHEDULERS
                .iter()
                .find(|(_, s)| s == known)
                .map_or("", |(n, _)| n),
        }
    }

    /// Maps a name to a scheduler; unknown names become `Other`.
    pub fn from_name(name: &str) -> Scheduler {
        SCHEDULERS
            .iter()
            .find(|(n, _)| *n == name)
            .map_or_else(|| Scheduler::Other(name.to_string()), |(_, s)| s.clone())
    }

    /// The names of all schedulers this crate knows.
    pub fn known_names() -> impl Iterator<Item = &'static str> {
        SCHEDULERS.iter().map(|(n, _)| *n)
    }
}

impl fmt::Display for Scheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

bitflags! {
    /// `IP_VS_SVC_F_*`. Unknown bits are kept, so a value read is a value written.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct ServiceFlags: u32 {
        /// Persistent service (client affinity for `timeout`).
        const PERSISTENT = k::SVC_F_PERSISTENT;
        /// Set by the kernel on every service in its table; stripped on read.
        const HASHED = k::SVC_F_HASHED;
        /// One-packet scheduling (UDP).
        const ONEPACKET = k::SVC_F_ONEPACKET;
        /// Scheduler flag 1: `sh-fallback` / `mh-fallback`.
        const SCHED1 = k::SVC_F_SCHED1;
        /// Scheduler flag 2: `sh-port` / `mh-port`.
        const SCHED2 = k::SVC_F_SCHED2;
        /// Scheduler flag 3.
        const SCHED3 = k::SVC_F_SCHED3;
        const _ = !0;
    }
}

/// The persistence netmask: an IPv4 mask, or an IPv6 prefix length, as the kernel has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Netmask {
    /// IPv4 services: a mask (`255.255.255.255` by default).
    V4(Ipv4Addr),
    /// IPv6 services: a prefix length (128 by default).
    V6(u8),
}

impl Netmask {
    /// The kernel's default for a family: one client address per persistence entry.
    pub fn host(family: Family) -> Netmask {
        match family {
            Family::V4 => Netmask::V4(Ipv4Addr::BROADCAST),
            Family::V6 => Netmask::V6(128),
        }
    }
}

impl fmt::Display for Netmask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Netmask::V4(m) => write!(f, "{m}"),
            Netmask::V6(p) => write!(f, "{p}"),
        }
    }
}

/// A service's settings: everything but its key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServiceSettings {
    /// The scheduler.
    pub scheduler: Scheduler,
    /// Flags (persistence, one-packet, scheduler flags); never `HASHED`.
    pub flags: ServiceFlags,
    /// Persistence timeout in seconds (with `PERSISTENT`).
    pub timeout: u32,
    /// Persistence netmask.
    pub netmask: Netmask,
    /// Persistence engine (e.g. `sip`), if any.
    pub pe_name: Option<String>,
}

impl ServiceSettings {
    /// A non-persistent service with this scheduler.
    pub fn new(scheduler: Scheduler, family: Family) -> ServiceSettings {
        ServiceSettings {
            scheduler,
            flags: ServiceFlags::empty(),
            timeout: 0,
            netmask: Netmask::host(family),
            pe_name: None,
        }
    }
}

/// A virtual service: its key and settings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Service {
    /// What identifies it.
    pub key: ServiceKey,
    /// How it schedules.
    pub settings: ServiceSettings,
}

/// The encapsulation of a tunnelled destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TunnelKind {
    /// IP-in-IP (the default).
    Ipip,
    /// Generic UDP encapsulation, to `port`.
    Gue,
    /// GRE.
    Gre,
}

/// Tunnel parameters of a tunnelled destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tunnel {
    /// Encapsulation.
    pub kind: TunnelKind,
    /// GUE's destination port.
    pub port: u16,
    /// `IP_VS_TUNNEL_ENCAP_FLAG_*`: checksum (1), remote checksum offload (2).
    pub flags: u16,
}

/// How packets reach a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Forwarding {
    /// Direct routing ("gatewaying"): only the MAC is rewritten. The default.
    Route,
    /// NAT ("masquerading").
    Masq,
    /// Tunnelling.
    Tunnel(Tunnel),
    /// Local node.
    Local,
    /// Cache bypass.
    Bypass,
}

impl Forwarding {
    /// The name `ipvsadm -L` prints.
    pub fn ipvsadm_name(&self) -> &'static str {
        match self {
            Forwarding::Route => "Route",
            Forwarding::Masq => "Masq",
            Forwarding::Tunnel(_) => "Tunnel",
            Forwarding::Local => "Local",
            Forwarding::Bypass => "Bypass",
        }
    }
}

/// A destination's settings: everything but its address and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DestSettings {
    /// Forwarding method.
    pub forwarding: Forwarding,
    /// Scheduling weight; 0 quiesces (no new connections).
    pub weight: u32,
    /// Upper connection threshold (0: none).
    pub upper_threshold: u32,
    /// Lower connection threshold (0: none).
    pub lower_threshold: u32,
}

impl DestSettings {
    /// Direct routing with this weight and no thresholds.
    pub fn route(weight: u32) -> DestSettings {
        DestSettings {
            forwarding: Forwarding::Route,
            weight,
            upper_threshold: 0,
            lower_threshold: 0,
        }
    }
}

/// A destination (real server) of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Dest {
    /// Real server address.
    pub addr: IpAddr,
    /// Real server port (in DR, the service's port).
    pub port: u16,
    /// Forwarding, weight, thresholds.
    pub settings: DestSettings,
}

impl Dest {
    /// `addr:port` as ipvsadm prints it.
    pub fn addr_port(&self) -> String {
        fmt_addr_port(&self.addr, self.port)
    }
}

/// Traffic counters and rates of a service or destination (the 64-bit set).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub struct Stats {
    /// Connections scheduled.
    pub conns: u64,
    /// Packets in.
    pub in_pkts: u64,
    /// Packets out (NAT only: DR replies bypass the director).
    pub out_pkts: u64,
    /// Bytes in.
    pub in_bytes: u64,
    /// Bytes out.
    pub out_bytes: u64,
    /// Connections per second.
    pub cps: u64,
    /// Packets in per second.
    pub in_pps: u64,
    /// Packets out per second.
    pub out_pps: u64,
    /// Bytes in per second.
    pub in_bps: u64,
    /// Bytes out per second.
    pub out_bps: u64,
}

/// A service as a dump reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntry {
    /// The service.
    pub service: Service,
    /// Its counters.
    pub stats: Stats,
}

/// A destination as a dump reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestEntry {
    /// The destination.
    pub dest: Dest,
    /// Established connections.
    pub active_conns: u32,
    /// Other connections.
    pub inactive_conns: u32,
    /// Persistence templates.
    pub persistent_conns: u32,
    /// Its counters.
    pub stats: Stats,
}

/// The role of a connection-sync daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DaemonState {
    /// Sends connection state.
    Master,
    /// Receives connection state.
    Backup,
}

impl fmt::Display for DaemonState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DaemonState::Master => "master",
            DaemonState::Backup => "backup",
        })
    }
}

/// A connection-sync daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Daemon {
    /// Master or backup.
    pub state: DaemonState,
    /// The interface it multicasts on.
    pub ifname: String,
    /// Its sync id (0-255).
    pub sync_id: u32,
    /// UDP payload size; the kernel picks one when absent.
    pub sync_maxlen: Option<u16>,
    /// Multicast group; the kernel's default (224.0.0.81) when absent.
    pub mcast_group: Option<IpAddr>,
    /// Multicast port (base); 8848 when absent.
    pub mcast_port: Option<u16>,
    /// Multicast TTL; 1 when absent.
    pub mcast_ttl: Option<u8>,
}

/// IPVS version and connection table size (`GET_INFO`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Info {
    /// `IP_VS_VERSION_CODE`, e.g. 0x010201 for 1.2.1.
    pub version: u32,
    /// Size of the connection hash table.
    pub conn_tab_size: u32,
}

impl Info {
    /// `1.2.1`.
    pub fn version_string(&self) -> String {
        let v = self.version;
        format!("{}.{}.{}", (v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff)
    }
}

/// Connection timeouts in seconds. In a request, `None` leaves a value as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timeouts {
    /// Established TCP.
    pub tcp: Option<u32>,
    /// TCP after FIN.
    pub tcp_fin: Option<u32>,
    /// UDP.
    pub udp: Option<u32>,
}
