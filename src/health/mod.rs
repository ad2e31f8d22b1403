//! Health checks: what a check is ([`CheckSpec`]), how each kind runs ([`Checker`]),
//! the rise/fall state ([`RiseFall`]), and the [`Supervisor`] whose one scheduler (a
//! timer wheel) runs each distinct check and publishes flips and details on channels;
//! `tcp` runs the connect checks from one epoll set, [`syn`] the half-open ones.

pub(crate) mod check;
mod failure;
mod http1;
pub mod lag;
mod roots;
mod spec;
mod state;
mod supervisor;
pub mod syn;
mod tcp;
mod via;
mod wheel;

pub use check::{dns_answer, setpriv, Checker, Prepared};
pub use failure::CheckFailure;
pub use spec::{CheckKind, CheckSpec, HttpCheck, StatusSet, Via};
pub use state::{Health, HealthMap, RiseFall};
pub use supervisor::{CheckDetail, DetailMap, Supervisor, Tally};
