//! lvsdr: a Linux Virtual Server controller for Direct Routing.
//!
//! # Layout
//! - [`agent_api`]: the director↔agent wire types (the `lvsdr-agent-api` crate, which is
//!   all the agent shares with the director).
//! - [`announce`]: which VIPs this director announces (`[announce]`, BIRD's direct protocol).
//! - [`bird`]: BIRD's control-socket replies (sessions, exported routes) for `/status`.
//! - [`clock`]: times as the documents carry them (seconds since the epoch).
//! - [`agents`]: the director pushing VIPs to agents; their confirmations gate weight.
//! - [`ipvs`]: the kernel's IPVS table over generic netlink: typed model, wire codec,
//!   pipelined socket handle.
//! - [`config`]: the director's TOML config, parsed and validated (every error, with
//!   its place) into a [`model::Desired`].
//! - [`model`]: the desired state shared by config and planner.
//! - [`health`]: health checks and their rise/fall state.
//! - [`reconcile`]: the pure planner, the kernel backend (real and fake), the driver.
//! - [`sysctl`]: the kernel settings a config needs (`lvsdr-director prepare`).
//! - [`status`]: the snapshot the HTTP status endpoint renders; [`history`]: its last
//!   15 minutes per service, for the page.

pub use lvsdr_agent_api as agent_api;
pub mod admin;
pub mod agents;
pub mod announce;
pub mod bird;
pub mod clock;
pub mod config;
pub mod health;
pub mod history;
pub use lvsdr_ipvs as ipvs;
pub mod model;
pub mod reconcile;
pub mod status;
pub mod sysctl;
