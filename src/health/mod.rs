//! Health checks: what a check is ([`CheckSpec`]), how each kind runs, the rise/fall
//! state machine, and the supervisor that runs each distinct check once.

mod spec;

pub use spec::{CheckKind, CheckSpec, HttpCheck};
mod state;

pub use state::{Health, HealthMap, RiseFall};
