//! The destination nest (`IPVS_CMD_ATTR_DEST`).
//!
//! Requests (ipvsadm's order, and ours): ADDR_FAMILY, ADDR, PORT, then for a full
//! entry FWD_METHOD, WEIGHT, TUN_TYPE, TUN_PORT, TUN_FLAGS, U_THRESH, L_THRESH.
//! Kernel reports: ADDR, PORT, FWD_METHOD, WEIGHT, TUN_*, U_THRESH, L_THRESH, the three
//! connection counts, ADDR_FAMILY, STATS, STATS64.

use std::net::IpAddr;

use super::attr::{af, family, Attrs, DecodeError, EncodeError, Reader, Writer};
use super::service::{read_stats_pair, write_stats_pair};
use crate::consts::{self as k, DestAttr};
use crate::types::{Dest, DestEntry, DestSettings, Family, Forwarding, Tunnel, TunnelKind};

/// A destination as a request names it: address and port, settings when sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestAttrs {
    /// Real server address.
    pub addr: IpAddr,
    /// Real server port.
    pub port: u16,
    /// Forwarding, weight and thresholds, if sent.
    pub settings: Option<DestSettings>,
}

impl From<Dest> for DestAttrs {
    fn from(d: Dest) -> Self {
        DestAttrs {
            addr: d.addr,
            port: d.port,
            settings: Some(d.settings),
        }
    }
}

fn dest_attr_name(ty: u16) -> String {
    format!("{:?}", DestAttr::from(ty)).to_uppercase()
}

fn write_settings(w: &mut Writer, s: &DestSettings) -> Result<(), EncodeError> {
    let (method, tun) = match s.forwarding {
        Forwarding::Masq => (k::CONN_F_MASQ, None),
        Forwarding::Local => (k::CONN_F_LOCALNODE, None),
        Forwarding::Tunnel(t) => (k::CONN_F_TUNNEL, Some(t)),
        Forwarding::Route => (k::CONN_F_DROUTE, None),
        Forwarding::Bypass => (k::CONN_F_BYPASS, None),
    };
    let tun = tun.unwrap_or(Tunnel {
        kind: TunnelKind::Ipip,
        port: 0,
        flags: 0,
    });
    w.u32(DestAttr::FwdMethod, method)?;
    w.u32(DestAttr::Weight, s.weight)?;
    w.u8(
        DestAttr::TunType,
        match tun.kind {
            TunnelKind::Ipip => k::TUNNEL_TYPE_IPIP,
            TunnelKind::Gue => k::TUNNEL_TYPE_GUE,
            TunnelKind::Gre => k::TUNNEL_TYPE_GRE,
        },
    )?;
    w.be16(DestAttr::TunPort, tun.port)?;
    w.u16(DestAttr::TunFlags, tun.flags)?;
    w.u32(DestAttr::UThresh, s.upper_threshold)?;
    w.u32(DestAttr::LThresh, s.lower_threshold)
}

/// Writes a destination nest as a request carries it.
pub fn write_dest_request(w: &mut Writer, d: &DestAttrs) -> Result<(), EncodeError> {
    w.u16(DestAttr::AddrFamily, af(Family::of(&d.addr)))?;
    w.inet_addr(DestAttr::Addr, &d.addr)?;
    w.be16(DestAttr::Port, d.port)?;
    if let Some(s) = &d.settings {
        write_settings(w, s)?;
    }
    Ok(())
}

/// Writes a destination nest as the kernel reports it.
pub fn write_dest_report(w: &mut Writer, e: &DestEntry) -> Result<(), EncodeError> {
    w.inet_addr(DestAttr::Addr, &e.dest.addr)?;
    w.be16(DestAttr::Port, e.dest.port)?;
    write_settings(w, &e.dest.settings)?;
    w.u32(DestAttr::ActiveConns, e.active_conns)?;
    w.u32(DestAttr::InactConns, e.inactive_conns)?;
    w.u32(DestAttr::PersistConns, e.persistent_conns)?;
    w.u16(DestAttr::AddrFamily, af(Family::of(&e.dest.addr)))?;
    write_stats_pair(w, DestAttr::Stats, DestAttr::Stats64, &e.stats)
}

fn read_settings(r: &Reader<'_>) -> Result<DestSettings, DecodeError> {
    let method = r.u32(DestAttr::FwdMethod)? & k::CONN_F_FWD_MASK;
    let forwarding = match method {
        k::CONN_F_MASQ => Forwarding::Masq,
        k::CONN_F_LOCALNODE => Forwarding::Local,
        k::CONN_F_DROUTE => Forwarding::Route,
        k::CONN_F_BYPASS => Forwarding::Bypass,
        k::CONN_F_TUNNEL => Forwarding::Tunnel(Tunnel {
            kind: match r.opt_u8(DestAttr::TunType)?.unwrap_or(k::TUNNEL_TYPE_IPIP) {
                k::TUNNEL_TYPE_IPIP => TunnelKind::Ipip,
                k::TUNNEL_TYPE_GUE => TunnelKind::Gue,
                k::TUNNEL_TYPE_GRE => TunnelKind::Gre,
                other => {
                    return Err(DecodeError::new(
                        "destination attribute TUNTYPE",
                        format!("unknown tunnel type {other}"),
                    ))
                }
            },
            port: r.opt_be16(DestAttr::TunPort)?.unwrap_or(0),
            flags: r.opt_u16(DestAttr::TunFlags)?.unwrap_or(0),
        }),
        other => {
            return Err(DecodeError::new(
                "destination attribute FWDMETHOD",
                format!("unknown forwarding method {other}"),
            ))
        }
    };
    Ok(DestSettings {
        forwarding,
        weight: r.u32(DestAttr::Weight)?,
        upper_threshold: r.opt_u32(DestAttr::UThresh)?.unwrap_or(0),
        lower_threshold: r.opt_u32(DestAttr::LThresh)?.unwrap_or(0),
    })
}

fn read_addr(r: &Reader<'_>) -> Result<(IpAddr, u16), DecodeError> {
    let fam = family(r, DestAttr::AddrFamily, "destination")?;
    Ok((r.inet_addr(DestAttr::Addr, fam)?, r.be16(DestAttr::Port)?))
}

/// Reads a destination nest of a request.
pub fn read_dest_request(attrs: &Attrs) -> Result<DestAttrs, DecodeError> {
    let r = Reader::new(attrs, "destination", dest_attr_name);
    let (addr, port) = read_addr(&r)?;
    let settings = if r.has(DestAttr::FwdMethod) {
        Some(read_settings(&r)?)
    } else {
        None
    };
    Ok(DestAttrs {
        addr,
        port,
        settings,
    })
}

/// Reads a destination nest of a kernel report.
pub fn read_dest_report(attrs: &Attrs) -> Result<DestEntry, DecodeError> {
    let r = Reader::new(attrs, "destination", dest_attr_name);
    let (addr, port) = read_addr(&r)?;
    Ok(DestEntry {
        dest: Dest {
            addr,
            port,
            settings: read_settings(&r)?,
        },
        active_conns: r.opt_u32(DestAttr::ActiveConns)?.unwrap_or(0),
        inactive_conns: r.opt_u32(DestAttr::InactConns)?.unwrap_or(0),
        persistent_conns: r.opt_u32(DestAttr::PersistConns)?.unwrap_or(0),
        stats: read_stats_pair(&r, DestAttr::Stats, DestAttr::Stats64)?.unwrap_or_default(),
    })
}
