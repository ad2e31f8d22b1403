//! Half-open TCP checks (`type = "tcp-syn"`): one SYN from a raw socket; a SYN-ACK back
//! means the port listens (up), a RST means it does not (down), silence is a timeout.
//!
//! The SYN's source port belongs to a TCP socket that is bound but never listens, so
//! when the SYN-ACK arrives the kernel finds no connection for it and answers with a
//! RST itself. Neither side ever creates a connection: no socket per check, no accept
//! on the real server, no teardown; three packets instead of a connect's four and a
//! close's two. This is what load balancers call a half-open monitor. It needs
//! CAP_NET_RAW.
//!
//! The check scheduler drives a [`DirectProber`] of its own: it sends each SYN as the
//! check falls due and takes the answers in its own loop, with no task and no channel
//! between (two task hops and two channels per check were half of a `tcp-syn` check's
//! CPU in the test VM). Checks run as futures (a one-off run) share one task that owns
//! another pair of raw sockets ([`SynProber`]): they send it a probe through a channel
//! and wait on a oneshot for the outcome (their own timeout bounds the wait).

use crate::failure::{io_failure, CheckFailure};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use etherparse::{Ipv4HeaderSlice, TcpHeader, TcpHeaderSlice};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

type Outcome = Result<(), CheckFailure>;

/// The receive buffer asked for each raw socket.
const RECV_BUFFER: usize = 4 << 20;

struct Probe {
    target: SocketAddr,
    reply: Reply,
}

/// Where a probe's outcome goes.
enum Reply {
    /// To one waiting check ([`SynProber::probe`]).
    Once(oneshot::Sender<Outcome>),
    /// To the scheduler that drives a [`DirectProber`], tagged, when it drains it;
    /// forgotten after `expires` (the scheduler has timed the check out by then).
    Direct {
        owner: usize,
        tag: u64,
        expires: std::time::Instant,
    },
}

/// A tagged outcome: (owner, tag, outcome).
pub type Tagged = (usize, u64, Outcome);

impl Reply {
    /// Delivers `outcome`: to the waiting check, or into `out` (a scheduler's drain).
    fn settle(self, outcome: Outcome, out: &mut Vec<Tagged>) {
        match self {
            Reply::Once(tx) => {
                let _ = tx.send(outcome);
            }
            Reply::Direct { owner, tag, .. } => out.push((owner, tag, outcome)),
        }
    }

    fn wanted(&self, now: std::time::Instant) -> bool {
        match self {
            Reply::Once(tx) => !tx.is_closed(),
            Reply::Direct { expires, .. } => *expires > now,
        }
    }
}

/// A handle to the prober task; cheap to clone.
#[derive(Clone)]
pub struct SynProber {
    tx: mpsc::Sender<Probe>,
}

impl SynProber {
    /// Opens the raw sockets (IPv4, and IPv6 where the host has it) and starts the
    /// task. Fails without CAP_NET_RAW.
    pub fn start(cancel: CancellationToken) -> Result<SynProber, String> {
        let prober = DirectProber::open()?;
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(run(prober, rx, cancel));
        Ok(SynProber { tx })
    }

    /// Sends one SYN to `target` and waits for the answer (bound it with a timeout).
    pub async fn probe(&self, target: SocketAddr) -> Outcome {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Probe {
                target,
                reply: Reply::Once(reply),
            })
            .await
            .map_err(|_| CheckFailure::Local("the tcp-syn prober stopped".into()))?;
        rx.await
            .map_err(|_| CheckFailure::Local("the tcp-syn prober dropped the probe".into()))?
    }
}

