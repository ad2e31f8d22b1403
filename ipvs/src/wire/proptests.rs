//! Property: for any request or reply, bytes → value after value → bytes is the identity.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::{from_bytes, to_bytes, DaemonStop, DestAttrs, Reply, Request, ServiceAttrs};
use crate::types::*;

fn addr(family: Family) -> BoxedStrategy<IpAddr> {
    match family {
        Family::V4 => any::<[u8; 4]>()
            .prop_map(|o| IpAddr::V4(Ipv4Addr::from(o)))
            .boxed(),
        Family::V6 => any::<[u8; 16]>()
            .prop_map(|o| IpAddr::V6(Ipv6Addr::from(o)))
            .boxed(),
    }
}

fn family() -> impl Strategy<Value = Family> {
    prop_oneof![Just(Family::V4), Just(Family::V6)]
}

fn key() -> impl Strategy<Value = ServiceKey> {
    prop_oneof![
        (family(), any::<u32>()).prop_map(|(family, mark)| ServiceKey::Fwmark {
            family,
            mark: mark.max(1)
        }),
        (family(), 0..3u8, any::<u16>()).prop_flat_map(|(f, p, port)| {
            addr(f).prop_map(move |addr| ServiceKey::Addr {
                protocol: [Protocol::Tcp, Protocol::Udp, Protocol::Sctp][usize::from(p)],
                addr,
                port,
            })
        }),
    ]
}

fn name() -> impl Strategy<Value = String> {
    "[a-z0-9_]{1,15}"
}

fn scheduler() -> impl Strategy<Value = Scheduler> {
    prop_oneof![
        prop::sample::select(Scheduler::known_names().collect::<Vec<_>>())
            .prop_map(Scheduler::from_name),
        name().prop_map(|n| Scheduler::from_name(&n)),
    ]
}

fn settings(f: Family) -> impl Strategy<Value = ServiceSettings> {
    let netmask = match f {
        Family::V4 => any::<[u8; 4]>()
            .prop_map(|o| Netmask::V4(Ipv4Addr::from(o)))
            .boxed(),
        Family::V6 => (0..=128u8).prop_map(Netmask::V6).boxed(),
    };
    (
        scheduler(),
        any::<u32>(),
        any::<u32>(),
        netmask,
        proptest::option::of(name()),
    )
        .prop_map(
            |(scheduler, flags, timeout, netmask, pe_name)| ServiceSettings {
                scheduler,
                flags: ServiceFlags::from_bits_retain(flags) - ServiceFlags::HASHED,
                timeout,
                netmask,
                pe_name,
            },
        )
}

fn service() -> impl Strategy<Value = Service> {
    key().prop_flat_map(|k| {
        let f = k.family();
        settings(f).prop_map(move |settings| Service {
            key: k.clone(),
            settings,
        })
    })
}

fn service_attrs() -> impl Strategy<Value = ServiceAttrs> {
    prop_oneof![
        key().prop_map(ServiceAttrs::from),
        service().prop_map(|s| ServiceAttrs {
            key: s.key,
            settings: Some(s.settings)
        }),
    ]
}

fn forwarding() -> impl Strategy<Value = Forwarding> {
    prop_oneof![
        Just(Forwarding::Route),
        Just(Forwarding::Masq),
        Just(Forwarding::Local),
        Just(Forwarding::Bypass),
        (0..3u8, any::<u16>(), any::<u16>()).prop_map(|(k, port, flags)| {
            Forwarding::Tunnel(Tunnel {
                kind: [TunnelKind::Ipip, TunnelKind::Gue, TunnelKind::Gre][usize::from(k)],
                port,
                flags,
            })
        }),
    ]
}

