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
