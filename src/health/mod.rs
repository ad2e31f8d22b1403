//! Health checks: what a check is ([`CheckSpec`]), how each kind runs ([`Checker`]),
//! the rise/fall state ([`RiseFall`]), and the [`Supervisor`] that runs each distinct
//! check once and publishes flips and details on channels; [`syn`] runs the half-open
//! TCP checks.

pub(crate) mod check;
mod failure;
mod spec;
mod state;
mod supervisor;
pub mod syn;
mod via;

pub use check::{Checker, Prepared};
pub use failure::CheckFailure;
pub use spec::{CheckKind, CheckSpec, HttpCheck, StatusSet, Via};
pub use state::{Health, HealthMap, RiseFall};
pub use supervisor::{CheckDetail, DetailMap, Supervisor};
