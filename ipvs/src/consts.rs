//! Kernel numbers of the IPVS generic-netlink family, from `include/uapi/linux/ip_vs.h`.
//! Nothing else in the crate spells one of these numbers.
//!
//! Commands and attribute kinds are `neli_enum`s: each converts to and from its wire
//! integer, with an `UnrecognizedConst` catch-all for kinds a newer kernel may add.
#![allow(missing_docs)] // the names are the uapi's; ip_vs.h documents them

use neli::neli_enum;

/// `IPVS_GENL_NAME`: the generic-netlink family to resolve.
pub const FAMILY_NAME: &str = "IPVS";
/// `IPVS_GENL_VERSION`.
pub const FAMILY_VERSION: u8 = 1;

/// `IPVS_CMD_*`.
#[neli_enum(serialized_type = "u8")]
pub enum Cmd {
    Unspec = 0,
    NewService = 1,
    SetService = 2,
    DelService = 3,
    GetService = 4,
    NewDest = 5,
    SetDest = 6,
    DelDest = 7,
    GetDest = 8,
    NewDaemon = 9,
    DelDaemon = 10,
    GetDaemon = 11,
    SetConfig = 12,
    GetConfig = 13,
    SetInfo = 14,
    GetInfo = 15,
    Zero = 16,
    Flush = 17,
}

/// `IPVS_CMD_ATTR_*`: the first level of a command's attributes.
#[neli_enum(serialized_type = "u16")]
pub enum CmdAttr {
    Unspec = 0,
    Service = 1,
    Dest = 2,
    Daemon = 3,
    TimeoutTcp = 4,
    TimeoutTcpFin = 5,
    TimeoutUdp = 6,
}

/// `IPVS_SVC_ATTR_*`, nested in [`CmdAttr::Service`].
#[neli_enum(serialized_type = "u16")]
pub enum SvcAttr {
    Unspec = 0,
    Af = 1,
    Protocol = 2,
    Addr = 3,
    Port = 4,
    Fwmark = 5,
    SchedName = 6,
    Flags = 7,
    Timeout = 8,
    Netmask = 9,
    Stats = 10,
    PeName = 11,
    Stats64 = 12,
}

/// `IPVS_DEST_ATTR_*`, nested in [`CmdAttr::Dest`].
#[neli_enum(serialized_type = "u16")]
pub enum DestAttr {
    Unspec = 0,
    Addr = 1,
    Port = 2,
    FwdMethod = 3,
    Weight = 4,
    UThresh = 5,
    LThresh = 6,
    ActiveConns = 7,
    InactConns = 8,
    PersistConns = 9,
    Stats = 10,
    AddrFamily = 11,
    Stats64 = 12,
    TunType = 13,
    TunPort = 14,
    TunFlags = 15,
}

/// `IPVS_DAEMON_ATTR_*`, nested in [`CmdAttr::Daemon`].
#[neli_enum(serialized_type = "u16")]
pub enum DaemonAttr {
    Unspec = 0,
    State = 1,
    McastIfn = 2,
    SyncId = 3,
    SyncMaxlen = 4,
    McastGroup = 5,
    McastGroup6 = 6,
    McastPort = 7,
    McastTtl = 8,
}

/// `IPVS_STATS_ATTR_*`, nested in the `STATS` and `STATS64` attributes.
#[neli_enum(serialized_type = "u16")]
pub enum StatsAttr {
    Unspec = 0,
    Conns = 1,
    InPkts = 2,
    OutPkts = 3,
    InBytes = 4,
    OutBytes = 5,
    Cps = 6,
    InPps = 7,
    OutPps = 8,
    InBps = 9,
    OutBps = 10,
    Pad = 11,
}

/// `IPVS_INFO_ATTR_*`: the top-level attributes of a `SET_INFO` reply.
#[neli_enum(serialized_type = "u16")]
pub enum InfoAttr {
    Unspec = 0,
    Version = 1,
    ConnTabSize = 2,
}

/// `IP_VS_SVC_F_*`.
pub const SVC_F_PERSISTENT: u32 = 0x0001;
pub const SVC_F_HASHED: u32 = 0x0002;
pub const SVC_F_ONEPACKET: u32 = 0x0004;
pub const SVC_F_SCHED1: u32 = 0x0008;
pub const SVC_F_SCHED2: u32 = 0x0010;
pub const SVC_F_SCHED3: u32 = 0x0020;

/// `IP_VS_CONN_F_*` forwarding methods (the `FWD_METHOD` attribute).
pub const CONN_F_MASQ: u32 = 0;
pub const CONN_F_LOCALNODE: u32 = 1;
pub const CONN_F_TUNNEL: u32 = 2;
pub const CONN_F_DROUTE: u32 = 3;
pub const CONN_F_BYPASS: u32 = 4;
pub const CONN_F_FWD_MASK: u32 = 0x7;

/// `IP_VS_CONN_F_TUNNEL_TYPE_*`.
pub const TUNNEL_TYPE_IPIP: u8 = 0;
pub const TUNNEL_TYPE_GUE: u8 = 1;
pub const TUNNEL_TYPE_GRE: u8 = 2;

/// `IP_VS_TUNNEL_ENCAP_FLAG_*`.
pub const TUNNEL_ENCAP_FLAG_CSUM: u16 = 1 << 0;
pub const TUNNEL_ENCAP_FLAG_REMCSUM: u16 = 1 << 1;

/// `IP_VS_STATE_*` of a sync daemon.
pub const STATE_MASTER: u32 = 1;
pub const STATE_BACKUP: u32 = 2;

/// `IP_VS_SCHEDNAME_MAXLEN`, `IP_VS_PENAME_MAXLEN`, `IP_VS_IFNAME_MAXLEN` (with the NUL).
pub const NAME_MAXLEN: usize = 16;

/// Address families as the kernel numbers them (`AF_INET`, `AF_INET6`).
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

/// IP protocol numbers of the protocols IPVS balances.
pub const IPPROTO_TCP: u16 = 6;
pub const IPPROTO_UDP: u16 = 17;
pub const IPPROTO_SCTP: u16 = 132;

/// `NLA_F_NESTED`: user space (ipvsadm, libnl) marks nests with it; the kernel's IPVS
/// replies do not.
pub const NLA_F_NESTED: u16 = 1 << 15;
