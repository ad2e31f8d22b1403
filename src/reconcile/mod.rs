//! Level-triggered reconciliation: [`plan`] (pure) computes the [`Op`]s that make the
//! kernel match the config; the [`driver`] is the one task that applies them, through
//! an [`IpvsBackend`].

pub mod backend;
pub mod cache;
pub mod counters;
pub mod driver;
pub mod error;
#[cfg(test)]
pub mod fake;
pub mod managed;
mod observed;
mod op;
mod plan;
mod quiet;
pub mod ramp;
pub mod refusal;
pub mod retry;
pub mod scope;
pub mod slow_start;
pub mod stall;
pub mod state;
pub mod sync;

#[cfg(test)]
mod tests;

pub use backend::{IpvsBackend, Kernel};
pub use error::PassError;
#[cfg(test)]
pub use fake::FakeKernel;
pub use observed::{Observed, ObservedService};
pub use op::Op;
pub use plan::{draining, effective_weight, health_of, plan, Drains, Gate, GateVerdict};
pub use scope::Scope;
pub use state::{liveness, ReconcileState, Stuck};
