//! The kernel's table as the planner reads it: services by key, destinations by
//! address and port.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::ipvs::listing::Table;
use crate::ipvs::{DestEntry, ServiceKey, ServiceSettings, Stats};

/// One service as the kernel has it.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedService {
    /// Its settings.
    pub settings: ServiceSettings,
    /// Its counters.
    pub stats: Stats,
    /// Its destinations.
    pub dests: HashMap<(IpAddr, u16), DestEntry>,
}

/// The whole table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// Every service, managed or not.
    pub services: HashMap<ServiceKey, ObservedService>,
}

impl From<&Table> for Observed {
    fn from(t: &Table) -> Observed {
        Observed {
            services: t
                .iter()
                .map(|(s, ds)| {
                    (
                        s.service.key.clone(),
                        ObservedService {
                            settings: s.service.settings.clone(),
                            stats: s.stats,
                            dests: ds
                                .iter()
                                .map(|d| ((d.dest.addr, d.dest.port), d.clone()))
                                .collect(),
                        },
                    )
                })
                .collect(),
        }
    }
}