/// A socket filter (classic BPF) that keeps only what can answer a probe: a SYN-ACK or
/// a RST to `port`. A raw TCP socket otherwise gets a copy of every TCP segment the host
/// receives; and a flood of anything else to the prober's port (bare ACKs, data) filled
/// its receive buffer, so that real answers were dropped and up servers went down. An
/// IPv4 raw socket sees the IP header first; an IPv6 one, the TCP header.
fn only_answers_to(port: u16, ip_header: bool) -> Vec<socket2::SockFilter> {
    use libc::{
        BPF_ABS, BPF_ALU, BPF_AND, BPF_B, BPF_H, BPF_IND, BPF_JEQ, BPF_JMP, BPF_JSET, BPF_K,
        BPF_LD, BPF_LDX, BPF_MSH, BPF_RET,
    };
    const SYN_ACK: u32 = 0x12;
    const RST: u32 = 0x04;
    let op = |code: u32, jt, jf, k| socket2::SockFilter::new(code as u16, jt, jf, k);
    // Loads at an offset into the TCP header: past X (the IPv4 header), or absolute.
    let at = |size: u32, k: u32| {
        if ip_header {
            op(BPF_LD | size | BPF_IND, 0, 0, k)
        } else {
            op(BPF_LD | size | BPF_ABS, 0, 0, k)
        }
    };
    let mut f = Vec::with_capacity(9);
    if ip_header {
        f.push(op(BPF_LDX | BPF_B | BPF_MSH, 0, 0, 0)); // X = IPv4 header length
    }
    f.extend([
        at(BPF_H, 2),                                         // A = destination port
        op(BPF_JMP | BPF_JEQ | BPF_K, 0, 5, u32::from(port)), // else drop
        at(BPF_B, 13),                                        // A = flags
        op(BPF_JMP | BPF_JSET | BPF_K, 2, 0, RST),            // a RST: keep
        op(BPF_ALU | BPF_AND | BPF_K, 0, 0, SYN_ACK),
        op(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, SYN_ACK), // a SYN-ACK: keep, else drop
        op(BPF_RET | BPF_K, 0, 0, u32::MAX),          // keep it whole
        op(BPF_RET | BPF_K, 0, 0, 0),                 // drop
    ]);
    f
}

/// How often a [`DirectProber`] forgets the probes whose checks have timed out.
const SWEEP: Duration = Duration::from_secs(1);

/// The raw sockets and the probes in flight, driven by their owner's loop: the check
/// scheduler's (see the module doc) or the task behind [`SynProber`].
/// [`DirectProber::start`] sends a SYN at once; when [`DirectProber::ready`] says
/// answers are in, [`DirectProber::drain`] hands their outcomes back, tagged.
pub struct DirectProber {
    v4: UdpSocket,
    v6: Option<UdpSocket>,
    /// The same sockets, read past tokio's readiness (see [`DirectProber::take_now`]).
    now4: std::net::UdpSocket,
    now6: Option<std::net::UdpSocket>,
    state: State,
    buf: Vec<u8>,
    next_sweep: std::time::Instant,
}

impl DirectProber {
    /// Opens its raw sockets (IPv4, and IPv6 where the host has it), with a source
    /// port of their own (needs a tokio runtime). Fails without CAP_NET_RAW.
    pub fn open() -> Result<DirectProber, String> {
        // A raw socket is message-oriented: tokio's UDP socket drives its
        // sendto/recvfrom as well as a UDP one's.
        let (reserve, port) = reserve_port().map_err(|e| format!("tcp-syn source port: {e}"))?;
        let raw = |d: Domain| -> std::io::Result<UdpSocket> {
            let s = Socket::new(d, Type::RAW, Some(Protocol::TCP))?;
            s.attach_filter(&only_answers_to(port, d == Domain::IPV4))?;
            // Room for bursts of answers while the owner is busy (the kernel caps it
            // at net.core.rmem_max).
            s.set_recv_buffer_size(RECV_BUFFER)?;
            s.set_nonblocking(true)?;
            UdpSocket::from_std(s.into())
        };
        let v4 = raw(Domain::IPV4)
            .map_err(|e| format!("tcp-syn checks need a raw socket (CAP_NET_RAW): {e}"))?;
        let v6 = raw(Domain::IPV6).ok();
        let state = State {
            port,
            _reserve: reserve,
            pending: HashMap::new(),
            sources: HashMap::new(),
            seq_key: std::collections::hash_map::RandomState::new(),
            probes: 0,
        };
        let dup = |s: &UdpSocket| -> Result<std::net::UdpSocket, String> {
            let d = socket2::SockRef::from(s)
                .try_clone()
                .map_err(|e| format!("tcp-syn raw socket: {e}"))?;
            Ok(d.into())
        };
        let now4 = dup(&v4)?;
        let now6 = v6.as_ref().map(dup).transpose()?;
        Ok(DirectProber {
            v4,
            v6,
            now4,
            now6,
            state,
            buf: vec![0u8; 65_536],
            next_sweep: std::time::Instant::now() + SWEEP,
        })
    }

    /// Probes in flight (some may have timed out and wait for the next sweep).
    pub fn in_flight(&self) -> usize {
        self.state.pending.len()
    }

