//! `conf/agent.toml`: parsed with unknown keys rejected.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;

/// Where the control socket is unless the config says (the unit's `RuntimeDirectory=`).
pub const DEFAULT_SOCKET: &str = "/run/lvsdr-agent/control.sock";

/// How ARP for the VIPs is suppressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArpMode {
    /// One nftables table of the `arp` family, owned by the agent (the default).
    Nft,
    /// `arp_ignore=1`, `arp_announce=2` on `all` and the real interface.
    Sysctl,
    /// The legacy `arptables` tool.
    Arptables,
}

impl ArpMode {
    pub fn name(self) -> &'static str {
        match self {
            ArpMode::Nft => "nft",
            ArpMode::Sysctl => "sysctl",
            ArpMode::Arptables => "arptables",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    agent: AgentSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentSection {
    listen: SocketAddr,
    state_file: PathBuf,
    #[serde(default = "default_device")]
    vip_device: String,
    #[serde(default = "default_arp")]
    arp: ArpMode,
    real_ip: Option<IpAddr>,
    resync_interval: Option<String>,
    set_expiry: Option<String>,
    #[serde(default)]
    insecure_listen_loopback_only: bool,
    tls: Option<TlsSection>,
    control_socket: Option<PathBuf>,
    metrics_listen: Option<String>,
}

fn default_device() -> String {
    "lo".into()
}
fn default_arp() -> ArpMode {
    ArpMode::Nft
}

/// `[agent.tls]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
}

/// The agent's settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub state_file: PathBuf,
    pub vip_device: String,
    pub arp: ArpMode,
    pub real_ip: Option<IpAddr>,
    pub resync_interval: Duration,
    /// A director's set not pushed again for this long is dropped.
    pub set_expiry: Duration,
    /// `None`: plaintext, only allowed on loopback for tests.
    pub tls: Option<TlsSection>,
    /// `lvsdr-agent drain | ready | status` talk to the agent here.
    pub control_socket: PathBuf,
    /// Where `/metrics` is served (plain HTTP: keep it local); `None`: "off".
    pub metrics_listen: Option<SocketAddr>,
}

/// The default `metrics_listen`.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9182";

impl Config {
    /// Reads the config file. Relative paths in `[agent.tls]` resolve against
    /// `$CREDENTIALS_DIRECTORY` when systemd set it (`LoadCredential=`: the service
    /// user can read the key whatever its owner on disk), else against the config
    /// file's folder.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut cfg = Config::parse(&text).with_context(|| format!("in {}", path.display()))?;
        let base = match std::env::var_os("CREDENTIALS_DIRECTORY") {
            Some(d) => PathBuf::from(d),
            None => path.parent().unwrap_or(Path::new(".")).to_path_buf(),
        };
        if let Some(t) = &mut cfg.tls {
            for p in [&mut t.cert, &mut t.key, &mut t.client_ca] {
                if p.is_relative() {
                    *p = base.join(&*p);
                }
            }
        }
        Ok(cfg)
    }

    pub fn parse(text: &str) -> anyhow::Result<Config> {
        let f: File = toml::from_str(text)?;
        let a = f.agent;
        let resync_interval = duration(
            a.resync_interval.as_deref(),
            "resync_interval",
            Duration::from_secs(10),
            (Duration::from_millis(100), Duration::from_secs(3600)),
        )?;
        let set_expiry = duration(
            a.set_expiry.as_deref(),
            "set_expiry",
            Duration::from_secs(6 * 3600),
            (Duration::from_secs(60), Duration::from_secs(30 * 24 * 3600)),
        )?;
        match (&a.tls, a.insecure_listen_loopback_only) {
            (Some(_), true) => {
                bail!("[agent.tls] and insecure_listen_loopback_only exclude each other")
            }
            (None, false) => {
                bail!("missing [agent.tls]: pushes need mutual TLS (cert, key, client_ca)")
            }
            (None, true) if !a.listen.ip().is_loopback() => bail!(
                "insecure_listen_loopback_only needs a loopback listen address, not {}",
                a.listen
            ),
            _ => {}
        }
        if a.vip_device.is_empty() || a.vip_device.len() > 15 {
            bail!("vip_device {:?} is not an interface name", a.vip_device);
        }
        let metrics_listen = match a.metrics_listen.as_deref() {
            Some("off") => None,
            m => Some(
                m.unwrap_or(DEFAULT_METRICS_LISTEN)
                    .parse()
                    .with_context(|| format!("metrics_listen {m:?}: an address:port or \"off\""))?,
            ),
        };
        Ok(Config {
            metrics_listen,
            listen: a.listen,
            state_file: a.state_file,
            vip_device: a.vip_device,
            arp: a.arp,
            real_ip: a.real_ip,
            resync_interval,
            set_expiry,
            tls: a.tls,
            control_socket: a.control_socket.unwrap_or_else(|| DEFAULT_SOCKET.into()),
        })
    }
}

