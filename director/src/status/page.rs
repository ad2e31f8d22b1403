//! `/`: one HTML page an operator can read at a glance, in the spirit of HAProxy's
//! stats page: per service its totals and a 15-minute history (inline SVG), per real
//! server its health and since when, weights, connections, rates, the last check and
//! why it gets no traffic. No JavaScript, no external assets (it works without
//! network); it refreshes itself every 5 seconds.

use std::fmt::Write;

use crate::status::history::{History, Sample, KEPT};
use crate::status::{ServerStatus, ServiceStatus, Status};
use lvsdr_checks::Health;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "–".to_string(), |v| v.to_string())
}

/// "4s", "3m 12s", "2h 5m", "3d 4h".
fn age(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// 1.2 kB/s etc.
fn rate(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..=999 => format!("{bytes} B/s"),
        1000..=999_999 => format!("{:.1} kB/s", b / 1e3),
        1_000_000..=999_999_999 => format!("{:.1} MB/s", b / 1e6),
        _ => format!("{:.1} GB/s", b / 1e9),
    }
}

/// UTC clock time of an epoch time, for tooltips.
fn clock(t: f64) -> String {
    let s = t.max(0.0) as u64 % 86_400;
    format!("{:02}:{:02}:{:02} UTC", s / 3600, s % 3600 / 60, s % 60)
}

fn health(h: Health) -> (&'static str, &'static str) {
    match h {
        Health::Up => ("up", "up"),
        Health::Down => ("down", "down"),
        Health::Unknown => ("unknown", "unknown"),
    }
}

fn row(out: &mut String, rs: &ServerStatus, sorry: bool, now: f64) {
    let (class, label) = health(rs.health);
    let name = if sorry {
        format!("{}:{} (sorry server)", rs.address, rs.port)
    } else {
        format!("{}:{}", rs.address, rs.port)
    };
    let since = rs.health_since.map_or_else(
        || "–".to_string(),
        |t| format!("<span title=\"{}\">{} ago</span>", clock(t), age(now - t)),
    );
    let check = match (&rs.check, rs.last_check) {
        (None, _) => "no check".to_string(),
        (Some(c), None) => format!("<span title=\"{}\">not run yet</span>", esc(c)),
        (Some(c), Some(t)) => {
            let result = match &rs.error {
                None => "ok".to_string(),
                Some(e) => format!("<span class=\"bad\">{}</span>", esc(e)),
            };
            format!(
                "<span title=\"{}\">{result}</span>, {}, {} ago",
                esc(c),
                rs.latency_ms
                    .map_or_else(|| "–".into(), |l| format!("{l:.1} ms")),
                age(now - t)
            )
        }
    };
    let _ = writeln!(
        out,
        "<tr><td>{}</td><td class=\"{class}\">{label}</td><td>{since}</td><td>{}</td>\
         <td>{} / {} / {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{check}</td><td>{}</td></tr>",
        esc(&name),
        rs.transitions,
        rs.configured_weight,
        opt(rs.target_weight),
        opt(rs.kernel_weight),
        rs.active_conns,
        rs.inactive_conns,
        rs.stats.cps,
        rate(rs.stats.in_bps),
        esc(rs.reason.as_deref().unwrap_or("")),
    );
}

/// A small line chart of `value` over the last [`KEPT`] (time runs left to right,
/// ending now), scaled to `max`.
fn spark(
    samples: &[Sample],
    now: f64,
    max: f64,
    value: impl Fn(&Sample) -> f64,
    label: &str,
) -> String {
    const W: f64 = 240.0;
    const H: f64 = 40.0;
    let span = KEPT.as_secs_f64();
    let max = max.max(1.0);
    let points: Vec<String> = samples
        .iter()
        .map(|s| {
            let x = (W * (1.0 - (now - s.at) / span)).clamp(0.0, W);
            let y = H - 2.0 - (H - 4.0) * (value(s) / max).clamp(0.0, 1.0);
            format!("{x:.1},{y:.1}")
        })
        .collect();
    format!(
        "<svg class=\"spark\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" \
         aria-label=\"{label}\"><title>{label}</title><rect width=\"{W}\" height=\"{H}\" fill=\"#f6f6f6\"/>\
         <polyline fill=\"none\" stroke=\"#2a6ebb\" stroke-width=\"1.5\" points=\"{}\"/></svg>",
        points.join(" ")
    )
}

