//! Runs every distinct check from one task and publishes what they find: health flips
//! on one channel (the reconciler wakes on it), per-check details (last time, latency,
//! error) on another (status reads it).
//!
//! The task has a thread of its own (a runtime of its own on it): the director's other
//! work (the writer inside the kernel's `sendmsg`, a plan of 100,000 services, a big
//! status page) never delays a check past its timeout. What can still stall it (the
//! host short of CPU, a paused VM) is noted by [`crate::lag`].
//!
//! One scheduler, not a task per check: a timer wheel ([`crate::wheel`]) says which
//! checks are due; `tcp` checks go to the epoll prober ([`crate::tcp`]) and `tcp-syn`
//! checks to the half-open prober ([`crate::syn::DirectProber`]), plain-HTTP checks to
//! the HTTP prober ([`crate::http_probe`]), all driven by this loop, with no future,
//! task or channel per check (their timeouts are the wheel's); the other kinds run as
//! futures polled by this task. The clock is read once per
//! wake-up, not per check, and results are published once per wake-up, in a batch.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::check::{Checker, Prepared};
use crate::failure::CheckFailure;
use crate::http_probe::HttpProber;
use crate::lag::Stalls;
use crate::syn::DirectProber;
use crate::tcp::{Finished, TcpProber};
use crate::wheel::Wheel;
use lvsdr::health::{CheckKind, CheckSpec, HttpCheck};
use lvsdr::health::{Health, HealthMap, RiseFall};

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

/// Counts of check runs since the start, for `/status` and the metrics.
#[derive(Debug, Default)]
pub struct Tally {
    /// Runs that ended: passed, failed or timed out.
    pub completed: AtomicU64,
    /// Runs this host could not carry out (a local error: out of file descriptors,
    /// a fork refused by `TasksMax`, no route). Their servers keep their weight.
    pub local_errors: AtomicU64,
    /// Timeouts not counted against their server: this director stalled for a
    /// quarter of the timeout or more while the check ran ([`crate::lag`]).
    pub inconclusive: AtomicU64,
    /// How long, in all, the checks' thread was seen stalled (microseconds).
    pub stalled_us: AtomicU64,
    /// How late the scheduler's looks at the clock came ([`crate::lag`]).
    pub lateness: crate::lag::Lateness,
}

/// Hands the set of checks to the scheduler task.
pub struct Supervisor {
    checks: watch::Sender<Arc<Vec<Arc<CheckSpec>>>>,
    tally: Arc<Tally>,
    task: Option<tokio::task::JoinHandle<()>>,
    running: usize,
    health: watch::Receiver<HealthMap>,
    details: watch::Receiver<DetailMap>,
}

impl Supervisor {
    /// A supervisor with no checks; its scheduler task (spawned here, on a thread and
    /// runtime of its own) stops when `cancel` fires.
    pub fn new(checker: Checker, cancel: CancellationToken) -> Supervisor {
        let (checks, checks_rx) = watch::channel(Arc::new(Vec::new()));
        let (health_tx, health) = watch::channel(HealthMap::new());
        let (details_tx, details) = watch::channel(DetailMap::new());
        let tally = Arc::new(Tally::default());
        let scheduler = Scheduler {
            checker,
            checks: HashMap::new(),
            slab: Vec::new(),
            free: Vec::new(),
            wheel: Wheel::new(TICK),
            tcp: None,
            http: None,
            syn: None,
            runs: FuturesUnordered::new(),
            next_run: 0,
            health: health_tx,
            details: details_tx,
            flips: Vec::new(),
            results: Vec::new(),
            finished: Vec::new(),
            due: Vec::new(),
            tally: tally.clone(),
            stalls: Stalls::default(),
            wall: WallClock::default(),
        };
        // A blocking task: the supervisor of tasks sees it end or panic like any other.
        let task = tokio::task::spawn_blocking(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match rt {
                Ok(rt) => rt.block_on(scheduler.run(checks_rx, cancel)),
                // The task ends at once, and its supervisor says so.
                Err(e) => tracing::error!(error = %e, "no runtime for the health checks"),
            }
        });
        Supervisor {
            checks,
            tally,
            task: Some(task),
            running: 0,
            health,
            details,
        }
    }

    /// The scheduler task, for its owner to watch (it runs until cancelled; if it
    /// ends otherwise, no check runs any more).
    pub fn take_task(&mut self) -> Option<tokio::task::JoinHandle<()>> {
        self.task.take()
    }

    /// Health flips.
    pub fn health(&self) -> watch::Receiver<HealthMap> {
        self.health.clone()
    }

    /// Per-check details.
    pub fn details(&self) -> watch::Receiver<DetailMap> {
        self.details.clone()
    }

    /// How many check runs have ended so far, and how many of them were local errors.
    pub fn tally(&self) -> Arc<Tally> {
        self.tally.clone()
    }

    /// How many checks run.
    pub fn running(&self) -> usize {
        self.running
    }

    /// Runs exactly these checks: starts new ones, stops the others. A check that
    /// stays keeps its state.
    pub fn set_checks(&mut self, specs: &[Arc<CheckSpec>]) {
        let distinct: HashSet<&Arc<CheckSpec>> = specs.iter().collect();
        self.running = distinct.len();
        self.checks.send_replace(Arc::new(specs.to_vec()));
    }
}

