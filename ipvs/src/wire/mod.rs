//! Encoding and parsing of every IPVS message kind: [`Request`] (what user space sends)
//! and [`Reply`] (what the kernel answers). Both directions encode and parse, so that
//! captured bytes can be read into a value and written back to the same bytes.

pub mod attr;
mod daemon;
mod dest;
mod service;

#[cfg(test)]
mod proptests;

use std::io::Cursor;

use neli::genl::{Genlmsghdr, GenlmsghdrBuilder};
use neli::{FromBytesWithInput, ToBytes};

pub use attr::{DecodeError, EncodeError};
pub use daemon::DaemonStop;
pub use dest::DestAttrs;
pub use service::ServiceAttrs;

use self::attr::{Attrs, Reader, Writer};
use super::consts::{self as k, Cmd, CmdAttr, InfoAttr};
use super::types::{Daemon, Dest, DestEntry, Info, Service, ServiceEntry, Timeouts};

/// A generic-netlink message of the IPVS family, as neli carries it.
pub type GenlMsg = Genlmsghdr<u8, u16>;

/// A message user space sends to the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Version and connection table size.
    GetInfo,
    /// The connection timeouts.
    GetConfig,
    /// Set connection timeouts (`None` and 0 leave one as it is).
    SetConfig(Timeouts),
    /// Delete every service.
    Flush,
    /// Zero the counters of one service, or of all.
    Zero(Option<ServiceAttrs>),
    /// Add a service.
    NewService(Service),
    /// Change a service's settings.
    SetService(Service),
    /// Delete a service.
    DelService(ServiceAttrs),
    /// Read one service.
    GetService(ServiceAttrs),
    /// Read all services (a dump).
    DumpServices,
    /// Add a destination to a service.
    NewDest(ServiceAttrs, Dest),
    /// Change a destination's settings.
    SetDest(ServiceAttrs, Dest),
    /// Delete a destination.
    DelDest(ServiceAttrs, DestAttrs),
    /// Read a service's destinations (a dump).
    DumpDests(ServiceAttrs),
    /// Start a sync daemon.
    NewDaemon(Daemon),
    /// Stop a sync daemon.
    DelDaemon(DaemonStop),
    /// Read the sync daemons (a dump).
    DumpDaemons,
}

/// A message the kernel sends back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A service (`NEW_SERVICE`), in a dump or for `GET_SERVICE`.
    Service(ServiceEntry),
    /// A destination (`NEW_DEST`), in a dump.
    Dest(DestEntry),
    /// A sync daemon (`NEW_DAEMON`), in a dump.
    Daemon(Daemon),
    /// The timeouts (`SET_CONFIG`), for `GET_CONFIG`.
    Config(Timeouts),
    /// Version and table size (`SET_INFO`), for `GET_INFO`.
    Info(Info),
}

fn cmd_attr_name(ty: u16) -> String {
    format!("{:?}", CmdAttr::from(ty)).to_uppercase()
}

fn info_attr_name(ty: u16) -> String {
    format!("{:?}", InfoAttr::from(ty)).to_uppercase()
}

fn build(cmd: Cmd, attrs: Attrs) -> Result<GenlMsg, EncodeError> {
    GenlmsghdrBuilder::default()
        .cmd(u8::from(cmd))
        .version(k::FAMILY_VERSION)
        .attrs(attrs)
        .build()
        .map_err(|e| EncodeError {
            context: format!("{cmd:?} message"),
            problem: e.to_string(),
        })
}

fn service_nest(
    w: &mut Writer,
    s: &ServiceAttrs,
    nested_flag: bool,
    hashed: bool,
) -> Result<(), EncodeError> {
    let mut inner = Writer::new(nested_flag);
    service::write_service(&mut inner, &s.key, s.settings.as_ref(), hashed)?;
    w.nest(CmdAttr::Service, inner)
}

fn full(s: &Service) -> ServiceAttrs {
    ServiceAttrs {
        key: s.key.clone(),
        settings: Some(s.settings.clone()),
    }
}

fn write_timeouts(w: &mut Writer, t: &Timeouts) -> Result<(), EncodeError> {
    let pairs = [
        (CmdAttr::TimeoutTcp, t.tcp),
        (CmdAttr::TimeoutTcpFin, t.tcp_fin),
        (CmdAttr::TimeoutUdp, t.udp),
    ];
    for (ty, v) in pairs {
        if let Some(v) = v {
            w.u32(ty, v)?;
        }
    }
    Ok(())
}

fn read_timeouts(r: &Reader<'_>) -> Result<Timeouts, DecodeError> {
    Ok(Timeouts {
        tcp: r.opt_u32(CmdAttr::TimeoutTcp)?,
        tcp_fin: r.opt_u32(CmdAttr::TimeoutTcpFin)?,
        udp: r.opt_u32(CmdAttr::TimeoutUdp)?,
    })
}

