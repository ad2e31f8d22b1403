//! After each pass, what the loop does next on its own: wait for a trigger, read back
//! at once what the pass changed (or found done already), or go over the whole table
//! again after a backoff. A pure function of the pass's outcome and of what
//! [`Retry`] remembers between passes, kept apart from the loop (as kube-runtime keeps
//! its error policy apart from reconcile), so that it is tested without a kernel.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use super::op::Op;
use crate::ipvs::ServiceKey;

/// The first retry delay after a failure; it doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The longest retry delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What a pass came to, as the retry decision sees it.
#[derive(Debug, Clone, Copy)]
pub struct Outcome<'a> {
    /// Reading failed, or the kernel refused an op (transiently).
    pub failed: bool,
    /// Services whose op was refused as done already (EEXIST on an add, ENOENT on a
    /// delete): the table moved under the pass.
    pub converged: &'a HashSet<ServiceKey>,
    /// The ops the pass planned.
    pub ops: &'a [Op],
    /// Whether the pass covered the whole table.
    pub whole: bool,
    /// Whether it read the kernel at all.
    pub read: bool,
}

/// What to read back at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadBack {
    /// These services (they were found done already).
    Services(HashSet<ServiceKey>),
    /// The services the pass changed.
    Touched,
    /// The whole table (the pass covered it: the proc file's fingerprints of what it
    /// changed must be current again).
    Whole,
}

/// Why the whole table is gone over again after a delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Reading failed or the kernel refused an op.
    Failed,
    /// Services were found done already twice in a row.
    MovingUnderUs,
    /// The ops the last pass applied were planned again: the kernel did not take them.
    NotConverging,
}

/// The loop's next step of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Nothing until a trigger (config, health, gate, the resync timer).
    Wait,
    /// A pass at once.
    Now(ReadBack),
    /// A pass over the whole table after `after`.
    Retry {
        /// The backoff: [`FIRST_BACKOFF`], doubling up to [`MAX_BACKOFF`].
        after: Duration,
        /// Why.
        why: Why,
    },
}

/// What the decision remembers between passes.
#[derive(Debug, Default)]
pub struct Retry {
    /// The last retry delay; `None` after a pass that went through.
    backoff: Option<Duration>,
    /// The ops the last pass applied (by hash: a first pass may apply 100,000), which
    /// this pass's read-back checks: planned again means the kernel did not take them.
    /// Other ops are new work (a health change, a slow start's step).
    verifying: HashSet<u64>,
    /// Whether the last pass found services done already.
    converged_again: bool,
}

impl Retry {
    /// The next step after a pass with outcome `o`.
    pub fn after(&mut self, o: Outcome<'_>) -> Next {
        let next = if o.failed {
            self.retry(Why::Failed)
        } else if !o.converged.is_empty() {
            // Read those services again at once; if that keeps happening, back off.
            if self.converged_again {
                self.retry(Why::MovingUnderUs)
            } else {
                Next::Now(ReadBack::Services(o.converged.clone()))
            }
        } else if o.ops.is_empty() {
            if o.read {
                self.backoff = None;
            }
            Next::Wait
        } else if o.ops.iter().any(|op| self.verifying.contains(&hash(op))) {
            self.retry(Why::NotConverging)
        } else {
            self.backoff = None;
            Next::Now(if o.whole {
                ReadBack::Whole
            } else {
                ReadBack::Touched
            })
        };
        self.converged_again = !o.converged.is_empty();
        self.verifying = if !o.failed && o.converged.is_empty() {
            o.ops.iter().map(hash).collect()
        } else {
            HashSet::new()
        };
        next
    }

    fn retry(&mut self, why: Why) -> Next {
        let after = self
            .backoff
            .map_or(FIRST_BACKOFF, |b| (b * 2).min(MAX_BACKOFF));
        self.backoff = Some(after);
        Next::Retry { after, why }
    }
}

fn hash(op: &Op) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    op.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipvs::{Family, Protocol, Scheduler, Service, ServiceSettings};

    fn key(n: u8) -> ServiceKey {
        ServiceKey::Addr {
            protocol: Protocol::Tcp,
            addr: std::net::IpAddr::from([192, 0, 2, n]),
            port: 80,
        }
    }

    fn add(n: u8) -> Op {
        Op::AddService(Service {
            key: key(n),
            settings: ServiceSettings::new(Scheduler::Wlc, Family::V4),
        })
    }

    fn outcome<'a>(failed: bool, converged: &'a HashSet<ServiceKey>, ops: &'a [Op]) -> Outcome<'a> {
        Outcome {
            failed,
            converged,
            ops,
            whole: false,
            read: true,
        }
    }

    fn retry_after(n: Next) -> Duration {
        match n {
            Next::Retry { after, .. } => after,
            other => panic!("not a retry: {other:?}"),
        }
    }

    #[test]
    fn failures_back_off_doubling_to_the_cap_and_a_clean_pass_resets_it() {
        let none = HashSet::new();
        let mut r = Retry::default();
        let mut delays = Vec::new();
        for _ in 0..9 {
            delays.push(retry_after(r.after(outcome(true, &none, &[]))));
        }
        let ms: Vec<u128> = delays.iter().map(Duration::as_millis).collect();
        assert_eq!(
            ms,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        assert_eq!(r.after(outcome(false, &none, &[])), Next::Wait);
        assert_eq!(
            retry_after(r.after(outcome(true, &none, &[]))),
            FIRST_BACKOFF
        );
    }

    #[test]
    fn a_pass_that_read_nothing_keeps_the_backoff() {
        let none = HashSet::new();
        let mut r = Retry::default();
        r.after(outcome(true, &none, &[]));
        let mut idle = outcome(false, &none, &[]);
        idle.read = false;
        assert_eq!(r.after(idle), Next::Wait);
        assert_eq!(
            retry_after(r.after(outcome(true, &none, &[]))),
            FIRST_BACKOFF * 2
        );
    }

    #[test]
    fn applied_ops_are_read_back_at_once_and_planned_again_they_back_off() {
        let none = HashSet::new();
        let ops = [add(1)];
        let mut r = Retry::default();
        assert_eq!(
            r.after(outcome(false, &none, &ops)),
            Next::Now(ReadBack::Touched)
        );
        // The read-back planned the same op: the kernel did not take it.
        assert_eq!(
            r.after(outcome(false, &none, &ops)),
            Next::Retry {
                after: FIRST_BACKOFF,
                why: Why::NotConverging
            }
        );
        // New work is not a failure to converge.
        let other = [add(2)];
        assert_eq!(
            r.after(outcome(false, &none, &other)),
            Next::Now(ReadBack::Touched)
        );
        let mut whole = outcome(false, &none, &ops);
        whole.whole = true;
        assert_eq!(r.after(whole), Next::Now(ReadBack::Whole));
    }

    #[test]
    fn services_found_done_are_read_again_once_then_backed_off() {
        let done: HashSet<ServiceKey> = [key(3)].into_iter().collect();
        let none = HashSet::new();
        let mut r = Retry::default();
        assert_eq!(
            r.after(outcome(false, &done, &[])),
            Next::Now(ReadBack::Services(done.clone()))
        );
        assert_eq!(
            r.after(outcome(false, &done, &[])),
            Next::Retry {
                after: FIRST_BACKOFF,
                why: Why::MovingUnderUs
            }
        );
        assert_eq!(r.after(outcome(false, &none, &[])), Next::Wait);
        assert_eq!(
            r.after(outcome(false, &done, &[])),
            Next::Now(ReadBack::Services(done))
        );
    }
}
