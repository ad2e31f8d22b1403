//! `/proc/net/ip_vs`: the kernel's text listing of the whole table, in one read.
//!
//! Netlink has no "all destinations" dump: reading a table of N services takes N + 1
//! dumps, one at a time. The proc file lists every service and destination in one
//! read, but leaves out thresholds, scheduler flags, tunnel settings, persistence
//! engines and counters, and cannot tell an IPv4 fwmark service from an IPv6 one with
//! the same mark. It can also *miss* services: when another network namespace has
//! IPVS services too and the listing takes more than one `read()`, the kernel (6.1)
//! resumes at a position that counted the other namespace's services, and skips ours.
//! So it serves only as a change detector for destinations, next to a netlink dump of
//! the services: each block gets a fingerprint, and only services whose block is
//! missing or moved get their destinations read again. The connection counts it shows
//! are current and are parsed for draining.
//!
//! [`render`] writes the same format from a table, for the in-memory fake kernel.

use std::collections::hash_map::DefaultHasher;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::listing::Table;
use super::types::{Family, Forwarding, Netmask, Protocol, ServiceFlags, ServiceKey};

/// Where the file is: `thread-self`, because a thread may have entered another
/// network namespace than the process's first thread (`/proc/net` follows the latter).
pub const PATH: &str = "/proc/thread-self/net/ip_vs";

/// Reads the listing of this thread's network namespace. Each `read()` asks for a
/// megabyte: the kernel fills at most a page per call, but a listing that fits in one
/// page then comes in one call, which the skipping described above cannot affect.
pub fn read() -> std::io::Result<String> {
    read_from(std::fs::File::open(PATH)?)
}

/// Reads an opened listing (see [`read`]).
pub fn read_from(file: std::fs::File) -> std::io::Result<String> {
    read_counting(file, &crate::Progress::default())
}

/// Reads an opened listing, counting each answer of the kernel in `progress`: a big
/// table's listing comes 4 KiB a read, each read walking the table again (29 s for
/// 100,000 services in the test VM), and a writer's watch for stalls must see it move.
pub fn read_counting(
    mut file: std::fs::File,
    progress: &crate::Progress,
) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut buf = vec![0u8; 1 << 20];
    let mut text = Vec::new();
    loop {
        let n = file.read(&mut buf)?;
        progress.tick(1);
        match n {
            0 => break,
            n => text.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8(text).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// One service block: its header line and the destination lines under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The protocol and address as printed (`TCP  C0000201:0050`, `FWM  00000007`):
    /// what identifies the block from one read to the next.
    pub id: String,
    /// The services the block can be: one, or both families for a fwmark.
    pub keys: Vec<ServiceKey>,
    /// A hash of everything in the block except the connection counts.
    pub fingerprint: u64,
    /// The destinations with connections: address, port, active and inactive counts
    /// (every other destination of the block has none; an idle table costs no address
    /// parsing and no list).
    pub conns: Vec<(IpAddr, u16, u32, u32)>,
}

/// A line the parser did not understand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{PATH} line {line}: {reason}: {text:?}")]
pub struct ProcError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub reason: &'static str,
    /// The line.
    pub text: String,
}

fn hex_u16(s: &str) -> Option<u16> {
    u16::from_str_radix(s, 16).ok()
}

/// `C0000201:0050` or `[2001:0db8:…]:01BB`.
fn addr_port(s: &str) -> Option<(IpAddr, u16)> {
    let (a, p) = s.rsplit_once(':')?;
    let port = hex_u16(p)?;
    let addr = match a.strip_prefix('[').and_then(|a| a.strip_suffix(']')) {
        Some(v6) => IpAddr::V6(v6.parse::<Ipv6Addr>().ok()?),
        None => IpAddr::V4(Ipv4Addr::from(u32::from_str_radix(a, 16).ok()?)),
    };
    Some((addr, port))
}

fn service_keys(proto: &str, addr: &str) -> Option<Vec<ServiceKey>> {
    let protocol = match proto {
        "TCP" => Protocol::Tcp,
        "UDP" => Protocol::Udp,
        "SCTP" => Protocol::Sctp,
        "FWM" => {
            let mark = u32::from_str_radix(addr, 16).ok()?;
            return Some(vec![
                ServiceKey::Fwmark {
                    family: Family::V4,
                    mark,
                },
                ServiceKey::Fwmark {
                    family: Family::V6,
                    mark,
                },
            ]);
        }
        _ => return None,
    };
    let (addr, port) = addr_port(addr)?;
    Some(vec![ServiceKey::Addr {
        protocol,
        addr,
        port,
    }])
}

struct Open {
    id: String,
    keys: Vec<ServiceKey>,
    hasher: DefaultHasher,
    conns: Vec<(IpAddr, u16, u32, u32)>,
}