fn dest() -> impl Strategy<Value = Dest> {
    (
        family().prop_flat_map(addr),
        any::<u16>(),
        forwarding(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(|(addr, port, forwarding, weight, u, l)| Dest {
            addr,
            port,
            settings: DestSettings {
                forwarding,
                weight,
                upper_threshold: u,
                lower_threshold: l,
            },
        })
}

fn stats() -> impl Strategy<Value = Stats> {
    any::<[u64; 10]>().prop_map(|v| Stats {
        conns: v[0],
        in_pkts: v[1],
        out_pkts: v[2],
        in_bytes: v[3],
        out_bytes: v[4],
        cps: v[5],
        in_pps: v[6],
        out_pps: v[7],
        in_bps: v[8],
        out_bps: v[9],
    })
}

fn daemon() -> impl Strategy<Value = Daemon> {
    (
        any::<bool>(),
        name(),
        any::<u32>(),
        proptest::option::of(any::<u16>()),
        proptest::option::of(family().prop_flat_map(addr)),
        proptest::option::of(any::<u16>()),
        proptest::option::of(any::<u8>()),
    )
        .prop_map(
            |(m, ifname, sync_id, sync_maxlen, mcast_group, mcast_port, mcast_ttl)| Daemon {
                state: if m {
                    DaemonState::Master
                } else {
                    DaemonState::Backup
                },
                ifname,
                sync_id,
                sync_maxlen,
                mcast_group,
                mcast_port,
                mcast_ttl,
            },
        )
}

fn timeouts() -> impl Strategy<Value = Timeouts> {
    (
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u32>()),
    )
        .prop_map(|(tcp, tcp_fin, udp)| Timeouts { tcp, tcp_fin, udp })
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        Just(Request::GetInfo),
        Just(Request::GetConfig),
        Just(Request::Flush),
        Just(Request::DumpServices),
        Just(Request::DumpDaemons),
        timeouts().prop_map(Request::SetConfig),
        proptest::option::of(service_attrs()).prop_map(Request::Zero),
        service().prop_map(Request::NewService),
        service().prop_map(Request::SetService),
        service_attrs().prop_map(Request::DelService),
        service_attrs().prop_map(Request::GetService),
        service_attrs().prop_map(Request::DumpDests),
        (service_attrs(), dest()).prop_map(|(s, d)| Request::NewDest(s, d)),
        (service_attrs(), dest()).prop_map(|(s, d)| Request::SetDest(s, d)),
        (service_attrs(), dest(), any::<bool>()).prop_map(|(s, d, full)| {
            let mut d = DestAttrs::from(d);
            if !full {
                d.settings = None;
            }
            Request::DelDest(s, d)
        }),
        daemon().prop_map(Request::NewDaemon),
        (daemon(), any::<bool>()).prop_map(|(d, full)| Request::DelDaemon(DaemonStop {
            state: d.state,
            ifname: full.then(|| d.ifname.clone()),
            sync_id: full.then_some(d.sync_id),
        })),
    ]
}

fn reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        (service(), stats())
            .prop_map(|(service, stats)| Reply::Service(ServiceEntry { service, stats })),
        (dest(), any::<[u32; 3]>(), stats()).prop_map(|(dest, c, stats)| Reply::Dest(DestEntry {
            dest,
            active_conns: c[0],
            inactive_conns: c[1],
            persistent_conns: c[2],
            stats,
        })),
        daemon().prop_map(Reply::Daemon),
        timeouts().prop_map(Reply::Config),
        (any::<u32>(), any::<u32>()).prop_map(|(version, conn_tab_size)| Reply::Info(Info {
            version,
            conn_tab_size
        })),
    ]
}

proptest! {
    #[test]
    fn request_round_trips(req in request()) {
        let bytes = to_bytes(&req.encode().expect("encode")).expect("bytes");
        let back = Request::decode(&from_bytes(&bytes).expect("parse"), req.is_dump()).expect("decode");
        prop_assert_eq!(back, req);
    }

    #[test]
    fn reply_round_trips(rep in reply()) {
        let bytes = to_bytes(&rep.encode().expect("encode")).expect("bytes");
        let back = Reply::decode(&from_bytes(&bytes).expect("parse")).expect("decode");
        prop_assert_eq!(back, rep);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(msg) = from_bytes(&bytes) {
            let _ = Reply::decode(&msg);
            let _ = Request::decode(&msg, false);
        }
    }
}
