//! `lvsdr-director run`: loads the config, starts the tasks ([`wiring`]), and handles
//! signals until told to stop.
//!
//! Tasks: the reconciler (the one writer of the kernel), the health checks, the agent
//! pusher and the agents' drain polls, the HTTP status server, its history sampler, its
//! traffic counter reader, the VIP announcer, the notify hooks and the control socket
//! (operators' overrides, marked on the config before anyone else sees it). They talk
//! through `watch` channels; one cancellation token reaches them all. SIGHUP reloads
//! the config ([`reload`]: a config that fails validation is rejected and the running
//! one stays); SIGTERM and SIGINT shut down.
//!
//! The tasks are supervised together: if one ends or panics while the director runs,
//! it says which and why and exits non-zero (systemd restarts it; the table stays as
//! it is). Under systemd's watchdog (`WatchdogSec`), `WATCHDOG=1` is sent only while
//! the reconciler makes passes, so a hung writer gets the process restarted.

mod reload;
mod wiring;

use std::path::{Path, PathBuf};

use anyhow::Context;
use lvsdr::config;
use lvsdr::reconcile::Kernel;
use lvsdr_daemon::tasks::{TaskEnded, Tasks};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use reload::{reload, warn_config};
use wiring::Running;

/// Runs the director until SIGTERM or SIGINT.
pub async fn run(config_path: PathBuf) -> anyhow::Result<()> {
    // First, so that no signal sent once the endpoint answers is lost.
    let mut signals = Signals::new()?;
    // The netlink socket is opened and the IPVS family looked up while the config
    // parses: both stand before the first pass (a start's fixed costs, issue 22).
    let kernel = tokio::spawn(Kernel::connect());
    // Kept for the reloads: they read again only the services whose text changed.
    let (loader, loaded) = {
        let path = config_path.clone();
        tokio::task::spawn_blocking(move || {
            let mut loader = config::Loader::default();
            let loaded = loader.load(&path);
            (loader, loaded)
        })
        .await
        .context("reading the config")?
    };
    let desired = loaded.map_err(|e| anyhow::anyhow!("{e}"))?;
    info!(config = %config_path.display(), services = desired.services.len(), "config loaded");
    warn_config(&desired);
    let kernel = kernel
        .await
        .context("connecting to IPVS")?
        .context("connecting to IPVS")?;
    let cancel = CancellationToken::new();
    let mut tasks = Tasks::new();
    let mut running = wiring::start(desired, kernel, &mut tasks, &cancel).await?;
    // Readiness: the table is being reconciled and the endpoint answers.
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    let ended = signals
        .until_stop(&config_path, loader, &mut running, &mut tasks)
        .await;
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

/// The signals the director acts on.
struct Signals {
    hup: Signal,
    term: Signal,
    int: Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        Ok(Signals {
            hup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Reloads on SIGHUP and tells the watchdog while the reconciler lives, until
    /// SIGTERM or SIGINT (`None`) or until a task ends (which, and how).
    async fn until_stop(
        &mut self,
        config_path: &Path,
        mut loader: config::Loader,
        running: &mut Running,
        tasks: &mut Tasks,
    ) -> Option<TaskEnded> {
        let mut watchdog = watchdog_interval().map(tokio::time::interval);
        loop {
            tokio::select! {
                _ = self.hup.recv() => {
                    // Parsing a large config takes a while: off the runtime thread, so
                    // the checks and the reconciler go on meanwhile.
                    let path = config_path.to_path_buf();
                    let mut l = std::mem::take(&mut loader);
                    match tokio::task::spawn_blocking(move || { let r = l.load(&path); (l, r) }).await {
                        Ok((l, loaded)) => {
                            loader = l;
                            reload(loaded, loader.last_read(), running);
                        }
                        Err(e) => error!("SIGHUP: reading the config failed: {e}"),
                    }
                }
                _ = self.term.recv() => { info!("SIGTERM: shutting down"); return None }
                _ = self.int.recv() => { info!("SIGINT: shutting down"); return None }
                _ = async { if let Some(w) = &mut watchdog { w.tick().await; } }, if watchdog.is_some() => {
                    match running.sources.alive() {
                        Ok(()) => { let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]); }
                        Err(why) => error!("not telling the watchdog we are alive: {why}"),
                    }
                }
                e = tasks.ended() => return Some(e),
            }
        }
    }
}

/// Half systemd's watchdog period, when it set one.
fn watchdog_interval() -> Option<std::time::Duration> {
    let mut usec = 0;
    sd_notify::watchdog_enabled(false, &mut usec)
        .then(|| std::time::Duration::from_micros(usec / 2))
        .filter(|d| !d.is_zero())
}
