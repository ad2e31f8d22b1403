//! keepalived.conf: `virtual_server` (by address, fwmark or group) with its real
//! servers and checkers. VRRP and the daemon's own settings are reported, not imported:
//! lvsdr takes over the IPVS table, and keepalived may keep doing VRRP.

use std::collections::HashMap;
use std::net::IpAddr;

use super::draft::{regex_ok, At, Check, Draft, Key, Level, RealServer, Service};
use super::include::Loader;
use super::words::Node;
use super::{ImportError, Source};

/// "unknown statement `x`", with the word shown only when it has a keyword's shape:
/// a config may hold secrets, and a report line is no place to copy them.
fn unknown(word: &str) -> String {
    let keyword = !word.is_empty()
        && word.len() <= 40
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if keyword {
        format!("unknown statement `{word}`")
    } else {
        "a line that is no keepalived statement (not shown)".into()
    }
}

/// keepalived's defaults, where they differ from lvsdr's.
const DELAY_LOOP_S: u64 = 60;
const CONNECT_TIMEOUT_S: u64 = 5;
const RETRY: u32 = 1;

/// Imports a keepalived.conf and the files it includes.
pub fn import(src: &Source) -> Result<Draft, ImportError> {
    let mut d = Draft {
        header: vec![
            format!("Imported from keepalived's {}.", src.name),
            "keepalived checked every `delay_loop` and retried a failed check `retry` times".into(),
            "`delay_before_retry` apart; lvsdr checks every `interval` and takes a server down"
                .into(),
            "after `fall` failures in a row (fall = retry + 1).".into(),
        ],
        ..Draft::default()
    };
    let (nodes, loader) = Loader::load(src, &mut d);
    // Lines of an included file that are no statement: counted, never shown.
    let mut foreign: Vec<(At, usize)> = Vec::new();
    let mut groups: HashMap<String, Vec<(Key, At)>> = HashMap::new();
    for n in &nodes {
        if n.head() == "virtual_server_group" {
            let name = n.arg().unwrap_or_default().to_string();
            groups.insert(name, group(&mut d, n));
        }
    }
    for n in &nodes {
        match n.head() {
            "virtual_server_group" => {}
            "virtual_server" => virtual_server(&mut d, n, &groups),
            "global_defs" | "linkbeat_interfaces" => {
                // One global changes where the whole table is: say so, at its line.
                for c in n.children.iter().flatten() {
                    if c.head() == "net_namespace" {
                        net_namespace(&mut d, c);
                    }
                }
                d.note(
                    &n.at,
                    Level::Ignored,
                    format!("`{}`: keepalived's own settings", n.head()),
                )
            }
            "net_namespace" => net_namespace(&mut d, n),
            "vrrp_instance" | "vrrp_sync_group" | "vrrp_script" | "static_ipaddress"
            | "static_routes" | "static_rules" | "vrrp_track_process" | "track_file"
            | "bfd_instance" => d.note(
                &n.at,
                Level::Review,
                format!(
                    "`{}` is not imported: lvsdr takes over the IPVS table only (keep \
                     keepalived for VRRP, or see the README's high-availability section)",
                    n.head()
                ),
            ),
            _ if n.at.file != loader.main => match foreign.last_mut() {
                Some((at, k)) if at.file == n.at.file => *k += 1,
                _ => foreign.push((n.at.clone(), 1)),
            },
            other => d.note(&n.at, Level::Review, unknown(other)),
        }
    }
    for (at, k) in foreign {
        let m = format!(
            "{k} statement{} of this included file not keepalived's (not shown)",
            if k == 1 { "" } else { "s" }
        );
        d.note(&at, Level::Review, m);
    }
    Ok(d)
}

/// `lb_algo` / `lvs_sched`: the scheduler, lower-cased. One that is no IPVS scheduler
/// (`loadbalance`, `conhash` from forks) is `wlc`, as keepalived takes it, with a note.
fn scheduler(d: &mut Draft, c: &Node) -> String {
    const IPVS: &[&str] = &[
        "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh",
        "twos",
    ];
    let given = c.arg().map(str::to_lowercase);
    match given.as_deref() {
        Some(s) if IPVS.contains(&s) => s.to_string(),
        other => {
            d.note(
                &c.at,
                Level::Review,
                format!(
                    "{} {}: no IPVS scheduler of that name; keepalived then uses wlc, and so \
                     does this import",
                    c.head(),
                    other.unwrap_or("(no value)")
                ),
            );
            "wlc".into()
        }
    }
}

