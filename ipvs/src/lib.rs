//! The kernel's IPVS table over generic netlink (family `IPVS`).
//!
//! - [`consts`]: kernel numbers from `ip_vs.h`, in one place.
//! - [`types`]: the typed model (services, destinations, stats, daemons, timeouts).
//! - [`wire`]: encoding and parsing of every message kind, both directions.
//! - [`handle`]: the socket: family resolution, pipelined requests, dumps, typed errors.
//! - [`batch`]: changes, many to one `sendmsg`.
//! - [`proc`]: `/proc/net/ip_vs`, the one-read listing used to detect changes.
//! - [`progress`]: a count of the kernel's answers (a stall is no answer for long).
//! - [`error`]: what can go wrong, naming the object and the operation.

pub mod consts;
pub mod types;
pub mod wire;

#[cfg(test)]
mod vectors;

pub use types::*;
pub mod batch;
pub mod error;
pub mod handle;
pub mod listing;
pub mod proc;
pub mod progress;

pub use error::IpvsError;
pub use handle::IpvsHandle;
pub use progress::Progress;
