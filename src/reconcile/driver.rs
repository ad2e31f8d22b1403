//! The one writer: the task that owns every kernel change.
//!
//! [`Reconciler::pass`] reads the kernel, plans and applies, over a [`Scope`]: the
//! services whose inputs (config, check results, agent confirmations) changed since the
//! last pass, or the whole table on the resync timer and on every retry. How a pass
//! reads the kernel:
//! - the whole table, the first time, after a failure, and every
//!   `full_resync_interval`: one netlink dump per service;
//! - the whole table otherwise: one read of `/proc/net/ip_vs`, then netlink reads of
//!   only the services whose listing changed or is missing (see [`super::cache`]);
//! - a scope of a few services: netlink reads of those;
//! - a whole-table pass that reads the same listing as the last one that found
//!   nothing to do, with the same inputs, stops after the read (see [`super::quiet`]).
//!
//! [`run`] is the loop around it: triggers (a new config, a health flip, an agent
//! confirmation, the resync timer, a retry) only request a pass. After a pass that
//! changed something, another pass reads the touched services back at once (through
//! the proc file if the pass covered the whole table); failures are retried with
//! backoff.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::backend::IpvsBackend;
use super::cache::TableCache;
use super::error::PassError;
use super::managed::Record;
use super::observed::Observed;
use super::op::Op;
use super::plan::{draining, plan, Drains, Gate};
use super::quiet::Quiet;
use super::refusal::{classify, Refusal};
use super::retry::{Next, Outcome, ReadBack, Retry, Why};
pub use super::retry::{FIRST_BACKOFF, MAX_BACKOFF};
use super::scope::{self, config_change, gate_change, health_change, Scope};
use super::stall::unless_stalled;
pub use super::state::{ReadKind, ReconcileState, PASS_DEADLINE};
use crate::health::HealthMap;
use crate::ipvs::proc::{self, Block};
use crate::ipvs::{IpvsError, ServiceKey};
use crate::model::{AdminState, Desired, OnExit};

/// How often draining services are read again (connection counts are polled).
pub const DRAIN_POLL: Duration = Duration::from_secs(1);

/// A periodic resync waits at least this many times as long as the last whole pass
/// took, once such a pass takes [`SPACED_FROM`] or more: at 100,000 services the
/// kernel's listing alone takes 29 s under emulation (its walk is quadratic), and a
/// 30 s `resync_interval` would keep the writer reading. Shorter passes keep the
/// operator's interval, however short.
pub const RESYNC_SHARE: u32 = 10;
/// How long a whole pass must take before resyncs are spaced out (see
/// [`RESYNC_SHARE`]).
pub const SPACED_FROM: Duration = Duration::from_secs(5);

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

/// The outcome of one pass.
#[derive(Debug, Default)]
pub struct PassReport {
    /// How the kernel was read.
    pub read: ReadKind,
    /// Reading failed (nothing was planned).
    pub read_error: Option<PassError>,
    /// The ops planned.
    pub ops: Vec<Op>,
    /// Those the kernel accepted.
    pub applied: u64,
    /// The transient refusals (retried with backoff).
    pub errors: Vec<PassError>,
    /// Ops held back (refused permanently, now or before), with the refusal.
    pub held: Vec<String>,
    /// Services whose op was refused as already done (EEXIST on an add, ENOENT on a
    /// delete): read again at once.
    pub converged: HashSet<ServiceKey>,
    /// How long the pass took.
    pub took: Duration,
    /// Whether it covered the whole table.
    pub whole: bool,
}

/// What applying a plan came to.
#[derive(Debug, Default)]
struct Applied {
    applied: u64,
    /// Transient refusals.
    errors: Vec<PassError>,
    /// The services of those transient refusals.
    failed: HashSet<ServiceKey>,
    /// Services to read again (converged refusals).
    converged: HashSet<ServiceKey>,
    /// Permanent refusals.
    refused_for_good: Vec<(Op, String)>,
}