/// `lb_kind` / `lvs_method`: the forwarding method, or a note (keepalived then uses
/// NAT, and so does the import).
fn forwarding_of(d: &mut Draft, c: &Node, forwarding: &mut Option<&'static str>) {
    let a = c.arg();
    match a.map(str::to_uppercase).as_deref() {
        Some("DR") => *forwarding = Some("dr"),
        Some("NAT") => *forwarding = Some("nat"),
        Some("TUN") => {
            *forwarding = Some("tun");
            if c.args().len() > 1 {
                d.note(
                    &c.at,
                    Level::Review,
                    "tunnel options (type, port, csum) not translated: set `tunnel` by hand",
                );
            }
        }
        Some(other) => d.note(
            &c.at,
            Level::Review,
            format!(
                "{} {other}: not a forwarding method keepalived knows ({}); keepalived \
                         then uses NAT, and so does this import",
                c.head(),
                if other == "FNAT" {
                    "FNAT is full NAT, from a patched kernel and keepalived"
                } else {
                    "DR, NAT and TUN are"
                }
            ),
        ),
        None => d.note(
            &c.at,
            Level::Review,
            format!(
                "{} without a value: keepalived uses NAT, and so does this import",
                c.head()
            ),
        ),
    }
}

/// `net_namespace NAME`: keepalived keeps its whole IPVS table in that network
/// namespace, so the director must run there too.
fn net_namespace(d: &mut Draft, n: &Node) {
    d.note(
        &n.at,
        Level::Review,
        format!(
            "net_namespace {}: keepalived runs in that network namespace, and its IPVS table \
             is there; run lvsdr-director there too (ip netns exec {0} lvsdr-director run …)",
            n.arg().unwrap_or("(no name)")
        ),
    );
}

/// A `virtual_server_group`'s members: `IP PORT`, `IP-LAST PORT` (a range in the last
/// byte), `fwmark N`.
fn group(d: &mut Draft, n: &Node) -> Vec<(Key, At)> {
    let mut keys = Vec::new();
    for m in n.children.iter().flatten() {
        let w: Vec<&str> = m.words.iter().map(String::as_str).collect();
        match w.as_slice() {
            ["fwmark", mark] => match mark.parse() {
                Ok(mark) => keys.push((Key::Fwmark { mark, ipv6: false }, m.at.clone())),
                Err(_) => d.note(&m.at, Level::Review, format!("fwmark {mark:?}")),
            },
            [addr, port] => match (range(addr), port.parse::<u16>()) {
                (Some(addrs), Ok(port)) => {
                    for vip in addrs {
                        keys.push((
                            Key::Addr {
                                protocol: "tcp".into(),
                                vip,
                                port,
                            },
                            m.at.clone(),
                        ));
                    }
                }
                _ => d.note(
                    &m.at,
                    Level::Review,
                    format!("group member {:?} not understood", m.words.join(" ")),
                ),
            },
            _ => d.note(
                &m.at,
                Level::Review,
                format!("group member {:?} not understood", m.words.join(" ")),
            ),
        }
    }
    keys
}

/// `192.0.2.1` or `192.0.2.1-5`.
fn range(s: &str) -> Option<Vec<IpAddr>> {
    if let Ok(a) = s.parse::<IpAddr>() {
        return Some(vec![a]);
    }
    let (first, last) = s.rsplit_once('-')?;
    let first: std::net::Ipv4Addr = first.parse().ok()?;
    let last: u8 = last.parse().ok()?;
    let o = first.octets();
    (o[3] <= last).then(|| {
        (o[3]..=last)
            .map(|b| IpAddr::from([o[0], o[1], o[2], b]))
            .collect()
    })
}

/// What a `virtual_server` block says, before it becomes one service per key.
struct Defaults {
    delay_loop_ms: u64,
    host: Option<String>,
    inhibit: bool,
    retry: Option<u32>,
    connect_timeout_ms: Option<u64>,
}

fn seconds_ms(s: Option<&str>) -> Option<u64> {
    let v: f64 = s?.parse().ok()?;
    (v >= 0.0).then(|| (v * 1000.0).round() as u64)
}

