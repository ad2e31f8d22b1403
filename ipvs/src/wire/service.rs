//! The service nest (`IPVS_CMD_ATTR_SERVICE`) and the statistics nests.
//!
//! Order, as both ipvsadm and the kernel write it: AF, then FWMARK or PROTOCOL, ADDR,
//! PORT; then (a full entry) SCHED_NAME, PE_NAME, FLAGS, TIMEOUT, NETMASK; then (a
//! kernel report) STATS and STATS64.

use std::net::Ipv4Addr;

use super::attr::{af, family, DecodeError, EncodeError, Reader, Writer};
use crate::consts::{self as k, StatsAttr, SvcAttr};
use crate::types::{
    Family, Netmask, Protocol, Scheduler, ServiceFlags, ServiceKey, ServiceSettings, Stats,
};

/// A service as a request names it: always the key, the settings when the command
/// needs a full entry (add, edit) or the sender includes them anyway (ipvsadm does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAttrs {
    /// Which service.
    pub key: ServiceKey,
    /// Its settings, if sent.
    pub settings: Option<ServiceSettings>,
}

impl From<ServiceKey> for ServiceAttrs {
    fn from(key: ServiceKey) -> Self {
        ServiceAttrs {
            key,
            settings: None,
        }
    }
}

fn svc_attr_name(ty: u16) -> String {
    format!("{:?}", SvcAttr::from(ty)).to_uppercase()
}

fn stats_attr_name(ty: u16) -> String {
    format!("{:?}", StatsAttr::from(ty)).to_uppercase()
}

fn protocol_number(p: Protocol) -> u16 {
    match p {
        Protocol::Tcp => k::IPPROTO_TCP,
        Protocol::Udp => k::IPPROTO_UDP,
        Protocol::Sctp => k::IPPROTO_SCTP,
    }
}

/// Writes the service nest's attributes. `hashed` adds the flag the kernel reports on
/// every service it lists.
pub fn write_service(
    w: &mut Writer,
    key: &ServiceKey,
    settings: Option<&ServiceSettings>,
    hashed: bool,
) -> Result<(), EncodeError> {
    w.u16(SvcAttr::Af, af(key.family()))?;
    match key {
        ServiceKey::Fwmark { mark, .. } => w.u32(SvcAttr::Fwmark, *mark)?,
        ServiceKey::Addr {
            protocol,
            addr,
            port,
        } => {
            w.u16(SvcAttr::Protocol, protocol_number(*protocol))?;
            w.inet_addr(SvcAttr::Addr, addr)?;
            w.be16(SvcAttr::Port, *port)?;
        }
    }
    if let Some(s) = settings {
        w.string(SvcAttr::SchedName, s.scheduler.name())?;
        if let Some(pe) = &s.pe_name {
            w.string(SvcAttr::PeName, pe)?;
        }
        let mut flags = s.flags;
        flags.set(ServiceFlags::HASHED, hashed);
        let mut fm = flags.bits().to_ne_bytes().to_vec();
        fm.extend_from_slice(&u32::MAX.to_ne_bytes()); // mask: every flag is meant
        w.bytes(SvcAttr::Flags, &fm)?;
        w.u32(SvcAttr::Timeout, s.timeout)?;
        match s.netmask {
            // The IPv4 mask is in network order; the IPv6 "mask" is a prefix length.
            Netmask::V4(m) => w.bytes(SvcAttr::Netmask, &m.octets())?,
            Netmask::V6(p) => w.u32(SvcAttr::Netmask, u32::from(p))?,
        }
    }
    Ok(())
}

/// Reads a service nest: its key, settings if a full entry, stats if reported.
pub fn read_service(
    attrs: &super::attr::Attrs,
) -> Result<(ServiceAttrs, Option<Stats>), DecodeError> {
    let r = Reader::new(attrs, "service", svc_attr_name);
    let fam = family(&r, SvcAttr::Af, "service")?;
    let key = if let Some(mark) = r.opt_u32(SvcAttr::Fwmark)? {
        ServiceKey::Fwmark { family: fam, mark }
    } else {
        let protocol = match r.u16(SvcAttr::Protocol)? {
            k::IPPROTO_TCP => Protocol::Tcp,
            k::IPPROTO_UDP => Protocol::Udp,
            k::IPPROTO_SCTP => Protocol::Sctp,
            other => {
                return Err(DecodeError::new(
                    "service attribute PROTOCOL",
                    format!("unknown protocol {other}"),
                ))
            }
        };
        ServiceKey::Addr {
            protocol,
            addr: r.inet_addr(SvcAttr::Addr, fam)?,
            port: r.be16(SvcAttr::Port)?,
        }
    };
    let settings = if r.has(SvcAttr::SchedName) {
        Some(read_settings(&r, fam)?)
    } else {
        None
    };
    let stats = read_stats_pair(&r, SvcAttr::Stats, SvcAttr::Stats64)?;
    Ok((ServiceAttrs { key, settings }, stats))
}

