//! Slow start (`slow_start`): a real server coming back into service (health up after
//! down, an operator's enable, its agent's confirmation) gets its weight in steps, so
//! that `lc`/`wlc` do not send it every new connection at once (it has none).
//!
//! The [`Ramps`] tracker, kept by the driver, notes when each server came back: its
//! weight was 0 for a known reason (health down, an override, the gate) and is no
//! longer. No ramp for a server seen for the first time (adopted at start, added by a
//! reload) or whose health was unknown. The planner then gives [`ramped`] weights.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::observed::Observed;
use super::plan::{effective_weight, health_of, Gate};
use crate::health::{Health, HealthMap};
use crate::ipvs::ServiceKey;
use crate::model::Desired;

/// A real server of a service.
pub type RampId = (ServiceKey, IpAddr, u16);

/// The steps a ramp takes below the full weight.
pub const STEPS: u32 = 5;

/// The weight `full` ramps to `elapsed` into a slow start of `over`: 1/6, 2/6, … 5/6
/// of it, in five equal steps (at least 1), then all of it.
pub fn ramped(full: u32, elapsed: Duration, over: Duration) -> u32 {
    if full == 0 || elapsed >= over {
        return full;
    }
    let step = elapsed.as_nanos() * u128::from(STEPS) / over.as_nanos().max(1) + 1;
    let w = u128::from(full) * step / u128::from(STEPS + 1);
    u32::try_from(w).unwrap_or(full).clamp(1, full)
}

/// When the step after `elapsed` begins, from the ramp's start (`None`: at full weight).
fn next_step(elapsed: Duration, over: Duration) -> Option<Duration> {
    if elapsed >= over {
        return None;
    }
    let step = elapsed.as_nanos() * u128::from(STEPS) / over.as_nanos().max(1) + 1;
    let at = over.as_nanos() * step / u128::from(STEPS);
    Some(Duration::from_nanos(u64::try_from(at).unwrap_or(u64::MAX)))
}

/// Which servers are ramping since when, and which were out (for a known reason) at
/// the last look.
#[derive(Debug, Default)]
pub struct Ramps {
    /// Ramping servers: since when, and over how long.
    pub since: HashMap<RampId, (Instant, Duration)>,
    out: HashMap<RampId, bool>,
}

impl Ramps {
    /// Looks at the servers with `slow_start` in `desired` (a pass's scope) as the pass
    /// sees them; `whole`: every service is in it (forget the servers that are gone).
    pub fn track(
        &mut self,
        desired: &Desired,
        observed: &Observed,
        health: &HealthMap,
        gate: &Gate,
        now: Instant,
        whole: bool,
    ) {
        let mut seen = Vec::new();
        for svc in &desired.services {
            let obs = observed.services.get(&svc.service.key);
            for rs in &svc.real_servers {
                let Some(over) = rs.slow_start else { continue };
                let id = (svc.service.key.clone(), rs.dest.addr, rs.dest.port);
                let entry = obs.and_then(|o| o.dests.get(&(rs.dest.addr, rs.dest.port)));
                // Without a ramp: what it should have in full.
                let full = effective_weight(svc, rs, health, gate, entry).unwrap_or(0);
                let known = health_of(rs, health) != Health::Unknown;
                let was_out = self.out.insert(id.clone(), full == 0 && known);
                if full == 0 {
                    self.since.remove(&id);
                } else if was_out == Some(true) {
                    self.since.insert(id.clone(), (now, over));
                }
                if let Some((t, over)) = self.since.get(&id) {
                    if now.saturating_duration_since(*t) >= *over {
                        self.since.remove(&id);
                    }
                }
                if whole {
                    seen.push(id);
                }
            }
        }
        if whole {
            let seen: std::collections::HashSet<RampId> = seen.into_iter().collect();
            self.out.retain(|id, _| seen.contains(id));
            self.since.retain(|id, _| seen.contains(id));
        }
    }

    /// When the next step of any ramp comes, and the services ramping then.
    pub fn next(&self, now: Instant) -> Option<(Instant, Vec<ServiceKey>)> {
        let at = self
            .since
            .values()
            .filter_map(|(t, over)| {
                next_step(now.saturating_duration_since(*t), *over).map(|d| *t + d)
            })
            .min()?;
        let keys = self.since.keys().map(|(k, _, _)| k.clone()).collect();
        Some((at, keys))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_steps_then_the_full_weight() {
        let over = Duration::from_secs(30);
        let at = |s: u64| ramped(12, Duration::from_secs(s), over);
        assert_eq!(
            [at(0), at(5), at(6), at(12), at(18), at(24), at(29), at(30)],
            [2, 2, 4, 6, 8, 10, 10, 12]
        );
        assert_eq!(
            ramped(1, Duration::ZERO, over),
            1,
            "never 0 while it serves"
        );
        assert_eq!(ramped(0, Duration::ZERO, over), 0);
        assert_eq!(
            next_step(Duration::from_secs(7), over),
            Some(Duration::from_secs(12))
        );
        assert_eq!(next_step(Duration::from_secs(25), over), Some(over));
        assert_eq!(next_step(over, over), None);
    }
}
