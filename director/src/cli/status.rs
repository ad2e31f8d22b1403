//! `lvsdr-director status`: the running director's `/status`, as a table for a terminal.

use std::fmt::Write;

use crate::status::Status;
use anyhow::Context;
use lvsdr_checks::Health;

/// Fetches `/status` from `url` (e.g. `http://127.0.0.1:9180`) and renders it.
pub async fn run(url: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().no_proxy().build()?;
    let status: Status = client
        .get(format!("{}/status", url.trim_end_matches('/')))
        .send()
        .await
        .with_context(|| format!("GET {url}/status"))?
        .error_for_status()?
        .json()
        .await
        .context("reading the status")?;
    print!("{}", render(&status));
    Ok(())
}

fn render(s: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "config generation {} ({}) · {} passes, {} changes applied, {} failures · last pass: {}, {:.1} ms",
        s.config.generation,
        if s.config.ok {
            "last load accepted"
        } else {
            "last reload REJECTED"
        },
        s.reconcile.passes,
        s.reconcile.ops_applied,
        s.reconcile.failures,
        s.reconcile.last_read,
        s.reconcile.last_pass_ms
    );
    for e in s.config.errors.iter().chain(&s.reconcile.errors) {
        let _ = writeln!(out, "  ! {e}");
    }
    for svc in &s.services {
        let _ = writeln!(
            out,
            "\n{}  {}  {}{}",
            svc.name,
            svc.key,
            svc.scheduler,
            if svc.in_kernel {
                ""
            } else {
                "  (not in the kernel)"
            }
        );
        out.push_str(
            "  real server              health   weight kernel  active inactive    conns  note\n",
        );
        for rs in svc.real_servers.iter().chain(&svc.sorry_server) {
            let health = match rs.health {
                Health::Up => "up",
                Health::Down => "DOWN",
                Health::Unknown => "unknown",
            };
            let kernel = rs.kernel_weight.map_or("-".to_string(), |w| w.to_string());
            // An operator's override says more than the check's error.
            let note = match rs.admin_state.as_str() {
                "none" => rs.error.as_deref().or(rs.reason.as_deref()),
                _ => rs.reason.as_deref().or(rs.error.as_deref()),
            }
            .unwrap_or("");
            let _ = writeln!(
                out,
                "  {:<24} {:<8} {:>6} {:>6} {:>7} {:>8} {:>8}  {note}",
                format!("{}:{}", rs.address, rs.port),
                health,
                rs.configured_weight,
                kernel,
                rs.active_conns,
                rs.inactive_conns,
                rs.stats.conns
            );
        }
    }
    if !s.agents.is_empty() {
        let _ = writeln!(out, "\nagents");
        for a in &s.agents {
            let state = match (a.reachable, a.confirmed) {
                (true, true) => "confirmed",
                (true, false) => "reachable, VIPs not in place",
                (false, true) => "unreachable, in grace period",
                (false, false) => "UNREACHABLE",
            };
            let vips: Vec<String> = a.vips.iter().map(ToString::to_string).collect();
            let _ = writeln!(
                out,
                "  {:<24} {state:<28} VIPs {}{}",
                a.address.to_string(),
                vips.join(", "),
                a.last_error
                    .as_deref()
                    .map(|e| format!("  ({e})"))
                    .unwrap_or_default()
            );
        }
    }
    if !s.unmanaged_services.is_empty() {
        let _ = writeln!(
            out,
            "\nunmanaged (left alone): {}",
            s.unmanaged_services.join(", ")
        );
    }
    out
}
