//! The director's tasks and the channels between them, made in one place: [`start`]
//! builds every channel ([`Senders`] for the writers; the readers end in [`Sources`],
//! the status server's view of everything, or go to one task) and spawns each
//! component on its own child of the cancellation token.

use std::sync::Arc;

use anyhow::Context;
use lvsdr::model::Desired;
use lvsdr::reconcile::driver::{self, Inputs};
use lvsdr::reconcile::{Gate, Kernel, ReconcileState};
use lvsdr_checks::{Checker, Supervisor};
use lvsdr_daemon::tasks::Tasks;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::agents::poll::AgentDrains;
use crate::agents::AgentMap;
use crate::http::{self, Sources};
use crate::status::ReloadStatus;

/// What the running director keeps besides its tasks: what a reload writes to, and
/// what the watchdog reads.
pub struct Running {
    /// The config as loaded (a reload sends the new one; the control task marks the
    /// operators' overrides on it for everyone else).
    pub config: watch::Sender<Arc<Desired>>,
    /// Each reload's outcome.
    pub reload: watch::Sender<ReloadStatus>,
    /// The health checks (a reload sets the new ones).
    pub supervisor: Supervisor,
    /// The status endpoint's address (it changes only at a restart).
    pub listen: std::net::SocketAddr,
    /// Everything published, for the watchdog's liveness.
    pub sources: Sources,
}

/// The writing ends of the channels, each taken by the one task that writes it.
struct Senders {
    desired: watch::Sender<Arc<Desired>>,
    state: watch::Sender<ReconcileState>,
    gate: watch::Sender<Gate>,
    agents: watch::Sender<AgentMap>,
    drains: watch::Sender<AgentDrains>,
    history: watch::Sender<crate::status::history::History>,
    announce: watch::Sender<Vec<crate::announce::Verdict>>,
    held: watch::Sender<Vec<std::net::IpAddr>>,
    bird: watch::Sender<Option<crate::status::BirdStatus>>,
    counters: watch::Sender<lvsdr::reconcile::counters::Counters>,
    hooks: watch::Sender<Vec<crate::status::HookStatus>>,
}