impl Open {
    fn close(self) -> Block {
        Block {
            id: self.id,
            keys: self.keys,
            fingerprint: self.hasher.finish(),
            conns: self.conns,
        }
    }
}

/// Parses the file's text into blocks, in the kernel's order.
pub fn parse(text: &str) -> Result<Vec<Block>, ProcError> {
    let mut blocks = Vec::new();
    let mut open: Option<Open> = None;
    for (i, line) in text.lines().enumerate() {
        let err = |reason| ProcError {
            line: i + 1,
            reason,
            text: line.to_string(),
        };
        if let Some(rest) = line.strip_prefix("  -> ") {
            if rest.starts_with("RemoteAddress") {
                continue; // the column header
            }
            let b = open
                .as_mut()
                .ok_or_else(|| err("destination before any service"))?;
            // ASCII: the kernel prints nothing else, and a Unicode-aware split was
            // a third of the parse.
            let mut f = rest.split_ascii_whitespace();
            let (Some(ap), Some(_fwd), Some(weight), Some(active), Some(inactive)) =
                (f.next(), f.next(), f.next(), f.next(), f.next())
            else {
                return Err(err("expected address, forwarding, weight and two counts"));
            };
            let count = |s: &str| s.parse::<u32>().map_err(|_| err("bad connection count"));
            let (active, inactive) = (count(active)?, count(inactive)?);
            // The line up to the weight (address, forwarding, weight), in one piece:
            // the counts after it are not configuration.
            let end = weight.as_ptr() as usize - rest.as_ptr() as usize + weight.len();
            b.hasher.write(&rest.as_bytes()[..end]);
            // Not `active + inactive`: two counts near u32::MAX overflow it (fuzzing).
            if active > 0 || inactive > 0 {
                let (addr, port) = addr_port(ap).ok_or_else(|| err("bad address"))?;
                b.conns.push((addr, port, active, inactive));
            }
            continue;
        }
        let mut f = line.split_ascii_whitespace();
        let (Some(proto), Some(addr)) = (f.next(), f.next()) else {
            continue; // blank
        };
        if matches!(proto, "IP" | "Prot") {
            continue; // the version and column headers
        }
        let keys = service_keys(proto, addr).ok_or_else(|| err("bad service"))?;
        if let Some(b) = open.take() {
            blocks.push(b.close());
        }
        let mut hasher = DefaultHasher::new();
        line.trim_end().hash(&mut hasher);
        open = Some(Open {
            id: format!("{proto} {addr}"),
            keys,
            hasher,
            conns: Vec::new(),
        });
    }
    if let Some(b) = open.take() {
        blocks.push(b.close());
    }
    Ok(blocks)
}

fn fwd_name(f: &Forwarding) -> &'static str {
    match f {
        Forwarding::Route => "Route",
        Forwarding::Masq => "Masq",
        Forwarding::Tunnel(_) => "Tunnel",
        Forwarding::Local => "Local",
        Forwarding::Bypass => "Unknown",
    }
}

fn fmt_addr(out: &mut String, addr: &IpAddr, port: u16) {
    let _ = match addr {
        IpAddr::V4(a) => write!(out, "{:08X}:{port:04X}", u32::from(*a)),
        IpAddr::V6(a) => {
            let s = a.segments();
            write!(
                out,
                "[{:04x}:{:04x}:{:04x}:{:04x}:{:04x}:{:04x}:{:04x}:{:04x}]:{port:04X}",
                s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]
            )
        }
    };
}

/// The protocol and address columns of a service's line, as the kernel prints them.
fn columns(key: &ServiceKey) -> (String, String) {
    match key {
        ServiceKey::Addr {
            protocol,
            addr,
            port,
        } => {
            let mut a = String::new();
            fmt_addr(&mut a, addr, *port);
            (protocol.to_string().to_uppercase(), a)
        }
        ServiceKey::Fwmark { mark, .. } => ("FWM".to_string(), format!("{mark:08X}")),
    }
}

/// The id of the block a service is printed in (see [`Block::id`]).
pub fn block_id(key: &ServiceKey) -> String {
    let (proto, addr) = columns(key);
    format!("{proto} {addr}")
}