impl Request {
    /// The command this request is sent as.
    pub fn cmd(&self) -> Cmd {
        match self {
            Request::GetInfo => Cmd::GetInfo,
            Request::GetConfig => Cmd::GetConfig,
            Request::SetConfig(_) => Cmd::SetConfig,
            Request::Flush => Cmd::Flush,
            Request::Zero(_) => Cmd::Zero,
            Request::NewService(_) => Cmd::NewService,
            Request::SetService(_) => Cmd::SetService,
            Request::DelService(_) => Cmd::DelService,
            Request::GetService(_) | Request::DumpServices => Cmd::GetService,
            Request::NewDest(..) => Cmd::NewDest,
            Request::SetDest(..) => Cmd::SetDest,
            Request::DelDest(..) => Cmd::DelDest,
            Request::DumpDests(_) => Cmd::GetDest,
            Request::NewDaemon(_) => Cmd::NewDaemon,
            Request::DelDaemon(_) => Cmd::DelDaemon,
            Request::DumpDaemons => Cmd::GetDaemon,
        }
    }

    /// Whether the kernel answers with a data message (before the ack).
    pub fn returns_data(&self) -> bool {
        matches!(
            self,
            Request::GetInfo | Request::GetConfig | Request::GetService(_)
        )
    }

    /// Whether it is sent with `NLM_F_DUMP`.
    pub fn is_dump(&self) -> bool {
        matches!(
            self,
            Request::DumpServices | Request::DumpDests(_) | Request::DumpDaemons
        )
    }

    /// The generic-netlink message. Nests carry `NLA_F_NESTED`, as libnl writes them.
    pub fn encode(&self) -> Result<GenlMsg, EncodeError> {
        let mut w = Writer::new(true);
        match self {
            Request::GetInfo
            | Request::GetConfig
            | Request::Flush
            | Request::DumpServices
            | Request::DumpDaemons => {}
            Request::SetConfig(t) => write_timeouts(&mut w, t)?,
            Request::Zero(s) => {
                if let Some(s) = s {
                    service_nest(&mut w, s, true, false)?;
                }
            }
            Request::NewService(s) | Request::SetService(s) => {
                service_nest(&mut w, &full(s), true, false)?
            }
            Request::DelService(s) | Request::GetService(s) | Request::DumpDests(s) => {
                service_nest(&mut w, s, true, false)?
            }
            Request::NewDest(s, d) | Request::SetDest(s, d) => {
                service_nest(&mut w, s, true, false)?;
                let mut inner = Writer::new(true);
                dest::write_dest_request(&mut inner, &DestAttrs::from(*d))?;
                w.nest(CmdAttr::Dest, inner)?;
            }
            Request::DelDest(s, d) => {
                service_nest(&mut w, s, true, false)?;
                let mut inner = Writer::new(true);
                dest::write_dest_request(&mut inner, d)?;
                w.nest(CmdAttr::Dest, inner)?;
            }
            Request::NewDaemon(d) => {
                let mut inner = Writer::new(true);
                daemon::write_daemon(&mut inner, d)?;
                w.nest(CmdAttr::Daemon, inner)?;
            }
            Request::DelDaemon(d) => {
                let mut inner = Writer::new(true);
                daemon::write_daemon_stop(&mut inner, d)?;
                w.nest(CmdAttr::Daemon, inner)?;
            }
        }
        build(self.cmd(), w.finish())
    }

    /// Reads a request back; `dump` is whether its netlink header had `NLM_F_DUMP`.
    pub fn decode(msg: &GenlMsg, dump: bool) -> Result<Request, DecodeError> {
        let r = Reader::new(msg.attrs(), "command", cmd_attr_name);
        let cmd = Cmd::from(*msg.cmd());
        let svc = || -> Result<ServiceAttrs, DecodeError> {
            Ok(service::read_service(&r.nested(CmdAttr::Service)?)?.0)
        };
        let full_svc = || -> Result<Service, DecodeError> {
            let s = svc()?;
            let settings = s
                .settings
                .ok_or_else(|| DecodeError::new("service", "settings missing"))?;
            Ok(Service {
                key: s.key,
                settings,
            })
        };
        let dest = || dest::read_dest_request(&r.nested(CmdAttr::Dest)?);
        let full_dest = || -> Result<Dest, DecodeError> {
            let d = dest()?;
            let settings = d
                .settings
                .ok_or_else(|| DecodeError::new("destination", "settings missing"))?;
            Ok(Dest {
                addr: d.addr,
                port: d.port,
                settings,
            })
        };
        Ok(match cmd {
            Cmd::GetInfo => Request::GetInfo,
            Cmd::GetConfig => Request::GetConfig,
            Cmd::SetConfig => Request::SetConfig(read_timeouts(&r)?),
            Cmd::Flush => Request::Flush,
            Cmd::Zero if r.has(CmdAttr::Service) => Request::Zero(Some(svc()?)),
            Cmd::Zero => Request::Zero(None),
            Cmd::NewService => Request::NewService(full_svc()?),
            Cmd::SetService => Request::SetService(full_svc()?),
            Cmd::DelService => Request::DelService(svc()?),
            Cmd::GetService if dump => Request::DumpServices,
            Cmd::GetService => Request::GetService(svc()?),
            Cmd::NewDest => Request::NewDest(svc()?, full_dest()?),
            Cmd::SetDest => Request::SetDest(svc()?, full_dest()?),
            Cmd::DelDest => Request::DelDest(svc()?, dest()?),
            Cmd::GetDest => Request::DumpDests(svc()?),
            Cmd::NewDaemon => Request::NewDaemon(daemon::read_daemon(&r.nested(CmdAttr::Daemon)?)?),
            Cmd::DelDaemon => {
                Request::DelDaemon(daemon::read_daemon_stop(&r.nested(CmdAttr::Daemon)?)?)
            }
            Cmd::GetDaemon => Request::DumpDaemons,
            other => {
                return Err(DecodeError::new(
                    "request",
                    format!("{other:?} is not a request command"),
                ))
            }
        })
    }
}

