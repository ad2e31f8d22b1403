//! Every decoder of outside input, as one function over arbitrary bytes: netlink
//! replies and requests, the `/proc/net/ip_vs` listing, raw TCP segments (the
//! `tcp-syn` prober), DNS answers, the director↔agent JSON, the config, and the four
//! importers. None may panic, whatever the bytes, and an importer's output must be a
//! config lvsdr accepts: the property tests (`tests/decoders.rs` here), the longer run in
//! `benches/decoders.rs` here and the coverage-guided targets (`../fuzz/`) call these.
//! A crate of its own so that none of this is in the product's public API.

use std::net::{IpAddr, Ipv4Addr};

use lvsdr::agent_api::{AgentStatus, ErrorBody, PushVips};
use lvsdr::ipvs::wire::{self, Reply, Request};

/// A netlink message as the kernel (or anyone on the socket) might send it.
pub fn netlink(bytes: &[u8]) {
    if let Ok(msg) = wire::from_bytes(bytes) {
        let _ = Reply::decode(&msg);
        let _ = Request::decode(&msg, false);
        let _ = Request::decode(&msg, true);
    }
    let _ = wire::attr::parse_attrs(bytes, "fuzz");
}

/// The proc listing.
pub fn proc_listing(bytes: &[u8]) {
    let _ = lvsdr::ipvs::proc::parse(&String::from_utf8_lossy(bytes));
}

/// A raw packet on the `tcp-syn` prober's sockets: an IPv4 packet, or a bare TCP
/// segment (IPv6 raw sockets get no IP header).
pub fn tcp_segment(bytes: &[u8]) {
    let _ = lvsdr_checks::syn::answer_v4(bytes, 4321);
    let _ = lvsdr_checks::syn::answer(IpAddr::V4(Ipv4Addr::LOCALHOST), bytes, 4321);
}

/// A DNS answer to a `udp-dns` check.
pub fn dns(bytes: &[u8]) {
    let _ = lvsdr_checks::dns_answer(bytes, 0x1234, 0);
}

/// The agents' answers and the pushes they take.
pub fn agent_json(bytes: &[u8]) {
    let _ = serde_json::from_slice::<AgentStatus>(bytes);
    let _ = serde_json::from_slice::<ErrorBody>(bytes);
    let _ = serde_json::from_slice::<PushVips>(bytes);
}

/// The director's config: read block by block (as the director reads it) and as one
/// document, the same result.
pub fn config(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let host = lvsdr::config::Host::default();
    let blocks = lvsdr::config::parse(&text, "fuzz.toml");
    let whole = lvsdr::config::parse_whole(&text, "fuzz.toml", &host);
    assert_eq!(
        blocks, whole,
        "read block by block and as one document:\n{text}"
    );
    // A reload by a loader that read another config first: the text before a
    // `#--` line, then the text after it (or the input, then the input with its
    // first digit changed: a change in place, as a reload mostly is).
    let (first, second) = match text.split_once("\n#--\n") {
        Some((a, b)) => (a.to_owned(), b.to_owned()),
        None => (text.to_string(), bump_first_digit(&text)),
    };
    let mut loader = lvsdr::config::Loader::default();
    let _ = loader.parse_on(&first, "fuzz.toml", &host);
    let reloaded = loader.parse_on(&second, "fuzz.toml", &host);
    let whole = lvsdr::config::parse_whole(&second, "fuzz.toml", &host);
    assert_eq!(
        reloaded, whole,
        "reloaded after\n{first}\nand read as one document:\n{second}"
    );
}