/// Drops the entries of checks no longer run; true if any went.
fn keep_only<V>(m: &mut HashMap<Arc<CheckSpec>, V>, wanted: &HashSet<&Arc<CheckSpec>>) -> bool {
    let before = m.len();
    m.retain(|k, _| wanted.contains(k));
    before != m.len()
}

/// The wheel's slot width: checks due within one tick start together.
const TICK: Duration = Duration::from_millis(10);

/// Spreads check start times over the interval, the same way for the same check.
fn jitter(spec: &CheckSpec) -> Duration {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    spec.hash(&mut h);
    let interval = spec.interval.as_millis().max(1) as u64;
    Duration::from_millis(h.finish() % interval)
}

/// One check's state.
struct Check {
    spec: Arc<CheckSpec>,
    prepared: Arc<Prepared>,
    rf: RiseFall,
    since: SystemTime,
    transitions: u32,
    /// When it is due next.
    due: Instant,
    /// The run in flight: its tag, and when it started.
    running: Option<(u64, Instant)>,
}

/// Which prober runs a check: none (a future) for the kinds no prober takes, and for
/// a tcp-syn check without a raw socket or a tcp or HTTP one without an epoll set.
enum Route<'a> {
    Syn,
    Tcp,
    Http(&'a Arc<crate::http_probe::Exchange>),
    Future,
}

/// The prober for `c`, given which probers there are: (syn, tcp, http).
fn route(c: &Check, (syn, tcp, http): (bool, bool, bool)) -> Route<'_> {
    match &c.spec.kind {
        CheckKind::TcpSyn if syn => Route::Syn,
        CheckKind::Tcp if tcp && c.spec.via.is_none() => Route::Tcp,
        CheckKind::Http(_) if http => c.prepared.exchange().map_or(Route::Future, Route::Http),
        _ => Route::Future,
    }
}

/// What the wheel holds.
#[derive(Clone, Copy)]
enum Event {
    /// Check `slot` (instance `tag`) is due.
    Due { slot: usize, tag: u64 },
    /// The run `tag` of check `slot` is out of time; a tcp or plain-HTTP check's
    /// connection is in its prober's slot `conn` (the other kinds run as futures that
    /// bound themselves).
    Deadline {
        slot: usize,
        tag: u64,
        conn: Option<Conn>,
    },
}

/// A run's connection in a prober.
#[derive(Clone, Copy)]
enum Conn {
    Tcp(usize),
    Http(usize),
}

type Run =
    Pin<Box<dyn std::future::Future<Output = (usize, u64, Result<(), CheckFailure>)> + Send>>;

