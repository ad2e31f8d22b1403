//! Running `lvsdr-director run` (and agents) in a lab's namespaces, and reading its
//! status, for the end-to-end tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::lab::Lab;
use super::{poll, sh};

/// Where the status endpoint listens inside the director's namespace.
pub const STATUS: &str = "127.0.0.1:9180";

/// A process started with `ip netns exec`, killed when dropped.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(ns: &str, bin: &str, args: &[&str], log: PathBuf) -> Proc {
        let child = Command::new("ip")
            .args(["netns", "exec", ns, bin])
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("start {bin}: {e}"));
        Proc { child, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        sh(&format!("kill -{sig} {}", self.child.id()));
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn log_path(config: &Path, what: &str) -> PathBuf {
    let stamp = std::time::UNIX_EPOCH.elapsed().map_or(0, |d| d.as_nanos());
    config.with_extension(format!("{what}.{stamp}.log"))
}

/// The capabilities the director's systemd unit grants, as setpriv names them
/// (`+net_admin,+net_raw`).
pub fn director_caps() -> String {
    include_str!("../../conf/lvsdr-director.service")
        .lines()
        .find_map(|l| l.strip_prefix("AmbientCapabilities="))
        .expect("AmbientCapabilities in the unit")
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect::<Vec<_>>()
        .join(",")
}

/// The unprivileged user the director runs as in the tests.
pub const NOBODY: u32 = 65534;

/// Starts the director with `config` and waits for its status endpoint. It runs as
/// `nobody` with exactly the capabilities of its systemd unit, so a missing one fails
/// here; what it must read is readable by that user (the unit's LoadCredential).
pub fn start_director(lab: &Lab, bin: &str, config: &Path) -> Proc {
    // Generous: a debug build under emulation on a loaded machine (two VMs on two
    // cores once took more than 20 s).
    start_director_within(lab, bin, config, 60)
}

/// [`start_director`], waiting up to `secs` for the endpoint (a large config takes a
/// while to parse under emulation).
pub fn start_director_within(lab: &Lab, bin: &str, config: &Path, secs: u64) -> Proc {
    start_director_in(&lab.director, bin, config, secs)
}

/// [`start_director`] in namespace `ns` (a topology of its own).
pub fn start_director_in(ns: &str, bin: &str, config: &Path, secs: u64) -> Proc {
    let p = spawn_director(ns, bin, config);
    let up = poll(secs, || crate::lab::get_in(ns, STATUS, "/healthz").ok());
    assert!(
        up.is_some(),
        "the status endpoint did not come up:\n{}",
        p.log()
    );
    p
}

/// Starts the director in namespace `ns` as [`start_director`] does, without waiting
/// for anything.
pub fn spawn_director(ns: &str, bin: &str, config: &Path) -> Proc {
    let cfg = config.display().to_string();
    let caps = director_caps();
    let (uid, inh, amb, bnd) = (
        format!("--reuid={NOBODY}"),
        format!("--inh-caps=-all,{caps}"),
        format!("--ambient-caps=-all,{caps}"),
        format!("--bounding-set=-all,{caps}"),
    );
    let gid = format!("--regid={NOBODY}");
    // The default soft limit of descriptors, whatever the unit sets: floods of the
    // status endpoint must not depend on a generous limit.
    Proc::spawn(
        ns,
        "/usr/bin/prlimit",
        &[
            "--nofile=1024:1024",
            "/usr/bin/setpriv",
            &uid,
            &gid,
            "--clear-groups",
            &inh,
            &amb,
            &bnd,
            bin,
            "run",
            "--config",
            &cfg,
        ],
        log_path(config, "director"),
    )
}

/// Starts an agent in real server `i`'s namespace.
pub fn start_agent(lab: &Lab, bin: &str, i: usize, config: &Path) -> Proc {
    let cfg = config.display().to_string();
    Proc::spawn(
        &lab.servers[i - 1],
        bin,
        &["--config", &cfg],
        log_path(config, "agent"),
    )
}

pub fn status(lab: &Lab) -> serde_json::Value {
    let body = lab.director_get(STATUS, "/status").expect("GET /status");
    serde_json::from_str(&body).expect("status JSON")
}

/// The status, or `None` while the director cannot answer (it is starting: a poll
/// after a restart waits for it instead of failing on a slow first answer).
pub fn try_status(lab: &Lab) -> Option<serde_json::Value> {
    let body = lab.director_get(STATUS, "/status").ok()?;
    serde_json::from_str(&body).ok()
}

pub fn find_server<'a>(
    st: &'a serde_json::Value,
    svc: &str,
    addr: &str,
) -> Option<&'a serde_json::Value> {
    st["services"]
        .as_array()
        .and_then(|s| s.iter().find(|x| x["name"] == svc))
        .and_then(|s| s["real_servers"].as_array())
        .and_then(|rs| rs.iter().find(|r| r["address"] == addr))
}

