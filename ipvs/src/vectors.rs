//! Byte-vector tests: every message in `vectors/*.txt` was captured from ipvsadm and
//! the kernel in the test VM (`tests/vm/vm.sh run tests/vm/capture-vectors.sh`, then
//! `tests/vm/vectors-from-strace.py`). Each is parsed into its typed value and encoded
//! back, which must give the same bytes.

use super::wire::{self, Reply, Request};

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_DUMP: u16 = 0x300;

macro_rules! fixtures {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("vectors/", $name, ".txt")))),*]
    };
}

/// Every captured fixture, by name.
pub(crate) const FIXTURES: &[(&str, &str)] = fixtures![
    "info",
    "new-service-tcp",
    "new-dest-dr",
    "new-dest-dr2",
    "set-dest",
    "new-service-dup",
    "new-service-udp",
    "new-service-fwmark",
    "new-service-v6",
    "new-dest-v6",
    "new-dest-tun",
    "new-dest-nat",
    "set-service",
    "get-service",
    "dump",
    "dump-stats",
    "del-dest",
    "del-dest-missing",
    "del-service",
    "del-service-missing",
    "set-config",
    "get-config",
    "start-daemon",
    "get-daemon",
    "stop-daemon",
    "zero",
    "flush",
];

/// One captured netlink message.
pub(crate) struct Captured {
    pub send: bool,
    pub nl_type: u16,
    pub flags: u16,
    pub bytes: Vec<u8>,
}

impl Captured {
    pub fn payload(&self) -> &[u8] {
        &self.bytes[16..]
    }
    pub fn is_data(&self) -> bool {
        self.nl_type != NLMSG_ERROR && self.nl_type != NLMSG_DONE
    }
    pub fn errno(&self) -> Option<i32> {
        (self.nl_type == NLMSG_ERROR)
            .then(|| i32::from_ne_bytes(self.bytes[16..20].try_into().expect("4 bytes")))
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

pub(crate) fn messages(fixture: &str) -> Vec<Captured> {
    fixture
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (dir, h) = l.split_once(' ').expect("direction and hex");
            let bytes = hex(h);
            Captured {
                send: dir == "send",
                nl_type: u16::from_ne_bytes([bytes[4], bytes[5]]),
                flags: u16::from_ne_bytes([bytes[6], bytes[7]]),
                bytes,
            }
        })
        .collect()
}

pub(crate) fn fixture(name: &str) -> Vec<Captured> {
    let (_, text) = FIXTURES
        .iter()
        .find(|(n, _)| *n == name)
        .expect("fixture exists");
    messages(text)
}

pub(crate) fn requests(name: &str) -> Vec<Request> {
    fixture(name)
        .iter()
        .filter(|m| m.send)
        .map(|m| {
            let g = wire::from_bytes(m.payload()).expect("genl");
            Request::decode(&g, m.flags & NLM_F_DUMP == NLM_F_DUMP).expect("request")
        })
        .collect()
}

pub(crate) fn replies(name: &str) -> Vec<Reply> {
    fixture(name)
        .iter()
        .filter(|m| !m.send && m.is_data())
        .map(|m| Reply::decode(&wire::from_bytes(m.payload()).expect("genl")).expect("reply"))
        .collect()
}

#[test]
fn every_captured_message_reencodes_to_the_same_bytes() {
    let mut checked = 0;
    for (name, text) in FIXTURES {
        for m in messages(text).iter().filter(|m| m.is_data()) {
            let genl = wire::from_bytes(m.payload()).expect("genl header");
            let again = if m.send {
                let req = Request::decode(&genl, m.flags & NLM_F_DUMP == NLM_F_DUMP)
                    .unwrap_or_else(|e| panic!("{name}: request: {e}"));
                assert_eq!(req.is_dump(), m.flags & NLM_F_DUMP == NLM_F_DUMP, "{name}");
                req.encode().expect("encode")
            } else {
                Reply::decode(&genl)
                    .unwrap_or_else(|e| panic!("{name}: reply: {e}"))
                    .encode()
                    .expect("encode")
            };
            let bytes = wire::to_bytes(&again).expect("bytes");
            assert_eq!(
                hex_str(&bytes),
                hex_str(m.payload()),
                "{name}: {} message re-encoded differently",
                if m.send { "sent" } else { "received" }
            );
            checked += 1;
        }
    }
    assert!(checked >= 40, "only {checked} messages checked");
}

