//! `lvsdr-director run`: wires the tasks together and handles signals.
//!
//! Tasks: the reconciler (the one writer of the kernel), one task per distinct health
//! check, the agent pusher, the HTTP status server. They talk through `watch` channels; one
//! cancellation token reaches them all. SIGHUP reloads the config (a config that fails
//! validation is rejected and the running one stays); SIGTERM and SIGINT shut down.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context;
use lvsdr::agents::AgentMap;
use lvsdr::config;
use lvsdr::health::{Checker, Supervisor};
use lvsdr::model::Desired;
use lvsdr::reconcile::driver::{self, Inputs, ReconcileState};
use lvsdr::reconcile::{Gate, Kernel};
use lvsdr::status::ReloadStatus;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::http::{self, Sources};

fn now() -> f64 {
    lvsdr::status::epoch(SystemTime::now())
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
    let cancel = CancellationToken::new();
    let kernel = Kernel::connect().await.context("connecting to IPVS")?;
    let checker = Checker::new(cancel.child_token()).context("building the HTTP check client")?;
    let mut supervisor = Supervisor::new(checker, cancel.child_token());
    supervisor.set_checks(&desired.checks());

    let (desired_tx, desired_rx) = watch::channel(Arc::new(desired));
    let (state_tx, state_rx) = watch::channel(ReconcileState::default());
    let (gate_tx, gate_rx) = watch::channel(Gate::default());
    let (agents_tx, agents_rx) = watch::channel(AgentMap::new());
    let pusher = tokio::spawn(lvsdr::agents::run(
        desired_rx.clone(),
        gate_tx,
        agents_tx,
        cancel.child_token(),
    ));
    let (reload_tx, reload_rx) = watch::channel(ReloadStatus {
        generation: 1,
        at: now(),
        ok: true,
        errors: Vec::new(),
    });
    let reconciler = tokio::spawn(driver::run(
        kernel,
        Inputs {
            desired: desired_rx.clone(),
            health: supervisor.health(),
            gate: gate_rx.clone(),
            cancel: cancel.child_token(),
        },
        state_tx,
    ));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the status endpoint to {listen}"))?;
    info!(%listen, "status endpoint listening");
    let server = tokio::spawn(http::serve(
        listener,
        Sources {
            desired: desired_rx,
            state: state_rx,
            health: supervisor.health(),
            details: supervisor.details(),
            reload: reload_rx,
            gate: gate_rx,
            agents: agents_rx,
        },
        cancel.child_token(),
    ));
    // Readiness: the table is being reconciled and the endpoint answers.
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);

    loop {
        tokio::select! {
            _ = hup.recv() => reload(&config_path, &desired_tx, &reload_tx, &mut supervisor, listen),
            _ = term.recv() => { info!("SIGTERM: shutting down"); break }
            _ = int.recv() => { info!("SIGINT: shutting down"); break }
        }
    }
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    cancel.cancel();
    reconciler.await.context("the reconciler task")?;
    pusher.await.context("the agent pusher task")?;
    server.await.context("the HTTP task")??;
    info!("stopped");
    Ok(())
}

fn reload(
    path: &std::path::Path,
    desired: &watch::Sender<Arc<Desired>>,
    reload: &watch::Sender<ReloadStatus>,
    supervisor: &mut Supervisor,
    listen: std::net::SocketAddr,
) {
    let generation = reload.borrow().generation;
    match config::load(path) {
        Ok(d) => {
            if d.director.status_listen != listen {
                warn!(
                    "status_listen changed to {}; it takes effect at the next restart",
                    d.director.status_listen
                );
            }
            supervisor.set_checks(&d.checks());
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
        Err(e) => {
            error!("SIGHUP: config rejected, generation {generation} stays in force: {e}");
            reload.send_replace(ReloadStatus {
                generation,
                at: now(),
                ok: false,
                errors: e.0.iter().map(ToString::to_string).collect(),
            });
        }
    }
}