struct Scheduler {
    checker: Checker,
    /// Spec → slot.
    checks: HashMap<Arc<CheckSpec>, usize>,
    /// Checks by slot, with the tag of their instance (a slot is reused).
    slab: Vec<Option<(u64, Check)>>,
    free: Vec<usize>,
    wheel: Wheel<Event>,
    tcp: Option<TcpProber>,
    http: Option<HttpProber>,
    /// The half-open prober this loop drives (tcp-syn checks).
    syn: Option<DirectProber>,
    runs: FuturesUnordered<Run>,
    next_run: u64,
    health: watch::Sender<HealthMap>,
    details: watch::Sender<DetailMap>,
    /// Published at the end of a wake-up.
    flips: Vec<(Arc<CheckSpec>, Health)>,
    results: Vec<(Arc<CheckSpec>, CheckDetail)>,
    /// Scratch buffers.
    finished: Vec<Finished>,
    due: Vec<Event>,
    tally: Arc<Tally>,
    /// When this thread could not run: a timeout across a stall is not the server's.
    stalls: Stalls,
    /// The wall clock for the checks' times, read once a second.
    wall: WallClock,
}

/// The wall clock as of a monotonic reading: read once and then counted on from the
/// monotonic clock, read again after [`WallClock::FOR`] (a step of the wall clock shows
/// within that). A check's result carries the time it was taken; reading the wall clock
/// for each was a system call per check in the test VM, whose clock the vDSO cannot
/// read.
#[derive(Default)]
struct WallClock {
    anchor: Option<(Instant, SystemTime)>,
}

impl WallClock {
    const FOR: Duration = Duration::from_secs(1);

    fn at(&mut self, now: Instant) -> SystemTime {
        match self.anchor {
            Some((i, w)) if now >= i && now - i < Self::FOR => w + (now - i),
            _ => {
                let w = SystemTime::now();
                self.anchor = Some((now, w));
                w
            }
        }
    }
}

