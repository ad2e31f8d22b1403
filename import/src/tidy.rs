//! What holds for every format once its file is read: a service given twice is one
//! service, a real server given twice is one destination, DR and tunnel forward to the
//! service's port, the VIP is not its own real server, and names are unique. Each
//! change is a report line at the construct it changed.

use std::collections::{HashMap, HashSet};

use super::draft::{Check, Draft, Key, Level, RealServer, Service};
use super::ipvsadm::service_name;

/// Applies every rule above to `d`.
pub fn finish(d: &mut Draft) {
    merge_services(d);
    let mut services = std::mem::take(&mut d.services);
    for s in &mut services {
        if s.port() == 0 {
            checks_get_ports(s);
        }
        drop_the_vip(d, s);
        merge_real_servers(d, s);
        forward_to_service_port(d, s);
    }
    d.services = services;
    unique_names(d);
}

/// Two blocks for one VIP:port (or mark) become one service: the second's real
/// servers join the first's, and its own settings, where they differ, are not used.
fn merge_services(d: &mut Draft) {
    let mut first: HashMap<String, usize> = HashMap::new();
    let mut kept: Vec<Service> = Vec::new();
    for s in std::mem::take(&mut d.services) {
        let key = service_name(&s.key);
        let Some(&i) = first.get(&key) else {
            first.insert(key, kept.len());
            kept.push(s);
            continue;
        };
        let into = &mut kept[i];
        let differ = settings_that_differ(into, &s);
        let mut m = format!(
            "service {key} is given again (first at {}): one service; its real servers join the first's",
            into.at
        );
        if !differ.is_empty() {
            let verb = if differ.len() == 1 { "is" } else { "are" };
            m.push_str(&format!(
                "; its own {} (not the first's) {verb} not used",
                differ.join(", ")
            ));
        }
        d.note(&s.at, Level::Review, m);
        let check = s.check.clone();
        for mut r in s.real_servers {
            // A server of the second block keeps the second block's check.
            if r.check.is_none() && check != into.check {
                r.check = check.clone().or_else(|| Some(Check::of("none")));
            }
            into.real_servers.push(r);
        }
    }
    d.services = kept;
}

/// The settings two blocks of one service disagree on, by their lvsdr names.
fn settings_that_differ(a: &Service, b: &Service) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut differ = |name, same: bool| {
        if !same {
            out.push(name);
        }
    };
    differ("scheduler", a.scheduler == b.scheduler);
    differ("forwarding", a.forwarding == b.forwarding);
    differ("persistence", a.persistence == b.persistence);
    differ("netmask", a.netmask == b.netmask);
    differ("flags", a.flags == b.flags);
    differ("on_failure", a.on_failure == b.on_failure);
    differ("sorry_server", a.sorry_server == b.sorry_server);
    differ("one_packet", a.one_packet == b.one_packet);
    out
}

/// A real server forwarded by DR or tunnel goes to the service's port (a fwmark
/// service's have none): a port given that differs is reported and dropped.
fn forward_to_service_port(d: &mut Draft, s: &mut Service) {
    let port = s.port();
    for r in &mut s.real_servers {
        match r.port {
            Some(p) if p == port => r.port = None,
            Some(_) if port == 0 && s.forwarding != "nat" => r.port = None,
            Some(p) if s.forwarding != "nat" => {
                d.note(
                    &r.at,
                    Level::Review,
                    format!(
                        "real server {} port {p}: {} forwards to the service's port {port}",
                        r.address, s.forwarding
                    ),
                );
                r.port = None;
            }
            _ => {}
        }
    }
}

/// A real server at the service's own VIP (keepalived's local node, or a slip) is
/// one lvsdr refuses: it is left out with a report line.
fn drop_the_vip(d: &mut Draft, s: &mut Service) {
    let Key::Addr { vip, .. } = s.key else {
        return;
    };
    s.real_servers.retain(|r| {
        if r.address != vip {
            return true;
        }
        d.note(
            &r.at,
            Level::Review,
            format!(
                "real server {vip} is the service's VIP: the director itself (a local \
                 node), which lvsdr does not forward to; left out"
            ),
        );
        false
    });
}

/// A real server given twice (the same address and port, or by DR on two ports) is
/// one destination: the first is kept, and the second reported.
fn merge_real_servers(d: &mut Draft, s: &mut Service) {
    let nat = s.forwarding == "nat";
    let service_port = s.port();
    // What the kernel keys a destination by: NAT keeps the server's port, DR and
    // tunnel forward to the service's.
    let port_of = |r: &RealServer| r.port.filter(|_| nat).unwrap_or(service_port);
    let mut seen: HashMap<(std::net::IpAddr, u16), usize> = HashMap::new();
    let mut keep: Vec<RealServer> = Vec::new();
    for r in std::mem::take(&mut s.real_servers) {
        let Some(&j) = seen.get(&(r.address, port_of(&r))) else {
            seen.insert((r.address, port_of(&r)), keep.len());
            keep.push(r);
            continue;
        };
        let first = &keep[j];
        let (p1, p2) = (
            first.port.unwrap_or(service_port),
            r.port.unwrap_or(service_port),
        );
        let m = if p1 != p2 {
            format!(
                "real server {} is given on ports {p1} and {p2} (first at {}): {} forwards \
                 to the service's port, so both are one destination; this one is left out",
                r.address, first.at, s.forwarding
            )
        } else {
            let mut m = format!(
                "real server {} is given again (first at {}): one destination",
                r.address, first.at
            );
            if r.weight != first.weight || r.check != first.check {
                m.push_str("; this one's weight and check are not used");
            }
            m
        };
        d.note(&r.at, Level::Review, m);
    }
    s.real_servers = keep;
}

/// Names are unique: a second `web` becomes `web-2`.
fn unique_names(d: &mut Draft) {
    let mut names = HashSet::new();
    for s in &mut d.services {
        let base = s.name.clone();
        let mut n = 1;
        while !names.insert(s.name.clone()) {
            n += 1;
            s.name = format!("{base}-{n}");
        }
    }
}

/// A fwmark service's checks connect to the port each real server was given (the
/// real servers themselves have none in the kernel).
fn checks_get_ports(s: &mut Service) {
    let needs = |c: &Check| !["exec", "none"].contains(&c.kind.as_str()) && c.port.is_none();
    if let Some(c) = s.check.clone().filter(|c| needs(c)) {
        let ports: std::collections::BTreeSet<u16> =
            s.real_servers.iter().filter_map(|r| r.port).collect();
        if ports.len() == 1 {
            s.check = Some(Check {
                port: ports.first().copied(),
                ..c
            });
        } else {
            s.check = None;
            for r in &mut s.real_servers {
                r.check = Some(c.clone());
            }
        }
    }
    for r in &mut s.real_servers {
        if let Some(c) = r.check.as_mut().filter(|c| needs(c)) {
            c.port = r.port;
        }
    }
}
