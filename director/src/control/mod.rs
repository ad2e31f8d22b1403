//! The control socket (`[director] control_socket`) and `lvsdr-director ctl`, its
//! client: operators drain, disable, enable and weigh real servers at runtime.
//!
//! One task owns the overrides: it takes requests from the connections, keeps the
//! overrides file, and publishes the config with the overrides marked on it
//! ([`lvsdr::admin::Overrides::apply`]) to everyone downstream (the reconciler, the
//! pusher, the status). An answer goes out once the change is on disk, so an
//! acknowledged drain survives `kill -9`. A config reload drops the overrides whose
//! server left it. The drains the agents report (`lvsdr-agent drain`, heard by
//! [`crate::agents::poll`]) are kept and marked here too.

pub mod client;
mod peer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::agents::poll::{self, AgentDrains};
use lvsdr::admin::handle::{handle, Caller};
use lvsdr::admin::protocol::{Request, Response, MAX_LINE};
use lvsdr::admin::{file, Overrides};
use lvsdr::model::Desired;
use lvsdr::reconcile::ReconcileState;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How many connections are served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 16;

/// A request from a connection, with the peer's uid and where the answer goes.
struct Asked {
    request: Request,
    uid: u32,
    reply: oneshot::Sender<Response>,
}

/// The control task's inputs and outputs.
pub struct Control {
    /// The config as loaded (without overrides).
    pub config: watch::Receiver<Arc<Desired>>,
    /// The reconciler's state (the kernel's connection counts for `conns`).
    pub state: watch::Receiver<ReconcileState>,
    /// The config with the overrides marked, for everyone downstream.
    pub desired: watch::Sender<Arc<Desired>>,
    /// The overrides in force (as loaded at start).
    pub overrides: Overrides,
    /// Where they are kept.
    pub file: PathBuf,
    /// What the agents say of their own drains.
    pub agent_drains: watch::Receiver<AgentDrains>,
}

/// Loads the overrides kept at `path`; a file that cannot be read is reported and
/// none are in force (the director must start; the next change rewrites the file).
pub fn load(path: &Path) -> Overrides {
    match file::load(path) {
        Ok(o) => {
            for x in &o.overrides {
                info!(server = %x.server, service = x.service.as_deref().unwrap_or("*"), state = %x.state, by = x.by, reason = %x.reason, "operator override in force");
            }
            o
        }
        Err(e) => {
            warn!("{e}; starting without operator overrides");
            Overrides::default()
        }
    }
}

/// The config as the planner should see it.
pub fn effective(config: &Arc<Desired>, o: &Overrides) -> Arc<Desired> {
    if o.is_empty() {
        config.clone() // the common case costs no copy of a large config
    } else {
        Arc::new(o.apply(config))
    }
}