/// Binds the endpoints and spawns every task into `tasks`; `kernel` goes to the
/// reconciler.
pub async fn start(
    desired: Desired,
    kernel: Kernel,
    tasks: &mut Tasks,
    cancel: &CancellationToken,
) -> anyhow::Result<Running> {
    let checker = Checker::new(cancel.child_token()).context("building the HTTP check client")?;
    let mut supervisor = Supervisor::new(checker, cancel.child_token());
    supervisor.set_checks(&desired.checks());
    let checks = supervisor
        .take_task()
        .context("the health check scheduler is not running")?;
    tasks.spawn("health check scheduler", checks);

    // The overrides are loaded first: a restarted director keeps a drain from its
    // first pass on.
    let overrides = crate::control::load(&desired.director.admin_file);
    let control_socket = crate::control::bind(&desired.director.control_socket);
    let allowed = crate::control::Allowed::new(desired.director.control_group.as_deref());
    let admin_file = desired.director.admin_file.clone();
    let listen = desired.director.status_listen;
    let gate = Gate::closed_for(&desired);
    let config = Arc::new(desired);
    let effective = crate::control::effective(&config, &overrides);
    let (config_tx, config_rx) = watch::channel(config);
    let (reload_tx, _) = watch::channel(ReloadStatus {
        generation: 1,
        at: lvsdr::clock::now(),
        ok: true,
        errors: Vec::new(),
    });
    let (tx, sources) = channels(effective, gate, &supervisor, &reload_tx);
    let drains_rx = tx.drains.subscribe();

    tasks.spawn_infallible(
        "agents' drain polls",
        crate::agents::poll::run(
            config_rx.clone(),
            sources.state.clone(),
            tx.drains,
            cancel.child_token(),
        ),
    );
    tasks.spawn_infallible(
        "agent pusher",
        crate::agents::run(
            sources.desired.clone(),
            sources.state.clone(),
            tx.gate,
            tx.agents,
            cancel.child_token(),
        ),
    );
    let inputs = Inputs {
        desired: sources.desired.clone(),
        health: supervisor.health(),
        gate: sources.gate.clone(),
        cancel: cancel.child_token(),
    };
    tasks.spawn_infallible("reconciler", driver::run(kernel, inputs, tx.state));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the status endpoint to {listen}"))?;
    info!(%listen, "status endpoint listening");
    let watched = crate::notify::Watched {
        desired: sources.desired.clone(),
        health: supervisor.health(),
        announce: sources.announce.clone(),
        reload: sources.reload.clone(),
    };
    let hooks = Arc::new(tx.hooks);
    tasks.spawn(
        "notify hooks",
        crate::notify::run(watched, hooks, cancel.child_token()),
    );
    let control = crate::control::Control {
        config: config_rx,
        state: sources.state.clone(),
        desired: tx.desired,
        overrides,
        file: admin_file,
        agent_drains: drains_rx,
    };
    tasks.spawn(
        "control socket",
        control.run(control_socket, allowed, cancel.child_token()),
    );
    tasks.spawn(
        "HTTP status server",
        http::serve(listener, sources.clone(), cancel.child_token()),
    );
    tasks.spawn(
        "VIP announcer",
        crate::announce::device::run(
            sources.desired.clone(),
            sources.state.clone(),
            tx.announce,
            tx.held,
            tx.bird,
            sources.started,
            cancel.child_token(),
        ),
    );
    let history = Arc::new(tx.history);
    tasks.spawn(
        "status history sampler",
        crate::status::sampler::run(sources.clone(), history, cancel.child_token()),
    );
    tasks.spawn(
        "traffic counter reader",
        crate::status::counters::run(sources.state.clone(), tx.counters, cancel.child_token()),
    );
    Ok(Running {
        config: config_tx,
        reload: reload_tx,
        supervisor,
        listen,
        sources,
    })
}

/// Every channel but the config's and the reloads' (the caller keeps those senders):
/// the writing ends, and the reading ends as the status server sees them.
fn channels(
    desired: Arc<Desired>,
    gate: Gate,
    supervisor: &Supervisor,
    reload: &watch::Sender<ReloadStatus>,
) -> (Senders, Sources) {
    let (desired_tx, desired) = watch::channel(desired);
    let (state_tx, state) = watch::channel(ReconcileState::default());
    let (gate_tx, gate) = watch::channel(gate);
    let (agents_tx, agents) = watch::channel(AgentMap::new());
    let (drains_tx, _) = watch::channel(AgentDrains::new());
    let (history_tx, history) = watch::channel(Default::default());
    let (announce_tx, announce) = watch::channel(Vec::new());
    let (held_tx, held) = watch::channel(Vec::new());
    let (bird_tx, bird) = watch::channel(None);
    let (counters_tx, counters) = watch::channel(Default::default());
    let (hooks_tx, notify) = watch::channel(Vec::new());
    let senders = Senders {
        desired: desired_tx,
        state: state_tx,
        gate: gate_tx,
        agents: agents_tx,
        drains: drains_tx,
        history: history_tx,
        announce: announce_tx,
        held: held_tx,
        bird: bird_tx,
        counters: counters_tx,
        hooks: hooks_tx,
    };
    let sources = Sources {
        desired,
        state,
        health: supervisor.health(),
        details: supervisor.details(),
        reload: reload.subscribe(),
        gate,
        agents,
        history,
        announce,
        held,
        bird,
        started: std::time::Instant::now(),
        counters,
        notify,
        checks: supervisor.tally(),
        renders: Arc::new(tokio::sync::Semaphore::new(1)),
    };
    (senders, sources)
}
