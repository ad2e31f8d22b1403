//! The one writer: the task that owns every kernel change.
//!
//! Triggers (start, a new config, a health flip, an agent confirmation, the resync
//! timer, a retry) only
//! request a pass; each pass dumps the kernel, plans, and applies. The reason for a
//! pass never changes what it computes. After a pass that changed something, another
//! pass follows at once to read back the result; failures are retried with backoff.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::backend::IpvsBackend;
use super::observed::Observed;
use super::op::Op;
use super::plan::{draining, plan, Drains, Gate};
use crate::health::HealthMap;
use crate::ipvs::ServiceKey;
use crate::model::{Desired, OnExit};

/// The first retry delay after a failure; it doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The longest retry delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often a pass runs while something drains (connection counts are polled).
pub const DRAIN_POLL: Duration = Duration::from_secs(1);

/// What the driver publishes after each pass.
#[derive(Debug, Clone, Default)]
pub struct ReconcileState {
    /// The kernel's table as the last pass read it.
    pub observed: Arc<Observed>,
    /// When that was.
    pub last_pass: Option<SystemTime>,
    /// How long the last pass took.
    pub last_pass_duration: Duration,
    /// Passes run.
    pub passes: u64,
    /// Ops applied successfully.
    pub ops_applied: u64,
    /// Ops the kernel refused, and failed dumps.
    pub failures: u64,
    /// The errors of the last pass (empty when it went through).
    pub errors: Vec<String>,
    /// Services left from an earlier config, draining before deletion.
    pub retired: Vec<ServiceKey>,
}

/// The driver's inputs.
pub struct Inputs {
    /// The config in force.
    pub desired: watch::Receiver<Arc<Desired>>,
    /// Check results (changes on flips only).
    pub health: watch::Receiver<HealthMap>,
    /// Agent confirmations (the readiness gate).
    pub gate: watch::Receiver<Gate>,
    /// Shutdown.
    pub cancel: CancellationToken,
}

type DrainId = (ServiceKey, Option<(IpAddr, u16)>);

struct Driver<B> {
    backend: B,
    inputs: Inputs,
    state: watch::Sender<ReconcileState>,
    managed: HashSet<ServiceKey>,
    retired: HashSet<ServiceKey>,
    since: HashMap<DrainId, Instant>,
    backoff: Option<Duration>,
    wake_at: Option<tokio::time::Instant>,
    verifying: bool,
}

fn keys(d: &Desired) -> HashSet<ServiceKey> {
    d.services.iter().map(|s| s.service.key.clone()).collect()
}

/// Runs until cancelled; then applies `on_exit` and returns.
pub async fn run<B: IpvsBackend>(backend: B, inputs: Inputs, state: watch::Sender<ReconcileState>) {
    let managed = keys(&inputs.desired.borrow());
    let mut d = Driver {
        backend,
        inputs,
        state,
        managed,
        retired: HashSet::new(),
        since: HashMap::new(),
        backoff: None,
        wake_at: None,
        verifying: false,
    };
    let mut period = d.inputs.desired.borrow().director.resync_interval;
    let mut resync = tokio::time::interval(period);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let wake = d.wake_at;
        tokio::select! {
            _ = d.inputs.cancel.cancelled() => break,
            changed = d.inputs.desired.changed() => {
                if changed.is_err() { break }
                d.new_config();
                let p = d.inputs.desired.borrow().director.resync_interval;
                if p != period {
                    period = p;
                    resync = tokio::time::interval_at(tokio::time::Instant::now() + p, p);
                }
            }
            changed = d.inputs.health.changed() => if changed.is_err() { break },
            changed = d.inputs.gate.changed() => if changed.is_err() { break },
            _ = resync.tick() => {}
            _ = async { if let Some(w) = wake { tokio::time::sleep_until(w).await } }, if wake.is_some() => {}
        }
        d.pass().await;
    }
    d.exit().await;
}

impl<B: IpvsBackend> Driver<B> {
    fn new_config(&mut self) {
        let now = keys(&self.inputs.desired.borrow_and_update());
        for gone in self.managed.difference(&now) {
            info!(service = %gone, "service left the config: draining it");
            self.retired.insert(gone.clone());
        }
        self.retired.retain(|k| !now.contains(k));
        self.managed = now;
    }