/// Writes `table` as the kernel would, with persistence timeouts in ticks of `hz`.
pub fn render(table: &Table, hz: u32) -> String {
    let mut out = String::from(
        "IP Virtual Server version 1.2.1 (size=4096)\n\
         Prot LocalAddress:Port Scheduler Flags\n  \
         -> RemoteAddress:Port Forward Weight ActiveConn InActConn\n",
    );
    for (s, dests) in table {
        let set = &s.service.settings;
        let ops = if set.flags.contains(ServiceFlags::ONEPACKET) {
            "ops "
        } else {
            ""
        };
        let sched = set.scheduler.name();
        let (proto, addr) = columns(&s.service.key);
        let _ = match &s.service.key {
            ServiceKey::Addr {
                addr: IpAddr::V6(_),
                ..
            } => write!(out, "{proto}  {addr} {sched} "),
            ServiceKey::Addr { .. } => write!(out, "{proto}  {addr} {sched} {ops} "),
            ServiceKey::Fwmark { .. } => write!(out, "{proto}  {addr} {sched} {ops}"),
        };
        if set.flags.contains(ServiceFlags::PERSISTENT) {
            let mask = match set.netmask {
                Netmask::V4(m) => u32::from(m),
                // The kernel keeps a prefix length in the netmask field and prints
                // it through ntohl.
                Netmask::V6(plen) => u32::from_be(u32::from(plen)),
            };
            let _ = writeln!(
                out,
                "persistent {} {mask:08X}",
                set.timeout.saturating_mul(hz)
            );
        } else {
            out.push('\n');
        }
        for d in dests {
            out.push_str("  -> ");
            fmt_addr(&mut out, &d.dest.addr, d.dest.port);
            let _ = writeln!(
                out,
                "      {:<7} {:<6} {:<10} {:<10}",
                fwd_name(&d.dest.settings.forwarding),
                d.dest.settings.weight,
                d.active_conns,
                d.inactive_conns
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_read_of_a_listing_counts_as_progress() {
        let path = std::env::temp_dir().join(format!("lvsdr-proc-{}", std::process::id()));
        let text = "x".repeat(3 << 20);
        std::fs::write(&path, &text).expect("write");
        let progress = crate::Progress::default();
        let read = super::read_counting(std::fs::File::open(&path).expect("open"), &progress);
        std::fs::remove_file(&path).expect("remove");
        assert_eq!(read.expect("read").len(), text.len());
        assert!(
            progress.get() >= 4,
            "3 MiB in 1 MiB reads, then the end: {}",
            progress.get()
        );
    }

    use super::*;

    /// Captured from Debian's 6.1 kernel in the test VM (HZ = 250), byte for byte, by
    /// `tests/vm/capture-proc.sh`, after:
    /// `-A -t 192.0.2.1:80 -s wrr`, two destinations (Route 3, Masq 0);
    /// `-A -t 192.0.2.2:0 -s sh -p 300 -M 255.255.255.0 -b sh-port`, one Tunnel;
    /// `-A -t [2001:db8::1]:443 -s wlc -p 10 -M 64`, one Route with thresholds;
    /// `-A -u 192.0.2.1:53 -s rr -o`; `--sctp-service 192.0.2.3:9 --pe sip`;
    /// `-A -f 7 -s lc -p 60` and `-A -f 7 -6 -s lc`.
    const KERNEL: &str = include_str!("vectors/proc_net_ip_vs.txt");

    #[test]
    fn parses_what_the_kernel_prints() {
        let blocks = parse(KERNEL).expect("parse");
        let ids: Vec<&str> = blocks.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "SCTP C0000203:0009",
                "UDP C0000201:0035",
                "TCP C0000202:0000",
                "TCP [2001:0db8:0000:0000:0000:0000:0000:0001]:01BB",
                "TCP C0000201:0050",
                "FWM 00000007",
                "FWM 00000007",
            ]
        );
        assert_eq!(
            blocks[4].keys,
            [ServiceKey::Addr {
                protocol: Protocol::Tcp,
                addr: "192.0.2.1".parse().expect("address"),
                port: 80
            }]
        );
        assert_eq!(
            blocks[3].keys,
            [ServiceKey::Addr {
                protocol: Protocol::Tcp,
                addr: "2001:db8::1".parse().expect("address"),
                port: 443
            }]
        );
        assert_eq!(
            blocks[5].keys.len(),
            2,
            "a fwmark block can be either family"
        );
        assert!(
            blocks.iter().all(|b| b.conns.is_empty()),
            "an idle table lists no connections"
        );
        let distinct: std::collections::HashSet<u64> =
            blocks.iter().map(|b| b.fingerprint).collect();
        assert_eq!(distinct.len(), blocks.len());
    }

    #[test]
    fn counts_near_the_top_of_u32_are_kept_not_overflowed() {
        // Found by fuzzing: the two counts were added, which overflowed.
        let text = "TCP  C0000201:0050 wrr\n  -> 0A000001:0050      Route   1      3986467638 1993233819\n";
        let blocks = parse(text).expect("parse");
        assert_eq!(
            blocks[0].conns,
            [(
                "10.0.0.1".parse().expect("address"),
                80,
                3_986_467_638,
                1_993_233_819
            )]
        );
    }

    #[test]
    fn connection_counts_do_not_move_the_fingerprint_and_weights_do() {
        let base = parse(KERNEL).expect("parse");
        let busy = KERNEL.replace(
            "  -> 0A000002:0050      Route   3      0          0         ",
            "  -> 0A000002:0050      Route   3      17         4         ",
        );
        let busy = parse(&busy).expect("parse");
        assert_eq!(busy[4].fingerprint, base[4].fingerprint);
        assert_eq!(
            busy[4].conns,
            [("10.0.0.2".parse().expect("address"), 80, 17, 4)],
            "only the destination with connections"
        );
        let edited = KERNEL.replace("Route   3 ", "Route   4 ");
        assert_ne!(
            parse(&edited).expect("parse")[4].fingerprint,
            base[4].fingerprint
        );
        let sched = KERNEL.replace("C0000201:0050 wrr", "C0000201:0050 wlc");
        assert_ne!(
            parse(&sched).expect("parse")[4].fingerprint,
            base[4].fingerprint
        );
    }

    #[test]
    fn render_writes_the_kernel_format() {
        use crate::*;
        let svc = |key: ServiceKey, settings: ServiceSettings| ServiceEntry {
            service: Service { key, settings },
            stats: Stats::default(),
        };
        let dest = |addr: &str, port, forwarding, weight| DestEntry {
            dest: Dest {
                addr: addr.parse().expect("address"),
                port,
                settings: DestSettings {
                    forwarding,
                    weight,
                    upper_threshold: 0,
                    lower_threshold: 0,
                },
            },
            active_conns: 0,
            inactive_conns: 0,
            persistent_conns: 0,
            stats: Stats::default(),
        };
        let tcp = |a: &str, port| ServiceKey::Addr {
            protocol: Protocol::Tcp,
            addr: a.parse().expect("address"),
            port,
        };
        let mut sh = ServiceSettings::new(Scheduler::Sh, Family::V4);
        sh.flags = ServiceFlags::PERSISTENT | ServiceFlags::SCHED2;
        sh.timeout = 300;
        sh.netmask = Netmask::V4("255.255.255.0".parse().expect("address"));
        let mut wlc6 = ServiceSettings::new(Scheduler::Wlc, Family::V6);
        wlc6.flags = ServiceFlags::PERSISTENT;
        wlc6.timeout = 10;
        wlc6.netmask = Netmask::V6(64);
        let mut udp = ServiceSettings::new(Scheduler::Rr, Family::V4);
        udp.flags = ServiceFlags::ONEPACKET;
        let mut fwm = ServiceSettings::new(Scheduler::Lc, Family::V4);
        fwm.flags = ServiceFlags::PERSISTENT;
        fwm.timeout = 60;
        let tunnel = Forwarding::Tunnel(Tunnel {
            kind: TunnelKind::Ipip,
            port: 0,
            flags: 0,
        });
        let table: Table = vec![
            (
                svc(
                    tcp("192.0.2.1", 80),
                    ServiceSettings::new(Scheduler::Wrr, Family::V4),
                ),
                vec![
                    dest("10.0.0.3", 80, Forwarding::Masq, 0),
                    dest("10.0.0.2", 80, Forwarding::Route, 3),
                ],
            ),
            (
                svc(tcp("192.0.2.2", 0), sh),
                vec![dest("10.0.0.4", 0, tunnel, 1)],
            ),
            (
                svc(tcp("2001:db8::1", 443), wlc6),
                vec![dest("2001:db8::2", 443, Forwarding::Route, 2)],
            ),
            (
                svc(
                    ServiceKey::Addr {
                        protocol: Protocol::Udp,
                        addr: "192.0.2.1".parse().expect("address"),
                        port: 53,
                    },
                    udp,
                ),
                vec![],
            ),
            (
                svc(
                    ServiceKey::Addr {
                        protocol: Protocol::Sctp,
                        addr: "192.0.2.3".parse().expect("address"),
                        port: 9,
                    },
                    ServiceSettings::new(Scheduler::Rr, Family::V4),
                ),
                vec![],
            ),
            (
                svc(
                    ServiceKey::Fwmark {
                        family: Family::V6,
                        mark: 7,
                    },
                    ServiceSettings::new(Scheduler::Lc, Family::V6),
                ),
                vec![],
            ),
            (
                svc(
                    ServiceKey::Fwmark {
                        family: Family::V4,
                        mark: 7,
                    },
                    fwm,
                ),
                vec![],
            ),
        ];
        // Listed in the order of the kernel's hash table in that boot.
        let table: Table = [4, 3, 1, 2, 0, 5, 6]
            .iter()
            .map(|&i| table[i].clone())
            .collect();
        assert_eq!(render(&table, 250), KERNEL);
    }
}