fn read_settings(r: &Reader<'_>, fam: Family) -> Result<ServiceSettings, DecodeError> {
    let flags = r
        .get(SvcAttr::Flags)
        .ok_or_else(|| DecodeError::new("service attribute FLAGS", "missing"))?;
    let flags = <[u8; 8]>::try_from(flags).map_err(|_| {
        DecodeError::new(
            "service attribute FLAGS",
            format!("expected 8 bytes, got {}", flags.len()),
        )
    })?;
    let bits = u32::from_ne_bytes([flags[0], flags[1], flags[2], flags[3]]);
    let netmask_raw = r
        .get(SvcAttr::Netmask)
        .ok_or_else(|| DecodeError::new("service attribute NETMASK", "missing"))?;
    let netmask_raw = <[u8; 4]>::try_from(netmask_raw)
        .map_err(|_| DecodeError::new("service attribute NETMASK", "expected 4 bytes"))?;
    let netmask = match fam {
        Family::V4 => Netmask::V4(Ipv4Addr::from(netmask_raw)),
        Family::V6 => {
            let plen = u32::from_ne_bytes(netmask_raw);
            Netmask::V6(
                u8::try_from(plen)
                    .ok()
                    .filter(|p| *p <= 128)
                    .ok_or_else(|| {
                        DecodeError::new(
                            "service attribute NETMASK",
                            format!("IPv6 prefix length {plen} is over 128"),
                        )
                    })?,
            )
        }
    };
    Ok(ServiceSettings {
        scheduler: Scheduler::from_name(&r.string(SvcAttr::SchedName)?),
        // HASHED is the kernel's bookkeeping, not a setting: stripped on read.
        flags: ServiceFlags::from_bits_retain(bits) - ServiceFlags::HASHED,
        timeout: r.u32(SvcAttr::Timeout)?,
        netmask,
        pe_name: r.opt_string(SvcAttr::PeName)?,
    })
}

/// Reads the 64-bit stats nest if present, else the 32-bit one.
pub fn read_stats_pair(
    r: &Reader<'_>,
    stats: impl Into<u16>,
    stats64: impl Into<u16>,
) -> Result<Option<Stats>, DecodeError> {
    if let Some(a) = r.opt_nested(stats64)? {
        return read_stats(&a, true).map(Some);
    }
    match r.opt_nested(stats)? {
        Some(a) => read_stats(&a, false).map(Some),
        None => Ok(None),
    }
}

const COUNTERS: [StatsAttr; 10] = [
    StatsAttr::Conns,
    StatsAttr::InPkts,
    StatsAttr::OutPkts,
    StatsAttr::InBytes,
    StatsAttr::OutBytes,
    StatsAttr::Cps,
    StatsAttr::InPps,
    StatsAttr::OutPps,
    StatsAttr::InBps,
    StatsAttr::OutBps,
];

fn stats_fields(s: &mut Stats) -> [&mut u64; 10] {
    [
        &mut s.conns,
        &mut s.in_pkts,
        &mut s.out_pkts,
        &mut s.in_bytes,
        &mut s.out_bytes,
        &mut s.cps,
        &mut s.in_pps,
        &mut s.out_pps,
        &mut s.in_bps,
        &mut s.out_bps,
    ]
}

/// In the 32-bit nest only the byte counters are 64-bit.
fn is_wide(a: StatsAttr, all64: bool) -> bool {
    all64 || matches!(a, StatsAttr::InBytes | StatsAttr::OutBytes)
}

fn read_stats(attrs: &super::attr::Attrs, all64: bool) -> Result<Stats, DecodeError> {
    let r = Reader::new(attrs, "stats", stats_attr_name);
    let mut s = Stats::default();
    for (a, field) in COUNTERS.into_iter().zip(stats_fields(&mut s)) {
        *field = if is_wide(a, all64) {
            r.opt_u64(a)?.unwrap_or(0)
        } else {
            u64::from(r.opt_u32(a)?.unwrap_or(0))
        };
    }
    Ok(s)
}

/// Writes both stats nests, as the kernel reports them (the 32-bit one truncated).
pub fn write_stats_pair(
    w: &mut Writer,
    stats: impl Into<u16>,
    stats64: impl Into<u16>,
    s: &Stats,
) -> Result<(), EncodeError> {
    for (ty, all64) in [(stats.into(), false), (stats64.into(), true)] {
        let mut inner = Writer::new(false);
        let mut copy = *s;
        for (a, v) in COUNTERS.into_iter().zip(stats_fields(&mut copy)) {
            if is_wide(a, all64) {
                inner.u64(a, *v)?;
            } else {
                inner.u32(a, *v as u32)?; // the kernel truncates the same way
            }
        }
        w.nest(ty, inner)?;
    }
    Ok(())
}