fn hex_str(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

mod expected {
    //! Parse → typed value: the captured bytes mean what we think they mean.
    use std::net::{IpAddr, Ipv4Addr};

    use super::{fixture, replies, requests};
    use crate::types::*;
    use crate::wire::{DaemonStop, DestAttrs, Reply, Request, ServiceAttrs};

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }
    fn tcp80() -> ServiceKey {
        ServiceKey::Addr {
            protocol: Protocol::Tcp,
            addr: ip("192.0.2.10"),
            port: 80,
        }
    }
    /// ipvsadm sends the full service with every command; for a destination
    /// command, with an empty scheduler and zero flags.
    fn as_ipvsadm_sends(key: ServiceKey) -> ServiceAttrs {
        ServiceAttrs {
            settings: Some(ServiceSettings {
                scheduler: Scheduler::Other(String::new()),
                ..ServiceSettings::new(Scheduler::Rr, key.family())
            }),
            key,
        }
    }

    #[test]
    fn add_tcp_service() {
        assert_eq!(
            requests("new-service-tcp"),
            vec![
                Request::GetInfo,
                Request::NewService(Service {
                    key: tcp80(),
                    settings: ServiceSettings::new(Scheduler::Wrr, Family::V4),
                })
            ]
        );
    }

    #[test]
    fn add_dr_destination() {
        let reqs = requests("new-dest-dr");
        assert_eq!(
            reqs[1],
            Request::NewDest(
                as_ipvsadm_sends(tcp80()),
                Dest {
                    addr: ip("10.9.0.11"),
                    port: 80,
                    settings: DestSettings::route(100),
                }
            )
        );
        let with_thresholds = requests("new-dest-dr2");
        let Request::NewDest(_, d) = &with_thresholds[1] else {
            panic!("{with_thresholds:?}")
        };
        assert_eq!(
            (d.settings.upper_threshold, d.settings.lower_threshold),
            (1000, 10)
        );
    }

    #[test]
    fn tunnel_destination_port_is_big_endian() {
        let reqs = requests("new-dest-tun");
        let Request::NewDest(svc, d) = &reqs[1] else {
            panic!("{reqs:?}")
        };
        assert_eq!(
            svc.key,
            ServiceKey::Fwmark {
                family: Family::V4,
                mark: 7
            }
        );
        assert_eq!(
            d.settings.forwarding,
            Forwarding::Tunnel(Tunnel {
                kind: TunnelKind::Gue,
                port: 6080,
                flags: 0
            })
        );
        // 6080 = 0x17c0: on the wire 17 c0.
        let msgs = fixture("new-dest-tun");
        let raw = &msgs.iter().filter(|m| m.send).nth(1).expect("send").bytes;
        assert!(raw.windows(8).any(|w| w == [6, 0, 14, 0, 0x17, 0xc0, 0, 0]));
    }

    #[test]
    fn fwmark_service_with_persistence_and_netmask() {
        let reqs = requests("new-service-fwmark");
        let Request::NewService(s) = &reqs[1] else {
            panic!("{reqs:?}")
        };
        assert_eq!(s.settings.scheduler, Scheduler::Lc);
        assert_eq!(s.settings.flags, ServiceFlags::PERSISTENT);
        assert_eq!(s.settings.timeout, 300);
        assert_eq!(
            s.settings.netmask,
            Netmask::V4(Ipv4Addr::new(255, 255, 255, 0))
        );
    }

    #[test]
    fn ipv6_service_netmask_is_a_prefix_length() {
        let reqs = requests("new-service-v6");
        let Request::NewService(s) = &reqs[1] else {
            panic!("{reqs:?}")
        };
        assert_eq!(s.key.family(), Family::V6);
        assert_eq!(s.settings.netmask, Netmask::V6(64));
        assert_eq!(s.settings.pe_name.as_deref(), Some("sip"));
        assert_eq!(s.settings.scheduler, Scheduler::Mh);
    }

    #[test]
    fn udp_service_with_scheduler_flags() {
        let reqs = requests("new-service-udp");
        let Request::NewService(s) = &reqs[1] else {
            panic!("{reqs:?}")
        };
        assert_eq!(
            s.settings.flags,
            ServiceFlags::SCHED1 | ServiceFlags::SCHED2
        );
    }

    #[test]
    fn deletes_and_edits() {
        assert_eq!(
            requests("del-service")[1],
            Request::DelService(as_ipvsadm_sends(ServiceKey::Addr {
                protocol: Protocol::Udp,
                addr: ip("192.0.2.10"),
                port: 53
            }))
        );
        let Request::DelDest(_, d) = &requests("del-dest")[1] else {
            panic!()
        };
        assert_eq!((d.addr, d.port), (ip("10.9.0.12"), 80));
        let Request::SetDest(_, d) = &requests("set-dest")[1] else {
            panic!()
        };
        assert_eq!(d.settings.weight, 5);
        let Request::SetService(s) = &requests("set-service")[1] else {
            panic!()
        };
        assert_eq!(s.settings.scheduler, Scheduler::Rr);
        assert_eq!(s.settings.flags, ServiceFlags::ONEPACKET);
        let missing = requests("del-dest-missing");
        assert_eq!(d_attrs(&missing[1]).addr, ip("10.9.0.99"));
    }

    fn d_attrs(r: &Request) -> &DestAttrs {
        match r {
            Request::DelDest(_, d) => d,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn kernel_refusals_carry_the_errno() {
        let errno = |name: &str| fixture(name).iter().rev().find_map(|m| m.errno());
        assert_eq!(errno("new-service-dup"), Some(-libc::EEXIST));
        assert_eq!(errno("del-service-missing"), Some(-libc::ESRCH));
        assert_eq!(errno("del-dest-missing"), Some(-libc::ENOENT));
        assert_eq!(errno("new-service-tcp"), Some(0));
    }

    #[test]
    fn dump_replies() {
        let r = replies("dump");
        let services: Vec<&ServiceEntry> = r
            .iter()
            .filter_map(|x| match x {
                Reply::Service(s) => Some(s),
                _ => None,
            })
            .collect();
        assert_eq!(services.len(), 4);
        // The kernel reports HASHED on every service; it is stripped on read.
        assert!(services
            .iter()
            .all(|s| !s.service.settings.flags.contains(ServiceFlags::HASHED)));
        let tcp = services
            .iter()
            .find(|s| s.service.key == tcp80())
            .expect("tcp service");
        assert_eq!(tcp.service.settings.scheduler, Scheduler::Wrr);
        let dests: Vec<&DestEntry> = r
            .iter()
            .filter_map(|x| match x {
                Reply::Dest(d) => Some(d),
                _ => None,
            })
            .collect();
        let d12 = dests
            .iter()
            .find(|d| d.dest.addr == ip("10.9.0.12"))
            .expect("10.9.0.12");
        assert_eq!(d12.dest.settings.weight, 200);
        assert_eq!(d12.dest.settings.forwarding, Forwarding::Route);
        let nat = dests
            .iter()
            .find(|d| d.dest.addr == ip("10.9.0.14"))
            .expect("nat dest");
        assert_eq!(
            (nat.dest.port, nat.dest.settings.forwarding),
            (5353, Forwarding::Masq)
        );
    }

    #[test]
    fn info_config_daemon_replies() {
        assert_eq!(
            replies("info")[0],
            Reply::Info(Info {
                version: 0x010201,
                conn_tab_size: 4096
            })
        );
        assert_eq!(
            replies("get-config")[1..],
            [Reply::Config(Timeouts {
                tcp: Some(900),
                tcp_fin: Some(120),
                udp: Some(300)
            })]
        );
        assert_eq!(
            replies("get-daemon")[1],
            Reply::Daemon(Daemon {
                state: DaemonState::Master,
                ifname: "d0".into(),
                sync_id: 5,
                sync_maxlen: Some(1472),
                mcast_group: Some(ip("224.0.0.81")),
                mcast_port: Some(8848),
                mcast_ttl: Some(1),
            })
        );
        assert_eq!(
            requests("stop-daemon")[1],
            Request::DelDaemon(DaemonStop {
                state: DaemonState::Master,
                ifname: Some(String::new()),
                sync_id: Some(0)
            })
        );
        assert_eq!(requests("zero")[1], Request::Zero(None));
        assert_eq!(requests("flush")[1], Request::Flush);
    }
}
