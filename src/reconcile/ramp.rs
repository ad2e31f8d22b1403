//! Slow start (`slow_start`): a real server coming back into service (health up after
//! down, an operator's enable, its agent's confirmation) gets its weight in steps, so
//! that `lc`/`wlc` do not send it every new connection at once (it has none).
//!
//! The [`Ramps`] tracker, kept by the driver, notes when each server came back: its
//! weight was 0 for a known reason (health down, an override, the gate) and is no
//! longer. No ramp for a server seen for the first time (adopted at start, added by a
//! reload) or whose health was unknown. The planner then gives [`ramped`] weights.
//!
//! [`ramped`]: super::slow_start::ramped

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::observed::Observed;
use super::plan::{effective_weight, health_of, Gate};
use super::slow_start::{next_step, RampId};
use crate::health::{Health, HealthMap};
use crate::ipvs::ServiceKey;
use crate::model::Desired;

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