fn virtual_server(d: &mut Draft, n: &Node, groups: &HashMap<String, Vec<(Key, At)>>) {
    let Some(keys) = keys_of(d, n, groups) else {
        return;
    };
    let Some((first, _)) = keys.first() else {
        return;
    };
    let mut t = Service::new(String::new(), first.clone(), n.at.clone());
    // keepalived takes a failed real server out of the table unless told to inhibit.
    t.on_failure = Some("remove".into());
    let mut b = Block::default();
    for c in n.children.iter().flatten() {
        statement(d, c, &mut t, &mut b);
    }
    t.forwarding = b.forwarding.unwrap_or("nat").into();
    if !b.kind_given {
        d.note(
            &n.at,
            Level::Review,
            "no lb_kind: keepalived uses NAT, and so does this import (lvsdr is made for DR: \
             set forwarding = \"dr\" if the real servers hold the VIP)",
        );
    }
    if let (Some(p), Key::Addr { port, .. }) = (b.sorry_port, &t.key) {
        if p != *port {
            d.note(
                &n.at,
                Level::Review,
                format!("sorry_server port {p} differs from the service's {port}: lvsdr uses the service's"),
            );
        }
    }
    if b.def.inhibit {
        t.on_failure = Some("weight0".into());
    }
    let mut inhibit_each = Vec::new();
    for r in b.real_servers {
        if let Some((rs, inhibit)) = real_server(d, r, &b.def) {
            inhibit_each.push(inhibit);
            t.real_servers.push(rs);
        }
    }
    if inhibit_each.iter().any(|i| *i) {
        if inhibit_each.iter().all(|i| *i) {
            t.on_failure = Some("weight0".into());
        } else {
            d.note(
                &n.at,
                Level::Review,
                "inhibit_on_failure on some real servers only: lvsdr's on_failure is per \
                 service (set to remove)",
            );
        }
    }
    t.hoist_checks();
    for (key, at) in keys {
        let mut s = t.clone();
        s.key = match key {
            Key::Addr { vip, port, .. } => Key::Addr {
                protocol: b.protocol.clone(),
                vip,
                port,
            },
            Key::Fwmark { mark, .. } => Key::Fwmark { mark, ipv6: b.ipv6 },
        };
        s.name = super::ipvsadm::service_name(&s.key);
        s.at = at;
        if let [_, group, name] = n.words.as_slice() {
            if group == "group" {
                s.comments
                    .push(format!("From virtual_server group {name}."));
            }
        }
        d.services.push(s);
    }
}

/// The services a `virtual_server` line names: one (address and port, or fwmark) or
/// a group's members; `None` (with a note) when it names none.
fn keys_of(
    d: &mut Draft,
    n: &Node,
    groups: &HashMap<String, Vec<(Key, At)>>,
) -> Option<Vec<(Key, At)>> {
    let w: Vec<&str> = n.words.iter().map(String::as_str).collect();
    let keys: Vec<(Key, At)> = match w.as_slice() {
        [_, "fwmark", mark] => match mark.parse() {
            Ok(mark) => vec![(Key::Fwmark { mark, ipv6: false }, n.at.clone())],
            Err(_) => {
                d.note(&n.at, Level::Review, format!("fwmark {mark:?}"));
                return None;
            }
        },
        [_, "group", name] => match groups.get(*name) {
            Some(k) if !k.is_empty() => k.clone(),
            Some(_) => {
                d.note(
                    &n.at,
                    Level::Review,
                    format!("virtual_server_group {name:?} has no member: no service"),
                );
                return None;
            }
            None => {
                d.note(
                    &n.at,
                    Level::Review,
                    format!("no virtual_server_group {name:?}"),
                );
                return None;
            }
        },
        // keepalived 2.x reads a port-less `virtual_server IP` as port 0.
        [_, addr] => match addr.parse::<IpAddr>() {
            Ok(vip) => {
                d.note(
                    &n.at,
                    Level::Review,
                    format!(
                        "virtual_server {addr} without a port: keepalived takes port 0 \
                         (every port, with persistence); written as port 0"
                    ),
                );
                vec![(
                    Key::Addr {
                        protocol: "tcp".into(),
                        vip,
                        port: 0,
                    },
                    n.at.clone(),
                )]
            }
            Err(_) => {
                d.note(
                    &n.at,
                    Level::Review,
                    format!("virtual_server {addr}: not an address"),
                );
                return None;
            }
        },
        [_, addr, port] => match (addr.parse::<IpAddr>(), port.parse::<u16>()) {
            (Ok(vip), Ok(port)) => vec![(
                Key::Addr {
                    protocol: "tcp".into(),
                    vip,
                    port,
                },
                n.at.clone(),
            )],
            _ => {
                d.note(
                    &n.at,
                    Level::Review,
                    format!("virtual_server {addr} {port}: not an address and port"),
                );
                return None;
            }
        },
        _ => {
            d.note(
                &n.at,
                Level::Review,
                format!("`{}` not understood", n.words.join(" ")),
            );
            return None;
        }
    };
    Some(keys)
}

