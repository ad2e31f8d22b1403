//! ldirectord.cf: global `key=value` lines, then `virtual=` sections whose lines are
//! indented; a global key set in a section overrides it there.

use std::collections::HashMap;
use std::net::IpAddr;

use super::draft::{literal, regex_ok, At, Check, Draft, Key, Level, RealServer, Service};
use super::ipvsadm::{addr_port, service_name};
use super::Source;

/// ldirectord's defaults (its manual).
const CHECK_INTERVAL_S: u64 = 10;
const CHECK_TIMEOUT_S: u64 = 5;
const NEGOTIATE_TIMEOUT_S: u64 = 30;

/// Keys that only concern the daemon itself.
const DAEMON_KEYS: &[&str] = &[
    "autoreload",
    "callback",
    "logfile",
    "emailalert",
    "emailalertfreq",
    "emailalertstatus",
    "emailalertfrom",
    "fork",
    "supervised",
    "cleanstop",
    "smtp",
    "maintenancedir",
    "execute",
    "monitorfile",
];

/// Keys a `virtual=` section may set (or inherit from the globals).
const SECTION_KEYS: &[&str] = &[
    "checktimeout",
    "negotiatetimeout",
    "connecttimeout",
    "checkinterval",
    "failurecount",
    "quiescent",
    "readdquiescent",
    "fallback",
    "fallbackcommand",
    "service",
    "checktype",
    "checkport",
    "checkcommand",
    "request",
    "receive",
    "httpmethod",
    "virtualhost",
    "scheduler",
    "persistent",
    "netmask",
    "protocol",
    "login",
    "passwd",
    "database",
    "secret",
    "checkcount",
];

struct Section {
    at: At,
    virtual_: String,
    keys: HashMap<String, (String, At)>,
    reals: Vec<(String, At)>,
}

/// Imports an ldirectord.cf.
pub fn import(src: &Source) -> Draft {
    let mut d = Draft {
        header: vec![
            format!("Imported from ldirectord's {}.", src.name),
            "ldirectord took a server down after `failurecount` failed checks (lvsdr's fall)"
                .into(),
            "and up after one good check (rise = 1).".into(),
        ],
        ..Draft::default()
    };
    if super::template::refuse(&mut d, &src.text, &src.name) {
        return d;
    }
    let mut globals: HashMap<String, (String, At)> = HashMap::new();
    let mut sections: Vec<Section> = Vec::new();
    for (n, raw) in src.text.lines().enumerate() {
        let at = At {
            file: src.name.clone(),
            line: n + 1,
        };
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            d.note(
                &at,
                Level::Review,
                format!("not a key=value line: {line:?}"),
            );
            continue;
        };
        let (k, v) = (k.trim().to_lowercase(), unquote(v.trim()));
        let indented = raw.starts_with([' ', '\t']);
        if k == "virtual" || k == "virtual6" {
            sections.push(Section {
                at: at.clone(),
                virtual_: v,
                keys: HashMap::new(),
                reals: Vec::new(),
            });
            continue;
        }
        // An indented line belongs to the last `virtual=`; others are global.
        let section = if indented { sections.last_mut() } else { None };
        if k == "real" && section.is_some() {
            if let Some(s) = section {
                s.reals.push((v, at));
            }
        } else if SECTION_KEYS.contains(&k.as_str()) {
            match section {
                Some(s) => s.keys.insert(k, (v, at)),
                None => globals.insert(k, (v, at)),
            };
        } else if DAEMON_KEYS.contains(&k.as_str()) {
            d.note(
                &at,
                Level::Ignored,
                format!("`{k}`: ldirectord's own setting"),
            );
        } else {
            d.note(&at, Level::Review, format!("unknown key `{k}`"));
        }
    }
    for s in sections {
        let mut keys = globals.clone();
        keys.extend(s.keys.clone());
        section(&mut d, &s, &keys);
    }
    d
}

fn unquote(v: &str) -> String {
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
        .to_string()
}

/// The service ldirectord assumes from the port when `service` is not set.
fn service_for_port(port: u16) -> &'static str {
    match port {
        80 => "http",
        443 => "https",
        21 => "ftp",
        25 => "smtp",
        53 => "dns",
        110 => "pop",
        119 => "nntp",
        143 => "imap",
        389 => "ldap",
        3306 => "mysql",
        5432 => "pgsql",
        _ => "none",
    }
}

