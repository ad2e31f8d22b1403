//! Rise/fall: consecutive results turn into a health state.

use std::collections::HashMap;
use std::sync::Arc;

use super::CheckSpec;

/// A real server's health as its check sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Not yet `rise` successes nor `fall` failures since the check started.
    Unknown,
    /// Up.
    Up,
    /// Down.
    Down,
}

/// The health of every running check; the planner's input.
pub type HealthMap = HashMap<Arc<CheckSpec>, Health>;

/// The rise/fall counter of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiseFall {
    rise: u32,
    fall: u32,
    successes: u32,
    failures: u32,
    /// Timeouts in a row not counted (this director stalled meanwhile).
    forgiven: u32,
    state: Health,
}

impl RiseFall {
    /// A counter that starts `Unknown`.
    pub fn new(rise: u32, fall: u32) -> RiseFall {
        RiseFall {
            rise: rise.max(1),
            fall: fall.max(1),
            successes: 0,
            failures: 0,
            forgiven: 0,
            state: Health::Unknown,
        }
    }

    /// The current state.
    pub fn state(&self) -> Health {
        self.state
    }

    /// The check could not run (a local error): the state is unknown until the
    /// server's answers count again; returns the new state if it changed.
    pub fn unknown(&mut self) -> Option<Health> {
        self.forgiven = 0;
        self.successes = 0;
        self.failures = 0;
        (self.state != Health::Unknown).then(|| {
            self.state = Health::Unknown;
            Health::Unknown
        })
    }

    /// Records one result; returns the new state if it changed.
    pub fn record(&mut self, ok: bool) -> Option<Health> {
        self.forgiven = 0;
        self.count(ok)
    }

    /// A timeout this director cannot vouch for: it stalled for a good part of the
    /// check's time. Not counted, up to `fall` in a row; after that each counts as a
    /// failure, so that a director that always stalls still takes a dead server out
    /// (in about twice the time). Returns the new state if it changed.
    pub fn inconclusive(&mut self) -> Option<Health> {
        self.forgiven = self.forgiven.saturating_add(1);
        if self.forgiven > self.fall {
            self.count(false)
        } else {
            None
        }
    }

    fn count(&mut self, ok: bool) -> Option<Health> {
        if ok {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
        } else {
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
        }
        let next = if self.successes >= self.rise {
            Health::Up
        } else if self.failures >= self.fall {
            Health::Down
        } else {
            self.state
        };
        (next != self.state).then(|| {
            self.state = next;
            next
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rises_and_falls_after_consecutive_results() {
        let mut rf = RiseFall::new(2, 3);
        assert_eq!(rf.record(true), None);
        assert_eq!(rf.record(true), Some(Health::Up));
        assert_eq!(rf.record(false), None);
        assert_eq!(rf.record(false), None);
        assert_eq!(rf.record(true), None, "a success resets the failure count");
        assert_eq!(rf.record(false), None);
        assert_eq!(rf.record(false), None);
        assert_eq!(rf.record(false), Some(Health::Down));
        assert_eq!(rf.record(true), None);
        assert_eq!(rf.record(true), Some(Health::Up));
        let mut new = RiseFall::new(2, 3);
        for _ in 0..2 {
            assert_eq!(new.record(false), None);
        }
        assert_eq!(
            new.record(false),
            Some(Health::Down),
            "unknown falls to down"
        );
    }

    #[test]
    fn timeouts_during_a_stall_are_forgiven_fall_times_in_a_row() {
        let mut rf = RiseFall::new(1, 2);
        assert_eq!(rf.record(true), Some(Health::Up));
        assert_eq!(rf.inconclusive(), None);
        assert_eq!(rf.inconclusive(), None);
        assert_eq!(rf.record(true), None, "an answer ends the run of stalls");
        assert_eq!(rf.inconclusive(), None);
        assert_eq!(rf.inconclusive(), None, "up to fall (2) in a row forgiven");
        assert_eq!(rf.inconclusive(), None, "the 3rd counts: 1 failure");
        assert_eq!(
            rf.inconclusive(),
            Some(Health::Down),
            "the 4th: 2 failures, down: a director that always stalls still sees a dead server"
        );
        assert_eq!(rf.record(true), Some(Health::Up));
        assert_eq!(rf.record(false), None);
        assert_eq!(
            rf.inconclusive(),
            None,
            "forgiven: the failure before stays at 1"
        );
        assert_eq!(rf.record(false), Some(Health::Down));
    }
}
