//! What the one writer publishes after each pass ([`ReconcileState`], on a `watch`),
//! and whether it is alive ([`liveness`]): read by the status document, the
//! announcer, the agents' gate, `/healthz` and the systemd watchdog. It lives apart
//! from the driver so that its readers need nothing else of it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::observed::Observed;
use crate::ipvs::ServiceKey;

/// A pass during which the kernel answers nothing for this long is abandoned (a
/// reply the kernel never sent, a socket gone bad) and retried with backoff: the one
/// writer never hangs. A long pass that moves is never cut (see [`super::stall`]).
pub const PASS_DEADLINE: Duration = super::stall::STALL;

/// How a pass read the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadKind {
    /// It had nothing to look at.
    #[default]
    Nothing,
    /// Every service over netlink.
    Full {
        /// Services read.
        services: usize,
    },
    /// `/proc/net/ip_vs`, then netlink for the services whose listing changed.
    Proc {
        /// Services read again over netlink.
        reread: usize,
    },
    /// `/proc/net/ip_vs`, the same listing as the last whole pass that found nothing
    /// to do, with the same inputs: nothing else to read or plan.
    Unchanged,
    /// Netlink, for the services in scope.
    Services {
        /// Services read.
        read: usize,
    },
}

impl std::fmt::Display for ReadKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadKind::Nothing => write!(f, "nothing to read"),
            ReadKind::Full { services } => write!(f, "full read ({services} services)"),
            ReadKind::Proc { reread } => {
                write!(f, "/proc/net/ip_vs, {reread} services read again")
            }
            ReadKind::Unchanged => write!(f, "/proc/net/ip_vs, unchanged"),
            ReadKind::Services { read } => write!(f, "{read} services in scope"),
        }
    }
}

/// What the driver publishes after each pass.
#[derive(Debug, Clone, Default)]
pub struct ReconcileState {
    /// The kernel's table as the driver last knew it.
    pub observed: Arc<Observed>,
    /// When the last pass ran.
    pub last_pass: Option<SystemTime>,
    /// The same on the monotonic clock: what liveness is judged by, so that a step
    /// of the wall clock neither makes the reconciler look stuck nor hides it.
    pub last_pass_at: Option<Instant>,
    /// When the pass in progress last saw the kernel answer (monotonic): a pass of
    /// minutes (10,000 services under emulation) is alive while this moves.
    pub progress_at: Option<Instant>,
    /// How long it took.
    pub last_pass_duration: Duration,
    /// How it read the kernel.
    pub last_read: ReadKind,
    /// When the table was last read in full over netlink.
    pub last_full_read: Option<SystemTime>,
    /// Passes run.
    pub passes: u64,
    /// Ops applied successfully.
    pub ops_applied: u64,
    /// Ops the kernel refused, and failed reads.
    pub failures: u64,
    /// The errors of the last pass (empty when it went through).
    pub errors: Vec<String>,
    /// Ops held back after a permanent refusal (EINVAL, a missing scheduler, EPERM),
    /// with the refusal: not retried until the config or the kernel changes.
    pub held: Vec<String>,
    /// Services left from an earlier config, draining before deletion.
    pub retired: Vec<ServiceKey>,
    /// The connection sync daemons running (with `[sync]`).
    pub sync_daemons: Vec<crate::ipvs::Daemon>,
    /// The services with an op the kernel refused (transient, at the last pass that
    /// covered them) or holds back: what the announcer withdraws per VIP. Sync daemon
    /// trouble and other services' refusals are not in here.
    pub failing: Vec<ServiceKey>,
    /// Whether the last pass could not read the table: trouble for the whole director.
    pub read_failed: bool,
    /// Servers in a slow start: since when, over how long.
    pub ramps: HashMap<super::slow_start::RampId, (Instant, Duration)>,
    /// While whole-table passes are long enough to space out the resyncs (see
    /// [`super::driver::RESYNC_SHARE`]): when the next one is due. Liveness waits for it.
    pub resync_spaced_until: Option<Instant>,
}

/// The writer looks stuck: nothing moved for longer than the limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what} was {:.0} s ago (more than {:.0} s): the reconciler is stuck",
    age.as_secs_f64(),
    limit.as_secs_f64()
)]
pub struct Stuck {
    /// What was last seen moving ("the last reconcile pass", …).
    pub what: &'static str,
    /// How long ago.
    pub age: Duration,
    /// Twice `resync_interval` plus [`PASS_DEADLINE`] (or, while resyncs are spaced
    /// out, up to the next one's due time plus `resync_interval` and the deadline).
    pub limit: Duration,
}