    async fn pass(&mut self) {
        let t0 = Instant::now();
        let desired = self.inputs.desired.borrow().clone();
        let health = self.inputs.health.borrow_and_update().clone();
        let gate = self.inputs.gate.borrow_and_update().clone();
        self.wake_at = None;
        let table = match self.backend.table().await {
            Ok(t) => t,
            Err(e) => {
                warn!(error = %e, "reading the IPVS table failed");
                self.retry_later();
                let err = e.to_string();
                self.state.send_modify(|s| {
                    s.passes += 1;
                    s.failures += 1;
                    s.errors = vec![err];
                });
                return;
            }
        };
        let observed = Observed::from(&table);
        let now = Instant::now();
        self.retired.retain(|k| observed.services.contains_key(k));
        let mut drains = Drains {
            retired: self.retired.clone(),
            since: HashMap::new(),
            now: Some(now),
        };
        let ids: HashSet<DrainId> = draining(&desired, &observed, &drains).into_iter().collect();
        self.since.retain(|id, _| ids.contains(id));
        for id in ids {
            self.since.entry(id).or_insert(now);
        }
        drains.since = self.since.clone();
        let ops = plan(&desired, &observed, &health, &gate, &drains);
        let (applied, errors) = self.apply(&ops).await;
        if !errors.is_empty() {
            self.retry_later();
        } else if !ops.is_empty() {
            if self.verifying {
                // The last pass applied everything, yet the kernel still differs.
                warn!(
                    ops = ops.len(),
                    "the table did not converge; retrying with backoff"
                );
                self.retry_later();
            } else {
                self.backoff = None;
                self.wake_at = Some(tokio::time::Instant::now());
            }
        } else {
            self.backoff = None;
        }
        self.verifying = !ops.is_empty() && errors.is_empty();
        if self.wake_at.is_none() && !self.since.is_empty() {
            self.wake_at = Some(tokio::time::Instant::now() + DRAIN_POLL);
        }
        let retired: Vec<ServiceKey> = self.retired.iter().cloned().collect();
        let failures = errors.len() as u64;
        self.state.send_modify(|s| {
            s.observed = Arc::new(observed);
            s.last_pass = Some(SystemTime::now());
            s.last_pass_duration = t0.elapsed();
            s.passes += 1;
            s.ops_applied += applied;
            s.failures += failures;
            s.errors = errors;
            s.retired = retired;
        });
    }

    async fn apply(&self, ops: &[Op]) -> (u64, Vec<String>) {
        if ops.is_empty() {
            return (0, Vec::new());
        }
        let mut applied = 0;
        let mut errors = Vec::new();
        for (op, r) in ops.iter().zip(self.backend.apply(ops).await) {
            match r {
                Ok(()) => {
                    applied += 1;
                    info!(%op, "applied");
                }
                Err(e) => {
                    warn!(%op, error = %e, "kernel refused");
                    errors.push(e.to_string());
                }
            }
        }
        (applied, errors)
    }

    fn retry_later(&mut self) {
        let next = self
            .backoff
            .map_or(FIRST_BACKOFF, |b| (b * 2).min(MAX_BACKOFF));
        self.backoff = Some(next);
        self.wake_at = Some(tokio::time::Instant::now() + next);
    }

    async fn exit(&mut self) {
        let desired = self.inputs.desired.borrow().clone();
        if desired.director.on_exit != OnExit::Flush {
            info!("shutting down; the IPVS table stays as it is (on_exit = keep)");
            return;
        }
        let Ok(table) = self.backend.table().await else {
            warn!("shutting down: cannot read the table to flush the managed services");
            return;
        };
        let observed = Observed::from(&table);
        let ops: Vec<Op> = self
            .managed
            .iter()
            .chain(&self.retired)
            .filter(|k| observed.services.contains_key(*k))
            .map(|k| Op::DelService(k.clone()))
            .collect();
        let (n, errors) = self.apply(&ops).await;
        info!(
            deleted = n,
            failed = errors.len(),
            "shutting down: managed services flushed (on_exit = flush)"
        );
    }
}