/// The state a pass carries to the next: the cached table, what is draining since
/// when, and the inputs the last pass saw.
pub struct Reconciler<B> {
    backend: B,
    cache: Option<TableCache>,
    last_full: Option<(Instant, SystemTime)>,
    full_due: bool,
    dirty: HashSet<ServiceKey>,
    managed: HashSet<ServiceKey>,
    retired: HashSet<ServiceKey>,
    since: HashMap<DrainId, Instant>,
    /// Servers coming back into service with `slow_start`.
    ramps: super::ramp::Ramps,
    last: Option<(Arc<Desired>, HealthMap, Gate)>,
    /// The sync daemons as the last whole pass found (or left) them.
    daemons: Vec<crate::ipvs::Daemon>,
    /// Ops refused permanently (by their text), with their service and the refusal.
    held: HashMap<String, (ServiceKey, String)>,
    /// Services whose op was refused (transiently) at the last pass covering them.
    failed: HashSet<ServiceKey>,
    /// The kernel's IPVS modules (schedulers, persistence engines) at the last full
    /// read: held ops are tried again when they change.
    modules: Option<Vec<String>>,
    /// Where what is managed is recorded across restarts.
    record: Option<Record>,
    /// The listing the last whole pass found nothing to do with (see [`super::quiet`]).
    quiet: Quiet,
    /// This pass's listing and its blocks, for [`Reconciler::keep_quiet`].
    listed: Option<(String, Vec<Block>)>,
}

fn keys(d: &Desired) -> HashSet<ServiceKey> {
    d.services.iter().map(|s| s.service.key.clone()).collect()
}

impl<B: IpvsBackend> Reconciler<B> {
    /// A reconciler that knows nothing of the kernel yet; `desired` is the config in
    /// force at start (what it manages).
    pub fn new(backend: B, desired: &Desired) -> Reconciler<B> {
        Reconciler {
            backend,
            cache: None,
            last_full: None,
            full_due: true,
            dirty: HashSet::new(),
            managed: keys(desired),
            retired: HashSet::new(),
            since: HashMap::new(),
            ramps: super::ramp::Ramps::default(),
            last: None,
            daemons: Vec::new(),
            held: HashMap::new(),
            failed: HashSet::new(),
            modules: None,
            record: None,
            quiet: Quiet::default(),
            listed: None,
        }
    }

    /// Records what it manages in `path` (`[director] state_file`). Services recorded
    /// there but no longer in the config (dropped while the director was down) are
    /// retired: drained and removed like services a reload dropped.
    pub fn with_record(mut self, path: &std::path::Path) -> Reconciler<B> {
        match Record::load(path) {
            Ok((record, recorded)) => {
                for k in recorded.into_iter().filter(|k| !self.managed.contains(k)) {
                    info!(service = %k, "recorded as managed but not in the config: draining it");
                    self.retired.insert(k);
                }
                self.record = Some(record);
            }
            Err(e) => {
                // Rewritten with what is managed now; what it held is lost either way.
                error!(error = %e, "cannot read the record of managed services; services dropped while the director was down stay unmanaged");
                self.record = Some(Record::new(path));
            }
        }
        self
    }

