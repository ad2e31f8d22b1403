//! One `[[service]]`: its key (address, port, protocol or fwmark), its IPVS settings,
//! its forwarding, and its real servers (see [`super::real_server`]).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use toml::Spanned;

use super::real_server::real_server;
use super::values::V;
use crate::config::schema::ServiceSection;
use crate::ipvs::{
    Dest, DestSettings, Family, Forwarding, Netmask, Protocol, Scheduler, Service, ServiceFlags,
    ServiceKey, ServiceSettings, Tunnel, TunnelKind,
};
use crate::model::{DesiredService, OnFailure};

pub(super) fn service_key(
    v: &mut V<'_>,
    s: &Spanned<ServiceSection>,
    ctx: &str,
) -> Option<ServiceKey> {
    let r = s.get_ref();
    if let Some(mark) = &r.fwmark {
        for (present, what) in [
            (r.vip.is_some(), "vip"),
            (r.port.is_some(), "port"),
            (r.protocol.is_some(), "protocol"),
        ] {
            if present {
                v.err(
                    mark.span(),
                    ctx,
                    format!("fwmark and {what} exclude each other"),
                );
            }
        }
        let family = match &r.family {
            None => Some(Family::V4),
            Some(f) => v.choice(
                f,
                &[("ipv4", Family::V4), ("ipv6", Family::V6)],
                ctx,
                "family",
            ),
        };
        let mark = v.int(mark, 1, i64::from(u32::MAX), ctx, "fwmark");
        return Some(ServiceKey::Fwmark {
            family: family?,
            mark: mark?,
        });
    }
    if let Some(f) = &r.family {
        v.err(
            f.span(),
            ctx,
            "family applies to fwmark services only (a VIP has its own)",
        );
    }
    let Some(vip) = &r.vip else {
        v.err(s.span(), ctx, "missing vip (or fwmark)");
        return None;
    };
    let Some(port) = &r.port else {
        v.err(s.span(), ctx, "missing port");
        return None;
    };
    let protocol = match &r.protocol {
        None => Some(Protocol::Tcp),
        Some(p) => v.choice(
            p,
            &[
                ("tcp", Protocol::Tcp),
                ("udp", Protocol::Udp),
                ("sctp", Protocol::Sctp),
            ],
            ctx,
            "protocol",
        ),
    };
    let addr = v.addr(vip, ctx, "vip");
    if let Some(a) = addr.filter(|a| v.host.gateways.contains(a)) {
        v.err(
            vip.span(),
            ctx,
            format!("vip {a} is this director's default gateway"),
        );
    }
    let port = v.int(port, 0, 65_535, ctx, "port");
    Some(ServiceKey::Addr {
        protocol: protocol?,
        addr: addr?,
        port: u16::try_from(port?).ok()?,
    })
}

