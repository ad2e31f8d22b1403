//! lvsdr: a Linux Virtual Server controller for Direct Routing.
//!
//! # Layout
//! - [`ipvs`]: the kernel's IPVS table over generic netlink: typed model, wire codec,
//!   pipelined socket handle.
//! - [`config`]: the director's TOML config, parsed and validated (every error, with
//!   its place) into a [`model::Desired`].
//! - [`model`]: the desired state shared by config and planner.
//! - [`health`]: health checks and their rise/fall state.
//! - [`reconcile`]: the pure planner, the kernel backend (real and fake), the driver.
//! - [`status`]: the snapshot the HTTP status endpoint renders.

pub mod config;
pub mod health;
pub mod ipvs;
pub mod model;
pub mod reconcile;
pub mod status;