    async fn save_record(&mut self) {
        let keys = self.managed.union(&self.retired).cloned().collect();
        if let Some(r) = &mut self.record {
            if let Err(e) = r.save(keys).await {
                warn!(error = %e, "cannot record the managed services");
            }
        }
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The table as last read.
    pub fn observed(&self) -> Option<&Observed> {
        self.cache.as_ref().map(|c| &c.observed)
    }

    /// The services that cannot serve as configured: a refused op at the last pass
    /// covering them, or an op held back.
    pub fn failing(&self) -> Vec<ServiceKey> {
        let mut v: Vec<ServiceKey> = self
            .failed
            .iter()
            .chain(self.held.values().map(|(k, _)| k))
            .cloned()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        v.sort();
        v
    }

    /// Makes every drain and slow start seem to have begun `by` earlier (tests: a pass
    /// later in time).
    #[cfg(test)]
    pub fn age_drains(&mut self, by: Duration) {
        for since in self.since.values_mut() {
            *since = since.checked_sub(by).unwrap_or(*since);
        }
        for (since, _) in self.ramps.since.values_mut() {
            *since = since.checked_sub(by).unwrap_or(*since);
        }
    }

    /// Services draining now (a pass over them should follow soon): those the config
    /// left, and those where an operator drained a server that still has connections
    /// (`ctl drain --wait` follows their counts).
    pub fn draining(&self) -> HashSet<ServiceKey> {
        let mut out: HashSet<ServiceKey> = self.since.keys().map(|(k, _)| k.clone()).collect();
        let (Some((desired, _, _)), Some(cache)) = (&self.last, &self.cache) else {
            return out;
        };
        for svc in &desired.services {
            let Some(obs) = cache.observed.services.get(&svc.service.key) else {
                continue;
            };
            let busy = svc.real_servers.iter().any(|rs| {
                let drained = matches!(
                    rs.admin.as_ref().map(|a| a.state),
                    Some(AdminState::Drain | AdminState::Weight(0))
                );
                drained
                    && obs
                        .dests
                        .get(&(rs.dest.addr, rs.dest.port))
                        .is_some_and(|d| d.active_conns > 0)
            });
            if busy {
                out.insert(svc.service.key.clone());
            }
        }
        out
    }

    /// Services the last pass changed (to be read back).
    pub fn touched(&self) -> HashSet<ServiceKey> {
        self.dirty.clone()
    }

    /// Takes in a new config; returns the services whose held ops it releases (a new
    /// config may mend what the kernel refused), for the pass to cover.
    /// `same_services`: the same services as the last config (no set to rebuild).
    fn new_config(&mut self, desired: &Desired, same_services: bool) -> HashSet<ServiceKey> {
        let released = self.held.drain().map(|(_, (k, _))| k).collect();
        if same_services {
            return released;
        }
        let now = keys(desired);
        for gone in self.managed.difference(&now) {
            info!(service = %gone, "service left the config: draining it");
            self.retired.insert(gone.clone());
        }
        self.retired.retain(|k| !now.contains(k));
        self.managed = now;
        released
    }

    /// One pass over `trigger` widened by whatever changed in the inputs since the
    /// last pass.
    pub async fn pass(
        &mut self,
        desired: &Arc<Desired>,
        health: &HealthMap,
        gate: &Gate,
        trigger: Scope,
    ) -> PassReport {
        let t0 = Instant::now();
        let (scope, moved) = self.scope_of(desired, health, gate, trigger);
        if scope.is_empty() && self.dirty.is_empty() {
            self.last = Some((desired.clone(), health.clone(), gate.clone()));
            return PassReport {
                took: t0.elapsed(),
                ..PassReport::default()
            };
        }
        let mut listing = None;
        if scope == Scope::All && !moved && self.may_stay_quiet() {
            match self.backend.listing().await {
                Ok(text) if self.quiet.same(&text) => return self.quiet_pass(desired, t0).await,
                other => listing = Some(other),
            }
        }
        self.quiet.forget();
        let read = match self.read(&scope, listing).await {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "reading the IPVS table failed");
                self.full_due = true;
                return PassReport {
                    read_error: Some(PassError::Read(e)),
                    took: t0.elapsed(),
                    ..PassReport::default()
                };
            }
        };
        self.last = Some((desired.clone(), health.clone(), gate.clone()));
        let Some(cache) = &self.cache else {
            return PassReport::default(); // read() always leaves a cache
        };
        let observed = &cache.observed;
        let now = Instant::now();
        self.retired
            .retain(|k| !scope.covers(k) || observed.services.contains_key(k));
        let scoped;
        let desired: &Desired = match &scope {
            Scope::All => desired,
            Scope::Services(_) => {
                scoped = scope.restrict(desired);
                &scoped
            }
        };
        let mut drains = Drains {
            retired: self
                .retired
                .iter()
                .filter(|k| scope.covers(k))
                .cloned()
                .collect(),
            since: HashMap::new(),
            now: Some(now),
            ramps: HashMap::new(),
        };
        let ids: HashSet<DrainId> = draining(desired, observed, &drains).into_iter().collect();
        self.since
            .retain(|id, _| !scope.covers(&id.0) || ids.contains(id));
        for id in ids {
            self.since.entry(id).or_insert(now);
        }
        drains.since = self.since.clone();
        self.ramps
            .track(desired, observed, health, gate, now, scope == Scope::All);
        drains.ramps = self.ramps.since.clone();
        let planned = plan(desired, observed, health, gate, &drains);
        let (ops, mut held) = self.without_held(planned);
        let outcome = self.apply(&ops).await;
        // A scoped pass says nothing of the services it did not cover: their failure
        // stands until a pass covers them (else the VIPs would flap).
        self.failed.retain(|k| !scope.covers(k));
        self.failed.extend(outcome.failed.iter().cloned());
        self.dirty = ops.iter().map(|op| op.service().clone()).collect();
        if !outcome.errors.is_empty() {
            self.full_due = true;
        }
        for (op, e) in &outcome.refused_for_good {
            self.held
                .insert(op.to_string(), (op.service().clone(), e.clone()));
        }
        held.extend(outcome.refused_for_good.into_iter().map(|(op, _)| op));
        self.save_record().await;
        let mut errors = outcome.errors;
        if scope == Scope::All {
            if let Err(e) = self.sync_daemons(desired).await {
                errors.push(e);
            }
        }
        let listed = self.listed.take();
        if scope == Scope::All && ops.is_empty() && held.is_empty() && errors.is_empty() {
            self.keep_quiet(listed);
        }
        PassReport {
            read,
            read_error: None,
            ops,
            applied: outcome.applied,
            errors,
            held: self.held_words(&held),
            converged: outcome.converged,
            took: t0.elapsed(),
            whole: scope == Scope::All,
        }
    }

    /// What a pass covers: `trigger`, and what changed since the last pass (the
    /// config, health, the gate); everything the first time. And whether any input
    /// moved (a reload, however alike, counts).
    fn scope_of(
        &mut self,
        desired: &Arc<Desired>,
        health: &HealthMap,
        gate: &Gate,
        trigger: Scope,
    ) -> (Scope, bool) {
        let Some((d0, h0, g0)) = &self.last else {
            // What is managed follows this config from here on (a later config with
            // the same services then needs no new set).
            self.new_config(desired, false);
            return (Scope::All, true);
        };
        let mut changed = Scope::none();
        let reloaded = !Arc::ptr_eq(d0, desired);
        let same_services = !reloaded || scope::same_keys(d0, desired);
        if reloaded {
            changed.merge(config_change(d0, desired));
        }
        changed.merge(health_change(desired, h0, health));
        changed.merge(gate_change(desired, g0, gate));
        if reloaded {
            let released = self.new_config(desired, same_services);
            if !released.is_empty() {
                changed.merge(Scope::Services(released));
            }
        }
        let moved = reloaded || !changed.is_empty();
        let mut scope = trigger;
        scope.merge(changed);
        (scope, moved)
    }

    /// Nothing in the plan moves with the clock or waits: no drain, no slow start,
    /// no retired service, no failed or held op.
    fn timeless(&self) -> bool {
        self.since.is_empty()
            && self.ramps.since.is_empty()
            && self.retired.is_empty()
            && self.failed.is_empty()
            && self.held.is_empty()
    }

    /// Whether a whole pass with unmoved inputs may stop after reading the listing:
    /// one is kept, and nothing since calls for more than the listing.
    fn may_stay_quiet(&self) -> bool {
        self.quiet.armed()
            && !self.full_due
            && self.cache.is_some()
            && self.dirty.is_empty()
            && self.timeless()
    }

    /// After a whole pass that planned nothing: keeps its listing for the next when
    /// the clock plays no part and every block vouches for the cache (a service its
    /// blocks would have read again, every time, rules it out).
    fn keep_quiet(&mut self, listed: Option<(String, Vec<Block>)>) {
        let Some((text, blocks)) = listed else {
            return;
        };
        let vouched = self
            .cache
            .as_ref()
            .is_some_and(|c| c.stale(&blocks, &HashSet::new()).is_empty());
        // Nothing is dirty: the pass applied no op.
        if vouched && self.timeless() {
            self.quiet.keep(text);
        }
    }

    /// A whole pass that read the kept listing (see [`super::quiet`]): nothing to
    /// plan; the sync daemons are still seen to, as on every whole pass.
    async fn quiet_pass(&mut self, desired: &Desired, t0: Instant) -> PassReport {
        let mut errors = Vec::new();
        if let Err(e) = self.sync_daemons(desired).await {
            errors.push(e);
        }
        PassReport {
            read: ReadKind::Unchanged,
            errors,
            took: t0.elapsed(),
            whole: true,
            ..PassReport::default()
        }
    }

    /// The planned ops split into those to apply and those held back (refused for
    /// good before). A service whose add is held does not exist: its destinations'
    /// ops are held with it (they would only meet ESRCH, and be retried as transient).
    fn without_held(&self, planned: Vec<Op>) -> (Vec<Op>, Vec<Op>) {
        let unborn: HashSet<ServiceKey> = planned
            .iter()
            .filter(|op| matches!(op, Op::AddService(_)) && self.held.contains_key(&op.to_string()))
            .map(|op| op.service().clone())
            .collect();
        planned.into_iter().partition(|op| {
            !self.held.contains_key(&op.to_string()) && !unborn.contains(op.service())
        })
    }

    /// Each held op with the kernel's refusal, in words.
    fn held_words(&self, held: &[Op]) -> Vec<String> {
        held.iter()
            .map(|op| {
                let why = self
                    .held
                    .get(&op.to_string())
                    .map(|h| h.1.clone())
                    .unwrap_or_default();
                format!("held back until the config or the kernel changes: {why}")
            })
            .collect()
    }

    /// Brings the sync daemons to what `[sync]` wants (see [`super::sync`]); on whole
    /// passes only: one request when nothing differs.
    async fn sync_daemons(&mut self, desired: &Desired) -> Result<(), PassError> {
        let Some(want) = &desired.sync else {
            self.daemons.clear();
            return Ok(());
        };
        let have = self.backend.daemons().await.map_err(PassError::SyncRead)?;
        let ops = super::sync::plan(Some(want), &have);
        for op in &ops {
            self.backend
                .sync_op(op)
                .await
                .map_err(|source| PassError::Sync {
                    op: op.to_string(),
                    source,
                })?;
            info!(%op, "sync daemon");
        }
        self.daemons = if ops.is_empty() {
            have
        } else {
            self.backend.daemons().await.unwrap_or(have)
        };
        Ok(())
    }

    /// The sync daemons as last seen.
    pub fn daemons(&self) -> &[crate::ipvs::Daemon] {
        &self.daemons
    }

    /// Reads the kernel for `scope`; `listing`: the proc listing, if this pass has
    /// read it already.
    async fn read(
        &mut self,
        scope: &Scope,
        listing: Option<Result<String, IpvsError>>,
    ) -> Result<ReadKind, IpvsError> {
        let dirty = std::mem::take(&mut self.dirty);
        let result = self.read_inner(scope, &dirty, listing).await;
        if result.is_err() {
            self.dirty = dirty;
        }
        result
    }

    async fn read_inner(
        &mut self,
        scope: &Scope,
        dirty: &HashSet<ServiceKey>,
        listing: Option<Result<String, IpvsError>>,
    ) -> Result<ReadKind, IpvsError> {
        match (scope, &mut self.cache) {
            (Scope::Services(keys), Some(cache)) => {
                let keys: Vec<ServiceKey> = keys.union(dirty).cloned().collect();
                let reads = self.backend.services(&keys).await?;
                cache.patch(reads);
                Ok(ReadKind::Services { read: keys.len() })
            }
            (Scope::All, Some(cache)) if !self.full_due => {
                // The proc file only says what to re-read; when it cannot be read,
                // everything is read over netlink instead (it never fails a pass).
                let text = match listing {
                    Some(text) => text,
                    None => self.backend.listing().await,
                };
                match parsed(text) {
                    Ok((text, blocks)) => {
                        let stale = cache.stale(&blocks, dirty);
                        let reads = self.backend.services(&stale).await?;
                        cache.update(&blocks, reads);
                        self.listed = Some((text, blocks));
                        return Ok(ReadKind::Proc {
                            reread: stale.len(),
                        });
                    }
                    Err(e) => proc_failed(&e),
                }
                self.full_read(Vec::new()).await
            }
            _ => {
                // The proc read comes first: its fingerprints must not be newer
                // than the table they vouch for.
                let blocks = match parsed(self.backend.listing().await) {
                    Ok((_, blocks)) => blocks,
                    Err(e) => {
                        proc_failed(&e);
                        Vec::new()
                    }
                };
                self.full_read(blocks).await
            }
        }
    }

    /// Reads the whole table over netlink; `blocks` are the proc file's fingerprints
    /// taken just before (none if it could not be read: then the next proc-based pass
    /// finds every service unvouched for and reads it over netlink).
    async fn full_read(&mut self, blocks: Vec<Block>) -> Result<ReadKind, IpvsError> {
        let table = self.backend.table().await?;
        let services = table.len();
        // The kernel may have changed (a scheduler module loaded): try again. Only
        // then: clearing at every full read retried every held op, and withdrew and
        // announced its VIPs again, every few minutes.
        let modules = ipvs_modules();
        if self.modules.as_ref() != Some(&modules) {
            if self.modules.is_some() && !self.held.is_empty() {
                info!(
                    ?modules,
                    "the kernel's IPVS modules changed: trying held ops again"
                );
            }
            self.held.clear();
            self.modules = Some(modules);
        }
        self.cache = Some(TableCache::full(table, &blocks));
        self.last_full = Some((Instant::now(), SystemTime::now()));
        self.full_due = false;
        Ok(ReadKind::Full { services })
    }

    /// After a pass was abandoned mid-way (its deadline passed): what it had taken
    /// out of the reconciler's memory is lost, so the next pass reads everything.
    pub fn abandoned(&mut self) {
        self.full_due = true;
        self.quiet.forget();
        self.last = None;
    }

    /// Marks the next whole-table pass as a full read if `every` has passed since the
    /// last one.
    pub fn full_read_if_older(&mut self, every: Duration) {
        if self.last_full.is_none_or(|(t, _)| t.elapsed() >= every) {
            self.full_due = true;
        }
    }

    async fn apply(&self, ops: &[Op]) -> Applied {
        let mut out = Applied::default();
        if ops.is_empty() {
            return out;
        }
        // Services whose add the kernel refused for good in this batch: the refusal
        // of their later ops follows from it (ESRCH) and is held with it.
        let mut unborn: HashSet<ServiceKey> = HashSet::new();
        for (op, r) in ops.iter().zip(self.backend.apply(ops).await) {
            let e = match r {
                Ok(()) => {
                    out.applied += 1;
                    debug!(%op, "applied");
                    continue;
                }
                Err(e) => e,
            };
            if unborn.contains(op.service()) {
                debug!(%op, error = %e, "its service's add was refused: held with it");
                out.refused_for_good
                    .push((op.clone(), format!("its service could not be added ({e})")));
                continue;
            }
            match classify(op, &e) {
                Refusal::Converged => {
                    info!(%op, error = %e, "already so in the kernel (another writer?); reading the service again");
                    out.converged.insert(op.service().clone());
                }
                Refusal::Permanent => {
                    if matches!(op, Op::AddService(_)) {
                        unborn.insert(op.service().clone());
                    }
                    error!(%op, error = %e, "refused for good: held back until the config or the kernel changes");
                    out.refused_for_good.push((op.clone(), e.to_string()));
                }
                Refusal::Transient => {
                    warn!(%op, error = %e, "kernel refused; retrying with backoff");
                    out.failed.insert(op.service().clone());
                    out.errors.push(PassError::Refused(e));
                }
            }
        }
        if out.applied > 0 {
            info!(
                applied = out.applied,
                refused = ops.len() as u64 - out.applied,
                ops = %shown(ops),
                "ops applied"
            );
        }
        out
    }

    /// With `on_exit = "flush"`, deletes every managed and retired service; with
    /// `[announce]`, only after `withdraw_grace`: the announcer withdraws the VIPs at
    /// shutdown, and the routers need that long to move the traffic elsewhere (a flush
    /// at the moment of withdrawal cut the flows still arriving).
    pub async fn exit(&mut self, desired: &Desired) {
        if desired.director.on_exit != OnExit::Flush {
            info!("shutting down; the IPVS table stays as it is (on_exit = keep)");
            return;
        }
        if let Some(a) = &desired.announce {
            info!(grace = ?a.withdraw_grace, "shutting down: flushing after the VIPs' withdraw_grace");
            tokio::time::sleep(a.withdraw_grace).await;
        }
        let Ok(table) = self.backend.table().await else {
            warn!("shutting down: cannot read the table to flush the managed services");
            return;
        };
        let present: HashSet<ServiceKey> =
            table.iter().map(|(s, _)| s.service.key.clone()).collect();
        let ops: Vec<Op> = self
            .managed
            .iter()
            .chain(&self.retired)
            .filter(|k| present.contains(*k))
            .map(|k| Op::DelService(k.clone()))
            .collect();
        let done = self.apply(&ops).await;
        info!(
            deleted = done.applied,
            failed = ops.len() as u64 - done.applied,
            "shutting down: managed services flushed (on_exit = flush)"
        );
    }
}

