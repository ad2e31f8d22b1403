//! `/`: one plain HTML page an operator can read at a glance: a table per service,
//! health in colour. No JavaScript; it refreshes itself every 5 seconds.

use std::fmt::Write;

use lvsdr::health::Health;
use lvsdr::status::{ServerStatus, Status};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "–".to_string(), |v| v.to_string())
}

fn row(out: &mut String, rs: &ServerStatus, sorry: bool) {
    let (class, label) = match rs.health {
        Health::Up => ("up", "up"),
        Health::Down => ("down", "down"),
        Health::Unknown => ("unknown", "unknown"),
    };
    let name = if sorry {
        format!("{}:{} (sorry server)", rs.address, rs.port)
    } else {
        format!("{}:{}", rs.address, rs.port)
    };
    let note = rs.error.as_deref().or(rs.reason.as_deref()).unwrap_or("");
    let _ = writeln!(
        out,
        "<tr><td>{}</td><td class=\"{class}\">{label}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        esc(&name),
        rs.configured_weight,
        opt(rs.kernel_weight),
        rs.active_conns,
        rs.inactive_conns,
        rs.stats.conns,
        rs.latency_ms.map_or_else(|| "–".into(), |l| format!("{l:.1} ms")),
        esc(note),
    );
}

/// Renders the page.
pub fn render(s: &Status) -> String {
    let mut out = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"5\">\
<title>lvsdr director</title><style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin-bottom:1.5em}\
td,th{border:1px solid #bbb;padding:.25em .6em;text-align:left}.up{background:#b7ebc0}.down{background:#f5b5b5}\
.unknown{background:#f3e3a1}.bad{color:#a00}</style></head><body>\n<h1>lvsdr director</h1>\n",
    );
    let _ = writeln!(
        out,
        "<p>config generation {} — last reload {} · {} passes, {} changes applied, {} failures · last pass: {}, {:.1} ms</p>",
        s.config.generation,
        if s.config.ok {
            "accepted".to_string()
        } else {
            "<span class=\"bad\">rejected</span>".to_string()
        },
        s.reconcile.passes,
        s.reconcile.ops_applied,
        s.reconcile.failures,
        esc(&s.reconcile.last_read),
        s.reconcile.last_pass_ms
    );
    for e in s.config.errors.iter().chain(&s.reconcile.errors) {
        let _ = writeln!(out, "<p class=\"bad\">{}</p>", esc(e));
    }
    for svc in &s.services {
        let _ = writeln!(
            out,
            "<h2>{} <small>{} · {}{}</small></h2>\n<table><tr><th>real server</th><th>health</th><th>weight</th><th>kernel weight</th><th>active</th><th>inactive</th><th>connections</th><th>check</th><th>note</th></tr>",
            esc(&svc.name),
            esc(&svc.key),
            esc(&svc.scheduler),
            if svc.in_kernel { "" } else { " · <span class=\"bad\">not in the kernel</span>" }
        );
        for rs in &svc.real_servers {
            row(&mut out, rs, false);
        }
        if let Some(sorry) = &svc.sorry_server {
            row(&mut out, sorry, true);
        }
        out.push_str("</table>\n");
    }
    if !s.agents.is_empty() {
        out.push_str("<h2>agents</h2>\n<table><tr><th>agent</th><th>VIPs</th><th>state</th><th>generation</th><th>note</th></tr>\n");
        for a in &s.agents {
            let (class, label) = match (a.reachable, a.confirmed) {
                (true, true) => ("up", "confirmed"),
                (true, false) => ("unknown", "reachable, not in place"),
                (false, true) => ("unknown", "unreachable, confirmed within the grace period"),
                (false, false) => ("down", "unreachable"),
            };
            let vips: Vec<String> = a.vips.iter().map(ToString::to_string).collect();
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td class=\"{class}\">{label}</td><td>{}</td><td>{}</td></tr>",
                a.address,
                esc(&vips.join(", ")),
                opt(a.generation),
                esc(a.last_error.as_deref().unwrap_or("")),
            );
        }
        out.push_str("</table>\n");
    }
    if !s.unmanaged_services.is_empty() {
        let _ = writeln!(
            out,
            "<p>Unmanaged (left alone): {}</p>",
            esc(&s.unmanaged_services.join(", "))
        );
    }
    out.push_str("</body></html>\n");
    out
}