/// What a `virtual_server` block says besides the service's own settings.
struct Block<'n> {
    protocol: String,
    /// keepalived's forwarding without a valid lb_kind is NAT (not lvsdr's DR).
    forwarding: Option<&'static str>,
    kind_given: bool,
    ipv6: bool,
    /// What its real servers inherit.
    def: Defaults,
    real_servers: Vec<&'n Node>,
    sorry_port: Option<u16>,
}

impl Default for Block<'_> {
    fn default() -> Self {
        Block {
            protocol: "tcp".into(),
            forwarding: None,
            kind_given: false,
            ipv6: false,
            def: Defaults {
                delay_loop_ms: DELAY_LOOP_S * 1000,
                host: None,
                inhibit: false,
                retry: None,
                connect_timeout_ms: None,
            },
            real_servers: Vec::new(),
            sorry_port: None,
        }
    }
}

/// One statement of a `virtual_server` block, into the service `t` or the block `b`.
fn statement<'n>(d: &mut Draft, c: &'n Node, t: &mut Service, b: &mut Block<'n>) {
    let a = c.arg();
    match c.head() {
        "delay_loop" => match seconds_ms(a) {
            Some(ms) if ms > 0 => b.def.delay_loop_ms = ms,
            _ => d.note(&c.at, Level::Review, "delay_loop without a valid value"),
        },
        "lvs_sched" | "lb_algo" => t.scheduler = scheduler(d, c),
        "lvs_method" | "lb_kind" => {
            b.kind_given = true;
            forwarding_of(d, c, &mut b.forwarding)
        }
        "protocol" => match a.map(str::to_lowercase).as_deref() {
            Some(p @ ("tcp" | "udp" | "sctp")) => b.protocol = p.into(),
            Some(_) => d.note(
                &c.at,
                Level::Review,
                format!(
                    "protocol {}: keepalived knows TCP, UDP and SCTP; the service stays TCP",
                    a.unwrap_or_default()
                ),
            ),
            None => d.note(
                &c.at,
                Level::Review,
                "protocol without a value: the service stays TCP",
            ),
        },
        "persistence_timeout" => {
            // keepalived's default when the value is left out: 6 minutes; 0 is no
            // persistence.
            t.persistence = match a.and_then(|v| v.parse().ok()).unwrap_or(360) {
                0 => None,
                s => Some(s),
            };
        }
        "persistence_granularity" => t.netmask = a.map(str::to_string),
        "persistence_engine" => t.persistence_engine = a.map(str::to_string),
        "ops" => t.one_packet = true,
        "ip_family" => b.ipv6 = a == Some("inet6"),
        "sh-port" | "sh-fallback" | "mh-port" | "mh-fallback" => t.flags.push(c.head().to_string()),
        "flag-1" | "flag-2" => {
            let which = if c.head() == "flag-1" {
                "fallback"
            } else {
                "port"
            };
            match t.scheduler.as_str() {
                s @ ("sh" | "mh") => t.flags.push(format!("{s}-{which}")),
                _ => d.note(
                    &c.at,
                    Level::Review,
                    format!(
                        "{} with scheduler {}: no meaning in lvsdr",
                        c.head(),
                        t.scheduler
                    ),
                ),
            }
        }
        "sorry_server" => {
            t.sorry_server = a.and_then(|v| v.parse().ok());
            b.sorry_port = c.args().get(1).and_then(|p| p.parse::<u16>().ok());
            if t.sorry_server.is_none() {
                d.note(&c.at, Level::Review, "sorry_server without an address");
            }
        }
        "inhibit_on_failure" => b.def.inhibit = true,
        "virtualhost" => b.def.host = a.map(str::to_string),
        "retry" | "nb_get_retry" => b.def.retry = a.and_then(|v| v.parse().ok()),
        "connect_timeout" => b.def.connect_timeout_ms = seconds_ms(a),
        "delay_before_retry" => {}
        "quorum" => {
            if a != Some("1") {
                d.note(
                    &c.at,
                    Level::Review,
                    "quorum above 1: lvsdr has no quorum (its sorry_server comes in when no real server is up)",
                );
            }
        }
        "hysteresis" => d.note(&c.at, Level::Ignored, "hysteresis: goes with quorum"),
        "alpha" => t.comments.push(
            "keepalived's `alpha`: real servers started down. lvsdr's start: a server not \
             checked yet keeps the weight the kernel has, or joins at 0."
                .into(),
        ),
        "omega" | "quorum_up" | "quorum_down" => d.note(
            &c.at,
            Level::Review,
            format!("`{}` (scripts on quorum changes) not translated", c.head()),
        ),
        "ha_suspend" | "smtp_alert" => d.note(
            &c.at,
            Level::Ignored,
            format!("`{}`: no bearing on the table", c.head()),
        ),
        "real_server" => b.real_servers.push(c),
        other => d.note(
            &c.at,
            Level::Review,
            format!("unknown virtual_server statement `{other}`"),
        ),
    }
}