/// The IPVS modules loaded (`/sys/module/ip_vs*`), sorted; empty where it cannot be
/// read.
fn ipvs_modules() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/sys/module")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("ip_vs"))
        .collect();
    v.sort();
    v
}

/// A listing read, with its blocks.
fn parsed(text: Result<String, IpvsError>) -> Result<(String, Vec<Block>), IpvsError> {
    let text = text?;
    let blocks = proc::parse(&text)?;
    Ok((text, blocks))
}

fn proc_failed(e: &IpvsError) {
    warn!(error = %e, "the proc listing failed; reading the whole table over netlink this pass");
}

/// When the loop runs its next pass on its own, and over what.
struct Wake {
    at: tokio::time::Instant,
    scope: Scope,
}

/// Runs until cancelled; then applies `on_exit` and returns.
pub async fn run<B: IpvsBackend>(backend: B, inputs: Inputs, state: watch::Sender<ReconcileState>) {
    let mut inputs = inputs;
    let mut r = Reconciler::new(backend, &inputs.desired.borrow());
    let record = inputs.desired.borrow().director.state_file.clone();
    if let Some(path) = record {
        r = r.with_record(&path);
    }
    let mut period = inputs.desired.borrow().director.resync_interval;
    let mut resync = tokio::time::interval(period);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut wake: Option<Wake> = None;
    let mut retry = Retry::default();
    let mut spaced: Option<tokio::time::Instant> = None;
    loop {
        let at = wake.as_ref().map(|w| w.at);
        let mut trigger = tokio::select! {
            _ = inputs.cancel.cancelled() => break,
            changed = inputs.desired.changed() => {
                if changed.is_err() { break }
                let p = inputs.desired.borrow().director.resync_interval;
                if p != period {
                    period = p;
                    resync = tokio::time::interval_at(tokio::time::Instant::now() + p, p);
                }
                Scope::none()
            }
            changed = inputs.health.changed() => if changed.is_err() { break } else { Scope::none() },
            changed = inputs.gate.changed() => if changed.is_err() { break } else { Scope::none() },
            _ = resync.tick() => Scope::All,
            _ = async { if let Some(at) = at { tokio::time::sleep_until(at).await } }, if at.is_some() => Scope::none(),
        };
        // A pending wake is served by whichever pass comes first.
        if let Some(w) = wake.take() {
            trigger.merge(w.scope);
        }
        let desired = inputs.desired.borrow_and_update().clone();
        let health = inputs.health.borrow_and_update().clone();
        let gate = inputs.gate.borrow_and_update().clone();
        if trigger == Scope::All {
            r.full_read_if_older(desired.director.full_resync_interval);
        }
        let progress = r.backend().progress();
        let started = tokio::time::Instant::now();
        let outcome = tokio::select! {
            _ = inputs.cancel.cancelled() => None,
            o = unless_stalled(r.pass(&desired, &health, &gate, trigger), &progress, PASS_DEADLINE, || moving(&state)) => Some(o),
        };
        let report = match outcome {
            None => break,
            Some(Ok(report)) => report,
            Some(Err(stalled)) => {
                r.abandoned();
                let e = PassError::Stalled(stalled);
                error!("{e}");
                PassReport {
                    read_error: Some(e),
                    took: PASS_DEADLINE,
                    ..PassReport::default()
                }
            }
        };

        if report.whole {
            spaced = space_resyncs(&mut resync, period, started.elapsed(), spaced);
            // Liveness (the watchdog, /healthz, the announcer) waits for that resync.
            let until = spaced.map(tokio::time::Instant::into_std);
            state.send_if_modified(|s| {
                std::mem::replace(&mut s.resync_spaced_until, until) != until
            });
        }
        wake = next_wake(&r, &mut retry, &report);
        if report.read == ReadKind::Nothing && report.read_error.is_none() {
            continue;
        }
        publish(&state, &r, report);
    }
    let desired = inputs.desired.borrow().clone();
    let progress = r.backend().progress();
    if let Err(stalled) = unless_stalled(r.exit(&desired), &progress, PASS_DEADLINE, || {}).await {
        error!("shutting down: on_exit stopped moving ({stalled}); stopping anyway");
    }
}

