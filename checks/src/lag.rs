//! When this director's own thread could not run: a stall (the writer busy inside the
//! kernel, the host short of CPU, a paused VM). The checks share the thread, so a
//! check that times out across a stall may only show that the director was not
//! looking: its server's answer can sit unread, or its request unsent. The scheduler
//! expects to look at the clock every [`PERIOD`] (it sleeps until [`Stalls::next_look`]);
//! whenever it wakes, for that or anything else, [`Stalls::look`] notes how late the
//! look came, before any result is recorded. [`Stalls::within`] says how much of a
//! check's time was lost that way.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// How often the scheduler looks at the clock while it has checks.
pub const PERIOD: Duration = Duration::from_millis(50);

/// A look later than this is a stall; below it is the timer's own granularity.
pub const NOTED: Duration = Duration::from_millis(10);

/// How long stalls are remembered: longer than any check's timeout that matters.
const KEPT: Duration = Duration::from_secs(120);

/// The stalls of the last [`KEPT`], oldest first: when each began and ended.
#[derive(Debug, Default)]
pub struct Stalls {
    recent: VecDeque<(Instant, Instant)>,
    /// When the next look is due.
    next: Option<Instant>,
}

impl Stalls {
    /// When the next look is due (now, at the first call).
    pub fn next_look(&mut self) -> Instant {
        *self.next.get_or_insert_with(Instant::now)
    }

    /// The thread runs at `now`: if a look was due, returns how late it came (a stall
    /// since it was due, if more than [`NOTED`]). Cheap: called before every result is
    /// recorded, so that a result that comes in with a stall is judged with it.
    pub fn look(&mut self, now: Instant) -> Option<Duration> {
        let due = self.next_look();
        if now < due {
            return None;
        }
        self.next = Some(now + PERIOD);
        self.note(due, now);
        Some(now.saturating_duration_since(due))
    }

    /// A look due at `due` came at `now`: if it came late, the thread was stalled in
    /// between.
    fn note(&mut self, due: Instant, now: Instant) -> Option<Duration> {
        let late = now.saturating_duration_since(due);
        while self
            .recent
            .front()
            .is_some_and(|&(_, end)| now.saturating_duration_since(end) > KEPT)
        {
            self.recent.pop_front();
        }
        (late > NOTED).then(|| {
            self.recent.push_back((due, now));
            late
        })
    }

    /// How long the thread was stalled between `from` and `to`.
    pub fn within(&self, from: Instant, to: Instant) -> Duration {
        self.recent
            .iter()
            .map(|&(begin, end)| end.min(to).saturating_duration_since(begin.max(from)))
            .sum()
    }

    /// What a check that ran from `started` to `now` with `timeout` lost to stalls,
    /// when it is a quarter of its time or more: then its timeout says nothing of its
    /// server.
    pub fn spoilt(&self, started: Instant, now: Instant, timeout: Duration) -> Option<Duration> {
        let lost = self.within(started, now);
        (!lost.is_zero() && lost >= timeout / 4).then_some(lost)
    }
}

/// Upper bounds (seconds) of the buckets of how late the looks came; the last is
/// +Inf. The target of a check thread that is never held up: p99 ≤ 50 ms.
pub const LATENESS_BUCKETS: [f64; 11] = [
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    f64::INFINITY,
];

/// How late the looks came, counted by bucket: the scheduler writes, the status
/// endpoint reads.
#[derive(Debug, Default)]
pub struct Lateness {
    counts: [AtomicU64; LATENESS_BUCKETS.len()],
    sum_us: AtomicU64,
}

