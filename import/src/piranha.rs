//! Piranha's lvs.cf: global `key = value` lines (the pulse daemon's, mostly), then
//! `virtual NAME { … server NAME { … } }`. nanny checked every `keepalive` seconds,
//! took a server out after `timeout` seconds of failures and back after `reentry`
//! seconds of successes.

use std::net::IpAddr;

use super::draft::{literal, regex_ok, Check, Draft, Key, Level, RealServer, Service};
use super::words::{parse, Node};
use super::Source;

/// nanny's check period, failure time and re-entry time when lvs.cf leaves them out
/// (the values Piranha's own configuration tool writes).
const KEEPALIVE_S: u64 = 6;
const TIMEOUT_S: u64 = 6;
const REENTRY_S: u64 = 15;

/// pulse's own settings: no bearing on the table.
const DAEMON_KEYS: &[&str] = &[
    "serial_no",
    "service",
    "debug_level",
    "monitor_links",
    "rsh_command",
    "lvs_command",
    "nat_nmask",
    "hard_shutdown",
];

/// Imports an lvs.cf.
pub fn import(src: &Source) -> Draft {
    let mut d = Draft {
        header: vec![
            format!("Imported from Piranha's {}.", src.name),
            "nanny checked every `keepalive` seconds; lvsdr's fall and rise are Piranha's".into(),
            "`timeout` and `reentry` in checks (rounded up).".into(),
        ],
        ..Draft::default()
    };
    if super::template::refuse(&mut d, &src.text, &src.name) {
        return d;
    }
    let (nodes, problems) = parse(&src.text, &src.name);
    for (at, p) in problems {
        d.note(&at, Level::Review, p);
    }
    let mut keepalive = KEEPALIVE_S;
    let mut network = "dr";
    for n in &nodes {
        if n.children.is_some() {
            continue;
        }
        let a = n.arg();
        match n.head() {
            "keepalive" => keepalive = a.and_then(|v| v.parse().ok()).unwrap_or(KEEPALIVE_S).max(1),
            "network" => {
                network = match a {
                    Some("direct") => "dr",
                    Some("nat") => "nat",
                    Some("tunnel") => "tun",
                    other => {
                        d.note(&n.at, Level::Review, format!("network {other:?}"));
                        "dr"
                    }
                }
            }
            "syncdaemon" | "syncd_iface" | "syncd_id" => d.note(
                &n.at,
                Level::Review,
                format!(
                    "`{}`: connection sync is not imported (see the README's high-availability \
                     section)",
                    n.head()
                ),
            ),
            "primary"
            | "primary_private"
            | "backup"
            | "backup_private"
            | "backup_active"
            | "heartbeat"
            | "heartbeat_port"
            | "deadtime"
            | "reservation_conflict_action"
            | "nat_router" => d.note(
                &n.at,
                Level::Review,
                format!("`{}`: pulse's failover is not imported", n.head()),
            ),
            k if DAEMON_KEYS.contains(&k) => {
                d.note(&n.at, Level::Ignored, format!("`{k}`: pulse's own setting"))
            }
            other => d.note(&n.at, Level::Review, format!("unknown key `{other}`")),
        }
    }
    for n in &nodes {
        if n.children.is_none() {
            continue;
        }
        if n.head() == "virtual" {
            virtual_(&mut d, n, keepalive, network);
        } else {
            d.note(
                &n.at,
                Level::Review,
                format!("unknown block `{}`", n.head()),
            );
        }
    }
    d
}

/// Seconds of failures (or successes) in checks every `every` seconds.
fn checks_for(seconds: u64, every: u64) -> u32 {
    u32::try_from(seconds.div_ceil(every).max(1)).unwrap_or(u32::MAX)
}

/// Piranha's `send`: C-style escapes (`\r`, `\n`, `\t`, `\\`).
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(o) => out.push(o),
            None => out.push('\\'),
        }
    }
    out
}

