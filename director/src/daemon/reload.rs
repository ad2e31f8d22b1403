//! SIGHUP: the config read again and, if it is valid (and its agents' TLS files load),
//! put in force; else the running one stays and the rejection is published. Also what
//! a valid config may still get wrong, logged at start and at each reload.

use std::sync::Arc;

use lvsdr::config::{self, LoadStats};
use lvsdr::model::Desired;
use tracing::{error, info, warn};

use super::wiring::Running;
use crate::status::ReloadStatus;

/// What a valid config may still get wrong (`config::warnings`), and the kernel
/// settings it needs that differ now (the director cannot set them; `lvsdr-director
/// prepare` does, as root: the unit runs it first).
pub fn warn_config(d: &Desired) {
    for w in config::warnings(d) {
        warn!("{w}");
    }
    for why in lvsdr::sysctl::differing(d) {
        warn!("{why}: run `lvsdr-director prepare` as root (the systemd unit does)");
    }
}

pub fn reload(
    loaded: Result<Desired, config::ConfigErrors>,
    read: LoadStats,
    running: &mut Running,
) {
    let Running {
        config: desired,
        reload,
        supervisor,
        listen,
        ..
    } = running;
    let listen = *listen;
    let generation = reload.borrow().generation;
    match accept(loaded) {
        Ok(d) => {
            if d.director.status_listen != listen {
                warn!(
                    "status_listen changed to {}; it takes effect at the next restart",
                    d.director.status_listen
                );
            }
            if d.notify != desired.borrow().notify {
                warn!("[[notify]] changed; the hooks change at the next restart");
            }
            supervisor.set_checks(&d.checks());
            warn_config(&d);
            info!(
                generation = generation + 1,
                services = d.services.len(),
                checks = supervisor.running(),
                service_blocks = read.blocks,
                blocks_read = read.read,
                whole_file = read.whole,
                "SIGHUP: config reloaded"
            );
            desired.send_replace(Arc::new(d));
            reload.send_replace(ReloadStatus {
                generation: generation + 1,
                at: lvsdr::clock::now(),
                ok: true,
                errors: Vec::new(),
            });
        }
        Err(errors) => {
            error!(
                "SIGHUP: config rejected, generation {generation} stays in force: {}",
                errors.join("; ")
            );
            reload.send_replace(ReloadStatus {
                generation,
                at: lvsdr::clock::now(),
                ok: false,
                errors,
            });
        }
    }
}

/// Whether a loaded config may replace the running one: it parsed and validated, and
/// with `[agents]` its TLS files load (a reload that broke them stopped every push;
/// the running config must stay instead). The errors, each naming what and where.
fn accept(loaded: Result<Desired, config::ConfigErrors>) -> Result<Desired, Vec<String>> {
    let d = loaded.map_err(|e| e.0.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    if let Some(a) = &d.agents {
        crate::agents::client(a).map_err(|e| vec![format!("[agents]: {e}")])?;
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_whose_agent_tls_files_do_not_load_is_refused() {
        let text = "[agents]\nca = \"/nonexistent/ca.pem\"\ncert = \"/nonexistent/d.pem\"\n\
                    key = \"/nonexistent/d.key\"\n";
        let errors = accept(config::parse(text, "d.toml")).expect_err("refused");
        assert!(
            errors.len() == 1 && errors[0].contains("/nonexistent/ca.pem"),
            "{errors:?}"
        );
        let bad = accept(config::parse("[director]\nnope = 1\n", "d.toml")).expect_err("invalid");
        assert!(bad.iter().any(|e| e.contains("d.toml")), "{bad:?}");
        assert!(accept(config::parse("", "d.toml")).is_ok());
    }
}
