//! Writes a [`Draft`] as a documented lvsdr config (TOML). Pure.

use std::fmt::Write;

use super::draft::{Check, Draft, Key, RealServer, Service};

/// The config text.
pub fn toml(d: &Draft) -> String {
    let mut out = String::new();
    for c in &d.header {
        comment(&mut out, "", c);
    }
    if !d.header.is_empty() {
        out.push('\n');
    }
    for s in &d.services {
        service(&mut out, s);
    }
    for argv in &d.hooks {
        let argv: Vec<String> = argv.iter().map(|a| q(a)).collect();
        let _ = writeln!(
            out,
            "\n[[notify]]\nexec = [{}]\nevents = [\"server\"]",
            argv.join(", ")
        );
    }
    out
}

fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn comment(out: &mut String, indent: &str, text: &str) {
    for line in text.lines() {
        let _ = writeln!(out, "{indent}# {line}");
    }
}

fn duration(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

fn service(out: &mut String, s: &Service) {
    for c in &s.comments {
        comment(out, "", c);
    }
    let _ = writeln!(out, "[[service]]");
    let _ = writeln!(out, "name = {}", q(&s.name));
    match &s.key {
        Key::Addr {
            protocol,
            vip,
            port,
        } => {
            let _ = writeln!(out, "vip = {}", q(&vip.to_string()));
            let _ = writeln!(out, "port = {port}");
            let _ = writeln!(out, "protocol = {}", q(protocol));
        }
        Key::Fwmark { mark, ipv6 } => {
            let _ = writeln!(out, "fwmark = {mark}");
            if *ipv6 {
                let _ = writeln!(out, "family = \"ipv6\"");
            }
            if !s.vips.is_empty() {
                let vips: Vec<String> = s.vips.iter().map(|v| q(&v.to_string())).collect();
                let _ = writeln!(out, "vips = [{}]", vips.join(", "));
            }
        }
    }
    let _ = writeln!(out, "scheduler = {}", q(&s.scheduler));
    // For sh and mh, no flags is said out loud: lvsdr's default is the fallback flag,
    // and the import must keep the old meaning (and a takeover must change nothing).
    if !s.flags.is_empty() || matches!(s.scheduler.as_str(), "sh" | "mh") {
        let flags: Vec<String> = s.flags.iter().map(|f| q(f)).collect();
        let _ = writeln!(out, "scheduler_flags = [{}]", flags.join(", "));
    }
    if s.one_packet {
        let _ = writeln!(out, "one_packet = true");
    }
    if let Some(p) = s.persistence {
        let _ = writeln!(out, "persistence = \"{p}s\"");
    }
    if let Some(m) = &s.netmask {
        let _ = writeln!(out, "persistence_netmask = {}", q(m));
    }
    if let Some(e) = &s.persistence_engine {
        let _ = writeln!(out, "persistence_engine = {}", q(e));
    }
    let _ = writeln!(out, "forwarding = {}", q(&s.forwarding));
    if let Some(f) = &s.on_failure {
        let _ = writeln!(out, "on_failure = {}", q(f));
    }
    if let Some(a) = &s.sorry_server {
        let _ = writeln!(out, "sorry_server = {}", q(&a.to_string()));
    }
    if let Some(c) = &s.check {
        check(out, "[service.check]", c);
    }
    for r in &s.real_servers {
        real_server(out, r);
    }
    out.push('\n');
}

fn real_server(out: &mut String, r: &RealServer) {
    out.push('\n');
    for c in &r.comments {
        comment(out, "", c);
    }
    let _ = writeln!(out, "[[service.real_server]]");
    let _ = writeln!(out, "address = {}", q(&r.address.to_string()));
    if let Some(p) = r.port {
        let _ = writeln!(out, "port = {p}");
    }
    let _ = writeln!(out, "weight = {}", r.weight);
    if r.upper_threshold != 0 {
        let _ = writeln!(out, "upper_threshold = {}", r.upper_threshold);
    }
    if r.lower_threshold != 0 {
        let _ = writeln!(out, "lower_threshold = {}", r.lower_threshold);
    }
    // Real servers imported from another tool are set up as they were: by hand.
    let _ = writeln!(out, "agent = false");
    if let Some(c) = &r.check {
        check(out, "[service.real_server.check]", c);
    }
}

fn check(out: &mut String, header: &str, c: &Check) {
    for line in &c.comments {
        comment(out, "", line);
    }
    let _ = writeln!(out, "{header}");
    let _ = writeln!(out, "type = {}", q(&c.kind));
    let strings = [
        ("path", &c.path),
        ("host", &c.host),
        ("sni", &c.sni),
        ("expect_body", &c.expect_body),
        ("query", &c.query),
        ("command", &c.command),
        ("send", &c.send),
        ("expect", &c.expect),
    ];
    if let Some(p) = c.port {
        let _ = writeln!(out, "port = {p}");
    }
    for (k, v) in strings {
        if let Some(v) = v {
            let _ = writeln!(out, "{k} = {}", q(v));
        }
    }
    if let Some(s) = &c.expect_status {
        match s.parse::<u16>() {
            Ok(n) => {
                let _ = writeln!(out, "expect_status = {n}");
            }
            Err(_) => {
                let _ = writeln!(out, "expect_status = {}", q(s));
            }
        }
    }
    if c.insecure_skip_verify {
        let _ = writeln!(out, "insecure_skip_verify = true");
    }
    if let Some(ms) = c.interval_ms {
        let _ = writeln!(out, "interval = \"{}\"", duration(ms));
    }
    if let Some(ms) = c.timeout_ms {
        let _ = writeln!(out, "timeout = \"{}\"", duration(ms));
    }
    if let Some(n) = c.rise {
        let _ = writeln!(out, "rise = {n}");
    }
    if let Some(n) = c.fall {
        let _ = writeln!(out, "fall = {n}");
    }
}
