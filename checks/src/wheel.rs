//! A hashed timer wheel: events land in slots of one tick each, a slot holds the
//! events of every lap around the wheel (each with its tick number), and advancing
//! takes out what is due. Inserting and taking out are O(1); the slots' vectors keep
//! their capacity, so a steady set of checks allocates nothing.

use std::time::Duration;

use tokio::time::Instant;

/// Slots in the wheel: with 10 ms ticks, one lap is 10.24 s.
const SLOTS: usize = 1024;

/// Events of type `T` by due time, to the tick.
pub struct Wheel<T> {
    tick: Duration,
    start: Instant,
    /// The next tick to take out.
    current: u64,
    slots: Vec<Vec<(u64, T)>>,
    len: usize,
}

impl<T: Copy> Wheel<T> {
    /// An empty wheel of `tick`-wide slots, starting now.
    pub fn new(tick: Duration) -> Wheel<T> {
        Wheel {
            tick,
            start: Instant::now(),
            current: 0,
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            len: 0,
        }
    }

    fn tick_of(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.start);
        (since.as_nanos() / self.tick.as_nanos().max(1)) as u64
    }

    /// Puts `ev` on the wheel for `at` (the tick that holds `at`; a time already past
    /// goes to the next tick taken out).
    pub fn insert(&mut self, at: Instant, ev: T) {
        let t = self.tick_of(at).max(self.current);
        self.slots[(t % SLOTS as u64) as usize].push((t, ev));
        self.len += 1;
    }

    /// Takes out, into `out`, every event due by `now`.
    pub fn advance(&mut self, now: Instant, out: &mut Vec<T>) {
        let last = self.tick_of(now);
        // Past one lap every slot has been visited: no need to go round again.
        let from = self.current.max(last.saturating_sub(SLOTS as u64 - 1));
        for t in from..=last {
            let slot = &mut self.slots[(t % SLOTS as u64) as usize];
            let before = out.len();
            // Events of a later lap stay; events due by `last` go.
            let mut i = 0;
            while i < slot.len() {
                if slot[i].0 <= last {
                    out.push(slot.swap_remove(i).1);
                } else {
                    i += 1;
                }
            }
            self.len -= out.len() - before;
        }
        self.current = self.current.max(last + 1);
    }

    /// When the next event is due (`None`: the wheel is empty): the start of the
    /// first slot ahead that holds one due within a lap, or a lap from now.
    pub fn next_at(&self) -> Option<Instant> {
        if self.len == 0 {
            return None;
        }
        let lap_end = self.current + SLOTS as u64;
        let mut best = lap_end;
        for t in self.current..lap_end {
            let slot = &self.slots[(t % SLOTS as u64) as usize];
            if let Some(min) = slot.iter().map(|(due, _)| *due).min() {
                if min <= t {
                    best = t;
                    break;
                }
                best = best.min(min);
            }
        }
        let nanos = (self.tick.as_nanos() as u64).saturating_mul(best);
        Some(self.start + Duration::from_nanos(nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(w: &mut Wheel<u32>, at: Instant) -> Vec<u32> {
        let mut out = Vec::new();
        w.advance(at, &mut out);
        out.sort();
        out
    }

    #[tokio::test(start_paused = true)]
    async fn events_come_out_at_their_tick_and_not_before() {
        let tick = Duration::from_millis(10);
        let mut w = Wheel::new(tick);
        let t0 = Instant::now();
        w.insert(t0 + Duration::from_millis(25), 1);
        w.insert(t0 + Duration::from_millis(5), 2);
        // Beyond one lap (10.24 s): must wait for its own lap.
        w.insert(t0 + Duration::from_millis(10_255), 3);
        assert_eq!(w.next_at(), Some(t0));
        assert_eq!(drain(&mut w, t0 + Duration::from_millis(9)), vec![2]);
        assert_eq!(w.next_at(), Some(t0 + Duration::from_millis(20)));
        assert_eq!(
            drain(&mut w, t0 + Duration::from_millis(19)),
            Vec::<u32>::new()
        );
        assert_eq!(drain(&mut w, t0 + Duration::from_millis(29)), vec![1]);
        assert_eq!(
            drain(&mut w, t0 + Duration::from_millis(10_000)),
            Vec::<u32>::new()
        );
        assert_eq!(w.next_at(), Some(t0 + Duration::from_millis(10_250)));
        assert_eq!(drain(&mut w, t0 + Duration::from_millis(10_260)), vec![3]);
        assert_eq!(w.next_at(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_advance_takes_out_everything_overdue_and_past_times_go_next() {
        let mut w = Wheel::new(Duration::from_millis(10));
        let t0 = Instant::now();
        for i in 0..3000u32 {
            w.insert(t0 + Duration::from_millis(u64::from(i) * 7), i);
        }
        // A stall of 30 s: all of them at once.
        assert_eq!(drain(&mut w, t0 + Duration::from_secs(30)).len(), 3000);
        w.insert(t0, 9); // already past: due at the next tick
        assert_eq!(w.next_at(), Some(t0 + Duration::from_millis(30_010)));
        assert_eq!(drain(&mut w, t0 + Duration::from_millis(30_010)), vec![9]);
    }
}