fn section(d: &mut Draft, s: &Section, keys: &HashMap<String, (String, At)>) {
    let get = |k: &str| keys.get(k).map(|(v, _)| v.as_str());
    let at_of = |k: &str| keys.get(k).map(|(_, a)| a.clone()).unwrap_or(s.at.clone());
    let protocol = get("protocol").unwrap_or("tcp").to_lowercase();
    let key = if protocol == "fwm" {
        match s.virtual_.parse() {
            Ok(mark) => Key::Fwmark { mark, ipv6: false },
            Err(_) => {
                d.note(&s.at, Level::Review, format!("fwmark {:?}", s.virtual_));
                return;
            }
        }
    } else {
        match addr_port(&s.virtual_) {
            Ok((vip, port)) if ["tcp", "udp", "sctp"].contains(&protocol.as_str()) => Key::Addr {
                protocol: protocol.clone(),
                vip,
                port,
            },
            Ok(_) => {
                d.note(
                    &at_of("protocol"),
                    Level::Review,
                    format!("protocol {protocol:?}"),
                );
                return;
            }
            Err(e) => {
                d.note(
                    &s.at,
                    Level::Review,
                    format!(
                        "virtual={}: {e} (host names are not resolved; service names from a table of well-known ones)",
                        s.virtual_
                    ),
                );
                return;
            }
        }
    };
    let mut svc = Service::new(service_name(&key), key, s.at.clone());
    svc.scheduler = get("scheduler").unwrap_or("wrr").to_string();
    if let Some(p) = get("persistent") {
        svc.persistence = p.parse().ok();
        svc.netmask = get("netmask").map(str::to_string);
    }
    svc.on_failure = Some(
        if get("quiescent").is_some_and(|q| q.eq_ignore_ascii_case("no")) {
            "remove"
        } else {
            "weight0"
        }
        .into(),
    );
    if let Some(f) = get("fallback") {
        let addr = f.split_whitespace().next().unwrap_or_default();
        match addr_port(addr)
            .map(|(a, _)| a)
            .or_else(|_| addr.parse::<IpAddr>().map_err(|e| e.to_string()))
        {
            Ok(a) => svc.sorry_server = Some(a),
            Err(_) => d.note(&at_of("fallback"), Level::Review, format!("fallback {f:?}")),
        }
    }
    for k in ["fallbackcommand", "login", "passwd", "database", "secret"] {
        if keys.contains_key(k) {
            d.note(&at_of(k), Level::Review, format!("`{k}` not translated"));
        }
    }
    let check = check(d, &svc, keys, &s.at);
    let mut forwarding = None;
    for (line, at) in &s.reals {
        for (mut rs, fwd, request) in real(d, line, at, svc.port()) {
            match &forwarding {
                None => forwarding = Some(fwd.clone()),
                Some(f) if *f != fwd => d.note(
                    at,
                    Level::Review,
                    "real servers of one virtual forwarded different ways: lvsdr forwards a \
                     service's real servers one way",
                ),
                _ => {}
            }
            let mut c = check.clone();
            if let Some((req, recv)) = request {
                apply_request(d, &mut c, &req, &recv, at);
            }
            rs.check = Some(c);
            svc.real_servers.push(rs);
        }
    }
    svc.forwarding = forwarding.unwrap_or_else(|| "dr".into());
    svc.hoist_checks();
    d.services.push(svc);
}

/// A `real=` server: the server, its forwarding, its own request and receive.
type Real = (RealServer, String, Option<(String, String)>);

