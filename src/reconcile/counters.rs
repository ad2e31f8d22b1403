//! Traffic counters (packets, bytes, rates) for the status endpoint, read apart from
//! the reconciler. A resync tells what changed from `/proc/net/ip_vs`, and counters
//! are not configuration: a service whose connections carry traffic is not read again
//! by the pass for them (that made a "no-op" resync under traffic a full read). This
//! reader, on a socket and a schedule of its own ([`EVERY`]), reads the services that
//! show connections, and those that showed some at its previous read (for their last
//! packets); an idle service's counters stand still, so what the reconciler last read
//! of them is current.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use super::backend::IpvsBackend;
use super::cache::observed_service;
use super::observed::{Observed, ObservedService};
use crate::ipvs::{IpvsError, ServiceKey};

/// How often the counters of busy services are read.
pub const EVERY: Duration = Duration::from_secs(10);

/// The counters read so far, by service (settings and connection counts in here are
/// not used: the reconciler's table is the one for those).
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// Services read, with their destinations' counters.
    pub services: HashMap<ServiceKey, Arc<ObservedService>>,
    /// Services that showed connections at the last read.
    busy: HashSet<ServiceKey>,
}

/// The services with connections on any destination.
pub fn busy(observed: &Observed) -> HashSet<ServiceKey> {
    observed
        .services
        .iter()
        .filter(|(_, s)| {
            s.dests
                .values()
                .any(|d| d.active_conns + d.inactive_conns > 0)
        })
        .map(|(k, _)| k.clone())
        .collect()
}

impl Counters {
    /// Reads the busy services (now, or at the previous read) over netlink; returns
    /// how many were read.
    pub async fn read<B: IpvsBackend>(
        &mut self,
        backend: &B,
        observed: &Observed,
    ) -> Result<usize, IpvsError> {
        let now = busy(observed);
        let mut keys: Vec<ServiceKey> = now.union(&self.busy).cloned().collect();
        keys.sort();
        let reads = if keys.is_empty() {
            Vec::new()
        } else {
            backend.services(&keys).await?
        };
        for (key, r) in reads {
            match r {
                Some((s, d)) => {
                    self.services.insert(key, observed_service(s, d));
                }
                None => {
                    self.services.remove(&key);
                }
            }
        }
        self.services
            .retain(|k, _| observed.services.contains_key(k));
        self.busy = now;
        Ok(keys.len())
    }

    /// `observed` with the counters read here (where they are): what `/status` shows.
    pub fn overlay(&self, observed: &Observed) -> Observed {
        let mut out = observed.clone();
        for (key, read) in &self.services {
            let Some(o) = out.services.get_mut(key) else {
                continue;
            };
            let moved = o.stats != read.stats
                || o.dests
                    .iter()
                    .any(|(a, d)| read.dests.get(a).is_some_and(|r| r.stats != d.stats));
            if !moved {
                continue;
            }
            let o = Arc::make_mut(o);
            o.stats = read.stats;
            for (a, d) in o.dests.iter_mut() {
                if let Some(r) = read.dests.get(a) {
                    d.stats = r.stats;
                }
            }
        }
        out
    }
}
