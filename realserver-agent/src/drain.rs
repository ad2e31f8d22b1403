//! The real server's own drain (`lvsdr-agent drain | ready`): the view the applier
//! publishes (the drain in force, its version, what each director last reported) and
//! the pure rules read from it: the answer to a director's poll, and whether every
//! director has the server at weight 0 with no active connection left.
//!
//! The drain itself is kept in the state file by the applier (its one writer); the
//! directors learn it from their long polls (`POST /v1/drain`), and tell the agent
//! their counts with each poll.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::time::Instant;

use lvsdr_agent_api::{AgentDrain, DrainAnswer, ServerCount};
use serde::{Deserialize, Serialize};

/// What a director last told the agent about this real server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Its destinations in that director's kernel.
    pub servers: Vec<ServerCount>,
    /// When it came.
    pub at: Instant,
    /// The director's polls since the agent started (what the long poll costs).
    pub polls: u64,
}

/// The applier's published drain state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainView {
    /// Changes with every drain and ready; starts at a random number in each run.
    pub version: u64,
    /// The drain in force.
    pub drain: Option<AgentDrain>,
    /// When this run of the agent began the drain in force (a report before it does
    /// not count: the director may not have applied the drain yet).
    pub drained_at: Option<Instant>,
    /// Each director's last report, by its key (certificate name and address).
    pub reports: BTreeMap<String, Report>,
    /// The directors whose VIP sets the agent holds: every one must report.
    pub directors: Vec<String>,
}

/// A number no other run of the agent starts its versions at.
pub fn first_version() -> u64 {
    // RandomState is seeded from the OS's randomness.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish() >> 1
}

impl DrainView {
    /// A view with `drain` (as loaded from the state file at `now`).
    pub fn new(drain: Option<AgentDrain>, now: Instant) -> DrainView {
        DrainView {
            version: first_version(),
            drained_at: drain.as_ref().map(|_| now),
            drain,
            reports: BTreeMap::new(),
            directors: Vec::new(),
        }
    }

    /// Sets (or lifts, with `None`) the drain: a new version.
    pub fn set(&mut self, drain: Option<AgentDrain>, now: Instant) {
        self.version = self.version.wrapping_add(1);
        self.drained_at = drain.as_ref().map(|_| now);
        self.drain = drain;
    }

    /// What a director's poll is answered with.
    pub fn answer(&self) -> DrainAnswer {
        DrainAnswer {
            version: self.version,
            drain: self.drain.clone(),
        }
    }

    /// Where the drain stands, director by director, as `lvsdr-agent status` shows it.
    pub fn status(&self, now: Instant) -> DrainStatus {
        let mut keys: Vec<&String> = self.directors.iter().collect();
        keys.extend(self.reports.keys().filter(|k| !self.directors.contains(k)));
        let directors: Vec<DirectorCounts> =
            keys.into_iter().map(|k| self.counts(k, now)).collect();
        let drained = self.drain.is_some()
            && directors
                .iter()
                .filter(|d| self.directors.contains(&d.director))
                .all(|d| d.done);
        DrainStatus {
            drain: self.drain.clone(),
            drained,
            directors,
        }
    }

    fn counts(&self, key: &str, now: Instant) -> DirectorCounts {
        let r = self.reports.get(key);
        let since_drain = match (r, self.drained_at) {
            (Some(r), Some(at)) => r.at >= at,
            _ => false,
        };
        let sum = |f: fn(&ServerCount) -> u32| -> u64 {
            r.map_or(0, |r| r.servers.iter().map(|s| u64::from(f(s))).sum())
        };
        let weight = sum(|s| s.weight.unwrap_or(0));
        let active = sum(|s| s.active);
        DirectorCounts {
            director: key.to_string(),
            reported_since_drain: since_drain,
            age_s: r.map(|r| now.saturating_duration_since(r.at).as_secs_f64()),
            weight,
            active,
            inactive: sum(|s| s.inactive),
            polls: r.map_or(0, |r| r.polls),
            done: since_drain && weight == 0 && active == 0,
        }
    }
}

