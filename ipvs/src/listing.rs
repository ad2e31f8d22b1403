//! The operator's read-out of the kernel table: `ipvsadm -Ln` (and `--stats`) text,
//! character for character, and a JSON view. Pure functions of a dumped table.

use std::net::IpAddr;

use serde::Serialize;

use super::types::{
    fmt_addr_port, DestEntry, Family, Forwarding, Info, Netmask, Protocol, Scheduler, ServiceEntry,
    ServiceFlags, ServiceKey, Stats, TunnelKind,
};

/// A dumped table: each service with its destinations.
pub type Table = Vec<(ServiceEntry, Vec<DestEntry>)>;

/// What to print per line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Columns {
    /// Forward, weight, active and inactive connections (`ipvsadm -Ln`).
    Connections,
    /// Traffic counters (`ipvsadm -Ln --stats`).
    Stats,
}

/// ipvsadm's order: address services before fwmark ones, then family, protocol,
/// address, port.
fn sort_key(e: &ServiceEntry) -> (u32, Family, u16, Option<IpAddr>, u16) {
    match &e.service.key {
        ServiceKey::Addr {
            protocol,
            addr,
            port,
        } => {
            let proto = match protocol {
                Protocol::Tcp => 6,
                Protocol::Udp => 17,
                Protocol::Sctp => 132,
            };
            (0, Family::of(addr), proto, Some(*addr), *port)
        }
        ServiceKey::Fwmark { family, mark } => (*mark, *family, 0, None, 0),
    }
}

/// Sorts a table the way ipvsadm lists it.
pub fn sorted(table: &Table) -> Vec<(&ServiceEntry, Vec<&DestEntry>)> {
    let mut out: Vec<_> = table
        .iter()
        .map(|(s, ds)| {
            let mut ds: Vec<&DestEntry> = ds.iter().collect();
            ds.sort_by_key(|d| (Family::of(&d.dest.addr), d.dest.addr, d.dest.port));
            (s, ds)
        })
        .collect();
    out.sort_by_key(|(s, _)| sort_key(s));
    out
}

fn sched_flag_names(sched: &Scheduler, flags: ServiceFlags) -> Vec<String> {
    let prefix = match sched {
        Scheduler::Sh => Some("sh"),
        Scheduler::Mh => Some("mh"),
        _ => None,
    };
    let bits = [
        (ServiceFlags::SCHED1, "fallback", "flag-1"),
        (ServiceFlags::SCHED2, "port", "flag-2"),
        (ServiceFlags::SCHED3, "", "flag-3"),
    ];
    bits.iter()
        .filter(|(f, _, _)| flags.contains(*f))
        .map(|(f, named, generic)| match prefix {
            Some(p) if *f != ServiceFlags::SCHED3 => format!("{p}-{named}"),
            _ => generic.to_string(),
        })
        .collect()
}

fn service_name(key: &ServiceKey) -> String {
    match key {
        ServiceKey::Fwmark { family, mark } => match family {
            Family::V4 => format!("FWM  {mark}"),
            Family::V6 => format!("FWM  {mark} IPv6"),
        },
        ServiceKey::Addr {
            protocol,
            addr,
            port,
        } => {
            let p = match protocol {
                Protocol::Tcp => "TCP",
                Protocol::Udp => "UDP",
                Protocol::Sctp => "SCTP",
            };
            let mut name = format!("{p}  {}", fmt_addr_port(addr, *port));
            if addr.is_ipv4() {
                name.truncate(33);
            }
            name
        }
    }
}

/// ipvsadm's abbreviation of large counters.
fn largenum(i: u64) -> String {
    match i {
        i if i < 100_000_000 => format!("{i:9}"),
        i if i < 1_000_000_000 => format!("{:8}K", i / 1_000),
        i if i < 100_000_000_000 => format!("{:8}M", i / 1_000_000),
        i if i < 100_000_000_000_000 => format!("{:8}G", i / 1_000_000_000),
        i => format!("{:8}T", i / 1_000_000_000_000),
    }
}

fn stats_cells(s: &Stats) -> String {
    [s.conns, s.in_pkts, s.out_pkts, s.in_bytes, s.out_bytes]
        .iter()
        .map(|v| largenum(*v))
        .collect()
}

/// Renders the table as `ipvsadm -Ln` (or `-Ln --stats`) prints it.
pub fn ipvsadm_text(info: &Info, table: &Table, columns: Columns) -> String {
    let mut out = format!(
        "IP Virtual Server version {} (size={})\n",
        info.version_string(),
        info.conn_tab_size
    );
    out.push_str(match columns {
        Columns::Connections => {
            "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n".to_string()
        }
        Columns::Stats => format!(
            "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port\n",
            "Prot LocalAddress:Port", "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"
        ),
    }
    .as_str());
    for (entry, dests) in sorted(table) {
        let svc = &entry.service;
        let name = service_name(&svc.key);
        match columns {
            Columns::Stats => {
                out.push_str(&format!("{name:<33}{}\n", stats_cells(&entry.stats)));
            }
            Columns::Connections => {
                let s = &svc.settings;
                out.push_str(&format!("{name} {}", s.scheduler));
                let sf = sched_flag_names(&s.scheduler, s.flags);
                if !sf.is_empty() {
                    out.push_str(&format!(" ({})", sf.join(",")));
                }
                if s.flags.contains(ServiceFlags::PERSISTENT) {
                    out.push_str(&format!(" persistent {}", s.timeout));
                    match s.netmask {
                        Netmask::V4(m) if m != std::net::Ipv4Addr::BROADCAST => {
                            out.push_str(&format!(" mask {m}"))
                        }
                        Netmask::V6(p) if p != 128 => out.push_str(&format!(" mask {p}")),
                        _ => {}
                    }
                    if let Some(pe) = &s.pe_name {
                        out.push_str(&format!(" pe {pe}"));
                    }
                }
                if s.flags.contains(ServiceFlags::ONEPACKET) {
                    out.push_str(" ops");
                }
                out.push('\n');
            }
        }
        for d in dests {
            let mut dname = d.dest.addr_port();
            if svc.key.family() == Family::V4 {
                dname.truncate(28);
            }
            match columns {
                Columns::Stats => {
                    out.push_str(&format!("  -> {dname:<28}{}\n", stats_cells(&d.stats)))
                }
                Columns::Connections => out.push_str(&format!(
                    "  -> {dname:<28} {:<7} {:<6} {:<10} {:<10}\n",
                    d.dest.settings.forwarding.ipvsadm_name(),
                    d.dest.settings.weight,
                    d.active_conns,
                    d.inactive_conns
                )),
            }
        }
    }
    out
}

