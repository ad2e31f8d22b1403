//! Health checks run: how each kind runs ([`Checker`]), and the [`Supervisor`] whose one
//! scheduler (a timer wheel) runs each distinct check and publishes flips and details
//! on channels; `tcp` runs the connect checks from one epoll set, [`syn`] the
//! half-open ones. What a check is and what it found is the engine's vocabulary
//! (`lvsdr::health`), re-exported here.

mod check;
mod failure;
mod http1;
pub mod lag;
mod roots;
mod supervisor;
pub mod syn;
mod tcp;
mod via;
mod wheel;

pub use check::{dns_answer, setpriv, Checker, Prepared};
pub use failure::CheckFailure;
pub use lvsdr::health::{
    CheckKind, CheckSpec, Health, HealthMap, HttpCheck, RiseFall, StatusSet, Via,
};
pub use supervisor::{CheckDetail, DetailMap, Supervisor, Tally};