    /// Sends one SYN to `target` for the run `tag` of `owner`; its outcome comes out of
    /// [`DirectProber::drain`] unless it has not come by `expires`. `Err`: it ended at
    /// once (no route, a full socket buffer, no IPv6). `now`: the scheduler's clock
    /// reading, which also paces the sweep of probes that timed out.
    pub fn start(
        &mut self,
        owner: usize,
        tag: u64,
        target: SocketAddr,
        expires: std::time::Instant,
        now: std::time::Instant,
    ) -> Result<(), CheckFailure> {
        let reply = Reply::Direct {
            owner,
            tag,
            expires,
        };
        self.send(target, reply, now).map_err(|(_, e)| e)
    }

    /// Sends one SYN to `target`, to be settled into `reply`; first forgets the probes
    /// nobody waits for any more, once a [`SWEEP`]. `Err`: it ended at once (the reply
    /// is handed back with why).
    fn send(
        &mut self,
        target: SocketAddr,
        reply: Reply,
        now: std::time::Instant,
    ) -> Result<(), (Reply, CheckFailure)> {
        if now >= self.next_sweep {
            self.state.pending.retain(|_, r| r.wanted(now));
            self.next_sweep = now + SWEEP;
        }
        self.state
            .send(&self.v4, self.v6.as_ref(), target, reply, now)
    }

    /// Sends a probe of the task's; one that ends at once is answered at once.
    fn send_or_fail(&mut self, p: Probe, now: std::time::Instant) {
        if let Err((reply, e)) = self.send(p.target, p.reply, now) {
            reply.settle(Err(e), &mut Vec::new());
        }
    }

    /// Waits until a raw socket has something to read.
    pub async fn ready(&self) {
        match &self.v6 {
            Some(v6) => {
                tokio::select! {
                    _ = self.v4.readable() => {}
                    _ = v6.readable() => {}
                }
            }
            None => {
                let _ = self.v4.readable().await;
            }
        }
    }

    /// Takes the answers that are in (at most [`DRAIN_AT_MOST`] a socket: a flood to
    /// the prober's port must not starve the scheduler) and puts the outcomes they
    /// settle into `out`; after [`DirectProber::ready`] (tokio's readiness, cleared
    /// when a socket is empty).
    pub fn drain(&mut self, out: &mut Vec<Tagged>) {
        let (state, buf) = (&mut self.state, &mut self.buf);
        take(|b| self.v4.try_recv_from(b), buf, state, out);
        if let Some(v6) = &self.v6 {
            take(|b| v6.try_recv_from(b), buf, state, out);
        }
    }

    /// As [`DirectProber::drain`], right after sending, without waiting for the
    /// reactor to say so: a near server's answers are in by the time `sendto`
    /// returns (the kernel handles them on the way), and each trip through the
    /// reactor costs a wake-up. One `recvfrom` a socket when nothing is in.
    pub fn take_now(&mut self, out: &mut Vec<Tagged>) {
        let (state, buf) = (&mut self.state, &mut self.buf);
        take(|b| self.now4.recv_from(b), buf, state, out);
        if let Some(v6) = &self.now6 {
            take(|b| v6.recv_from(b), buf, state, out);
        }
    }
}

/// Reads segments with `recv` (at most [`DRAIN_AT_MOST`]) and settles what they answer.
fn take(
    mut recv: impl FnMut(&mut [u8]) -> std::io::Result<(usize, SocketAddr)>,
    buf: &mut [u8],
    state: &mut State,
    out: &mut Vec<Tagged>,
) {
    for _ in 0..DRAIN_AT_MOST {
        let Ok((n, from)) = recv(buf) else {
            break;
        };
        let segment = buf.get(..n).unwrap_or_default();
        let a = match from.ip() {
            // An IPv4 raw socket gets the IP header first; an IPv6 one does not.
            IpAddr::V4(_) => answer_v4(segment, state.port),
            IpAddr::V6(ip) => answer(IpAddr::V6(ip), segment, state.port),
        };
        state.settle(a, out);
    }
}

/// A TCP socket bound to an ephemeral port, never listening: it keeps the port from
/// other sockets, and makes the kernel answer SYN-ACKs to it with a RST.
fn reserve_port() -> std::io::Result<(Socket, u16)> {
    let dual = Socket::new(Domain::IPV6, Type::STREAM, None).and_then(|s| {
        s.set_only_v6(false)?;
        s.bind(&SockAddr::from(SocketAddr::new(
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            0,
        )))?;
        Ok(s)
    });
    let s = match dual {
        Ok(s) => s,
        Err(_) => {
            let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
            s.bind(&SockAddr::from(SocketAddr::from(([0, 0, 0, 0], 0))))?;
            s
        }
    };
    let port = s
        .local_addr()?
        .as_socket()
        .map(|a| a.port())
        .ok_or_else(|| std::io::Error::other("no port"))?;
    Ok((s, port))
}