/// `real=ADDR[:PORT] [gate|masq|ipip] [WEIGHT] ["request", "receive"]`, where ADDR may
/// be a range `A->B` (last byte).
fn real(d: &mut Draft, line: &str, at: &At, service_port: u16) -> Vec<Real> {
    let (head, quoted) = match line.find('"') {
        Some(i) => (&line[..i], Some(&line[i..])),
        None => (line, None),
    };
    let words: Vec<&str> = head.split_whitespace().collect();
    let Some(first) = words.first() else {
        d.note(at, Level::Review, "real= without an address");
        return Vec::new();
    };
    let (addrs, port) = match parse_real_addr(first) {
        Some(v) => v,
        None => {
            d.note(
                at,
                Level::Review,
                format!("real={first}: not an address (host names are not resolved)"),
            );
            return Vec::new();
        }
    };
    let fwd = match words.get(1).copied() {
        None | Some("gate") => "dr",
        Some("masq") => "nat",
        Some("ipip") => "tun",
        Some(other) => {
            let m = format!(
                "real={first} {other}: not a forwarding method ldirectord knows (gate, masq, \
                 ipip); this real server is left out"
            );
            d.note(at, Level::Review, m);
            return Vec::new();
        }
    };
    let weight = words.get(2).and_then(|w| w.parse().ok()).unwrap_or(1);
    let request = quoted.and_then(|q| {
        let parts: Vec<String> = q
            .split('"')
            .map(str::trim)
            .filter(|p| !p.is_empty() && *p != ",")
            .map(str::to_string)
            .collect();
        match parts.as_slice() {
            [req, recv] => Some((req.clone(), recv.clone())),
            _ => {
                d.note(at, Level::Review, "real= request/receive not understood");
                None
            }
        }
    });
    addrs
        .into_iter()
        .map(|a| {
            let mut r = RealServer::new(a, at.clone());
            r.weight = weight;
            if let Some(p) = port.filter(|p| *p != service_port && service_port != 0) {
                r.port = Some(p);
            }
            (r, fwd.to_string(), request.clone())
        })
        .collect()
}

fn parse_real_addr(s: &str) -> Option<(Vec<IpAddr>, Option<u16>)> {
    let (addr, port) = match addr_port(s) {
        Ok((a, p)) => return Some((vec![a], Some(p))),
        Err(_) => match s.rsplit_once(':') {
            Some((a, p)) if !a.contains(':') => (a, super::ports::port(p)),
            _ => (s, None),
        },
    };
    if let Ok(a) = addr.parse::<IpAddr>() {
        return Some((vec![a], port));
    }
    let (from, to) = addr.split_once("->")?;
    let from: std::net::Ipv4Addr = from.parse().ok()?;
    let to: std::net::Ipv4Addr = to.parse().ok()?;
    let (f, t) = (u32::from(from), u32::from(to));
    (f <= t && t - f < 65_536).then(|| {
        (
            (f..=t)
                .map(|n| IpAddr::from(std::net::Ipv4Addr::from(n)))
                .collect(),
            port,
        )
    })
}

fn check(d: &mut Draft, svc: &Service, keys: &HashMap<String, (String, At)>, at: &At) -> Check {
    let get = |k: &str| keys.get(k).map(|(v, _)| v.as_str());
    let at_of = |k: &str| keys.get(k).map(|(_, a)| a.clone()).unwrap_or(at.clone());
    let checktype = get("checktype").unwrap_or("negotiate").to_lowercase();
    let service = get("service")
        .map(str::to_lowercase)
        .unwrap_or_else(|| service_for_port(svc.port()).to_string());
    let secs = |k: &str| get(k).and_then(|v| v.parse::<u64>().ok());
    let interval = secs("checkinterval").unwrap_or(CHECK_INTERVAL_S).max(1);
    let mut c = match checktype.as_str() {
        "connect" => Check::of("tcp"),
        "on" => Check::of("none"),
        "external" => {
            let mut c = Check::of("exec");
            c.command = get("checkcommand").map(str::to_string);
            d.note(
                &at_of("checkcommand"),
                Level::Review,
                "external check: ldirectord passed the addresses as arguments, lvsdr passes \
                 LVSDR_RS_ADDR and LVSDR_RS_PORT in the environment",
            );
            c
        }
        "negotiate" => negotiate(d, &service, &at_of("service")),
        n if n.parse::<u32>().is_ok() => {
            let mut c = negotiate(d, &service, &at_of("service"));
            c.comments.push(format!(
                "ldirectord negotiated every {n}th check and connected otherwise; lvsdr \
                 negotiates every time."
            ));
            c
        }
        other => {
            d.note(
                &at_of("checktype"),
                Level::Review,
                format!("checktype {other}: no lvsdr equivalent, written as a tcp check"),
            );
            Check::of("tcp")
        }
    };
    if let Some(p) = get("checkport").and_then(|p| p.parse().ok()) {
        c.port = Some(p);
    }
    if let Some(h) = get("virtualhost") {
        if c.kind == "http" || c.kind == "https" {
            c.host = Some(h.to_string());
        }
    }
    if get("httpmethod").is_some_and(|m| !m.eq_ignore_ascii_case("GET")) {
        d.note(
            &at_of("httpmethod"),
            Level::Review,
            "httpmethod other than GET: lvsdr's http check sends GET",
        );
    }
    let timeout = if c.kind == "tcp" {
        secs("connecttimeout").or(secs("checktimeout"))
    } else {
        secs("negotiatetimeout").or(secs("checktimeout"))
    }
    .unwrap_or(if c.kind == "tcp" {
        CHECK_TIMEOUT_S
    } else {
        NEGOTIATE_TIMEOUT_S
    });
    if timeout > interval {
        c.comments.push(format!(
            "ldirectord's timeout was {timeout}s, longer than its interval; lvsdr's may not be."
        ));
    }
    c.interval_ms = Some(interval * 1000);
    c.timeout_ms = Some(timeout.min(interval) * 1000);
    c.rise = Some(1);
    c.fall = Some(
        get("failurecount")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1u32)
            .max(1),
    );
    if let (Some(req), Some(recv)) = (get("request"), get("receive")) {
        let (req, recv) = (req.to_string(), recv.to_string());
        apply_request(d, &mut c, &req, &recv, &at_of("receive"));
    } else if let Some(req) = get("request") {
        let req = req.to_string();
        apply_request(d, &mut c, &req, "", &at_of("request"));
    }
    c
}