/// `notify_up SCRIPT` / `notify_down SCRIPT` of the real server at `addr`: a
/// `[[notify]]` hook that runs the script when that server goes up (down). lvsdr tells
/// every hook of every server event as JSON on stdin: a shell filter picks this one.
fn notify_hook(d: &mut Draft, c: &Node, addr: IpAddr) {
    let script = c.args().join(" ");
    if script.is_empty() {
        d.note(
            &c.at,
            Level::Review,
            format!("`{}` without a script", c.head()),
        );
        return;
    }
    let state = if c.head() == "notify_up" {
        "up"
    } else {
        "down"
    };
    let server = match addr {
        IpAddr::V4(a) => format!("{a}:"),
        IpAddr::V6(a) => format!("[{a}]:"),
    };
    let filter = format!(
        "e=$(cat); case \"$e\" in *'\"server\":\"{server}'*'\",\"state\":\"{state}\"'*) {script} ;; esac"
    );
    d.hooks.push(vec!["/bin/sh".into(), "-c".into(), filter]);
    d.note(
        &c.at,
        Level::Review,
        format!(
            "`{}` became a [[notify]] hook that runs {script:?} when {addr} goes {state}; it \
             gets the event as JSON on stdin (keepalived's got nothing) and runs without \
             capabilities",
            c.head()
        ),
    );
}

/// A `real_server` block: the server, and whether it has `inhibit_on_failure`.
fn real_server(d: &mut Draft, n: &Node, def: &Defaults) -> Option<(RealServer, bool)> {
    let args = n.args();
    let Some(addr) = args.first().and_then(|a| a.parse::<IpAddr>().ok()) else {
        d.note(&n.at, Level::Review, "real_server without an IP address");
        return None;
    };
    let mut r = RealServer::new(addr, n.at.clone());
    let port = args.get(1).and_then(|p| p.parse::<u16>().ok());
    let mut inhibit = def.inhibit;
    let mut host = def.host.clone();
    let mut checks = Vec::new();
    for c in n.children.iter().flatten() {
        let a = c.arg();
        match c.head() {
            "weight" => r.weight = a.and_then(|v| v.parse().ok()).unwrap_or(1),
            "uthreshold" => r.upper_threshold = a.and_then(|v| v.parse().ok()).unwrap_or(0),
            "lthreshold" => r.lower_threshold = a.and_then(|v| v.parse().ok()).unwrap_or(0),
            "inhibit_on_failure" => inhibit = true,
            "virtualhost" => host = a.map(str::to_string),
            "notify_up" | "notify_down" => notify_hook(d, c, addr),
            "alpha" | "delay_loop" | "retry" | "delay_before_retry" | "connect_timeout"
            | "warmup" => d.note(
                &c.at,
                Level::Review,
                format!("real_server-level `{}`: set it in the check", c.head()),
            ),
            "smtp_alert" => d.note(&c.at, Level::Ignored, "smtp_alert"),
            k if k.ends_with("_CHECK") || k == "HTTP_GET" || k == "SSL_GET" => checks.push(c),
            other => d.note(
                &c.at,
                Level::Review,
                format!("unknown real_server statement `{other}`"),
            ),
        }
    }
    r.port = port;
    if checks.len() > 1 {
        d.note(
            &checks[1].at,
            Level::Review,
            "more than one checker: keepalived wanted all to pass, lvsdr runs the first only",
        );
    }
    if let Some(c) = checks.first() {
        r.check = Some(checker(d, c, def, host.as_deref(), addr));
    }
    Some((r, inhibit))
}

