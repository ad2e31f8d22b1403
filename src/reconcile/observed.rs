//! The kernel's table as the planner reads it: services by key, destinations by
//! address and port.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

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

/// The whole table. Services are shared (`Arc`): the copy published after each pass
/// for `/status` costs a pointer per service, and a pass that changes one service
/// copies that one only.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// Every service, managed or not.
    pub services: HashMap<ServiceKey, Arc<ObservedService>>,
}

impl From<&Table> for Observed {
    fn from(t: &Table) -> Observed {
        Observed {
            services: t
                .iter()
                .map(|(s, ds)| {
                    (
                        s.service.key.clone(),
                        Arc::new(ObservedService {
                            settings: s.service.settings.clone(),
                            stats: s.stats,
                            dests: ds
                                .iter()
                                .map(|d| ((d.dest.addr, d.dest.port), d.clone()))
                                .collect(),
                        }),
                    )
                })
                .collect(),
        }
    }
}