fn service(out: &mut String, svc: &ServiceStatus, history: &History, now: f64) {
    let up = svc
        .real_servers
        .iter()
        .filter(|r| r.health == Health::Up)
        .count();
    let active: u64 = svc
        .real_servers
        .iter()
        .map(|r| u64::from(r.active_conns))
        .sum();
    let inactive: u64 = svc
        .real_servers
        .iter()
        .map(|r| u64::from(r.inactive_conns))
        .sum();
    let _ = writeln!(
        out,
        "<section class=\"service\"><h2>{} <small>{} · {}{}</small></h2>",
        esc(&svc.name),
        esc(&svc.key),
        esc(&svc.scheduler),
        if svc.in_kernel {
            ""
        } else {
            " · <span class=\"bad\">not in the kernel</span>"
        }
    );
    let samples = history.of(&svc.name);
    let max_cps = samples.iter().map(|s| s.cps).max().unwrap_or(0);
    let servers = svc.real_servers.len();
    let _ = writeln!(
        out,
        "<p class=\"totals\"><b>{up}/{servers}</b> real servers up · {active} active, {inactive} inactive connections · \
         {} conn/s · {} in · {} connections in all</p>",
        svc.stats.cps,
        rate(svc.stats.in_bps),
        svc.stats.conns
    );
    let _ = writeln!(
        out,
        "<div class=\"charts\"><figure>{}<figcaption>conn/s, last 15 min (max {max_cps})</figcaption></figure>\
         <figure>{}<figcaption>real servers up, last 15 min (of {servers})</figcaption></figure></div>",
        spark(&samples, now, max_cps as f64, |s| f64::from(s.cps), "connections per second, last 15 minutes"),
        spark(&samples, now, servers as f64, |s| f64::from(s.up), "real servers up, last 15 minutes"),
    );
    out.push_str(
        "<table><tr><th>real server</th><th>health</th><th>since</th><th>changes</th>\
         <th>weight<br><small>config / target / kernel</small></th><th>active</th><th>inactive</th>\
         <th>conn/s</th><th>in</th><th>last check</th><th>why no traffic</th></tr>\n",
    );
    for rs in &svc.real_servers {
        row(out, rs, false, now);
    }
    if let Some(sorry) = &svc.sorry_server {
        row(out, sorry, true, now);
    }
    out.push_str("</table></section>\n");
}

/// Renders the page as of `now` (seconds since the epoch).
pub fn render(s: &Status, history: &History, now: f64) -> String {
    let mut out = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"5\">\
<title>lvsdr director</title><style>body{font-family:sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;margin-bottom:1.5em}td,th{border:1px solid #bbb;padding:.25em .6em;text-align:left;vertical-align:top}\
th{background:#eee}.up{background:#b7ebc0}.down{background:#f5b5b5}.unknown{background:#f3e3a1}.bad{color:#a00}\
.charts{display:flex;gap:1.5em}figure{margin:0}figcaption{font-size:.8em;color:#555}.note{font-size:.85em;color:#555}\
section.service{margin-bottom:1em}</style></head><body>\n<h1>lvsdr director</h1>\n",
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
    for e in s
        .config
        .errors
        .iter()
        .chain(&s.reconcile.errors)
        .chain(&s.reconcile.held)
        .chain(&s.kernel_settings)
    {
        let _ = writeln!(out, "<p class=\"bad\">{}</p>", esc(e));
    }
    out.push_str(
        "<p class=\"note\">Rates are the kernel's estimates. Bytes count inbound only: with direct \
         routing the replies go from the real servers straight to the clients.</p>\n",
    );
    for svc in &s.services {
        service(&mut out, svc, history, now);
    }
    if !s.announce.is_empty() {
        out.push_str(
            "<h2>announced VIPs</h2>\n<table><tr><th>VIP</th><th>state</th><th>why</th></tr>\n",
        );
        for v in &s.announce {
            let (class, label) = if v.announced {
                ("up", "announced")
            } else {
                ("down", "withdrawn")
            };
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td class=\"{class}\">{label}</td><td>{}</td><td>{}</td></tr>",
                v.vip,
                esc(&v.why),
                esc(&v.exported_to.join(", "))
            );
        }
        out.push_str("</table>\n");
    }
    if let Some(b) = &s.bird {
        let sessions: Vec<String> = b
            .sessions
            .iter()
            .map(|x| format!("{} {} {}", x.name, x.state, x.info))
            .collect();
        let _ = writeln!(
            out,
            "<p>BIRD: {}{}</p>",
            esc(&sessions.join("; ")),
            b.error.as_deref().map_or(String::new(), |e| format!(
                " <span class=\"bad\">{}</span>",
                esc(e)
            ))
        );
    }
    if !s.vips_held.is_empty() {
        let held: Vec<String> = s.vips_held.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            out,
            "<p>This director holds {} (VRRP master, or set by hand).</p>",
            esc(&held.join(", "))
        );
    }
    if !s.sync_daemons.is_empty() {
        let _ = writeln!(
            out,
            "<p>Connection sync: {}</p>",
            esc(&s.sync_daemons.join("; "))
        );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_rates_and_charts() {
        assert_eq!(age(4.2), "4s");
        assert_eq!(age(192.0), "3m 12s");
        assert_eq!(age(7500.0), "2h 5m");
        assert_eq!(rate(1500), "1.5 kB/s");
        let samples = [
            Sample {
                at: 100.0,
                cps: 0,
                up: 1,
                servers: 2,
            },
            Sample {
                at: 1000.0,
                cps: 10,
                up: 2,
                servers: 2,
            },
        ];
        let svg = spark(&samples, 1000.0, 10.0, |s| f64::from(s.cps), "x");
        // The newest point is at the right edge and the top; the oldest at the left,
        // at the bottom.
        assert!(svg.contains("points=\"0.0,38.0 240.0,2.0\""), "{svg}");
    }
}