pub fn server<'a>(st: &'a serde_json::Value, svc: &str, addr: &str) -> &'a serde_json::Value {
    find_server(st, svc, addr)
        .unwrap_or_else(|| panic!("no real server {addr} in service {svc}: {st}"))
}

/// The kernel weight `/status` reports (None while the server is not configured yet).
pub fn kernel_weight(lab: &Lab, svc: &str, addr: &str) -> Option<u64> {
    find_server(&status(lab), svc, addr).and_then(|s| s["kernel_weight"].as_u64())
}

/// Waits until the "web" service's real servers have these kernel weights.
pub fn wait_weights(lab: &Lab, want: &[(usize, u64)], secs: u64, d: &Proc) {
    let ok = poll(secs, || {
        want.iter()
            .all(|(i, w)| kernel_weight(lab, "web", &lab.rip(*i)) == Some(*w))
            .then_some(())
    });
    assert!(
        ok.is_some(),
        "kernel weights did not reach {want:?}: {}\n{}\n{}",
        status(lab),
        lab.ipvsadm("-Ln"),
        d.log()
    );
}

/// Who answered `n` requests to VIP:80.
pub fn spread(lab: &Lab, n: usize) -> std::collections::HashMap<String, usize> {
    let mut seen = std::collections::HashMap::new();
    for _ in 0..n {
        let who = lab.get(80, "/").unwrap_or_else(|e| format!("error: {e}"));
        *seen.entry(who.trim().to_string()).or_insert(0) += 1;
    }
    seen
}

/// A "web" service (wrr, HTTP check every second) over the given (server, weight)s.
pub fn web_config(lab: &Lab, servers: &[(usize, u32)], extra: &str) -> String {
    let mut c = format!(
        "[director]\nstatus_listen = \"{STATUS}\"\nresync_interval = \"2s\"\n{extra}\n\
         [[service]]\nname = \"web\"\nvip = \"{}\"\nport = 80\nscheduler = \"wrr\"\n\
         [service.check]\ntype = \"http\"\npath = \"/healthz\"\ninterval = \"1s\"\ntimeout = \"500ms\"\nrise = 1\nfall = 2\n",
        lab.vip()
    );
    for (i, w) in servers {
        c.push_str(&format!(
            "[[service.real_server]]\naddress = \"{}\"\nweight = {w}\n",
            lab.rip(*i)
        ));
    }
    c
}

/// An "echo" service (rr, TCP check every second) on VIP:`port` over the given servers.
pub fn echo_config(lab: &Lab, port: u16, servers: &[usize]) -> String {
    let mut c = format!(
        "[[service]]\nname = \"echo\"\nvip = \"{}\"\nport = {port}\nscheduler = \"rr\"\n\
         [service.check]\ntype = \"tcp\"\ninterval = \"1s\"\nrise = 1\n",
        lab.vip()
    );
    for i in servers {
        c.push_str(&format!(
            "[[service.real_server]]\naddress = \"{}\"\n",
            lab.rip(*i)
        ));
    }
    c
}

/// Writes a file into the lab's folder.
pub fn write_file(lab: &Lab, name: &str, text: &str) -> PathBuf {
    let dir = PathBuf::from(format!("/tmp/lvsdr-e2e-{}", lab.tag));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join(name);
    replace_file(&path, text);
    path
}

/// Puts `text` at `path` as a config tool should: written beside it, then renamed into
/// place. Written in place, a reload that reads it between the truncation and the write
/// sees an empty or partial file (the soak's reloads, 30 ms apart, caught one:
/// both services retired for 150 ms, 6 connections refused).
pub fn replace_file(path: &Path, text: &str) {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".new");
    std::fs::write(&tmp, text).unwrap_or_else(|e| panic!("write {tmp:?}: {e}"));
    std::fs::rename(&tmp, path).unwrap_or_else(|e| panic!("rename {tmp:?}: {e}"));
}