/// How long a looked-up source address is used: routes and addresses change (a
/// stale source would make every answer go elsewhere and the server look down).
const SOURCE_TTL: std::time::Duration = std::time::Duration::from_secs(10);

struct State {
    port: u16,
    _reserve: Socket,
    /// (target, our sequence number) → who waits.
    pending: HashMap<(SocketAddr, u32), Reply>,
    /// The source address the kernel picks for each destination (for the checksum).
    sources: HashMap<IpAddr, (IpAddr, std::time::Instant)>,
    /// Sequence numbers are a keyed hash of a probe counter: unpredictable to anyone
    /// who has seen earlier ones, so nobody off-path can forge the answer.
    seq_key: std::collections::hash_map::RandomState,
    probes: u64,
}

impl State {
    fn next_seq(&mut self) -> u32 {
        self.probes += 1;
        let mut h = self.seq_key.build_hasher();
        h.write_u64(self.probes);
        h.finish() as u32
    }
}

/// The address the kernel would send from to `dst` (a UDP connect sends nothing).
fn source_for(dst: IpAddr) -> std::io::Result<IpAddr> {
    let any: SocketAddr = match dst {
        IpAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        IpAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    };
    let s = std::net::UdpSocket::bind(any)?;
    s.connect(SocketAddr::new(dst, 9))?;
    Ok(s.local_addr()?.ip())
}

/// A SYN from `src:sport` to `dst`, checksummed.
/// The SYN: a TCP header without options (20 bytes, on the stack: no allocation per
/// probe).
fn syn_segment(src: IpAddr, sport: u16, dst: SocketAddr, seq: u32) -> Result<[u8; 20], String> {
    let mut h = TcpHeader::new(sport, dst.port(), seq, 65_535);
    h.syn = true;
    h.checksum = match (src, dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => h.calc_checksum_ipv4_raw(s.octets(), d.octets(), &[]),
        (IpAddr::V6(s), IpAddr::V6(d)) => h.calc_checksum_ipv6_raw(s.octets(), d.octets(), &[]),
        _ => return Err(format!("{src} cannot reach {dst}: mixed families")),
    }
    .map_err(|e| e.to_string())?;
    h.to_bytes()
        .as_slice()
        .try_into()
        .map_err(|_| "a SYN header of other than 20 bytes".to_string())
}

/// What a received IPv4 packet (header included, as a raw IPv4 socket gets it) says.
pub fn answer_v4(packet: &[u8], port: u16) -> Option<(SocketAddr, u32, Outcome)> {
    let ip = Ipv4HeaderSlice::from_slice(packet).ok()?;
    let from = IpAddr::V4(ip.source_addr());
    let tcp = packet.get(usize::from(ip.ihl()) * 4..).unwrap_or_default();
    answer(from, tcp, port)
}

/// What a received segment says: (from, the sequence number it acknowledges, outcome).
pub fn answer(from: IpAddr, tcp: &[u8], port: u16) -> Option<(SocketAddr, u32, Outcome)> {
    let t = TcpHeaderSlice::from_slice(tcp).ok()?;
    if t.destination_port() != port {
        return None;
    }
    let outcome = if t.syn() && t.ack() {
        Ok(())
    } else if t.rst() {
        Err(CheckFailure::Down("refused (RST)".to_string()))
    } else {
        return None;
    };
    let acked = t.acknowledgment_number().wrapping_sub(1);
    Some((SocketAddr::new(from, t.source_port()), acked, outcome))
}

/// The most segments taken from a raw socket in one wake-up. Under a flood to the
/// prober's port the socket is never empty: draining it to the end starved the
/// probes to send, and every tcp-syn check timed out (went down) for it.
const DRAIN_AT_MOST: usize = 256;

