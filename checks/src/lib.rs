//! Health checks run: how each kind runs ([`Checker`]), and the [`Supervisor`] whose one
//! scheduler (a timer wheel) runs each distinct check and publishes flips and details
//! on channels; `tcp` runs the connect checks from one epoll set, `http_probe` the
//! plain-HTTP ones from another, [`syn`] the half-open ones. What a check is and what it found is the engine's vocabulary
//! (`lvsdr::health`), re-exported here.

mod check;
mod dns;
mod epoll_set;
mod exec;
mod failure;
mod http1;
mod http1_body;
mod http_probe;
pub mod lag;
mod roots;
mod smtp;
mod supervisor;
pub mod syn;
mod tcp;
mod tcp_expect;
mod via;
mod wheel;

pub use check::{Checker, Prepared};
pub use dns::dns_answer;
pub use exec::setpriv;
pub use failure::CheckFailure;
pub use lvsdr::health::{
    CheckKind, CheckSpec, Health, HealthMap, HttpCheck, RiseFall, StatusSet, Via,
};
pub use supervisor::{CheckDetail, DetailMap, Supervisor, Tally};