fn negotiate(d: &mut Draft, service: &str, at: &At) -> Check {
    match service {
        "http" => {
            let mut c = Check::of("http");
            c.path = Some("/".into());
            c
        }
        "https" => {
            let mut c = Check::of("https");
            c.path = Some("/".into());
            c.insecure_skip_verify = true;
            c.comments.push(
                "ldirectord did not verify the certificate; set `sni`/`ca` and drop \
                 insecure_skip_verify to verify it."
                    .into(),
            );
            c
        }
        "smtp" => Check::of("smtp"),
        "dns" => {
            let mut c = Check::of("udp-dns");
            c.query = Some(".".into());
            c
        }
        "simpletcp" => Check::of("tcp-expect"),
        "none" => Check::of("tcp"),
        other => {
            d.note(
                at,
                Level::Review,
                format!("service={other}: no lvsdr negotiate check, written as a tcp check"),
            );
            Check::of("tcp")
        }
    }
}

/// A `request`/`receive` pair: a path and a body regex for HTTP, send/expect for
/// simpletcp, the query for DNS.
fn apply_request(d: &mut Draft, c: &mut Check, request: &str, receive: &str, at: &At) {
    match c.kind.as_str() {
        "http" | "https" => {
            c.path = Some(if request.starts_with('/') {
                request.to_string()
            } else {
                format!("/{request}")
            });
            if !receive.is_empty() {
                if regex_ok(receive) {
                    c.expect_body = Some(receive.to_string());
                } else {
                    d.note(
                        at,
                        Level::Review,
                        format!(
                            "receive {receive:?} is a Perl regex lvsdr's (Rust) regex does not \
                             accept: matched literally"
                        ),
                    );
                    c.expect_body = Some(literal(receive));
                }
            }
        }
        "tcp-expect" => {
            c.send = Some(request.to_string());
            if regex_ok(receive) {
                c.expect = Some(receive.to_string());
            } else {
                d.note(
                    at,
                    Level::Review,
                    format!("receive {receive:?} is not a valid regex here: matched literally"),
                );
                c.expect = Some(literal(receive));
            }
        }
        "udp-dns" => {
            c.query = Some(request.to_string());
            if !receive.is_empty() {
                d.note(
                    at,
                    Level::Review,
                    "DNS receive (an expected answer) not translated: lvsdr checks the rcode",
                );
            }
        }
        _ => {
            if !request.is_empty() || !receive.is_empty() {
                d.note(
                    at,
                    Level::Review,
                    format!("request/receive not used by a {} check", c.kind),
                );
            }
        }
    }
}