/// After a whole pass that took `took`: the next periodic one no sooner than
/// [`RESYNC_SHARE`] times that from now, when that is longer than the `period` and
/// the pass took [`SPACED_FROM`] or more (and never sooner than an earlier pass set).
/// `until`: the time before which resyncs wait, while they are spaced out; returns
/// the new one.
fn space_resyncs(
    resync: &mut tokio::time::Interval,
    period: Duration,
    took: Duration,
    until: Option<tokio::time::Instant>,
) -> Option<tokio::time::Instant> {
    let now = tokio::time::Instant::now();
    let wait = took * RESYNC_SHARE;
    let later = until.filter(|u| *u > now + period);
    if (wait <= period || took < SPACED_FROM) && later.is_none() {
        if until.is_some() {
            info!(
                pass_ms = took.as_millis() as u64,
                "whole-table passes are quick again: a resync every resync_interval"
            );
        }
        return None;
    }
    let at = later.map_or(now + wait, |u| u.max(now + wait));
    resync.reset_at(at);
    if until.is_none() {
        warn!(
            pass_ms = took.as_millis() as u64,
            next_in_s = (at - now).as_secs(),
            resync_interval_s = period.as_secs(),
            "a whole-table pass took over a tenth of resync_interval: resyncs are spaced out (a table this big wants a longer resync_interval)"
        );
    }
    Some(at)
}

