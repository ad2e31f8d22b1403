//! The driver's copy of the kernel table between full reads, and how a cheap read of
//! `/proc/net/ip_vs` decides which services must be read again over netlink.
//!
//! A full read costs one netlink dump per service. A resync instead reads the proc
//! file (the whole table in one read, but not every field, and possibly not every
//! service: see [`crate::ipvs::proc`]). A service whose proc block carries the
//! fingerprint seen when it was last read over netlink keeps its cached state, with the
//! connection counts the proc file shows; a service whose block changed, is new, or is
//! missing (deleted, or skipped by the kernel) is read again over netlink, which is
//! also what says whether it still exists. Connection counts and traffic counters are
//! not configuration: they do not make a service be read again (the fingerprint leaves
//! the counts out; a busy service's traffic counters are read by
//! [`super::counters`], apart from the pass). The fingerprint stored for a block is always from a proc read made
//! *before* the netlink read it vouches for, so a change racing with the reads shows
//! up as a mismatch next time, never as a match. Destination fields the proc file
//! leaves out (thresholds, tunnel settings, scheduler flags, persistence engines) are
//! caught by the periodic full read.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use super::observed::{Observed, ObservedService};
use crate::ipvs::listing::Table;
use crate::ipvs::proc::Block;
use crate::ipvs::{DestEntry, ServiceEntry, ServiceKey};

/// A service as read over netlink (`None`: the kernel does not have it).
pub type Read = (ServiceKey, Option<(ServiceEntry, Vec<DestEntry>)>);

/// The cached table and the fingerprints that vouch for it.
#[derive(Debug, Clone, Default)]
pub struct TableCache {
    /// The table as last read.
    pub observed: Observed,
    /// Service → the fingerprint of its block seen before it was last read (by key,
    /// not by the block's printed id: no id is formatted per pass).
    seen: HashMap<ServiceKey, u64>,
}

pub(crate) fn observed_service(s: ServiceEntry, dests: Vec<DestEntry>) -> Arc<ObservedService> {
    Arc::new(ObservedService {
        settings: s.service.settings,
        stats: s.stats,
        dests: dests
            .into_iter()
            .map(|d| ((d.dest.addr, d.dest.port), d))
            .collect(),
    })
}

/// The blocks by id, leaving out ids printed more than once (an IPv4 and an IPv6
/// fwmark service with the same mark look alike): their services are always read.
fn unique(blocks: &[Block]) -> HashMap<&str, &Block> {
    let mut by_id: HashMap<&str, Option<&Block>> = HashMap::with_capacity(blocks.len());
    for b in blocks {
        by_id
            .entry(b.id.as_str())
            .and_modify(|e| *e = None)
            .or_insert(Some(b));
    }
    by_id
        .into_iter()
        .filter_map(|(id, b)| Some((id, b?)))
        .collect()
}

impl TableCache {
    /// A cache from a full read, vouched for by `blocks` (read before `table`).
    pub fn full(table: Table, blocks: &[Block]) -> TableCache {
        let mut c = TableCache {
            observed: Observed {
                services: table
                    .into_iter()
                    .map(|(s, d)| (s.service.key.clone(), observed_service(s, d)))
                    .collect(),
            },
            seen: HashMap::new(),
        };
        c.remember(blocks);
        c
    }

    fn remember(&mut self, blocks: &[Block]) {
        let services = &self.observed.services;
        self.seen = unique(blocks)
            .into_values()
            .flat_map(|b| b.keys.iter().map(move |k| (k, b.fingerprint)))
            .filter(|(k, _)| services.contains_key(*k))
            .map(|(k, fp)| (k.clone(), fp))
            .collect();
    }

    /// The services to read again over netlink: those whose block is new, changed or
    /// ambiguous, those the director changed since they were read (`dirty`), and
    /// cached or dirty ones the proc read does not list (deleted, or skipped by the
    /// kernel). Not those with connections: counters are not configuration.
    pub fn stale(&self, blocks: &[Block], dirty: &HashSet<ServiceKey>) -> Vec<ServiceKey> {
        let by_id = unique(blocks);
        let mut out: Vec<ServiceKey> = Vec::new();
        let mut listed: HashSet<&ServiceKey> = HashSet::with_capacity(blocks.len());
        for b in blocks {
            // `seen` only holds cached services; an ambiguous id vouches for nothing.
            let unambiguous = by_id.contains_key(b.id.as_str());
            for k in &b.keys {
                listed.insert(k);
                let fresh = unambiguous && self.seen.get(k) == Some(&b.fingerprint);
                if !fresh || dirty.contains(k) {
                    out.push(k.clone());
                }
            }
        }
        out.extend(
            self.observed
                .services
                .keys()
                .chain(dirty)
                .filter(|k| !listed.contains(k))
                .cloned(),
        );
        out.sort();
        out.dedup();
        out
    }

    /// Takes in a resync: the proc read (`blocks`) and the netlink reads of what
    /// [`TableCache::stale`] named. The other listed services keep their cached
    /// state, with the connection counts of the proc read.
    pub fn update(&mut self, blocks: &[Block], reads: Vec<Read>) {
        let mut out = HashMap::with_capacity(blocks.len());
        let mut read: HashSet<ServiceKey> = HashSet::with_capacity(reads.len());
        for (key, r) in reads {
            read.insert(key.clone());
            if let Some((s, d)) = r {
                out.insert(key, observed_service(s, d));
            }
        }
        for b in blocks {
            for key in &b.keys {
                if read.contains(key) {
                    continue;
                }
                let Some(mut o) = self.observed.services.remove(key) else {
                    continue;
                };
                // `conns` lists the destinations with connections; the others
                // have none. Idle before and idle now: nothing to look up.
                let had = o
                    .dests
                    .values()
                    .any(|d| d.active_conns + d.inactive_conns > 0);
                if had || !b.conns.is_empty() {
                    let now: HashMap<(IpAddr, u16), (u32, u32)> = b
                        .conns
                        .iter()
                        .map(|&(a, p, act, inact)| ((a, p), (act, inact)))
                        .collect();
                    let count = |id: &(IpAddr, u16)| now.get(id).copied().unwrap_or((0, 0));
                    let moved = o
                        .dests
                        .iter()
                        .any(|(id, d)| (d.active_conns, d.inactive_conns) != count(id));
                    if moved {
                        for (id, d) in Arc::make_mut(&mut o).dests.iter_mut() {
                            (d.active_conns, d.inactive_conns) = count(id);
                        }
                    }
                }
                out.insert(key.clone(), o);
            }
        }
        self.observed = Observed { services: out };
        self.remember(blocks);
    }

    /// Takes in netlink reads of some services, without a proc read (a pass limited to
    /// the services an event touched). Their fingerprints stay: they come from a proc
    /// read older than these reads, so they still can only err towards reading again.
    pub fn patch(&mut self, reads: Vec<Read>) {
        for (key, r) in reads {
            match r {
                Some((s, d)) => {
                    self.observed.services.insert(key, observed_service(s, d));
                }
                None => {
                    self.observed.services.remove(&key);
                }
            }
        }
    }
}
