//! `lvsdr-director run`: wires the tasks together and handles signals.
//!
//! Tasks: the reconciler (the one writer of the kernel), the health checks, the agent
//! pusher and the agents' drain polls, the HTTP status server, its history sampler, its traffic counter reader and
//! the control socket (operators' overrides, marked on the config before anyone else
//! sees it). They talk through `watch` channels; one
//! cancellation token reaches them all. SIGHUP reloads the config (a config that fails
//! validation is rejected and the running one stays); SIGTERM and SIGINT shut down.
//!
//! The tasks are supervised together: if one ends or panics while the director runs,
//! it says which and why and exits non-zero (systemd restarts it; the table stays as
//! it is). Under systemd's watchdog (`WatchdogSec`), `WATCHDOG=1` is sent only while
//! the reconciler makes passes, so a hung writer gets the process restarted.

use std::path::PathBuf;
use std::sync::Arc;

use crate::agents::AgentMap;
use crate::status::ReloadStatus;
use anyhow::Context;
use lvsdr::config;
use lvsdr::model::Desired;
use lvsdr::reconcile::driver::{self, Inputs};
use lvsdr::reconcile::ReconcileState;
use lvsdr::reconcile::{Gate, Kernel};
use lvsdr_checks::{Checker, Supervisor};
use lvsdr_daemon::tasks::Tasks;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::http::{self, Sources};

fn now() -> f64 {
    lvsdr::clock::now()
}

