//! Runs one task per distinct check and publishes what they find: health flips on one
//! channel (the reconciler wakes on it), per-check details (last time, latency, error)
//! on another (status reads it; it changes on every check).

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::check::{Checker, Prepared};
use super::failure::CheckFailure;
use super::spec::CheckSpec;
use super::state::{Health, HealthMap, RiseFall};

/// The latest result of one check.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckDetail {
    /// Its health now.
    pub health: Health,
    /// When it last ran.
    pub last_check: Option<SystemTime>,
    /// How long that took.
    pub latency: Option<Duration>,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// When its health last changed (or the check started).
    pub since: Option<SystemTime>,
    /// How many times its health changed.
    pub transitions: u32,
}

/// Details of every running check.
pub type DetailMap = HashMap<Arc<CheckSpec>, CheckDetail>;

/// Owns the check tasks.
pub struct Supervisor {
    checker: Checker,
    cancel: CancellationToken,
    tasks: HashMap<Arc<CheckSpec>, CancellationToken>,
    health: watch::Sender<HealthMap>,
    details: watch::Sender<DetailMap>,
}

impl Supervisor {
    /// A supervisor with no checks; `cancel` stops every task it starts.
    pub fn new(checker: Checker, cancel: CancellationToken) -> Supervisor {
        Supervisor {
            checker,
            cancel,
            tasks: HashMap::new(),
            health: watch::channel(HealthMap::new()).0,
            details: watch::channel(DetailMap::new()).0,
        }
    }

    /// Health flips.
    pub fn health(&self) -> watch::Receiver<HealthMap> {
        self.health.subscribe()
    }

    /// Per-check details.
    pub fn details(&self) -> watch::Receiver<DetailMap> {
        self.details.subscribe()
    }

    /// How many checks run.
    pub fn running(&self) -> usize {
        self.tasks.len()
    }

    /// Runs exactly these checks: starts new ones, stops the others. A check that
    /// stays keeps its state.
    pub fn set_checks(&mut self, specs: &[Arc<CheckSpec>]) {
        let wanted: HashSet<&Arc<CheckSpec>> = specs.iter().collect();
        self.tasks.retain(|spec, token| {
            let keep = wanted.contains(spec);
            if !keep {
                token.cancel();
            }
            keep
        });
        self.health.send_if_modified(|m| keep_only(m, &wanted));
        self.details.send_if_modified(|m| keep_only(m, &wanted));
        for spec in specs {
            if self.tasks.contains_key(spec) {
                continue;
            }
            let token = self.cancel.child_token();
            self.tasks.insert(spec.clone(), token.clone());
            let prepared = match Prepared::new(spec.clone()) {
                Ok(p) => p,
                Err(e) => {
                    warn!(check = %spec.label(), error = %e, "cannot prepare check");
                    continue;
                }
            };
            tokio::spawn(run_check(
                self.checker.clone(),
                prepared,
                token,
                self.health.clone(),
                self.details.clone(),
            ));
        }
    }
}

/// Drops the entries of checks no longer run; true if any went.
fn keep_only<V>(m: &mut HashMap<Arc<CheckSpec>, V>, wanted: &HashSet<&Arc<CheckSpec>>) -> bool {
    let before = m.len();
    m.retain(|k, _| wanted.contains(k));
    before != m.len()
}

/// Spreads check start times over the interval, the same way for the same check.
fn jitter(spec: &CheckSpec) -> Duration {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    spec.hash(&mut h);
    let interval = spec.interval.as_millis().max(1) as u64;
    Duration::from_millis(h.finish() % interval)
}

async fn run_check(
    checker: Checker,
    p: Prepared,
    cancel: CancellationToken,
    health: watch::Sender<HealthMap>,
    details: watch::Sender<DetailMap>,
) {
    // One wait on the token for the task's life, not one per check.
    tokio::select! {
        _ = cancel.cancelled() => {}
        _ = check_loop(checker, p, health, details) => {}
    }
}

async fn check_loop(
    checker: Checker,
    p: Prepared,
    health: watch::Sender<HealthMap>,
    details: watch::Sender<DetailMap>,
) {
    let spec = p.spec.clone();
    let label = spec.label();
    let start = tokio::time::Instant::now() + jitter(&spec);
    let mut tick = tokio::time::interval_at(start, spec.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rf = RiseFall::new(spec.rise, spec.fall);
    let mut since = SystemTime::now();
    let mut transitions = 0u32;
    loop {
        tick.tick().await;
        let t0 = Instant::now();
        let result = checker.run(&p).await;
        let latency = t0.elapsed();
        // A local failure says nothing about the server: unknown, which keeps the
        // weight the kernel has; only the server's own answers count for rise/fall.
        let flipped = match &result {
            Err(CheckFailure::Local(_)) => rf.unknown(),
            r => rf.record(r.is_ok()),
        };
        let now = SystemTime::now();
        if flipped.is_some() {
            since = now;
            transitions = transitions.saturating_add(1);
        }
        let detail = CheckDetail {
            health: rf.state(),
            last_check: Some(now),
            latency: Some(latency),
            error: result.err().map(|e| e.to_string()),
            since: Some(since),
            transitions,
        };
        if let Some(state) = flipped {
            match &detail.error {
                Some(e) => warn!(check = %label, ?state, error = %e, "health changed"),
                None => info!(check = %label, ?state, "health changed"),
            }
            health.send_modify(|m| {
                m.insert(spec.clone(), state);
            });
        }
        details.send_modify(|m| {
            m.insert(spec.clone(), detail);
        });
    }
}
