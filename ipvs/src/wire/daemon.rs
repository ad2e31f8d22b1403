//! The sync-daemon nest (`IPVS_CMD_ATTR_DAEMON`).
//!
//! Order, as the kernel reports it: STATE, MCAST_IFN, SYNC_ID, SYNC_MAXLEN, MCAST_PORT,
//! MCAST_TTL, MCAST_GROUP or MCAST_GROUP6. Unlike service ports, MCAST_PORT is in host
//! order (the kernel reads it with `nla_get_u16`).

use std::net::IpAddr;

use super::attr::{Attrs, DecodeError, EncodeError, Reader, Writer};
use crate::consts::{self as k, DaemonAttr};
use crate::types::{Daemon, DaemonState, Family};

/// What stops a sync daemon: its state; ipvsadm also sends an empty interface and id 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonStop {
    /// Which daemon.
    pub state: DaemonState,
    /// Ignored by the kernel, kept so that a captured request reads back the same.
    pub ifname: Option<String>,
    /// Ignored by the kernel, as `ifname`.
    pub sync_id: Option<u32>,
}

fn daemon_attr_name(ty: u16) -> String {
    format!("{:?}", DaemonAttr::from(ty)).to_uppercase()
}

fn state_number(s: DaemonState) -> u32 {
    match s {
        DaemonState::Master => k::STATE_MASTER,
        DaemonState::Backup => k::STATE_BACKUP,
    }
}

fn read_state(r: &Reader<'_>) -> Result<DaemonState, DecodeError> {
    match r.u32(DaemonAttr::State)? {
        k::STATE_MASTER => Ok(DaemonState::Master),
        k::STATE_BACKUP => Ok(DaemonState::Backup),
        other => Err(DecodeError::new(
            "daemon attribute STATE",
            format!("unknown state {other}"),
        )),
    }
}

pub fn write_daemon(w: &mut Writer, d: &Daemon) -> Result<(), EncodeError> {
    w.u32(DaemonAttr::State, state_number(d.state))?;
    w.string(DaemonAttr::McastIfn, &d.ifname)?;
    w.u32(DaemonAttr::SyncId, d.sync_id)?;
    if let Some(v) = d.sync_maxlen {
        w.u16(DaemonAttr::SyncMaxlen, v)?;
    }
    if let Some(v) = d.mcast_port {
        w.u16(DaemonAttr::McastPort, v)?;
    }
    if let Some(v) = d.mcast_ttl {
        w.u8(DaemonAttr::McastTtl, v)?;
    }
    match d.mcast_group {
        Some(IpAddr::V4(a)) => w.bytes(DaemonAttr::McastGroup, &a.octets())?,
        Some(IpAddr::V6(a)) => w.bytes(DaemonAttr::McastGroup6, &a.octets())?,
        None => {}
    }
    Ok(())
}

pub fn read_daemon(attrs: &Attrs) -> Result<Daemon, DecodeError> {
    let r = Reader::new(attrs, "daemon", daemon_attr_name);
    let mcast_group = if r.has(DaemonAttr::McastGroup6) {
        Some(r.inet_addr(DaemonAttr::McastGroup6, Family::V6)?)
    } else if r.has(DaemonAttr::McastGroup) {
        Some(r.inet_addr(DaemonAttr::McastGroup, Family::V4)?)
    } else {
        None
    };
    Ok(Daemon {
        state: read_state(&r)?,
        ifname: r.string(DaemonAttr::McastIfn)?,
        sync_id: r.u32(DaemonAttr::SyncId)?,
        sync_maxlen: r.opt_u16(DaemonAttr::SyncMaxlen)?,
        mcast_group,
        mcast_port: r.opt_u16(DaemonAttr::McastPort)?,
        mcast_ttl: r.opt_u8(DaemonAttr::McastTtl)?,
    })
}

pub fn write_daemon_stop(w: &mut Writer, d: &DaemonStop) -> Result<(), EncodeError> {
    w.u32(DaemonAttr::State, state_number(d.state))?;
    if let Some(ifname) = &d.ifname {
        w.string(DaemonAttr::McastIfn, ifname)?;
    }
    if let Some(id) = d.sync_id {
        w.u32(DaemonAttr::SyncId, id)?;
    }
    Ok(())
}

pub fn read_daemon_stop(attrs: &Attrs) -> Result<DaemonStop, DecodeError> {
    let r = Reader::new(attrs, "daemon", daemon_attr_name);
    Ok(DaemonStop {
        state: read_state(&r)?,
        ifname: r.opt_string(DaemonAttr::McastIfn)?,
        sync_id: r.opt_u32(DaemonAttr::SyncId)?,
    })
}