impl Scheduler {
    async fn run(
        mut self,
        mut checks: watch::Receiver<Arc<Vec<Arc<CheckSpec>>>>,
        cancel: CancellationToken,
    ) {
        let set = checks.borrow_and_update().clone();
        self.set(&set).await;
        // Two timers for the life of the loop, moved only when their time changes: a
        // timer made and dropped at every turn took the time driver's lock twice per
        // turn, and a turn comes with every batch of results.
        let wake_timer = tokio::time::sleep_until(Instant::now());
        let look_timer = tokio::time::sleep_until(self.stalls.next_look());
        // The same for the cancellation: a new waiter at every turn was a lock taken
        // and given back per turn.
        let cancelled = cancel.cancelled();
        tokio::pin!(wake_timer, look_timer, cancelled);
        loop {
            let look = self.stalls.next_look();
            if look_timer.deadline() != look {
                look_timer.as_mut().reset(look);
            }
            let wake = self.wheel.next_at();
            if let Some(at) = wake.filter(|at| wake_timer.deadline() != *at) {
                wake_timer.as_mut().reset(at);
            }
            let tcp_ready = async {
                match &self.tcp {
                    Some(t) if t.in_flight() > 0 => t.ready().await,
                    _ => std::future::pending().await,
                }
            };
            let http_ready = async {
                match &self.http {
                    Some(h) if h.in_flight() > 0 => h.ready().await,
                    _ => std::future::pending().await,
                }
            };
            let syn_ready = async {
                match &self.syn {
                    Some(s) if s.in_flight() > 0 => s.ready().await,
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut cancelled => return,
                r = checks.changed() => {
                    if r.is_err() {
                        return; // the supervisor is gone
                    }
                    let set = checks.borrow_and_update().clone();
                    self.set(&set).await;
                }
                _ = &mut wake_timer, if wake.is_some() => {
                    // Answers already in are taken before the deadlines: after a
                    // stall both are there, and the answer came first.
                    self.take_ready();
                    self.start_due();
                    // Connects that ended at once and probes answered at once (a
                    // near server) are taken now, not after another trip through
                    // the reactor.
                    self.drain_tcp();
                    self.drain_syn(true);
                }
                _ = &mut look_timer => self.look(Instant::now()),
                _ = tcp_ready => self.drain_tcp(),
                _ = http_ready => self.drain_http(),
                _ = syn_ready => self.drain_syn(false),
                // One outcome woke the loop; others that came in meanwhile, of any
                // kind, are taken in the same batch.
                Some((slot, tag, outcome)) = self.runs.next(), if !self.runs.is_empty() => {
                    self.record(slot, tag, outcome, Instant::now());
                    self.take_ready();
                }
            }
            self.publish();
        }
    }

    /// Records every outcome that is in already: tcp connects, half-open probes and
    /// runs that have ended.
    fn take_ready(&mut self) {
        self.drain_tcp();
        self.drain_http();
        self.drain_syn(false);
        let now = Instant::now();
        while let Some(Some((slot, tag, outcome))) =
            futures_util::FutureExt::now_or_never(self.runs.next())
        {
            self.record(slot, tag, outcome, now);
        }
    }

    /// Takes in the tcp connects that ended.
    fn drain_tcp(&mut self) {
        let mut finished = std::mem::take(&mut self.finished);
        if let Some(t) = self.tcp.as_mut().filter(|t| t.in_flight() > 0) {
            t.drain(&mut finished);
        }
        self.record_all(finished);
    }

    /// Takes in the plain-HTTP runs that ended.
    fn drain_http(&mut self) {
        let mut finished = std::mem::take(&mut self.finished);
        if let Some(h) = self.http.as_mut().filter(|h| h.in_flight() > 0) {
            h.drain(&mut finished);
        }
        self.record_all(finished);
    }

    /// Records the outcomes in `finished` (the scratch buffer, kept for next time);
    /// the clock is read only when there are some.
    fn record_all(&mut self, mut finished: Vec<Finished>) {
        if !finished.is_empty() {
            let now = Instant::now();
            for (slot, run, outcome) in finished.drain(..) {
                self.record(slot, run, outcome, now);
            }
        }
        self.finished = finished;
    }

    /// Takes in the half-open probes that were answered; `now`: without waiting for
    /// the reactor (right after sending, see [`DirectProber::take_now`]).
    fn drain_syn(&mut self, now: bool) {
        let mut finished = std::mem::take(&mut self.finished);
        match self.syn.as_mut().filter(|s| s.in_flight() > 0) {
            Some(s) if now => s.take_now(&mut finished),
            Some(s) => s.drain(&mut finished),
            None => {}
        }
        self.record_all(finished);
    }

    /// Makes the running checks exactly `specs`.
    async fn set(&mut self, specs: &[Arc<CheckSpec>]) {
        let wanted: HashSet<&Arc<CheckSpec>> = specs.iter().collect();
        let gone: Vec<Arc<CheckSpec>> = self
            .checks
            .keys()
            .filter(|k| !wanted.contains(k))
            .cloned()
            .collect();
        for spec in &gone {
            if let Some(slot) = self.checks.remove(spec) {
                // Its wheel entries and a run in flight are ignored by tag from now on.
                self.slab[slot] = None;
                self.free.push(slot);
                if let Some(h) = &mut self.http {
                    h.forget(slot);
                }
            }
        }
        self.health.send_if_modified(|m| keep_only(m, &wanted));
        self.details.send_if_modified(|m| keep_only(m, &wanted));
        let now = Instant::now();
        // TLS roots of HTTPS checks with their own, loaded once per CA file for this
        // set of checks (a reload reads a replaced CA file again).
        let mut roots = HashMap::new();
        let mut syn_tried = false;
        for spec in specs {
            if self.checks.contains_key(spec) {
                continue;
            }
            let tls = match &spec.kind {
                CheckKind::Http(h) => match crate::roots::roots_of(h) {
                    Some(r) => Some(load_roots(&mut roots, r).await),
                    None => None,
                },
                _ => None,
            };
            let prepared = match tls
                .transpose()
                .and_then(|tls| Prepared::with_tls(spec.clone(), tls))
            {
                Ok(p) => Arc::new(p),
                Err(e) => {
                    warn!(check = %spec.label(), error = %e, "cannot prepare check");
                    continue;
                }
            };
            // Only HTTPS runs through the shared client (plain HTTP speaks for itself).
            if let CheckKind::Http(h @ HttpCheck { tls: true, .. }) = &spec.kind {
                self.checker.prepare_http(h.insecure).await;
            }
            if matches!(spec.kind, CheckKind::TcpSyn) && self.syn.is_none() && !syn_tried {
                // Tried once per set of checks. Without it (no CAP_NET_RAW) each run
                // goes to the checker, whose prober fails it the same way: a local
                // error.
                syn_tried = true;
                self.syn = DirectProber::open().ok();
            }
            if prepared.exchange().is_some() && self.http.is_none() {
                match HttpProber::new() {
                    Ok(h) => self.http = Some(h),
                    Err(e) => warn!(error = %e, "http checks: no epoll set; they run as futures"),
                }
            }
            if matches!(spec.kind, CheckKind::Tcp) && spec.via.is_none() && self.tcp.is_none() {
                match TcpProber::new() {
                    Ok(t) => self.tcp = Some(t),
                    Err(e) => warn!(error = %e, "tcp checks: no epoll set; they run as futures"),
                }
            }
            let tag = self.tag();
            let slot = self.free.pop().unwrap_or_else(|| {
                self.slab.push(None);
                self.slab.len() - 1
            });
            let due = now + jitter(spec);
            self.slab[slot] = Some((
                tag,
                Check {
                    spec: spec.clone(),
                    prepared,
                    rf: RiseFall::new(spec.rise, spec.fall),
                    since: SystemTime::now(),
                    transitions: 0,
                    due,
                    running: None,
                },
            ));
            self.checks.insert(spec.clone(), slot);
            self.wheel.insert(due, Event::Due { slot, tag });
        }
    }

    fn tag(&mut self) -> u64 {
        self.next_run += 1;
        self.next_run
    }

    /// Starts the checks due now and ends the tcp connects out of time.
    fn start_due(&mut self) {
        let now = Instant::now();
        let mut due = std::mem::take(&mut self.due);
        self.wheel.advance(now, &mut due);
        for ev in due.drain(..) {
            match ev {
                Event::Due { slot, tag } => self.start(slot, tag, now),
                Event::Deadline { slot, tag, conn } => {
                    let overdue = match conn {
                        Some(Conn::Tcp(conn)) => {
                            self.tcp.as_mut().is_some_and(|t| t.abandon(conn, tag))
                        }
                        Some(Conn::Http(conn)) => {
                            self.http.as_mut().is_some_and(|h| h.abandon(conn, tag))
                        }
                        None => self
                            .check(slot)
                            .is_some_and(|c| c.running.is_some_and(|(r, _)| r == tag)),
                    };
                    if overdue {
                        let timeout = self.check(slot).map(|c| c.spec.timeout).unwrap_or_default();
                        self.record(slot, tag, Err(CheckFailure::TimedOut(timeout)), now);
                    }
                }
            }
        }
        self.due = due;
    }

    fn check(&self, slot: usize) -> Option<&Check> {
        self.slab.get(slot)?.as_ref().map(|(_, c)| c)
    }

    /// Starts check `slot` (instance `tag`) and puts its next turn on the wheel.
    fn start(&mut self, slot: usize, tag: u64, now: Instant) {
        let run = self.tag();
        let Some((t, c)) = self.slab.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if *t != tag {
            return; // a check since removed; the slot holds another
        }
        // Fixed rate, and no catching up after a stall: the next turn is one interval
        // after this one was due, or now if that has passed.
        c.due = (c.due + c.spec.interval).max(now);
        self.wheel.insert(c.due, Event::Due { slot, tag });
        if c.running.is_some() {
            return; // the last run has not ended (its timeout is longer than the interval)
        }
        c.running = Some((run, now));
        let (target, deadline) = (c.spec.target, now + c.spec.timeout);
        let probers = (self.syn.is_some(), self.tcp.is_some(), self.http.is_some());
        // In a prober's hands: the connection its deadline ends, if any.
        let started = match (
            route(c, probers),
            &mut self.syn,
            &mut self.tcp,
            &mut self.http,
        ) {
            (Route::Syn, Some(p), _, _) => p
                .start(slot, run, target, deadline.into_std(), now.into_std())
                .map(|()| None),
            (Route::Tcp, _, Some(p), _) => p.start(slot, run, target).map(|c| Some(Conn::Tcp(c))),
            (Route::Http(ex), _, _, Some(p)) => {
                let close = match &c.spec.kind {
                    CheckKind::Http(h) => c.prepared.close_this_run(h),
                    _ => true,
                };
                p.start(slot, tag, run, ex, close)
                    .map(|c| Some(Conn::Http(c)))
            }
            _ => {
                let (checker, prepared) = (self.checker.clone(), c.prepared.clone());
                self.runs.push(Box::pin(async move {
                    (slot, run, checker.run(&prepared).await)
                }));
                return;
            }
        };
        match started {
            Ok(conn) => self.wheel.insert(
                deadline,
                Event::Deadline {
                    slot,
                    tag: run,
                    conn,
                },
            ),
            Err(e) => self.record(slot, run, Err(e), now),
        }
    }

    /// Counts how late the look due came, if one was due; a stall if very late.
    fn look(&mut self, now: Instant) {
        if let Some(late) = self.stalls.look(now) {
            self.tally.lateness.observe(late);
            if late > crate::lag::NOTED {
                let us = u64::try_from(late.as_micros()).unwrap_or(u64::MAX);
                self.tally.stalled_us.fetch_add(us, Ordering::Relaxed);
            }
        }
    }

    /// Takes in the outcome of run `run` of check `slot`.
    fn record(&mut self, slot: usize, run: u64, outcome: Result<(), CheckFailure>, now: Instant) {
        // A stall that ends with this wake-up is known before the outcome is judged.
        self.look(now);
        let wall = self.wall.at(now);
        let Some((_, c)) = self.slab.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let Some((r, started)) = c.running else {
            return;
        };
        if r != run {
            return; // an earlier run's, or another check's that held the slot
        }
        c.running = None;
        self.tally.completed.fetch_add(1, Ordering::Relaxed);
        // A local failure says nothing about the server: unknown, which keeps the
        // weight the kernel has; only the server's own answers count for rise/fall.
        // Only a timeout can be the director's fault rather than the server's.
        let spoilt = match &outcome {
            Err(CheckFailure::TimedOut(_)) => self.stalls.spoilt(started, now, c.spec.timeout),
            _ => None,
        };
        let flipped = match (&outcome, spoilt) {
            (Err(CheckFailure::Local(e)), _) => {
                let n = self.tally.local_errors.fetch_add(1, Ordering::Relaxed) + 1;
                // Said at the 1st, 2nd, 4th, 8th… so a host out of resources does not
                // also flood its log.
                if n.is_power_of_two() {
                    warn!(check = %c.spec.label(), error = %e, local_errors = n, "a check could not run on this host; its server keeps its weight");
                }
                c.rf.unknown()
            }
            (_, Some(lost)) => {
                let n = self.tally.inconclusive.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    warn!(check = %c.spec.label(), ?lost, inconclusive = n, "a check timed out while this director stalled; not counted against its server");
                }
                c.rf.inconclusive()
            }
            (r, None) => c.rf.record(r.is_ok()),
        };
        if flipped.is_some() {
            c.since = wall;
            c.transitions = c.transitions.saturating_add(1);
        }
        let detail = CheckDetail {
            health: c.rf.state(),
            last_check: Some(wall),
            latency: Some(now.saturating_duration_since(started)),
            error: outcome.err().map(|e| match spoilt {
                Some(lost) => {
                    format!("{e} (not counted: this director stalled {lost:?} meanwhile)")
                }
                None => e.to_string(),
            }),
            since: Some(c.since),
            transitions: c.transitions,
        };
        if let Some(state) = flipped {
            let label = c.spec.label();
            match &detail.error {
                Some(e) => warn!(check = %label, ?state, error = %e, "health changed"),
                None => info!(check = %label, ?state, "health changed"),
            }
            self.flips.push((c.spec.clone(), state));
        }
        self.results.push((c.spec.clone(), detail));
    }

