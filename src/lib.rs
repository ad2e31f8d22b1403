//! lvsdr: a Linux Virtual Server controller for Direct Routing.
//!
//! The engine the director runs: what the operator wants ([`config`] → [`model`]), what
//! the kernel holds ([`ipvs`]), and the one writer between them ([`reconcile`]), with
//! the vocabulary of health ([`health`]). It carries no HTTP client, TLS or PKI: the
//! checks, the director's features and the tools are crates of their own (see the
//! README's layout table).
//!
//! # Layout
//! - [`agent_api`]: the director↔agent wire types (the `lvsdr-agent-api` crate, which is
//!   all the agent shares with the director).
//! - [`admin`]: what an operator sets at runtime (disable, drain, weight), kept on disk.
//! - [`clock`]: times as the documents carry them (seconds since the epoch).
//! - [`ipvs`]: the kernel's IPVS table over generic netlink: typed model, wire codec,
//!   pipelined socket handle (the `lvsdr-ipvs` crate).
//! - [`config`]: the director's TOML config, parsed and validated (every error, with
//!   its place) into a [`model::Desired`].
//! - [`model`]: the desired state shared by config and planner.
//! - [`health`]: health checks and their rise/fall state.
//! - [`reconcile`]: the pure planner, the kernel backend, the driver, what it publishes.
//! - [`sysctl`]: the kernel settings a config needs (`lvsdr-director prepare`).

pub use lvsdr_agent_api as agent_api;
pub mod admin;
pub mod clock;
pub mod config;
pub mod health;
pub use lvsdr_ipvs as ipvs;
pub mod model;
pub mod reconcile;
pub mod sysctl;