impl Reply {
    /// The generic-netlink message, as the kernel writes it (nests without
    /// `NLA_F_NESTED`, services with `HASHED`, both stats nests).
    pub fn encode(&self) -> Result<GenlMsg, EncodeError> {
        let mut w = Writer::new(false);
        let cmd = match self {
            Reply::Service(e) => {
                let mut inner = Writer::new(false);
                service::write_service(
                    &mut inner,
                    &e.service.key,
                    Some(&e.service.settings),
                    true,
                )?;
                service::write_stats_pair(
                    &mut inner,
                    k::SvcAttr::Stats,
                    k::SvcAttr::Stats64,
                    &e.stats,
                )?;
                w.nest(CmdAttr::Service, inner)?;
                Cmd::NewService
            }
            Reply::Dest(e) => {
                let mut inner = Writer::new(false);
                dest::write_dest_report(&mut inner, e)?;
                w.nest(CmdAttr::Dest, inner)?;
                Cmd::NewDest
            }
            Reply::Daemon(d) => {
                let mut inner = Writer::new(false);
                daemon::write_daemon(&mut inner, d)?;
                w.nest(CmdAttr::Daemon, inner)?;
                Cmd::NewDaemon
            }
            Reply::Config(t) => {
                write_timeouts(&mut w, t)?;
                Cmd::SetConfig
            }
            Reply::Info(i) => {
                w.u32(InfoAttr::Version, i.version)?;
                w.u32(InfoAttr::ConnTabSize, i.conn_tab_size)?;
                Cmd::SetInfo
            }
        };
        build(cmd, w.finish())
    }

    /// Reads a kernel message.
    pub fn decode(msg: &GenlMsg) -> Result<Reply, DecodeError> {
        let r = Reader::new(msg.attrs(), "reply", cmd_attr_name);
        Ok(match Cmd::from(*msg.cmd()) {
            Cmd::NewService => {
                let (attrs, stats) = service::read_service(&r.nested(CmdAttr::Service)?)?;
                let settings = attrs
                    .settings
                    .ok_or_else(|| DecodeError::new("service report", "settings missing"))?;
                Reply::Service(ServiceEntry {
                    service: Service {
                        key: attrs.key,
                        settings,
                    },
                    stats: stats.unwrap_or_default(),
                })
            }
            Cmd::NewDest => Reply::Dest(dest::read_dest_report(&r.nested(CmdAttr::Dest)?)?),
            Cmd::NewDaemon => Reply::Daemon(daemon::read_daemon(&r.nested(CmdAttr::Daemon)?)?),
            Cmd::SetConfig => Reply::Config(read_timeouts(&r)?),
            Cmd::SetInfo => {
                let r = Reader::new(msg.attrs(), "info", info_attr_name);
                Reply::Info(Info {
                    version: r.u32(InfoAttr::Version)?,
                    conn_tab_size: r.u32(InfoAttr::ConnTabSize)?,
                })
            }
            other => {
                return Err(DecodeError::new(
                    "reply",
                    format!("{other:?} is not a reply command"),
                ))
            }
        })
    }
}

/// The bytes of a generic-netlink message (header and attributes).
pub fn to_bytes(msg: &GenlMsg) -> Result<Vec<u8>, EncodeError> {
    let mut cur = Cursor::new(Vec::new());
    msg.to_bytes(&mut cur).map_err(|e| EncodeError {
        context: "generic netlink message".into(),
        problem: e.to_string(),
    })?;
    Ok(cur.into_inner())
}

/// Parses the bytes of a generic-netlink message (header and attributes).
pub fn from_bytes(bytes: &[u8]) -> Result<GenlMsg, DecodeError> {
    GenlMsg::from_bytes_with_input(&mut Cursor::new(bytes), bytes.len())
        .map_err(|e| DecodeError::new("generic netlink message", e.to_string()))
}