/// Runs the director until SIGTERM or SIGINT.
pub async fn run(config_path: PathBuf) -> anyhow::Result<()> {
    // First, so that no signal sent once the endpoint answers is lost.
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let desired = config::load(&config_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let listen = desired.director.status_listen;
    info!(
        config = %config_path.display(),
        services = desired.services.len(),
        "config loaded"
    );
    warn_config(&desired);
    let cancel = CancellationToken::new();
    let kernel = Kernel::connect().await.context("connecting to IPVS")?;
    let checker = Checker::new(cancel.child_token()).context("building the HTTP check client")?;
    let mut supervisor = Supervisor::new(checker, cancel.child_token());
    supervisor.set_checks(&desired.checks());
    let checks = supervisor
        .take_task()
        .context("the health check scheduler is not running")?;

    let (gate_tx, gate_rx) = watch::channel(Gate::closed_for(&desired));
    // The config as loaded goes to the control task, which marks the operators'
    // overrides on it for everyone else (loaded first: a restarted director keeps a
    // drain from its first pass on).
    let overrides = crate::control::load(&desired.director.admin_file);
    let control_socket = crate::control::bind(&desired.director.control_socket);
    let allowed = crate::control::Allowed::new(desired.director.control_group.as_deref());
    let admin_file = desired.director.admin_file.clone();
    let config = Arc::new(desired);
    let (desired_tx, desired_rx) = watch::channel(crate::control::effective(&config, &overrides));
    let (config_tx, config_rx) = watch::channel(config);
    let (state_tx, state_rx) = watch::channel(ReconcileState::default());
    let (agents_tx, agents_rx) = watch::channel(AgentMap::new());
    let (drains_tx, drains_rx) = watch::channel(crate::agents::poll::AgentDrains::new());
    let mut tasks = Tasks::new();
    tasks.spawn("health check scheduler", checks);
    tasks.spawn_infallible(
        "agents' drain polls",
        crate::agents::poll::run(
            config_rx.clone(),
            state_rx.clone(),
            drains_tx,
            cancel.child_token(),
        ),
    );
    tasks.spawn_infallible(
        "agent pusher",
        crate::agents::run(
            desired_rx.clone(),
            state_rx.clone(),
            gate_tx,
            agents_tx,
            cancel.child_token(),
        ),
    );
    let (reload_tx, reload_rx) = watch::channel(ReloadStatus {
        generation: 1,
        at: now(),
        ok: true,
        errors: Vec::new(),
    });
    tasks.spawn_infallible(
        "reconciler",
        driver::run(
            kernel,
            Inputs {
                desired: desired_rx.clone(),
                health: supervisor.health(),
                gate: gate_rx.clone(),
                cancel: cancel.child_token(),
            },
            state_tx,
        ),
    );
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the status endpoint to {listen}"))?;
    info!(%listen, "status endpoint listening");
    let (history_tx, history_rx) = watch::channel(crate::status::history::History::default());
    let (announce_tx, announce_rx) = watch::channel(Vec::new());
    let (held_tx, held_rx) = watch::channel(Vec::new());
    let (bird_tx, bird_rx) = watch::channel(None);
    let started = std::time::Instant::now();
    let (counters_tx, counters_rx) = watch::channel(Default::default());
    let (hooks_tx, hooks_rx) = watch::channel(Vec::new());
    tasks.spawn(
        "notify hooks",
        crate::notify::run(
            crate::notify::Watched {
                desired: desired_rx.clone(),
                health: supervisor.health(),
                announce: announce_rx.clone(),
                reload: reload_rx.clone(),
            },
            Arc::new(hooks_tx),
            cancel.child_token(),
        ),
    );
    tasks.spawn(
        "control socket",
        crate::control::Control {
            config: config_rx,
            state: state_rx.clone(),
            desired: desired_tx,
            overrides,
            file: admin_file,
            agent_drains: drains_rx,
        }
        .run(control_socket, allowed, cancel.child_token()),
    );
    let sources = Sources {
        desired: desired_rx,
        state: state_rx,
        health: supervisor.health(),
        details: supervisor.details(),
        reload: reload_rx,
        gate: gate_rx,
        agents: agents_rx,
        history: history_rx,
        announce: announce_rx,
        held: held_rx,
        bird: bird_rx,
        started,
        counters: counters_rx,
        notify: hooks_rx,
        checks: supervisor.tally(),
        renders: Arc::new(tokio::sync::Semaphore::new(1)),
    };
    tasks.spawn(
        "HTTP status server",
        http::serve(listener, sources.clone(), cancel.child_token()),
    );
    tasks.spawn(
        "VIP announcer",
        crate::announce::device::run(
            sources.desired.clone(),
            sources.state.clone(),
            announce_tx,
            held_tx,
            bird_tx,
            started,
            cancel.child_token(),
        ),
    );
    tasks.spawn(
        "status history sampler",
        crate::status::sampler::run(sources.clone(), Arc::new(history_tx), cancel.child_token()),
    );
    tasks.spawn(
        "traffic counter reader",
        crate::status::counters::run(sources.state.clone(), counters_tx, cancel.child_token()),
    );
    // Readiness: the table is being reconciled and the endpoint answers.
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    let mut watchdog = watchdog_interval().map(tokio::time::interval);

    let ended = loop {
        tokio::select! {
            _ = hup.recv() => {
                // Parsing a large config takes a while: off the runtime thread, so the
                // checks and the reconciler go on meanwhile.
                let path = config_path.clone();
                let loaded = tokio::task::spawn_blocking(move || config::load(&path)).await;
                match loaded {
                    Ok(loaded) => reload(loaded, &config_tx, &reload_tx, &mut supervisor, listen),
                    Err(e) => error!("SIGHUP: reading the config failed: {e}"),
                }
            }
            _ = term.recv() => { info!("SIGTERM: shutting down"); break None }
            _ = int.recv() => { info!("SIGINT: shutting down"); break None }
            _ = async { if let Some(w) = &mut watchdog { w.tick().await; } }, if watchdog.is_some() => {
                match sources.alive() {
                    Ok(()) => { let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]); }
                    Err(why) => error!("not telling the watchdog we are alive: {why}"),
                }
            }
            e = tasks.ended() => break Some(e),
        }
    };
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    cancel.cancel();
    if let Some(why) = ended {
        // The others stop through the token; the table stays as it is.
        error!("{why}; exiting so that the service manager restarts the director");
        return Err(why.into());
    }
    // The announcer withdraws the VIPs and waits withdraw_grace: joined with the rest.
    tasks.join_all().await?;
    info!("stopped");
    Ok(())
}

/// Half systemd's watchdog period, when it set one.
fn watchdog_interval() -> Option<std::time::Duration> {
    let mut usec = 0;
    sd_notify::watchdog_enabled(false, &mut usec)
        .then(|| std::time::Duration::from_micros(usec / 2))
        .filter(|d| !d.is_zero())
}

/// What a valid config may still get wrong (`config::warnings`), and the kernel
/// settings it needs that differ now (the director cannot set them; `lvsdr-director
/// prepare` does, as root: the unit runs it first).
fn warn_config(d: &Desired) {
    for w in config::warnings(d) {
        warn!("{w}");
    }
    for why in lvsdr::sysctl::differing(d) {
        warn!("{why}: run `lvsdr-director prepare` as root (the systemd unit does)");
    }
}

fn reload(
    loaded: Result<Desired, config::ConfigErrors>,
    desired: &watch::Sender<Arc<Desired>>,
    reload: &watch::Sender<ReloadStatus>,
    supervisor: &mut Supervisor,
    listen: std::net::SocketAddr,
) {
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
                "SIGHUP: config reloaded"
            );
            desired.send_replace(Arc::new(d));
            reload.send_replace(ReloadStatus {
                generation: generation + 1,
                at: now(),
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
                at: now(),
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
