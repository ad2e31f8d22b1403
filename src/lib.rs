//! lvsdr: a Linux Virtual Server controller for Direct Routing.
//!
//! # Layout
//! - [`ipvs`]: the kernel's IPVS table over generic netlink: typed model, wire codec,
//!   pipelined socket handle.

pub mod ipvs;
