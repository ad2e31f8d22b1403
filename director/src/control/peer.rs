//! Who may use the control socket: root and the members of `[director]
//! control_group`, by the peer's credentials (SO_PEERCRED), not by the socket file's
//! mode (the file is open to all: a group member must be able to connect to ask).

use tokio::net::UnixStream;

/// Who is allowed besides root.
#[derive(Debug, Clone)]
pub struct Allowed {
    /// `control_group`'s gid.
    pub gid: Option<u32>,
}

impl Allowed {
    /// With the group named in the config (a group this host does not have is
    /// reported, and only root is allowed).
    pub fn new(group: Option<&str>) -> Allowed {
        let gid = group.and_then(|g| match nix::unistd::Group::from_name(g) {
            Ok(Some(g)) => Some(g.gid.as_raw()),
            Ok(None) | Err(_) => {
                tracing::warn!(group = g, "control_group: no such group on this host; only root may use the control socket");
                None
            }
        });
        Allowed { gid }
    }

    /// The peer's uid if it may ask, else why not.
    pub fn check(&self, stream: &UnixStream) -> Result<u32, String> {
        let cred = stream
            .peer_cred()
            .map_err(|e| format!("cannot read the peer's credentials: {e}"))?;
        let uid = cred.uid();
        if uid == 0 {
            return Ok(uid);
        }
        if let Some(gid) = self.gid {
            let member = cred.gid() == gid || cred.pid().is_some_and(|pid| in_group(pid, gid));
            if member {
                return Ok(uid);
            }
        }
        Err(format!(
            "uid {uid} may not use the control socket (root{} only)",
            if self.gid.is_some() {
                " and control_group"
            } else {
                ""
            }
        ))
    }
}

/// Whether process `pid` has `gid` among its supplementary groups.
fn in_group(pid: i32, gid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .is_some_and(|g| g.split_whitespace().any(|x| x.parse() == Ok(gid)))
}