    /// Sends what this wake-up found, in one change per channel.
    fn publish(&mut self) {
        if !self.flips.is_empty() {
            let flips = &mut self.flips;
            self.health.send_modify(|m| m.extend(flips.drain(..)));
        }
        if !self.results.is_empty() {
            let results = &mut self.results;
            self.details.send_modify(|m| {
                for (spec, d) in results.drain(..) {
                    match m.get_mut(&spec) {
                        Some(old) => *old = d,
                        None => {
                            m.insert(spec, d);
                        }
                    }
                }
            });
        }
    }
}

/// Roots loaded for one set of checks: the settings, or why they could not be had.
type LoadedRoots = HashMap<crate::roots::Roots, Result<rustls::ClientConfig, String>>;

/// The TLS settings for `roots`, from `loaded` or loaded off the runtime thread (the
/// system's roots take 0.4 s in the test VM; every check waits while this thread does).
/// A failure is kept too: a hundred checks naming one unreadable CA fail on one read.
async fn load_roots(
    loaded: &mut LoadedRoots,
    roots: crate::roots::Roots,
) -> Result<rustls::ClientConfig, String> {
    if let Some(t) = loaded.get(&roots) {
        return t.clone();
    }
    let r = roots.clone();
    let t = tokio::task::spawn_blocking(move || crate::roots::load(&r))
        .await
        .map_err(|e| format!("loading TLS roots: {e}"))
        .and_then(|t| t);
    loaded.insert(roots, t.clone());
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wall clock is read once and counted on from the monotonic clock for a
    /// second; after that (or for an earlier reading) it is read again, so a step of
    /// the wall clock shows.
    #[test]
    fn the_wall_clock_is_read_once_a_second_and_counted_on_between() {
        let mut c = WallClock::default();
        let t0 = Instant::now();
        let w0 = c.at(t0);
        let half = Duration::from_millis(500);
        assert_eq!(c.at(t0 + half), w0 + half, "counted on, not read");
        let hour = Duration::from_secs(3600);
        let w = c.at(t0 + hour);
        assert!(w < w0 + hour, "read again after a second: {w:?}");
        assert_eq!(c.at(t0 + hour + half), w + half);
        let before = c.at(t0);
        assert!(before >= w0, "an earlier reading reads the clock again");
    }

    /// Many HTTPS checks with one CA load it once per set of checks: the second
    /// check's settings come from the first's load (the file is gone by then).
    #[tokio::test]
    async fn a_ca_file_is_loaded_once_for_every_check_that_names_it() {
        let dir = std::env::temp_dir().join(format!("lvsdr-sup-roots-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        lvsdr_pki::init(&dir, &["192.0.2.1".to_string()]).expect("pki");
        let ca = Some(dir.join("ca.pem"));
        let mut loaded = HashMap::new();
        assert!(load_roots(&mut loaded, ca.clone()).await.is_ok());
        std::fs::remove_file(dir.join("ca.pem")).expect("rm");
        assert!(
            load_roots(&mut loaded, ca.clone()).await.is_ok(),
            "loaded again"
        );
        // A new set of checks (a reload) reads the file again.
        let e = load_roots(&mut HashMap::new(), ca).await.expect_err("gone");
        assert!(e.contains("ca.pem"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A CA that cannot be loaded is tried once per set of checks, not once per check
    /// (the system's roots take 0.4 s each in the test VM): the second check gets the
    /// first one's failure, though the file has appeared since.
    #[tokio::test]
    async fn a_ca_file_that_fails_is_read_once_for_every_check_that_names_it() {
        let dir = std::env::temp_dir().join(format!("lvsdr-sup-noroots-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let ca = Some(dir.join("ca.pem"));
        let mut loaded = HashMap::new();
        let first = load_roots(&mut loaded, ca.clone())
            .await
            .expect_err("no file");
        lvsdr_pki::init(&dir, &["192.0.2.1".to_string()]).expect("pki");
        let second = load_roots(&mut loaded, ca.clone())
            .await
            .expect_err("the first failure, not a second read");
        assert_eq!(first, second);
        assert!(
            load_roots(&mut HashMap::new(), ca).await.is_ok(),
            "a new set of checks (a reload) reads it again"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