impl Control {
    /// Runs until `cancel`: serves `socket` (if it could be bound) and republishes on
    /// every config change.
    pub async fn run(
        mut self,
        socket: Option<UnixListener>,
        allowed: peer::Allowed,
        cancel: CancellationToken,
    ) -> anyhow::Result<()> {
        let (tx, mut rx) = mpsc::channel::<Asked>(MAX_CONNECTIONS);
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                changed = self.config.changed() => {
                    if changed.is_err() {
                        return Ok(()); // the daemon is shutting down
                    }
                    self.new_config().await;
                }
                changed = self.agent_drains.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    self.agents_heard().await;
                }
                Some(asked) = rx.recv() => self.answer(asked).await,
                accepted = async { match &socket { Some(l) => l.accept().await, None => std::future::pending().await } } => {
                    let Ok((stream, _)) = accepted else { continue };
                    let Ok(permit) = slots.clone().acquire_owned().await else { continue };
                    let (tx, allowed, cancel) = (tx.clone(), allowed.clone(), cancel.clone());
                    tokio::spawn(async move {
                        serve(stream, &allowed, tx, cancel).await;
                        drop(permit);
                    });
                }
            }
        }
    }

    /// An agent said it drained its server, or that it is ready again: kept, then
    /// marked. Not kept (the file cannot be written) it is marked all the same: the
    /// agent keeps its drain, and says so again to a restarted director.
    async fn agents_heard(&mut self) {
        let heard = self.agent_drains.borrow_and_update().clone();
        let changes = poll::changes(&self.overrides.agents, &heard);
        if changes.is_empty() {
            return;
        }
        for (agent, drain) in changes {
            match &drain {
                Some(d) => {
                    info!(target: "lvsdr::audit", %agent, reason = %d.reason, "the real server drained itself (lvsdr-agent drain): weight 0 in every service on that host")
                }
                None => {
                    info!(target: "lvsdr::audit", %agent, "the real server is ready (lvsdr-agent ready): its drain is lifted")
                }
            }
            self.overrides.set_agent(agent, drain);
        }
        if let Err(e) = self.save().await {
            warn!("{e}");
        }
        let config = self.config.borrow().clone();
        self.desired
            .send_replace(effective(&config, &self.overrides));
    }

    async fn new_config(&mut self) {
        let config = self.config.borrow_and_update().clone();
        let agents = self.overrides.agents.len();
        let gone = self.overrides.prune(&config);
        for o in &gone {
            info!(target: "lvsdr::audit", server = %o.server, service = o.service.as_deref().unwrap_or("*"), state = %o.state, "operator override dropped: its real server left the config");
        }
        if !gone.is_empty() || agents != self.overrides.agents.len() {
            if let Err(e) = self.save().await {
                warn!("{e}");
            }
        }
        self.desired
            .send_replace(effective(&config, &self.overrides));
    }

    async fn answer(&mut self, asked: Asked) {
        let Asked {
            request,
            uid,
            reply,
        } = asked;
        let op = request.op();
        let before = self.overrides.clone();
        let config = self.config.borrow().clone();
        let observed = self.state.borrow().observed.clone();
        let caller = Caller {
            uid,
            now: crate::status::epoch(std::time::SystemTime::now()) as u64,
        };
        let (mut response, changed) = handle(
            request.clone(),
            &mut self.overrides,
            &config,
            &observed,
            caller,
        );
        if changed {
            match self.save().await {
                Ok(()) => {
                    self.desired
                        .send_replace(effective(&config, &self.overrides));
                }
                Err(e) => {
                    // Not kept, not done: an acknowledged override must survive a restart.
                    self.overrides = before;
                    response = Response::error(format!("not done: {e}"));
                }
            }
        }
        if op != "list" && op != "conns" {
            let request = serde_json::to_string(&request).unwrap_or_default();
            match &response.error {
                None => {
                    info!(target: "lvsdr::audit", uid, op, %request, result = response.message.as_deref().unwrap_or(""), "operator command")
                }
                Some(e) => {
                    warn!(target: "lvsdr::audit", uid, op, %request, error = %e, "operator command refused")
                }
            }
        }
        let _ = reply.send(response);
    }

    async fn save(&self) -> Result<(), file::FileError> {
        let (path, o) = (self.file.clone(), self.overrides.clone());
        match tokio::task::spawn_blocking(move || file::save(&path, &o)).await {
            Ok(r) => r,
            Err(e) => Err(file::FileError {
                path: self.file.clone(),
                why: e.to_string(),
            }),
        }
    }
}

/// Binds the control socket at `path` (see [`lvsdr_daemon::lines::bind`]). Who may use
/// it is decided by the peer's credentials, not the file's mode: a group member must be
/// able to connect to ask, so the file is open to all.
pub fn bind(path: &Path) -> Option<UnixListener> {
    lvsdr_daemon::lines::bind(path, Some(0o666))
}

pub use peer::Allowed;

/// One connection: its peer checked once, then a request per line, each answered by
/// the control task.
async fn serve(
    stream: UnixStream,
    allowed: &Allowed,
    tx: mpsc::Sender<Asked>,
    cancel: CancellationToken,
) {
    let peer = allowed.check(&stream);
    if let Err(why) = &peer {
        warn!(target: "lvsdr::audit", %why, "control socket: connection refused");
    }
    let ask = |request: Request, uid: u32| {
        let tx = tx.clone();
        async move {
            let (reply, answer) = oneshot::channel();
            let asked = Asked {
                request,
                uid,
                reply,
            };
            tx.send(asked).await.ok()?;
            answer.await.ok()
        }
    };
    let refuse = |why: String| Response::error(why);
    lvsdr_daemon::lines::serve(stream, peer, MAX_LINE, cancel, refuse, ask).await;
}

#[cfg(test)]
mod tests;