pub(super) fn settings(
    v: &mut V<'_>,
    r: &ServiceSection,
    key: &ServiceKey,
    ctx: &str,
) -> Option<ServiceSettings> {
    let family = key.family();
    let mut ok = true;
    let scheduler = match &r.scheduler {
        None => Scheduler::Wrr,
        Some(s) => {
            let sched = Scheduler::from_name(s.get_ref());
            if let Scheduler::Other(name) = &sched {
                let known: Vec<&str> = Scheduler::known_names().collect();
                let msg = format!(
                    "unknown scheduler {name:?} (expected one of {})",
                    known.join(" ")
                );
                v.err(s.span(), ctx, msg);
                ok = false;
            }
            sched
        }
    };
    let mut s = ServiceSettings::new(scheduler.clone(), family);
    if let Some(flags) = &r.scheduler_flags {
        for f in flags.get_ref() {
            let flag = match (f.as_str(), &scheduler) {
                ("sh-fallback", Scheduler::Sh) | ("mh-fallback", Scheduler::Mh) => {
                    ServiceFlags::SCHED1
                }
                ("sh-port", Scheduler::Sh) | ("mh-port", Scheduler::Mh) => ServiceFlags::SCHED2,
                _ => {
                    let msg = format!("scheduler flag {f:?} does not apply to scheduler {scheduler} (sh-fallback, sh-port for sh; mh-fallback, mh-port for mh)");
                    v.err(flags.span(), ctx, msg);
                    ok = false;
                    continue;
                }
            };
            s.flags |= flag;
        }
    } else if matches!(scheduler, Scheduler::Sh | Scheduler::Mh) {
        // Without fallback, a server at weight 0 (failed, drained, leaving) keeps its
        // share of the hash and the kernel refuses the clients that hash to it ("no
        // destination available": the director answers their SYN with a RST). With it,
        // they go to the next server; clients of the others stay where they are.
        // `scheduler_flags = []` asks for strict hashing.
        s.flags |= ServiceFlags::SCHED1;
    }
    if r.one_packet == Some(true) {
        if matches!(
            key,
            ServiceKey::Addr {
                protocol: Protocol::Udp,
                ..
            }
        ) {
            s.flags |= ServiceFlags::ONEPACKET;
        } else {
            v.err(
                r.name.span(),
                ctx,
                "one_packet applies to UDP services only",
            );
            ok = false;
        }
    }
    if let Some(p) = &r.persistence {
        match v.duration(p, ctx, "persistence") {
            Some(d) => {
                s.flags |= ServiceFlags::PERSISTENT;
                s.timeout = u32::try_from(d.as_secs().max(1)).unwrap_or(u32::MAX);
            }
            None => ok = false,
        }
    }
    if let Some(m) = &r.persistence_netmask {
        if r.persistence.is_none() {
            v.err(m.span(), ctx, "persistence_netmask needs persistence");
            ok = false;
        }
        let text = m.get_ref().trim_start_matches('/');
        match family {
            Family::V4 => match text.parse::<Ipv4Addr>() {
                Ok(mask) => s.netmask = Netmask::V4(mask),
                Err(_) => {
                    let msg = format!(
                        "persistence_netmask {:?} is not an IPv4 mask like 255.255.255.0",
                        m.get_ref()
                    );
                    v.err(m.span(), ctx, msg);
                    ok = false;
                }
            },
            Family::V6 => match text.parse::<u8>() {
                Ok(p) if p <= 128 => s.netmask = Netmask::V6(p),
                _ => {
                    let msg = format!(
                        "persistence_netmask {:?} is not an IPv6 prefix length 0-128",
                        m.get_ref()
                    );
                    v.err(m.span(), ctx, msg);
                    ok = false;
                }
            },
        }
    }
    if let Some(pe) = &r.persistence_engine {
        if r.persistence.is_none() || pe.get_ref().is_empty() || pe.get_ref().len() > 15 {
            v.err(
                pe.span(),
                ctx,
                "persistence_engine needs persistence and a name of 1-15 characters",
            );
            ok = false;
        }
        s.pe_name = Some(pe.get_ref().clone());
    }
    ok.then_some(s)
}

pub(super) fn forwarding(v: &mut V<'_>, r: &ServiceSection, ctx: &str) -> Option<Forwarding> {
    #[derive(Clone, Copy)]
    enum F {
        Dr,
        Nat,
        Tun,
    }
    let f = match &r.forwarding {
        None => F::Dr,
        Some(f) => v.choice(
            f,
            &[("dr", F::Dr), ("nat", F::Nat), ("tun", F::Tun)],
            ctx,
            "forwarding",
        )?,
    };
    if !matches!(f, F::Tun) {
        if let Some(t) = r
            .tunnel
            .as_ref()
            .map(|t| t.span())
            .or(r.tunnel_port.as_ref().map(|t| t.span()))
        {
            v.err(
                t,
                ctx,
                "tunnel and tunnel_port apply to forwarding = \"tun\" only",
            );
            return None;
        }
    }
    Some(match f {
        F::Dr => Forwarding::Route,
        F::Nat => Forwarding::Masq,
        F::Tun => {
            let kind = match &r.tunnel {
                None => TunnelKind::Ipip,
                Some(t) => v.choice(
                    t,
                    &[
                        ("ipip", TunnelKind::Ipip),
                        ("gue", TunnelKind::Gue),
                        ("gre", TunnelKind::Gre),
                    ],
                    ctx,
                    "tunnel",
                )?,
            };
            let port = match &r.tunnel_port {
                Some(p) => u16::try_from(v.int(p, 1, 65_535, ctx, "tunnel_port")?).ok()?,
                None if matches!(kind, TunnelKind::Gue) => {
                    v.err(r.name.span(), ctx, "a gue tunnel needs tunnel_port");
                    return None;
                }
                None => 0,
            };
            Forwarding::Tunnel(Tunnel {
                kind,
                port,
                flags: 0,
            })
        }
    })
}