/// A duration key, within `(lo, hi)`: a zero interval would spin (or panic in a
/// timer), a huge one overflows `Instant` arithmetic.
fn duration(
    text: Option<&str>,
    key: &str,
    default: Duration,
    (lo, hi): (Duration, Duration),
) -> anyhow::Result<Duration> {
    let Some(s) = text else {
        return Ok(default);
    };
    let d = humantime::parse_duration(s).with_context(|| format!("{key} {s:?}"))?;
    if d < lo || d > hi {
        bail!(
            "{key} {s:?} is out of range: {} to {}",
            humantime::format_duration(lo),
            humantime::format_duration(hi)
        );
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_tls_paths_resolve_against_the_config_folder() {
        let dir = std::env::temp_dir().join(format!("lvsdr-agent-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("agent.toml");
        std::fs::write(&path, include_str!("../../conf/agent.toml")).expect("write");
        let c = Config::load(&path).expect("load");
        let t = c.tls.expect("tls");
        if std::env::var_os("CREDENTIALS_DIRECTORY").is_none() {
            assert_eq!(t.key, dir.join("agent.key"));
            assert_eq!(t.client_ca, dir.join("ca.pem"));
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_documented_example_parses() {
        let c = Config::parse(include_str!("../../conf/agent.toml")).expect("conf/agent.toml");
        assert_eq!(c.listen.to_string(), "0.0.0.0:9181");
        assert_eq!(c.arp, ArpMode::Nft);
        assert_eq!(c.vip_device, "lo");
        assert!(c.tls.is_some());
        assert_eq!(
            c.metrics_listen.map(|a| a.to_string()).as_deref(),
            Some(DEFAULT_METRICS_LISTEN)
        );
    }

    #[test]
    fn metrics_listen_takes_an_address_or_off() {
        let base = "[agent]\nstate_file = \"/tmp/x\"\nlisten = \"127.0.0.1:1\"\n\
                    insecure_listen_loopback_only = true\n";
        let c = Config::parse(&format!("{base}metrics_listen = \"off\"\n")).expect("off");
        assert_eq!(c.metrics_listen, None);
        let c = Config::parse(&format!("{base}metrics_listen = \"[::1]:9999\"\n")).expect("v6");
        assert_eq!(c.metrics_listen, Some("[::1]:9999".parse().expect("addr")));
        let e = Config::parse(&format!("{base}metrics_listen = \"9182\"\n")).expect_err("bad");
        assert!(format!("{e:#}").contains("metrics_listen"), "{e:#}");
    }

    #[test]
    fn plaintext_only_on_loopback_and_never_silently() {
        let base = "[agent]\nstate_file = \"/tmp/x\"\n";
        let e = Config::parse(&format!("{base}listen = \"0.0.0.0:9181\"\n")).expect_err("no tls");
        assert!(e.to_string().contains("missing [agent.tls]"), "{e}");
        let e = Config::parse(&format!(
            "{base}listen = \"0.0.0.0:9181\"\ninsecure_listen_loopback_only = true\n"
        ))
        .expect_err("not loopback");
        assert!(
            e.to_string().contains("needs a loopback listen address"),
            "{e}"
        );
        for bad in ["0s", "100years", "1ns"] {
            let e = Config::parse(&format!(
                "{base}listen = \"127.0.0.1:1\"\ninsecure_listen_loopback_only = true\nresync_interval = \"{bad}\"\n"
            ))
            .expect_err(bad);
            assert!(e.to_string().contains("resync_interval"), "{bad}: {e}");
        }
        let e = Config::parse(&format!(
            "{base}listen = \"127.0.0.1:1\"\ninsecure_listen_loopback_only = true\nset_expiry = \"1s\"\n"
        ))
        .expect_err("set_expiry 1s");
        assert!(e.to_string().contains("out of range"), "{e}");
        let e = Config::parse(&format!("{base}listen = \"127.0.0.1:1\"\nbogus = 1\n"))
            .expect_err("unknown key");
        assert!(e.to_string().contains("unknown field `bogus`"), "{e}");
    }
}

#[cfg(test)]
mod unit_tests {
    #[test]
    fn the_systemd_unit_starts_the_agent_before_the_services_that_bind_the_vip() {
        let unit = include_str!("../../conf/lvsdr-agent.service");
        for want in [
            "Type=notify",
            "ExecStart=/usr/bin/lvsdr-agent --config /etc/lvsdr/agent.toml",
            "Before=network-online.target",
            "DynamicUser=yes",
            "AmbientCapabilities=CAP_NET_ADMIN",
            "CapabilityBoundingSet=CAP_NET_ADMIN",
            "StateDirectory=lvsdr",
            "RuntimeDirectory=lvsdr-agent",
            "LoadCredential=agent.key:/etc/lvsdr/agent.key",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "RestrictAddressFamilies=AF_UNIX AF_NETLINK AF_INET AF_INET6",
            "SystemCallFilter=@system-service",
            "LimitNOFILE=4096",
            "TasksMax=64",
        ] {
            assert!(
                unit.lines().any(|l| l == want),
                "{want} missing from the unit"
            );
        }
        // The state file the unit's StateDirectory provides is the example's.
        assert!(include_str!("../../conf/agent.toml")
            .contains("state_file = \"/var/lib/lvsdr/agent.json\""));
    }
}