/// The JSON view of a table.
#[derive(Debug, Serialize)]
pub struct JsonTable {
    /// IPVS version, e.g. "1.2.1".
    pub version: String,
    /// Connection hash table size.
    pub conn_tab_size: u32,
    /// The services, sorted as ipvsadm lists them.
    pub services: Vec<JsonService>,
}

/// A service in the JSON view.
#[derive(Debug, Serialize)]
pub struct JsonService {
    /// "tcp", "udp", "sctp", or absent for fwmark services.
    pub protocol: Option<String>,
    /// The virtual IP, for address services.
    pub vip: Option<IpAddr>,
    /// The virtual port, for address services.
    pub port: Option<u16>,
    /// The mark, for fwmark services.
    pub fwmark: Option<u32>,
    /// "ipv4" or "ipv6".
    pub family: String,
    /// Scheduler name.
    pub scheduler: String,
    /// Flag names.
    pub flags: Vec<String>,
    /// Persistence timeout in seconds (0: not persistent).
    pub persistence_timeout: u32,
    /// Persistence netmask (IPv4 mask or IPv6 prefix length).
    pub persistence_netmask: String,
    /// Persistence engine.
    pub pe: Option<String>,
    /// Counters.
    pub stats: Stats,
    /// Destinations, sorted.
    pub destinations: Vec<JsonDest>,
}

/// A destination in the JSON view.
#[derive(Debug, Serialize)]
pub struct JsonDest {
    /// Real server address.
    pub address: IpAddr,
    /// Real server port.
    pub port: u16,
    /// "route", "masq", "tunnel", "local", "bypass".
    pub forwarding: String,
    /// Tunnel encapsulation, for tunnelled destinations.
    pub tunnel: Option<String>,
    /// Weight.
    pub weight: u32,
    /// Upper connection threshold.
    pub upper_threshold: u32,
    /// Lower connection threshold.
    pub lower_threshold: u32,
    /// Established connections.
    pub active_conns: u32,
    /// Other connections.
    pub inactive_conns: u32,
    /// Persistence templates.
    pub persistent_conns: u32,
    /// Counters.
    pub stats: Stats,
}

fn flag_names(flags: ServiceFlags) -> Vec<String> {
    flags.iter_names().map(|(n, _)| n.to_lowercase()).collect()
}

/// Builds the JSON view.
pub fn json(info: &Info, table: &Table) -> JsonTable {
    let services = sorted(table)
        .into_iter()
        .map(|(e, ds)| {
            let s = &e.service;
            let (protocol, vip, port, fwmark) = match &s.key {
                ServiceKey::Addr {
                    protocol,
                    addr,
                    port,
                } => (Some(protocol.to_string()), Some(*addr), Some(*port), None),
                ServiceKey::Fwmark { mark, .. } => (None, None, None, Some(*mark)),
            };
            JsonService {
                protocol,
                vip,
                port,
                fwmark,
                family: s.key.family().to_string(),
                scheduler: s.settings.scheduler.to_string(),
                flags: flag_names(s.settings.flags),
                persistence_timeout: s.settings.timeout,
                persistence_netmask: s.settings.netmask.to_string(),
                pe: s.settings.pe_name.clone(),
                stats: e.stats,
                destinations: ds.into_iter().map(json_dest).collect(),
            }
        })
        .collect();
    JsonTable {
        version: info.version_string(),
        conn_tab_size: info.conn_tab_size,
        services,
    }
}

fn json_dest(d: &DestEntry) -> JsonDest {
    let f = d.dest.settings.forwarding;
    JsonDest {
        address: d.dest.addr,
        port: d.dest.port,
        forwarding: f.ipvsadm_name().to_lowercase(),
        tunnel: match f {
            Forwarding::Tunnel(t) => Some(
                match t.kind {
                    TunnelKind::Ipip => "ipip",
                    TunnelKind::Gue => "gue",
                    TunnelKind::Gre => "gre",
                }
                .to_string(),
            ),
            _ => None,
        },
        weight: d.dest.settings.weight,
        upper_threshold: d.dest.settings.upper_threshold,
        lower_threshold: d.dest.settings.lower_threshold,
        active_conns: d.active_conns,
        inactive_conns: d.inactive_conns,
        persistent_conns: d.persistent_conns,
        stats: d.stats,
    }
}
