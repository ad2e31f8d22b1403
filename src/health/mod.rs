//! The vocabulary of health, shared by config, planner and the checks: what a check is
//! ([`CheckSpec`]), what it found ([`Health`], per check in a [`HealthMap`]) and the
//! rise/fall counting ([`RiseFall`]). Running checks is the `lvsdr-checks` crate's
//! work (it needs sockets, HTTP and TLS, which the engine does without).

mod spec;
mod state;

pub use spec::{CheckKind, CheckSpec, HttpCheck, StatusSet, Via};
pub use state::{Health, HealthMap, RiseFall};