/// The service's key (when it has a valid one, for the duplicate check) and the
/// service (when it is valid as a whole).
pub(super) fn service(
    v: &mut V<'_>,
    s: &Spanned<ServiceSection>,
) -> (Option<ServiceKey>, Option<DesiredService>) {
    let key = service_key(v, s, &format!("service {:?}", s.get_ref().name.get_ref()));
    let ds = key.clone().and_then(|k| service_body(v, s, k));
    (key, ds)
}

pub(super) fn service_body(
    v: &mut V<'_>,
    s: &Spanned<ServiceSection>,
    key: ServiceKey,
) -> Option<DesiredService> {
    let r = s.get_ref();
    let ctx = format!("service {:?}", r.name.get_ref());
    let settings = settings(v, r, &key, &ctx);
    let fwd = forwarding(v, r, &ctx);
    let on_failure = match &r.on_failure {
        None => Some(OnFailure::Weight0),
        Some(f) => v.choice(
            f,
            &[
                ("weight0", OnFailure::Weight0),
                ("remove", OnFailure::Remove),
            ],
            &ctx,
            "on_failure",
        ),
    };
    let fwd = fwd?;
    let family = key.family();
    let svc_port = match &key {
        ServiceKey::Addr { port, .. } => *port,
        ServiceKey::Fwmark { .. } => 0,
    };
    let sorry_server = r.sorry_server.as_ref().and_then(|a| {
        let addr = v.addr(a, &ctx, "sorry_server")?;
        if Family::of(&addr) != family {
            v.err(
                a.span(),
                &ctx,
                format!("sorry_server {addr} is not an {family} address like the service"),
            );
            return None;
        }
        Some(Dest {
            addr,
            port: svc_port,
            settings: DestSettings {
                forwarding: fwd,
                ..DestSettings::route(1)
            },
        })
    });
    let mut seen: HashMap<(IpAddr, u16), usize> = HashMap::new();
    let mut real_servers = Vec::new();
    let slow_start = r
        .slow_start
        .as_ref()
        .and_then(|s| v.duration(s, &ctx, "slow_start"));
    for rs in &r.real_server {
        if let Some(x) = real_server(
            v,
            rs,
            r.check.as_ref().map(|c| c.get_ref()),
            &key,
            (fwd, slow_start),
            &ctx,
        ) {
            let id = (x.dest.addr, x.dest.port);
            if let Some(first) = seen.get(&id) {
                let line = v.line_of(*first);
                let msg = format!(
                    "duplicate real server {} (first at line {line})",
                    x.dest.addr_port()
                );
                v.err(rs.span(), &ctx, msg);
                continue;
            }
            seen.insert(id, rs.span().start);
            real_servers.push(x);
        }
    }
    let vips = match (&key, &r.vips) {
        (ServiceKey::Addr { addr, .. }, None) => vec![*addr],
        (ServiceKey::Addr { addr, .. }, Some(l)) => {
            v.err(
                l.span(),
                &ctx,
                "vips applies to fwmark services only (this one has its vip)",
            );
            vec![*addr]
        }
        (ServiceKey::Fwmark { .. }, None) => Vec::new(),
        (ServiceKey::Fwmark { .. }, Some(l)) => {
            let mut out = Vec::new();
            for a in l.get_ref() {
                match a.parse::<IpAddr>() {
                    Ok(ip) if Family::of(&ip) == family => out.push(ip),
                    Ok(ip) => v.err(
                        l.span(),
                        &ctx,
                        format!("vips: {ip} is not an {family} address like the service"),
                    ),
                    Err(_) => v.err(l.span(), &ctx, format!("vips: {a:?} is not an IP address")),
                }
                if let Ok(ip) = a.parse::<IpAddr>() {
                    if v.host.gateways.contains(&ip) {
                        v.err(
                            l.span(),
                            &ctx,
                            format!("vips: {ip} is this director's default gateway"),
                        );
                    }
                }
            }
            out.sort();
            out.dedup();
            out
        }
    };
    Some(DesiredService {
        vips,
        name: r.name.get_ref().clone(),
        service: Service {
            key,
            settings: settings?,
        },
        on_failure: on_failure?,
        sorry_server,
        real_servers,
    })
}