/// `lvsdr-agent status`, and what `drain --wait` watches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrainStatus {
    /// The drain in force.
    pub drain: Option<AgentDrain>,
    /// Drained, and every director that pushes to this agent has reported, since the
    /// drain began, weight 0 and no active connection to this server.
    pub drained: bool,
    /// Each director's counts.
    pub directors: Vec<DirectorCounts>,
}

/// One director's view of this real server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirectorCounts {
    /// The director (its certificate name and address).
    pub director: String,
    /// It reported after the drain began.
    pub reported_since_drain: bool,
    /// How old its last report is (seconds); `None`: it never reported.
    pub age_s: Option<f64>,
    /// The sum of this server's weights in its kernel.
    pub weight: u64,
    /// Active connections to this server.
    pub active: u64,
    /// Other connections.
    pub inactive: u64,
    /// Its drain polls since the agent started.
    #[serde(default)]
    pub polls: u64,
    /// Weight 0 and no active connection, reported since the drain.
    pub done: bool,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn count(weight: Option<u32>, active: u32) -> ServerCount {
        ServerCount {
            service: "web".into(),
            server: "10.0.0.11:80".parse().expect("addr"),
            weight,
            active,
            inactive: 0,
        }
    }

    #[test]
    fn drained_only_when_every_director_reports_weight_0_and_no_connection_since_the_drain() {
        let t0 = Instant::now();
        let mut v = DrainView::new(None, t0);
        v.directors = vec!["d1 at 10.0.0.1".into(), "d2 at 10.0.0.2".into()];
        let before = v.version;
        let report = |servers, at| Report {
            servers,
            at,
            polls: 1,
        };
        // A report from before the drain: d1 had not applied it yet.
        v.reports
            .insert("d1 at 10.0.0.1".into(), report(vec![count(Some(0), 0)], t0));
        v.set(
            Some(AgentDrain {
                reason: "deploy".into(),
                since: 1,
            }),
            t0 + Duration::from_secs(1),
        );
        assert_ne!(v.version, before, "a drain is a new version");
        let t = |s| t0 + Duration::from_secs(s);
        assert!(
            !v.status(t(1)).drained,
            "a report from before the drain counted"
        );
        v.reports.insert(
            "d1 at 10.0.0.1".into(),
            report(vec![count(Some(0), 0)], t(2)),
        );
        assert!(!v.status(t(2)).drained, "d2 never reported");
        v.reports.insert(
            "d2 at 10.0.0.2".into(),
            report(vec![count(Some(0), 3)], t(2)),
        );
        let s = v.status(t(2));
        assert!(!s.drained, "d2 has 3 active connections");
        assert_eq!(s.directors[1].active, 3);
        v.reports.insert(
            "d2 at 10.0.0.2".into(),
            report(vec![count(Some(0), 0), count(None, 0)], t(3)),
        );
        assert!(v.status(t(3)).drained);
        // A director not pushing to this agent (no set) is shown, not waited for.
        v.reports.insert(
            "d3 at 10.0.0.3".into(),
            report(vec![count(Some(5), 1)], t(3)),
        );
        let s = v.status(t(3));
        assert!(s.drained);
        assert_eq!(s.directors.len(), 3);
        // Ready: not drained, a new version.
        let drained_version = v.version;
        v.set(None, t(4));
        assert!(!v.status(t(4)).drained);
        assert_ne!(v.answer().version, drained_version);
        assert_eq!(v.answer().drain, None);
    }

    #[test]
    fn a_weight_left_in_a_kernel_is_not_drained() {
        let t0 = Instant::now();
        let drain = AgentDrain {
            reason: String::new(),
            since: 1,
        };
        let mut v = DrainView::new(Some(drain), t0);
        v.directors = vec!["d1 at 10.0.0.1".into()];
        v.reports.insert(
            "d1 at 10.0.0.1".into(),
            Report {
                servers: vec![count(Some(1), 0)],
                at: t0 + Duration::from_secs(1),
                polls: 1,
            },
        );
        assert!(!v.status(t0).drained);
    }
}