fn virtual_(d: &mut Draft, n: &Node, keepalive: u64, network: &str) {
    let name = n.arg().unwrap_or("virtual").to_string();
    let get = |k: &str| -> Option<&Node> { n.children.iter().flatten().find(|c| c.head() == k) };
    let val = |k: &str| get(k).and_then(|c| c.arg()).map(str::to_string);
    if val("active").as_deref() == Some("0") {
        d.note(
            &n.at,
            Level::Ignored,
            format!("virtual {name} is not active (active = 0): not imported"),
        );
        return;
    }
    let vip: Option<IpAddr> = val("address").and_then(|a| a.parse().ok());
    // A number or a name (`port = http`), as nanny reads it.
    let port: Option<u16> = val("port").as_deref().and_then(super::ports::port);
    let protocol = val("protocol")
        .unwrap_or_else(|| "tcp".into())
        .to_lowercase();
    let key = match (val("fwmark").and_then(|m| m.parse().ok()), vip, port) {
        (Some(mark), _, _) => Key::Fwmark { mark, ipv6: false },
        (None, Some(vip), Some(port)) => Key::Addr {
            protocol,
            vip,
            port,
        },
        _ => {
            d.note(
                &n.at,
                Level::Review,
                format!("virtual {name}: needs an address and a port, or a fwmark"),
            );
            return;
        }
    };
    let mut s = Service::new(name.clone(), key, n.at.clone());
    if let (Key::Fwmark { .. }, Some(v)) = (&s.key, vip) {
        s.vips = vec![v];
    }
    s.forwarding = network.into();
    // nanny took a failed server out of the table.
    s.on_failure = Some("remove".into());
    let mut check = Check::of("tcp");
    let mut send = None;
    let mut expect = None;
    let mut use_regex = false;
    let mut servers = Vec::new();
    for c in n.children.iter().flatten() {
        let a = c.arg();
        match c.head() {
            "address" => {
                if c.args().len() > 1 {
                    s.comments.push(format!(
                        "Piranha put the VIP on {}; lvsdr leaves the VIP to the operator \
                         (or to [announce]).",
                        c.args()[1]
                    ));
                }
            }
            "active" | "port" | "protocol" | "fwmark" | "vip_nmask" => {}
            "scheduler" => s.scheduler = a.unwrap_or("wlc").to_string(),
            "persistent" => s.persistence = a.and_then(|v| v.parse().ok()).filter(|p| *p > 0),
            "pmask" => s.netmask = a.map(str::to_string),
            "send" => send = a.map(unescape),
            "expect" => expect = a.map(str::to_string),
            "use_regex" => use_regex = a == Some("1"),
            "send_program" => {
                check = Check::of("exec");
                check.command = a.map(|p| p.replace("%h", "$LVSDR_RS_ADDR"));
            }
            "timeout" => {
                check.fall = Some(checks_for(
                    a.and_then(|v| v.parse().ok()).unwrap_or(TIMEOUT_S),
                    keepalive,
                ))
            }
            "reentry" => {
                check.rise = Some(checks_for(
                    a.and_then(|v| v.parse().ok()).unwrap_or(REENTRY_S),
                    keepalive,
                ))
            }
            "sorry_server" => s.sorry_server = a.and_then(|v| v.parse().ok()),
            "quiesce_server" => {
                if a == Some("1") {
                    d.note(
                        &c.at,
                        Level::Review,
                        "quiesce_server = 1 (reset every weight when a server joins) not translated",
                    );
                }
            }
            "load_monitor" => {
                if a.is_some_and(|m| m != "none") {
                    d.note(
                        &c.at,
                        Level::Review,
                        "load_monitor (weights from the servers' load) not translated",
                    );
                }
            }
            "server" => servers.push(c),
            other => d.note(&c.at, Level::Review, format!("unknown key `{other}`")),
        }
    }
    tcp_expect(d, n, &mut check, (send, expect), use_regex);
    check.interval_ms = Some(keepalive * 1000);
    check.timeout_ms = Some(keepalive * 1000);
    check.fall.get_or_insert(checks_for(TIMEOUT_S, keepalive));
    check.rise.get_or_insert(checks_for(REENTRY_S, keepalive));
    for c in servers {
        if let Some(r) = server(d, c, &mut s, &check, port) {
            s.real_servers.push(r);
        }
    }
    s.hoist_checks();
    d.services.push(s);
}

/// `send`/`expect` make a TCP check a `tcp-expect` one (an exec check keeps exit 0);
/// `use_regex = 0` matches `expect` literally.
fn tcp_expect(
    d: &mut Draft,
    n: &Node,
    check: &mut Check,
    (send, expect): (Option<String>, Option<String>),
    use_regex: bool,
) {
    match (check.kind.as_str(), send, expect) {
        ("exec", _, Some(e)) => check.comments.push(format!(
            "send_program's output had to match {e:?}; lvsdr's exec check wants exit 0."
        )),
        ("exec", ..) => {}
        (_, s, Some(e)) => {
            check.kind = "tcp-expect".into();
            check.send = s.filter(|s| !s.is_empty());
            check.expect = Some(if use_regex {
                if regex_ok(&e) {
                    e
                } else {
                    d.note(
                        &n.at,
                        Level::Review,
                        format!("expect {e:?} is not a valid regex here: matched literally"),
                    );
                    literal(&e)
                }
            } else {
                literal(&e)
            });
        }
        (_, Some(s), None) => {
            check.kind = "tcp-expect".into();
            check.send = Some(s);
        }
        _ => {}
    }
    if check.command.as_deref().is_some_and(|c| c.contains('%')) {
        d.note(
            &n.at,
            Level::Review,
            "send_program placeholder other than %h",
        );
    }
}

/// One `server` of a virtual, with the virtual's check (`None`, with a note or a
/// comment, when it is left out).
fn server(
    d: &mut Draft,
    c: &Node,
    s: &mut Service,
    check: &Check,
    port: Option<u16>,
) -> Option<RealServer> {
    let get = |k: &str| c.children.iter().flatten().find(|x| x.head() == k);
    let val = |k: &str| get(k).and_then(|x| x.arg()).map(str::to_string);
    let sname = c.arg().unwrap_or("server");
    if val("active").as_deref() == Some("0") {
        s.comments
            .push(format!("server {sname} was not active: left out"));
        return None;
    }
    let Some(addr) = val("address").and_then(|a| a.parse::<IpAddr>().ok()) else {
        d.note(
            &c.at,
            Level::Review,
            format!("server {sname} without an address"),
        );
        return None;
    };
    let mut r = RealServer::new(addr, c.at.clone());
    r.comments.push(format!("server {sname}"));
    r.weight = val("weight").and_then(|w| w.parse().ok()).unwrap_or(1);
    let own_port = val("port").as_deref().and_then(super::ports::port);
    if let Some(p) = own_port {
        if p != s.port() && s.port() != 0 {
            r.port = Some(p);
        }
    }
    for x in c.children.iter().flatten() {
        if !["address", "active", "weight", "port"].contains(&x.head()) {
            d.note(
                &x.at,
                Level::Review,
                format!("unknown server key `{}`", x.head()),
            );
        }
    }
    r.check = Some(check.clone());
    // A fwmark service has no port: nanny checked the virtual's `port` (or the
    // server's own), and so does the check.
    if let (Key::Fwmark { .. }, Some(c)) = (&s.key, r.check.as_mut()) {
        if c.kind != "exec" {
            c.port = own_port.or(port);
        }
    }
    Some(r)
}
