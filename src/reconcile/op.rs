//! A kernel change the planner asks for, and the order changes are applied in.

use std::fmt;
use std::net::IpAddr;

use crate::ipvs::wire::{DestAttrs, Request};
use crate::ipvs::{fmt_addr_port, Dest, Service, ServiceKey};

/// One change to the kernel's IPVS table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Op {
    /// Add a service.
    AddService(Service),
    /// Change a service's settings.
    EditService(Service),
    /// Add a destination.
    AddDest(ServiceKey, Dest),
    /// Change a destination's weight, forwarding or thresholds.
    EditDest(ServiceKey, Dest),
    /// Delete a destination.
    DelDest(ServiceKey, IpAddr, u16),
    /// Delete a service (and its destinations).
    DelService(ServiceKey),
}

impl Op {
    /// Apply order: services exist before their destinations are touched, and
    /// deletions come last, after the traffic has somewhere to go.
    pub fn phase(&self) -> u8 {
        match self {
            Op::AddService(_) => 0,
            Op::EditService(_) => 1,
            Op::AddDest(..) => 2,
            Op::EditDest(..) => 3,
            Op::DelDest(..) => 4,
            Op::DelService(_) => 5,
        }
    }

    /// The service it concerns.
    pub fn service(&self) -> &ServiceKey {
        match self {
            Op::AddService(s) | Op::EditService(s) => &s.key,
            Op::AddDest(k, _) | Op::EditDest(k, _) | Op::DelDest(k, ..) | Op::DelService(k) => k,
        }
    }

    /// The netlink request that performs it.
    pub fn request(&self) -> Request {
        match self {
            Op::AddService(s) => Request::NewService(s.clone()),
            Op::EditService(s) => Request::SetService(s.clone()),
            Op::AddDest(k, d) => Request::NewDest(k.clone().into(), *d),
            Op::EditDest(k, d) => Request::SetDest(k.clone().into(), *d),
            Op::DelDest(k, addr, port) => Request::DelDest(
                k.clone().into(),
                DestAttrs {
                    addr: *addr,
                    port: *port,
                    settings: None,
                },
            ),
            Op::DelService(k) => Request::DelService(k.clone().into()),
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::AddService(s) => write!(
                f,
                "add service {} scheduler {}",
                s.key, s.settings.scheduler
            ),
            Op::EditService(s) => {
                write!(
                    f,
                    "edit service {} scheduler {}",
                    s.key, s.settings.scheduler
                )
            }
            Op::AddDest(k, d) => write!(
                f,
                "add real server {} to {k} weight {}",
                d.addr_port(),
                d.settings.weight
            ),
            Op::EditDest(k, d) => write!(
                f,
                "set real server {} of {k} weight {}",
                d.addr_port(),
                d.settings.weight
            ),
            Op::DelDest(k, a, p) => {
                write!(f, "remove real server {} from {k}", fmt_addr_port(a, *p))
            }
            Op::DelService(k) => write!(f, "remove service {k}"),
        }
    }
}
