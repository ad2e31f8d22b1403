//! What the two daemons, `lvsdr-director` and `lvsdr-agent`, share and nothing else
//! does: logging set-up ([`log`]), TLS files as systemd credentials ([`creds`]), escaped
//! Prometheus label values ([`metrics`]), the manual page and shell completions ([`docs`]),
//! the control socket's JSON-line protocol, client and server loop ([`lines`]),
//! the supervision of their long-lived tasks ([`tasks`]), and the part of an HTTP
//! server's accept loop they share ([`accept`]).
//! The agent depends on this crate and the wire types only, none of the director's
//! stack.

pub mod accept;
pub mod creds;
pub mod docs;
pub mod lines;
pub mod log;
pub mod metrics;
pub mod tasks;