/// When the loop passes next on its own, after `report`: the retry decision's
/// (a read-back, or a backoff), else the next poll of draining services; and the next
/// step of a slow start, whichever comes first, over both scopes.
fn next_wake<B: IpvsBackend>(
    r: &Reconciler<B>,
    retry: &mut Retry,
    report: &PassReport,
) -> Option<Wake> {
    let now = tokio::time::Instant::now();
    let outcome = Outcome {
        failed: report.read_error.is_some() || !report.errors.is_empty(),
        converged: &report.converged,
        ops: &report.ops,
        whole: report.whole,
        read: report.read != ReadKind::Nothing,
    };
    let mut wake = match retry.after(outcome) {
        Next::Wait => None,
        Next::Now(back) => Some(Wake {
            at: now,
            scope: match back {
                ReadBack::Services(keys) => Scope::Services(keys),
                ReadBack::Touched => Scope::Services(r.touched()),
                ReadBack::Whole => Scope::All,
            },
        }),
        Next::Retry { after, why } => {
            if why == Why::NotConverging {
                // The last pass applied these, yet the kernel still differs.
                warn!(
                    count = report.ops.len(),
                    ops = %shown(&report.ops),
                    "the table did not converge; retrying with backoff"
                );
            }
            Some(Wake {
                at: now + after,
                scope: Scope::All,
            })
        }
    };
    let draining = r.draining();
    if wake.is_none() && !draining.is_empty() {
        wake = Some(Wake {
            at: now + DRAIN_POLL,
            scope: Scope::Services(draining),
        });
    }
    // The next step of a slow start: its services, then.
    let Some((at, keys)) = r.ramps.next(Instant::now()) else {
        return wake;
    };
    let step = Wake {
        at: tokio::time::Instant::from_std(at),
        scope: Scope::Services(keys.into_iter().collect()),
    };
    Some(match wake {
        Some(w) => w.with(step),
        None => step,
    })
}