fn checker(d: &mut Draft, n: &Node, def: &Defaults, host: Option<&str>, rs: IpAddr) -> Check {
    let mut c = match n.head() {
        "TCP_CHECK" => Check::of("tcp"),
        "HTTP_GET" => Check::of("http"),
        "SSL_GET" => {
            let mut c = Check::of("https");
            c.insecure_skip_verify = true;
            c.comments.push(
                "keepalived's SSL_GET did not verify the certificate; set `sni`/`ca` and drop \
                 insecure_skip_verify to verify it."
                    .into(),
            );
            c
        }
        "DNS_CHECK" => Check::of("udp-dns"),
        "MISC_CHECK" => Check::of("exec"),
        "SMTP_CHECK" => {
            let mut c = Check::of("smtp");
            c.comments.push(
                "keepalived's SMTP_CHECK said HELO; lvsdr's smtp check reads the 220 banner \
                 and says QUIT."
                    .into(),
            );
            c
        }
        other => {
            d.note(
                &n.at,
                Level::Review,
                format!("{other} has no lvsdr equivalent: written as type \"none\" (always up)"),
            );
            return Check::of("none");
        }
    };
    if c.kind == "http" || c.kind == "https" {
        c.host = host.map(str::to_string);
    }
    let mut seen = Seen {
        retry: def.retry,
        timeout_ms: def.connect_timeout_ms,
        timeout_at: None,
        interval_ms: def.delay_loop_ms,
        urls: 0,
        statuses: Vec::new(),
        dns_type: None,
        enable_sni: false,
    };
    for s in n.children.iter().flatten() {
        check_statement(d, s, n.head(), rs, &mut c, &mut seen);
    }
    finish_check(d, n, &mut c, &seen);
    c
}

/// What a checker's kind and timing come to once its statements are read: DNS and
/// HTTP defaults, the timeout within the interval (said when the config asked for
/// more), rise and fall.
fn finish_check(d: &mut Draft, n: &Node, c: &mut Check, seen: &Seen<'_>) {
    if c.kind == "udp-dns" {
        if c.query.is_none() {
            c.query = Some(".".into()); // keepalived's default
        }
        if seen.dns_type.as_deref().is_some_and(|t| t != "A") {
            d.note(
                &n.at,
                Level::Review,
                "DNS_CHECK type other than A: lvsdr asks for A",
            );
        }
    }
    if c.kind == "exec" && c.command.is_none() {
        d.note(&n.at, Level::Review, "MISC_CHECK without misc_path");
    }
    if c.kind == "http" || c.kind == "https" {
        c.path.get_or_insert_with(|| "/".into());
        c.expect_status = Some(if seen.statuses.is_empty() {
            c.comments
                .push("keepalived's default: any 2xx status is up.".into());
            "200-299".into()
        } else {
            seen.statuses.join(",")
        });
        if seen.enable_sni {
            c.sni = c.host.clone();
        }
    }
    let interval_ms = seen.interval_ms;
    c.interval_ms = Some(interval_ms);
    let timeout = seen.timeout_ms.unwrap_or(CONNECT_TIMEOUT_S * 1000);
    // lvsdr's checks never overlap: a timeout is at most the interval. Said when the
    // config asked for more (a slow check now fails where keepalived waited).
    if timeout > interval_ms {
        let (at, what) = seen
            .timeout_at
            .unwrap_or((&n.at, "connect_timeout (default)"));
        d.note(
            at,
            Level::Review,
            format!(
                "{what} {}s is longer than delay_loop {}s: lvsdr's checks do not overlap, so the \
                 timeout is {}s (a check slower than that now fails; raise delay_loop to keep it)",
                timeout as f64 / 1000.0,
                interval_ms as f64 / 1000.0,
                interval_ms as f64 / 1000.0
            ),
        );
    }
    c.timeout_ms = Some(timeout.min(interval_ms));
    c.rise = Some(1);
    c.fall = Some(seen.retry.unwrap_or(RETRY) + 1);
}

