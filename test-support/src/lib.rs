//! Helpers for tests that need the IPVS kernel (they run inside the test VM, see
//! tests/vm/) or root and namespaces.

use std::process::Command;

/// Why a kernel test is ignored on an ordinary `cargo test`.
pub const NEEDS_VM: &str = "needs the IPVS kernel: runs in the test VM (tests/run)";

/// Runs a shell command in this thread's network namespace; panics, with its output,
/// if it fails.
pub fn sh(cmd: &str) -> String {
    let out = Command::new("bash")
        .args(["-c", cmd])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Moves the calling thread into a new network namespace (each test gets its own IPVS
/// table) with `lo` up and a dummy interface `d0` holding 10.9.0.1/24 and
/// 2001:db8:9::1/64, so that destinations in those ranges have a route.
pub fn fresh_netns() {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    sh(
        "ip link set lo up && ip link add d0 type dummy && ip link set d0 up multicast on \
        && ip addr add 10.9.0.1/24 dev d0 && ip -6 addr add 2001:db8:9::1/64 dev d0 nodad",
    );
}

/// A single-threaded runtime: its tasks stay on this thread, and so in its namespace.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// `ipvsadm ARGS` in this thread's namespace.
pub fn ipvsadm(args: &str) -> String {
    sh(&format!("ipvsadm {args}"))
}

/// Polls `f` every 250 ms for up to `secs` seconds until it returns `Some`.
pub fn poll<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}
pub mod agents;
pub mod clients;
pub mod director;
pub mod ha;
pub mod lab;
