//! A short history per service for the status page: every [`SAMPLE_EVERY`], its
//! connections per second and how many of its real servers are up, for the last
//! [`KEPT`] (15 minutes). Pure: the director's sampling task feeds it [`points`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use lvsdr::model::Desired;
use lvsdr::reconcile::{health_of, Observed};
use lvsdr_checks::{Health, HealthMap};

/// How often a sample is taken.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// How much history is kept.
pub const KEPT: Duration = Duration::from_secs(15 * 60);

/// One sample of one service.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// When (seconds since the epoch).
    pub at: f64,
    /// New connections per second, as the kernel's rate estimator says.
    pub cps: u32,
    /// Real servers up.
    pub up: u16,
    /// Real servers in all.
    pub servers: u16,
}

/// What is kept per service per sample: 8 bytes (10,000 services × 90 samples: 7 MB).
#[derive(Debug, Clone, Copy)]
struct Point {
    cps: u32,
    up: u16,
    servers: u16,
}

/// What the history keeps of each service now: (name, connections per second, real
/// servers up, real servers), straight from the config, the table and the checks.
/// The sampler took a whole status document every 10 s for these three numbers; at
/// 10,000 × 10 services a debug build under emulation spent a core on it.
pub fn points<'a>(
    desired: &'a Desired,
    observed: &Observed,
    health: &HealthMap,
) -> Vec<(&'a str, u64, usize, usize)> {
    desired
        .services
        .iter()
        .map(|s| {
            let cps = observed
                .services
                .get(&s.service.key)
                .map_or(0, |o| o.stats.cps);
            let up = s
                .real_servers
                .iter()
                .filter(|r| health_of(r, health) == Health::Up)
                .count();
            (s.name.as_str(), cps, up, s.real_servers.len())
        })
        .collect()
}

/// The samples of every service, by name. The sample times are kept once: a service's
/// points are the last ones (a service added later has fewer).
#[derive(Debug, Clone, Default)]
pub struct History {
    times: VecDeque<f64>,
    services: HashMap<String, VecDeque<Point>>,
}

impl History {
    /// Adds one sample per service, (name, connections per second, servers up,
    /// servers), taken at `at`; drops what is older than [`KEPT`] and services not
    /// sampled (no longer in the config).
    pub fn record_points<'a>(
        &mut self,
        points: impl IntoIterator<Item = (&'a str, u64, usize, usize)>,
        at: f64,
    ) {
        let points: Vec<(&str, u64, usize, usize)> = points.into_iter().collect();
        let cap = (KEPT.as_secs() / SAMPLE_EVERY.as_secs()) as usize;
        self.times.push_back(at);
        while self.times.len() > cap
            || self
                .times
                .front()
                .is_some_and(|t| at - t > KEPT.as_secs_f64())
        {
            self.times.pop_front();
        }
        let keep = self.times.len();
        // By a set of names: a scan of the list per kept service was quadratic, 10^8
        // comparisons every 10 s at 10,000 services.
        let current: HashSet<&str> = points.iter().map(|p| p.0).collect();
        self.services
            .retain(|name, _| current.contains(name.as_str()));
        for (name, cps, up, servers) in points {
            let kept = self.services.entry(name.to_string()).or_default();
            kept.push_back(Point {
                cps: u32::try_from(cps).unwrap_or(u32::MAX),
                up: u16::try_from(up).unwrap_or(u16::MAX),
                servers: u16::try_from(servers).unwrap_or(u16::MAX),
            });
            while kept.len() > keep {
                kept.pop_front();
            }
        }
    }

    /// A service's samples, oldest first.
    pub fn of(&self, name: &str) -> Vec<Sample> {
        let Some(points) = self.services.get(name) else {
            return Vec::new();
        };
        let skip = self.times.len() - points.len().min(self.times.len());
        self.times
            .iter()
            .skip(skip)
            .zip(points)
            .map(|(at, p)| Sample {
                at: *at,
                cps: p.cps,
                up: p.up,
                servers: p.servers,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One sample per name: `cps` connections/s, `up` of 3 servers up.
    fn sample<'a>(names: &[&'a str], cps: u64, up: usize) -> Vec<(&'a str, u64, usize, usize)> {
        names.iter().map(|n| (*n, cps, up, 3)).collect()
    }

    /// The sampler's numbers come from the config, the table and the checks, as the
    /// status document would say them.
    #[test]
    fn points_count_servers_up_by_their_checks() {
        let text = "[[service]]\nname = \"web\"\nvip = \"192.0.2.10\"\nport = 80\n\
                    [[service.real_server]]\naddress = \"10.0.0.11\"\n\
                    [[service.real_server]]\naddress = \"10.0.0.12\"\n";
        let d = lvsdr::config::parse(text, "t.toml").expect("config");
        let checks = d.checks();
        let health: HealthMap = [
            (checks[0].clone(), Health::Up),
            (checks[1].clone(), Health::Down),
        ]
        .into_iter()
        .collect();
        let p = points(&d, &Observed::default(), &health);
        assert_eq!(p, vec![("web", 0, 1, 2)]);
        let mut h = History::default();
        h.record_points(p, 10.0);
        assert_eq!(h.of("web")[0].up, 1);
    }

    #[test]
    fn keeps_fifteen_minutes_and_forgets_removed_services() {
        let mut h = History::default();
        for i in 0..200u32 {
            let names: &[&str] = if i >= 150 {
                &["web", "dns", "new"]
            } else {
                &["web", "dns"]
            };
            h.record_points(sample(names, u64::from(i), 2), f64::from(i) * 10.0);
        }
        let web = h.of("web");
        assert_eq!(web.len(), 90, "15 minutes of 10 s samples");
        assert_eq!(
            web.last().map(|s| (s.cps, s.up, s.servers)),
            Some((199, 2, 3))
        );
        assert!(web.last().expect("last").at - web[0].at <= KEPT.as_secs_f64());
        // A service added later has its own (shorter) history, aligned at the end.
        let new = h.of("new");
        assert_eq!(new.len(), 50);
        assert_eq!((new[0].at, new[49].at), (1500.0, 1990.0));
        h.record_points(sample(&["web"], 1, 3), 2000.0);
        assert!(h.of("dns").is_empty());
        // A gap (the director was busy) drops what is too old, not just the count.
        h.record_points(sample(&["web"], 1, 3), 2000.0 + KEPT.as_secs_f64() + 1.0);
        assert_eq!(h.of("web").len(), 1);
    }
}