/// The task behind [`SynProber`]: probes from the channel, answers from its
/// [`DirectProber`]'s sockets.
async fn run(mut prober: DirectProber, mut rx: mpsc::Receiver<Probe>, cancel: CancellationToken) {
    // Where direct replies would go: this task has none (only [`Reply::Once`]).
    let mut none = Vec::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            // Each wake-up takes everything that is ready: at thousands of checks a
            // second, one select round per packet would cost more than the packets.
            p = rx.recv() => match p {
                Some(p) => {
                    let now = std::time::Instant::now();
                    prober.send_or_fail(p, now);
                    while let Ok(p) = rx.try_recv() {
                        prober.send_or_fail(p, now);
                    }
                }
                None => break,
            },
            _ = prober.ready() => prober.drain(&mut none),
        }
    }
}

impl State {
    /// Settles the probe an answer is for, if it is one of ours still in flight.
    fn settle(&mut self, a: Option<(SocketAddr, u32, Outcome)>, out: &mut Vec<Tagged>) {
        if let Some((from, seq, outcome)) = a {
            if let Some(reply) = self.pending.remove(&(from, seq)) {
                reply.settle(outcome, out);
            }
        }
    }

    /// Sends one SYN to `target`, to be settled into `reply`; `now` is read once per
    /// batch of probes, not per probe. `Err`: it ended at once (the reply is handed
    /// back with why).
    fn send(
        &mut self,
        v4: &UdpSocket,
        v6: Option<&UdpSocket>,
        target: SocketAddr,
        reply: Reply,
        now: std::time::Instant,
    ) -> Result<(), (Reply, CheckFailure)> {
        let dst = target.ip();
        let fresh = |t: &std::time::Instant| now.saturating_duration_since(*t) < SOURCE_TTL;
        let src = match self.sources.get(&dst).filter(|(_, t)| fresh(t)) {
            Some((s, _)) => *s,
            None => match source_for(dst) {
                Ok(s) => {
                    self.sources.insert(dst, (s, now));
                    s
                }
                Err(e) => {
                    let why = CheckFailure::Local(format!("no route to {dst}: {e}"));
                    return Err((reply, why));
                }
            },
        };
        let seq = self.next_seq();
        let segment = match syn_segment(src, self.port, target, seq) {
            Ok(s) => s,
            Err(e) => return Err((reply, CheckFailure::Local(e))),
        };
        let sock = match (dst, v6) {
            (IpAddr::V4(_), _) => v4,
            (IpAddr::V6(_), Some(v6)) => v6,
            (IpAddr::V6(_), None) => {
                let why = CheckFailure::Local("no IPv6 raw socket on this host".into());
                return Err((reply, why));
            }
        };
        // Raw sockets take the protocol, not a port, in the address: 0. A full socket
        // buffer fails this probe (it times out as a check would) rather than blocking.
        let to = SockAddr::from(SocketAddr::new(dst, 0));
        match socket2::SockRef::from(sock).send_to(&segment, &to) {
            Ok(_) => {
                self.pending.insert((target, seq), reply);
                Ok(())
            }
            Err(e) => {
                // The route may have changed: look the source up again next time.
                self.sources.remove(&dst);
                Err((reply, io_failure(&format!("send SYN to {target}"), &e)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_syn_is_checksummed_and_a_syn_ack_to_our_port_settles_its_probe() {
        let src: IpAddr = "10.0.0.1".parse().expect("ip");
        let dst: SocketAddr = "10.0.0.2:80".parse().expect("addr");
        let seg = syn_segment(src, 40000, dst, 1234).expect("segment");
        let t = TcpHeaderSlice::from_slice(&seg).expect("parses");
        assert!(t.syn() && !t.ack());
        assert_eq!(
            (t.source_port(), t.destination_port(), t.sequence_number()),
            (40000, 80, 1234)
        );
        let h = t.to_header();
        assert_eq!(
            h.calc_checksum_ipv4_raw([10, 0, 0, 1], [10, 0, 0, 2], &[])
                .expect("sum"),
            h.checksum
        );

        let mut reply = TcpHeader::new(80, 40000, 777, 1000);
        reply.syn = true;
        reply.ack = true;
        reply.acknowledgment_number = 1235;
        let bytes = reply.to_bytes();
        assert_eq!(answer(dst.ip(), &bytes, 40000), Some((dst, 1234, Ok(()))));
        assert_eq!(answer(dst.ip(), &bytes, 40001), None, "another port's");
        let mut rst = TcpHeader::new(80, 40000, 0, 0);
        rst.rst = true;
        rst.ack = true;
        rst.acknowledgment_number = 1235;
        assert_eq!(
            answer(dst.ip(), &rst.to_bytes(), 40000),
            Some((
                dst,
                1234,
                Err(CheckFailure::Down("refused (RST)".to_string()))
            ))
        );
    }
}
