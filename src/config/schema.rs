//! The TOML file as serde reads it: every key the config may have, unknown keys
//! rejected, positions kept (`Spanned`) for the validator's error messages.

use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub director: Option<Spanned<DirectorSection>>,
    #[serde(default, rename = "service")]
    pub services: Vec<Spanned<ServiceSection>>,
    pub agents: Option<Spanned<AgentsSection>>,
    pub announce: Option<Spanned<AnnounceSection>>,
    pub sync: Option<Spanned<SyncSection>>,
    #[serde(default)]
    pub notify: Vec<Spanned<NotifySection>>,
}

/// `[[notify]]`: a hook told of events.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySection {
    /// A program and its arguments; the event as JSON on its stdin.
    pub exec: Option<Spanned<Vec<String>>>,
    /// An http:// URL the event is POSTed to as JSON.
    pub url: Option<Spanned<String>>,
    /// Which kinds: server, admin, vip, config (default: all).
    pub events: Option<Spanned<Vec<String>>>,
    /// How long one delivery may take (default 10s).
    pub timeout: Option<Spanned<String>>,
}

/// `[announce]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnnounceSection {
    pub device: Option<Spanned<String>>,
    pub min_up: Option<Spanned<i64>>,
    pub withdraw_grace: Option<Spanned<String>>,
    pub bird_socket: Option<Spanned<String>>,
}

/// `[sync]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncSection {
    pub interface: Spanned<String>,
    pub sync_id: Spanned<i64>,
    pub mcast_group: Option<Spanned<String>>,
    pub port: Option<Spanned<i64>>,
    pub ttl: Option<Spanned<i64>>,
    pub maxlen: Option<Spanned<i64>>,
}

/// `[agents]`: real-server agents the director pushes VIPs to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentsSection {
    pub port: Option<Spanned<i64>>,
    pub ca: Spanned<String>,
    pub cert: Spanned<String>,
    pub key: Spanned<String>,
    pub require: Option<bool>,
    pub push_interval: Option<Spanned<String>>,
    pub confirm_grace: Option<Spanned<String>>,
}

/// `[director]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DirectorSection {
    pub status_listen: Option<Spanned<String>>,
    pub resync_interval: Option<Spanned<String>>,
    pub full_resync_interval: Option<Spanned<String>>,
    pub on_exit: Option<Spanned<String>>,
    pub drain_timeout: Option<Spanned<String>>,
    pub state_file: Option<Spanned<String>>,
    pub control_socket: Option<Spanned<String>>,
    pub control_group: Option<Spanned<String>>,
    pub admin_file: Option<Spanned<String>>,
}

/// `[[service]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSection {
    pub name: Spanned<String>,
    pub vip: Option<Spanned<String>>,
    pub port: Option<Spanned<i64>>,
    pub protocol: Option<Spanned<String>>,
    pub fwmark: Option<Spanned<i64>>,
    /// For fwmark services: "ipv4" (default) or "ipv6".
    pub family: Option<Spanned<String>>,
    pub scheduler: Option<Spanned<String>>,
    /// "sh-fallback", "sh-port", "mh-fallback", "mh-port".
    pub scheduler_flags: Option<Spanned<Vec<String>>>,
    /// One-packet scheduling (UDP).
    pub one_packet: Option<bool>,
    pub persistence: Option<Spanned<String>>,
    pub persistence_netmask: Option<Spanned<String>>,
    pub persistence_engine: Option<Spanned<String>>,
    pub forwarding: Option<Spanned<String>>,
    /// For `forwarding = "tun"`: "ipip" (default), "gue", "gre".
    pub tunnel: Option<Spanned<String>>,
    pub tunnel_port: Option<Spanned<i64>>,
    pub on_failure: Option<Spanned<String>>,
    pub sorry_server: Option<Spanned<String>>,
    pub check: Option<Spanned<CheckSection>>,
    /// For fwmark services: the VIPs the real servers' agents must hold.
    pub vips: Option<Spanned<Vec<String>>>,
    /// A server coming back gets its weight in steps over this long.
    pub slow_start: Option<Spanned<String>>,
    #[serde(default)]
    pub real_server: Vec<Spanned<RealServerSection>>,
}

/// `[service.check]` and `[service.real_server.check]`: every field optional, a real
/// server's values override its service's.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct CheckSection {
    #[serde(rename = "type")]
    pub kind: Option<Spanned<String>>,
    pub port: Option<Spanned<i64>>,
    pub path: Option<Spanned<String>>,
    /// http(s): a status (200) or a set ("200-299", "200,301-302").
    pub expect_status: Option<Spanned<StatusField>>,
    pub expect_body: Option<Spanned<String>>,
    pub host: Option<Spanned<String>>,
    pub insecure_skip_verify: Option<bool>,
    /// https: the server name (SNI) to send and verify.
    pub sni: Option<Spanned<String>>,
    /// https: a CA file to verify the server's certificate with.
    pub ca: Option<Spanned<String>>,
    /// http(s): keep the connection between checks (default true).
    pub keepalive: Option<Spanned<bool>>,
    pub query: Option<Spanned<String>>,
    /// udp-dns: the answer's rcode, "noerror" (default), "nxdomain", … or a number.
    pub expect_rcode: Option<Spanned<String>>,
    pub command: Option<Spanned<String>>,
    /// tcp-expect: what to send once connected.
    pub send: Option<Spanned<String>>,
    /// tcp-expect: a regex the answer must match.
    pub expect: Option<Spanned<String>>,
    /// "server" (default): to the real server's address; "vip": to the VIP, through
    /// the DR path to this real server.
    pub via: Option<Spanned<String>>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub rise: Option<Spanned<i64>>,
    pub fall: Option<Spanned<i64>>,
}

/// `[[service.real_server]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealServerSection {
    pub address: Spanned<String>,
    pub port: Option<Spanned<i64>>,
    pub weight: Option<Spanned<i64>>,
    pub upper_threshold: Option<Spanned<i64>>,
    pub lower_threshold: Option<Spanned<i64>>,
    /// `false`: set up by hand (no agent, need not be Linux); an address: the agent
    /// to push to, when not the real server's own address.
    pub agent: Option<Spanned<AgentField>>,
    pub check: Option<Spanned<CheckSection>>,
    /// Overrides the service's `slow_start`.
    pub slow_start: Option<Spanned<String>>,
}

/// `agent = true | false | "ADDR"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum AgentField {
    /// On (the real server's address) or off.
    On(bool),
    /// The agent's address.
    At(String),
}

/// `expect_status = 200` or `expect_status = "200-299"`.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum StatusField {
    /// One status.
    One(i64),
    /// A set of statuses and ranges.
    Set(String),
}