impl Lateness {
    /// Counts one look, `late` after it was due.
    pub fn observe(&self, late: Duration) {
        let secs = late.as_secs_f64();
        let i = LATENESS_BUCKETS
            .iter()
            .position(|&le| secs <= le)
            .unwrap_or(LATENESS_BUCKETS.len() - 1);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(late.as_micros()).unwrap_or(u64::MAX);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn snapshot(&self) -> LatenessCounts {
        LatenessCounts {
            counts: self
                .counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
            sum_seconds: self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// Looks counted per bucket of [`LATENESS_BUCKETS`] (not cumulative), and their sum.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatenessCounts {
    pub counts: Vec<u64>,
    pub sum_seconds: f64,
}

impl LatenessCounts {
    /// The bucket bound under which a share `q` of the looks came (`None`: no looks;
    /// +Inf: beyond the last finite bound).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total: u64 = self.counts.iter().sum();
        if total == 0 {
            return None;
        }
        let want = (q * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (n, le) in self.counts.iter().zip(LATENESS_BUCKETS) {
            seen += n;
            if seen >= want {
                return Some(le);
            }
        }
        Some(f64::INFINITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn a_late_tick_is_a_stall_and_counts_where_it_overlaps() {
        let t = Instant::now();
        let mut s = Stalls::default();
        assert_eq!(s.note(at(t, 50), at(t, 55)), None, "5 ms late is the timer");
        assert_eq!(
            s.note(at(t, 100), at(t, 700)),
            Some(Duration::from_millis(600))
        );
        assert_eq!(s.within(at(t, 0), at(t, 1000)), Duration::from_millis(600));
        assert_eq!(
            s.within(at(t, 400), at(t, 1000)),
            Duration::from_millis(300)
        );
        assert_eq!(s.within(at(t, 700), at(t, 1000)), Duration::ZERO);
        // A 500 ms check: spoilt if 125 ms or more of it were stalled.
        assert!(s
            .spoilt(at(t, 200), at(t, 700), Duration::from_millis(500))
            .is_some());
        assert!(s
            .spoilt(at(t, 650), at(t, 1150), Duration::from_millis(500))
            .is_none());
        assert!(s
            .spoilt(at(t, 800), at(t, 1300), Duration::from_millis(500))
            .is_none());
    }

    #[test]
    fn a_look_notes_the_stall_since_the_one_due_and_sets_the_next() {
        let mut s = Stalls::default();
        let t = s.next_look();
        assert_eq!(s.look(at(t, 0)), Some(Duration::ZERO));
        assert_eq!(s.next_look(), at(t, 50));
        assert_eq!(s.look(at(t, 20)), None, "before it is due: nothing");
        assert_eq!(s.look(at(t, 55)), Some(Duration::from_millis(5)));
        assert_eq!(
            s.within(at(t, 0), at(t, 100)),
            Duration::ZERO,
            "5 ms is no stall"
        );
        assert_eq!(s.look(at(t, 505)), Some(Duration::from_millis(400)));
        assert_eq!(s.next_look(), at(t, 555));
        assert_eq!(s.within(at(t, 0), at(t, 1000)), Duration::from_millis(400));
    }

    #[test]
    fn lateness_is_counted_by_bucket_and_read_as_quantiles() {
        let l = Lateness::default();
        assert_eq!(l.snapshot().quantile(0.5), None);
        for _ in 0..98 {
            l.observe(Duration::from_micros(300));
        }
        l.observe(Duration::from_millis(40));
        l.observe(Duration::from_secs(3));
        let s = l.snapshot();
        assert_eq!(s.counts[0], 98);
        assert_eq!(s.counts[5], 1, "40 ms: the 50 ms bucket");
        assert_eq!(s.counts[10], 1, "3 s: +Inf");
        assert_eq!(s.quantile(0.5), Some(0.001));
        assert_eq!(s.quantile(0.99), Some(0.05));
        assert_eq!(s.quantile(1.0), Some(f64::INFINITY));
        assert!((s.sum_seconds - 3.0694).abs() < 1e-9, "{}", s.sum_seconds);
    }

    #[test]
    fn old_stalls_are_forgotten() {
        let t = Instant::now();
        let mut s = Stalls::default();
        s.note(at(t, 0), at(t, 500));
        s.note(at(t, 200_000), at(t, 200_020));
        assert_eq!(s.recent.len(), 1);
        assert_eq!(s.within(at(t, 0), at(t, 1000)), Duration::ZERO);
    }
}