impl Wake {
    /// One wake for both: at the earlier time, over both scopes.
    fn with(mut self, other: Wake) -> Wake {
        self.at = self.at.min(other.at);
        self.scope.merge(other.scope);
        self
    }
}

/// A pass in progress is moving: liveness counts that as alive.
fn moving(state: &watch::Sender<ReconcileState>) {
    state.send_modify(|s| s.progress_at = Some(Instant::now()));
}

fn publish<B: IpvsBackend>(
    state: &watch::Sender<ReconcileState>,
    r: &Reconciler<B>,
    report: PassReport,
) {
    // A pass that stopped at an unchanged listing left the table as published.
    let observed = match report.read {
        ReadKind::Unchanged => None,
        _ => r.observed().cloned().map(Arc::new),
    };
    let retired: Vec<ServiceKey> = r.retired.iter().cloned().collect();
    let daemons = r.daemons().to_vec();
    let last_full = r.last_full.map(|(_, t)| t);
    let failing = r.failing();
    let read_failed = report.read_error.is_some();
    let ramps = r.ramps.since.clone();
    let mut errors: Vec<String> = report.errors.iter().map(ToString::to_string).collect();
    if let Some(e) = &report.read_error {
        errors.push(e.to_string());
    }
    let failures = errors.len() as u64;
    state.send_modify(|s| {
        if let Some(o) = observed {
            s.observed = o;
        }
        s.last_pass = Some(SystemTime::now());
        s.last_pass_at = Some(Instant::now());
        s.last_pass_duration = report.took;
        s.last_read = report.read;
        s.last_full_read = last_full;
        s.passes += 1;
        s.ops_applied += report.applied;
        s.failures += failures;
        s.errors = errors;
        s.held = report.held;
        s.retired = retired;
        s.sync_daemons = daemons;
        s.failing = failing;
        s.read_failed = read_failed;
        s.ramps = ramps;
    });
}

/// An op's fingerprint, to know it again in the next pass.
/// How many ops a log line names; the rest are counted.
const OPS_SHOWN: usize = 6;

/// The first [`OPS_SHOWN`] of `ops` for a log line ("add …; edit …; and 3 more"): an
/// operator reading the journal sees what changed, not only how much.
pub(crate) fn shown(ops: &[Op]) -> String {
    let mut text: Vec<String> = ops
        .iter()
        .take(OPS_SHOWN)
        .map(ToString::to_string)
        .collect();
    if ops.len() > OPS_SHOWN {
        text.push(format!("and {} more", ops.len() - OPS_SHOWN));
    }
    text.join("; ")
}