/// `text` with its first ASCII digit replaced by the next (9 by 0).
fn bump_first_digit(text: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    if let Some(d) = bytes.iter_mut().find(|b| b.is_ascii_digit()) {
        *d = if *d == b'9' { b'0' } else { *d + 1 };
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// An importer's input: it must not panic, and what it writes must validate (the
/// import's promise; a panic here is how a fuzzer reports the promise broken).
/// `include`s are looked for beside a path that does not exist.
pub fn import(format: lvsdr_import::Format, bytes: &[u8]) {
    let src = lvsdr_import::Source {
        name: "fuzz".into(),
        path: "/nonexistent/lvsdr-fuzz/input".into(),
        text: String::from_utf8_lossy(bytes).into_owned(),
    };
    let Ok(d) = lvsdr_import::import_source(format, &src) else {
        return;
    };
    let text = lvsdr_import::emit::toml(&d);
    if let Err(e) = lvsdr::config::parse(&text, "imported.toml") {
        panic!("the import wrote a config lvsdr refuses: {e}\n{text}");
    }
    let _ = d.report();
}

/// keepalived.conf.
pub fn import_keepalived(bytes: &[u8]) {
    import(lvsdr_import::Format::Keepalived, bytes);
}

/// ldirectord.cf.
pub fn import_ldirectord(bytes: &[u8]) {
    import(lvsdr_import::Format::Ldirectord, bytes);
}

/// Piranha's lvs.cf.
pub fn import_piranha(bytes: &[u8]) {
    import(lvsdr_import::Format::Piranha, bytes);
}

/// `ipvsadm -Sn` output.
pub fn import_ipvsadm(bytes: &[u8]) {
    import(lvsdr_import::Format::Ipvsadm, bytes);
}

/// A decoder: its name, the function, and a valid input to mutate.
pub type Decoder = (&'static str, fn(&[u8]), Vec<u8>);

/// Each decoder with a name and a valid input to mutate (random bytes alone rarely get
/// past the first check of a structured format).
pub fn all() -> Vec<Decoder> {
    vec![
        ("netlink", netlink, sample_netlink()),
        ("proc", proc_listing, include_bytes!("../../ipvs/src/vectors/proc_net_ip_vs.txt").to_vec()),
        ("tcp", tcp_segment, sample_syn_ack()),
        ("dns", dns, vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]),
        (
            "agent-json",
            agent_json,
            br#"{"generation":1,"epoch":2,"director":"d","arp_mode":"nft","real_ip":"10.0.0.11","vip_device":"lo","vips":[{"vip":"192.0.2.1","on_device":true,"arp_suppressed":true}],"in_place":true,"last_error":null,"held":[]}"#.to_vec(),
        ),
        ("config", config, include_bytes!("../../conf/director.toml").to_vec()),
        (
            "import-keepalived",
            import_keepalived,
            include_bytes!("../../import/tests/inputs/keepalived.conf").to_vec(),
        ),
        (
            "import-ldirectord",
            import_ldirectord,
            include_bytes!("../../import/tests/inputs/ldirectord.cf").to_vec(),
        ),
        ("import-piranha", import_piranha, include_bytes!("../../import/tests/inputs/lvs.cf").to_vec()),
        (
            "import-ipvsadm",
            import_ipvsadm,
            include_bytes!("../../import/tests/inputs/ipvsadm.dump").to_vec(),
        ),
    ]
}

fn sample_netlink() -> Vec<u8> {
    let dest = lvsdr::ipvs::Dest {
        addr: "10.0.0.11"
            .parse()
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        port: 80,
        settings: lvsdr::ipvs::DestSettings::route(1),
    };
    let key = lvsdr::ipvs::ServiceKey::Addr {
        protocol: lvsdr::ipvs::Protocol::Tcp,
        addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
        port: 80,
    };
    Request::NewDest(key.into(), dest)
        .encode()
        .ok()
        .and_then(|m| wire::to_bytes(&m).ok())
        .unwrap_or_default()
}

fn sample_syn_ack() -> Vec<u8> {
    // IPv4 header (20 bytes) + TCP SYN-ACK to port 4321.
    let mut p = vec![
        0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 11, 10, 0, 0, 1,
    ];
    p.extend_from_slice(&[
        0, 80, 0x10, 0xe1, 0, 0, 0, 1, 0, 0, 0x30, 0x3a, 0x50, 0x12, 0xff, 0xff, 0, 0, 0, 0,
    ]);
    p
}

/// A small deterministic generator (xorshift): the long run needs no dependency and
/// repeats for the same seed.
pub struct Rng(u64);

impl Rng {
    /// Seeded; 0 is replaced.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// The next number.
    pub fn draw(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Half the time random bytes, half the time `sample` with a few bytes changed,
    /// cut short or grown.
    pub fn input(&mut self, sample: &[u8]) -> Vec<u8> {
        if self.draw().is_multiple_of(2) || sample.is_empty() {
            let n = (self.draw() % 512) as usize;
            return (0..n).map(|_| self.draw() as u8).collect();
        }
        let mut v = sample.to_vec();
        for _ in 0..1 + self.draw() % 8 {
            let i = (self.draw() as usize) % v.len().max(1);
            if let Some(b) = v.get_mut(i) {
                *b = self.draw() as u8;
            }
        }
        match self.draw() % 4 {
            0 => v.truncate((self.draw() as usize) % (v.len() + 1)),
            1 => v.extend((0..self.draw() % 16).map(|_| 0xff)),
            _ => {}
        }
        v
    }
}