/// Whether the one writer is alive: its last pass, or the last answer the kernel gave
/// the pass in progress (or, before either, the start) is no older than twice
/// `resync_interval` plus [`PASS_DEADLINE`] (a pass that stops moving is abandoned at
/// the deadline and publishes; one that moves may take any time). `Err` says why not,
/// for `/healthz`, the announcer and the systemd watchdog.
///
pub fn liveness(
    state: &ReconcileState,
    resync_interval: Duration,
    started: Instant,
    now: Instant,
) -> Result<(), Stuck> {
    let limit = resync_interval * 2 + PASS_DEADLINE;
    let (since, what) = match (state.last_pass_at, state.progress_at) {
        (Some(p), Some(m)) if m > p => (m, "the last progress of a reconcile pass"),
        (None, Some(m)) => (m, "the last progress of the first reconcile pass"),
        (Some(p), _) => (p, "the last reconcile pass"),
        (None, None) => (started, "start, with no reconcile pass yet,"),
    };
    // Resyncs spaced out after long whole-table passes: the next is due later.
    let spaced = state
        .resync_spaced_until
        .map(|u| u.saturating_duration_since(since) + resync_interval + PASS_DEADLINE);
    let limit = spaced.map_or(limit, |s| s.max(limit));
    let age = now.saturating_duration_since(since);
    if age > limit {
        return Err(Stuck { what, age, limit });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_older_than_twice_the_resync_plus_the_deadline_is_stuck() {
        let t0 = Instant::now();
        let resync = Duration::from_secs(30);
        let limit = resync * 2 + PASS_DEADLINE;
        let mut st = ReconcileState::default();
        assert!(liveness(&st, resync, t0, t0 + limit).is_ok(), "starting");
        let e = liveness(&st, resync, t0, t0 + limit + Duration::from_secs(1));
        assert!(e.is_err_and(|e| e.to_string().contains("no reconcile pass yet")));
        st.last_pass_at = Some(t0 + Duration::from_secs(100));
        // The wall clock says nothing: stepped a day back or forward, same answer.
        st.last_pass = Some(SystemTime::UNIX_EPOCH);
        assert!(liveness(&st, resync, t0, t0 + Duration::from_secs(100) + limit).is_ok());
        let e = liveness(&st, resync, t0, t0 + Duration::from_secs(101) + limit);
        assert!(e.is_err_and(|e| e.to_string().contains("the reconciler is stuck")));
        assert!(liveness(&st, resync, t0, t0).is_ok());
        // Resyncs spaced out (a whole pass of 32 s: the next in 320 s) are waited for.
        let last = t0 + Duration::from_secs(100);
        st.resync_spaced_until = Some(last + Duration::from_secs(320));
        let due = Duration::from_secs(320) + resync + PASS_DEADLINE;
        assert!(liveness(&st, resync, t0, last + due).is_ok());
        assert!(liveness(&st, resync, t0, last + due + Duration::from_secs(1)).is_err());
    }

    /// A first pass of minutes (10,000 services under emulation) is alive while the
    /// kernel answers it; it was judged stuck, so the watchdog restarted the director
    /// in the middle of programming, and the announcer withdrew every VIP.
    #[test]
    fn a_long_pass_that_moves_is_alive() {
        let t0 = Instant::now();
        let resync = Duration::from_secs(30);
        let limit = resync * 2 + PASS_DEADLINE;
        let mut st = ReconcileState::default();
        let later = t0 + limit * 5;
        assert!(liveness(&st, resync, t0, later).is_err());
        st.progress_at = Some(later - Duration::from_secs(5));
        assert!(liveness(&st, resync, t0, later).is_ok());
        // After passes: a pass that moved last long ago is stuck again.
        st.last_pass_at = Some(t0 + limit * 2);
        st.progress_at = Some(t0 + limit);
        let e = liveness(&st, resync, t0, later);
        assert!(e.is_err_and(|e| e.to_string().contains("the last reconcile pass")));
        st.progress_at = Some(later);
        assert!(liveness(&st, resync, t0, later).is_ok());
    }
}