/// What a checker's statements said beyond the check's own fields.
struct Seen<'n> {
    retry: Option<u32>,
    timeout_ms: Option<u64>,
    /// Where this checker set its own timeout, and as which statement.
    timeout_at: Option<(&'n At, &'static str)>,
    interval_ms: u64,
    urls: usize,
    statuses: Vec<String>,
    dns_type: Option<String>,
    enable_sni: bool,
}

/// One statement of a `checker` block (`TCP_CHECK { … }` and its kin).
fn check_statement<'n>(
    d: &mut Draft,
    s: &'n Node,
    checker: &str,
    rs: IpAddr,
    c: &mut Check,
    seen: &mut Seen<'n>,
) {
    let a = s.arg();
    match s.head() {
        "connect_port" => c.port = a.and_then(|v| v.parse().ok()),
        "connect_timeout" => {
            seen.timeout_ms = seconds_ms(a);
            seen.timeout_at = Some((&s.at, "connect_timeout"));
        }
        "retry" | "nb_get_retry" => seen.retry = a.and_then(|v| v.parse().ok()),
        "delay_before_retry" => {}
        "delay_loop" => {
            seen.interval_ms = seconds_ms(a)
                .filter(|ms| *ms > 0)
                .unwrap_or(seen.interval_ms)
        }
        "connect_ip" => {
            if a.and_then(|v| v.parse::<IpAddr>().ok()) != Some(rs) {
                d.note(
                    &s.at,
                    Level::Review,
                    "connect_ip other than the real server's: lvsdr checks the real server",
                );
            }
        }
        "bindto" | "bind_port" | "bind_if" | "fwmark" | "warmup" => d.note(
            &s.at,
            Level::Review,
            format!("`{}` not translated", s.head()),
        ),
        "log_all_failures" => {}
        "alpha" => {}
        "virtualhost" => c.host = a.map(str::to_string),
        "enable_sni" => seen.enable_sni = true,
        "url" => url(d, s, c, seen),
        "misc_path" => c.command = a.map(str::to_string),
        "misc_timeout" => {
            seen.timeout_ms = seconds_ms(a);
            seen.timeout_at = Some((&s.at, "misc_timeout"));
        }
        "misc_dynamic" => d.note(
            &s.at,
            Level::Review,
            "misc_dynamic (weight from the exit code) not translated: exit 0 is up",
        ),
        "user" => d.note(
            &s.at,
            Level::Review,
            "`user`: lvsdr runs exec checks as the director's user, without its capabilities",
        ),
        "type" => seen.dns_type = a.map(str::to_uppercase),
        "name" => c.query = a.map(str::to_string),
        "helo_name" => {}
        "host" => d.note(
            &s.at,
            Level::Review,
            "SMTP_CHECK host blocks not translated: lvsdr checks the real server",
        ),
        other => d.note(
            &s.at,
            Level::Review,
            format!("unknown {checker} statement `{other}`"),
        ),
    }
}

/// A `url { … }` block: lvsdr checks the first.
fn url(d: &mut Draft, s: &Node, c: &mut Check, seen: &mut Seen<'_>) {
    seen.urls += 1;
    if seen.urls > 1 {
        d.note(
            &s.at,
            Level::Review,
            "more than one url: lvsdr checks the first only",
        );
        return;
    }
    for u in s.children.iter().flatten() {
        let ua = u.arg();
        match u.head() {
            "path" => c.path = ua.map(str::to_string),
            "status_code" => seen.statuses.extend(u.args().iter().map(|v| v.to_string())),
            "digest" => d.note(
                &u.at,
                Level::Review,
                "digest (an MD5 of the body) not translated: use expect_body",
            ),
            "regex" => match ua {
                Some(re) if regex_ok(re) => c.expect_body = Some(re.to_string()),
                _ => d.note(
                    &u.at,
                    Level::Review,
                    "regex is not valid in lvsdr's (Rust) syntax: not translated",
                ),
            },
            "virtualhost" => c.host = ua.map(str::to_string),
            other => d.note(
                &u.at,
                Level::Review,
                format!("url `{other}` not translated"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(range("192.0.2.1-3").map(|v| v.len()), Some(3));
        assert_eq!(range("192.0.2.3-1"), None);
    }
}
