//! Plain-HTTP checks (`type = "http"`, no TLS, no `via`) without a task, a future or a
//! timer per check: each run is a small state machine over a non-blocking socket in
//! the prober's [`EpollSet`] (edge-triggered: one registration for the life of the
//! connection, no `epoll_ctl` between its phases), driven by the scheduler's loop;
//! timeouts are the scheduler's wheel's, as for `tcp` connects.
//!
//! A run: connect (or take the check's kept connection), write the request when the
//! connect ends, read when the answer comes; the head is parsed as
//! [`crate::http1`] does and the body framed by [`Decoder`]. With keep-alive the
//! connection stays in the set between runs, as its socket alone; if the server
//! closes it meanwhile, the event is noticed and it is closed. A close that crosses
//! the request (no answer at all on a kept connection) sends the `GET` once more on
//! a new connection, as the async path does. Answers are read into one scratch
//! buffer; a run keeps bytes of its own only while its answer is incomplete.

use std::io::{ErrorKind, Read};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;

use bytes::BytesMut;
use nix::sys::epoll::{EpollEvent, EpollFlags};
use regex::Regex;
use socket2::Socket;

use crate::epoll_set::EpollSet;
use crate::failure::{io_failure, CheckFailure};
use crate::http1::{parse_head, request, HEAD_LIMIT};
use crate::http1_body::{BodyError, Decoder, Framing, Sink};
use crate::tcp::{connecting, Finished};
use lvsdr::health::{HttpCheck, StatusSet};

/// What a plain-HTTP check sends and expects, built once per check.
#[derive(Debug)]
pub struct Exchange {
    target: SocketAddr,
    path: String,
    /// The request that lets the server keep the connection, and the one that asks
    /// it to close.
    keep: Vec<u8>,
    close: Vec<u8>,
    expect: StatusSet,
    body: Option<Regex>,
    limit: usize,
}

impl Exchange {
    /// The exchange of `h` with `target`; `Err` if the path or host would break the
    /// request (the async path then fails each run with that, as a local error).
    pub fn new(
        target: SocketAddr,
        h: &HttpCheck,
        body: Option<Regex>,
        limit: usize,
    ) -> Result<Exchange, &'static str> {
        let host = h.host.clone().unwrap_or_else(|| target.to_string());
        Ok(Exchange {
            target,
            path: h.path.clone(),
            keep: request(&h.path, &host, false)?,
            close: request(&h.path, &host, true)?,
            expect: h.expect_status.clone(),
            body,
            limit,
        })
    }

    /// What a failure message starts with.
    fn what(&self) -> String {
        format!("GET http://{}{}", self.target, self.path)
    }

    fn down(&self, m: impl std::fmt::Display) -> CheckFailure {
        CheckFailure::Down(format!("{}: {m}", self.what()))
    }
}

/// A connection in the set: idle (kept for its check) or carrying a run.
struct Conn {
    sock: Socket,
    /// The scheduler's slot for the check, and the check's instance there.
    owner: usize,
    instance: u64,
    run: Option<Run>,
}

/// One run in flight.
struct Run {
    tag: u64,
    ex: Arc<Exchange>,
    close: bool,
    /// On a connection kept from an earlier run (no answer at all: once more, anew).
    reused: bool,
    phase: Phase,
    /// The answer so far, while it is incomplete.
    buf: BytesMut,
    /// Some answer came: a failure from now on is the server's.
    answered: bool,
}

enum Phase {
    Connecting,
    /// Written this much of the request.
    Writing(usize),
    Head,
    Body {
        body: Decoder,
        sink: Sink,
        reusable: bool,
    },
}

/// What an event did to a run.
enum Step {
    Wait,
    /// A kept connection the server had closed: the run goes on a new one.
    Again,
    /// The outcome, and whether the connection can carry the next run.
    Done(Result<(), CheckFailure>, bool),
}

/// Edge-triggered: an event for each change, never again for the same state.
fn watched() -> EpollFlags {
    EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLET
}

/// The epoll set, the connections in it and each check's kept one.
pub struct HttpProber {
    set: EpollSet,
    slab: Vec<Option<Conn>>,
    free: Vec<usize>,
    /// By the scheduler's slot: the kept connection (instance, slot in `slab`).
    kept: Vec<Option<(u64, usize)>>,
    /// By the scheduler's slot: the instance of the check run there (0: none, since
    /// [`HttpProber::forget`]); a run of another instance that ends keeps nothing.
    current: Vec<u64>,
    busy: usize,
    events: Vec<EpollEvent>,
    scratch: Vec<u8>,
}

impl HttpProber {
    /// An empty prober (needs a tokio runtime).
    pub fn new() -> std::io::Result<HttpProber> {
        Ok(HttpProber {
            set: EpollSet::new()?,
            slab: Vec::new(),
            free: Vec::new(),
            kept: Vec::new(),
            current: Vec::new(),
            busy: 0,
            events: vec![EpollEvent::empty(); 256],
            scratch: vec![0; 16 * 1024],
        })
    }

    /// How many runs are in flight.
    pub fn in_flight(&self) -> usize {
        self.busy
    }

    /// Waits until the set has events.
    pub async fn ready(&self) {
        self.set.ready().await;
    }

    /// Starts the run `tag` of check `owner` (instance `instance`). `Ok(slot)`: in
    /// flight, to be ended by [`HttpProber::drain`] or [`HttpProber::abandon`]; `Err`:
    /// it ended at once.
    pub fn start(
        &mut self,
        owner: usize,
        instance: u64,
        tag: u64,
        ex: &Arc<Exchange>,
        close: bool,
    ) -> Result<usize, CheckFailure> {
        let mut run = Run {
            tag,
            ex: ex.clone(),
            close,
            reused: false,
            phase: Phase::Connecting,
            buf: BytesMut::new(),
            answered: false,
        };
        if owner >= self.current.len() {
            self.current.resize(owner + 1, 0);
        }
        self.current[owner] = instance;
        if let Some(slot) = self.take_kept(owner, instance) {
            run.reused = true;
            run.phase = Phase::Writing(0);
            if let Some(conn) = self.slab.get_mut(slot).and_then(Option::as_mut) {
                // Written now: the connection is open, and its socket has room.
                if !matches!(write(&conn.sock, &mut run), Step::Again) {
                    conn.run = Some(run);
                    self.busy += 1;
                    return Ok(slot);
                }
            }
            // The server had closed it: a new connection.
            self.close(slot);
            run.reused = false;
            run.phase = Phase::Connecting;
        }
        let sock = connecting(ex.target)?;
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slab.push(None);
            self.slab.len() - 1
        });
        if let Err(e) = self.set.add(sock.as_fd(), watched(), slot) {
            self.free.push(slot);
            return Err(CheckFailure::Local(format!("epoll for {}: {e}", ex.target)));
        }
        self.slab[slot] = Some(Conn {
            sock,
            owner,
            instance,
            run: Some(run),
        });
        self.busy += 1;
        Ok(slot)
    }

    /// Ends a run that ran out of time, if `slot` still carries the run `tag`.
    pub fn abandon(&mut self, slot: usize, tag: u64) -> bool {
        let carries = matches!(
            self.slab.get(slot),
            Some(Some(Conn { run: Some(r), .. })) if r.tag == tag
        );
        if carries {
            self.close(slot);
        }
        carries
    }

    /// Closes the kept connection of the check that held the scheduler's slot `owner`
    /// (it is no longer run).
    pub fn forget(&mut self, owner: usize) {
        if let Some(c) = self.current.get_mut(owner) {
            *c = 0;
        }
        if let Some((_, slot)) = self.kept.get_mut(owner).and_then(Option::take) {
            self.close(slot);
        }
    }

    /// Ends every run that finished, into `out`, and closes kept connections that
    /// their servers closed.
    pub fn drain(&mut self, out: &mut Vec<Finished>) {
        self.set.clear();
        loop {
            let n = self.set.wait(&mut self.events);
            for i in 0..n {
                let ev = self.events[i];
                self.event(ev.data() as usize, ev.events(), out);
            }
            if n < self.events.len() {
                return;
            }
        }
    }

    fn event(&mut self, slot: usize, flags: EpollFlags, out: &mut Vec<Finished>) {
        let Some(conn) = self.slab.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let Some(run) = conn.run.as_mut() else {
            // Idle: the server closed it, or sent what nobody asked for.
            if !quiet(&conn.sock) {
                self.close(slot);
            }
            return;
        };
        match step(&conn.sock, run, flags, &mut self.scratch) {
            Step::Wait => {}
            Step::Again => self.again(slot, out),
            Step::Done(outcome, reusable) => self.finish(slot, outcome, reusable, out),
        }
    }

    /// The run on `slot` goes on a new connection, in the same slot (its deadline on
    /// the scheduler's wheel names the slot).
    fn again(&mut self, slot: usize, out: &mut Vec<Finished>) {
        let Some(conn) = self.slab.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let Some(run) = conn.run.as_mut() else {
            return;
        };
        let opened = connecting(run.ex.target).and_then(|sock| {
            self.set
                .add(sock.as_fd(), watched(), slot)
                .map_err(|e| CheckFailure::Local(format!("epoll for {}: {e}", run.ex.target)))?;
            Ok(sock)
        });
        match opened {
            Ok(sock) => {
                conn.sock = sock; // the old one closed, and out of the set
                run.reused = false;
                run.phase = Phase::Connecting;
                run.buf.clear();
            }
            Err(e) => self.finish(slot, Err(e), false, out),
        }
    }

    fn finish(
        &mut self,
        slot: usize,
        outcome: Result<(), CheckFailure>,
        reusable: bool,
        out: &mut Vec<Finished>,
    ) {
        let Some(conn) = self.slab.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let Some(run) = conn.run.take() else {
            return;
        };
        self.busy -= 1;
        out.push((conn.owner, run.tag, outcome));
        let (owner, instance) = (conn.owner, conn.instance);
        if owner >= self.kept.len() {
            self.kept.resize(owner + 1, None);
        }
        let wanted = self.current.get(owner) == Some(&instance);
        match &mut self.kept[owner] {
            k @ None if reusable && wanted => *k = Some((instance, slot)),
            // One kept connection per slot: the run of a check that held the slot
            // before may end after its successor's ([`HttpProber::take_kept`] closes
            // one kept for an instance no longer there).
            _ => self.close(slot),
        }
    }

    /// The kept connection of `owner`'s instance `instance`, out of `kept`.
    fn take_kept(&mut self, owner: usize, instance: u64) -> Option<usize> {
        let (i, slot) = self.kept.get_mut(owner)?.take()?;
        if i == instance {
            Some(slot)
        } else {
            self.close(slot); // an earlier check's that held the scheduler's slot
            None
        }
    }

    fn close(&mut self, slot: usize) {
        if let Some(conn) = self.slab.get_mut(slot).and_then(Option::take) {
            if conn.run.is_some() {
                self.busy -= 1;
            }
            // A kept connection leaves `kept` too: its slot is free for another
            // check's connection from now on.
            if let Some(k) = self.kept.get_mut(conn.owner) {
                if k.is_some_and(|(_, s)| s == slot) {
                    *k = None;
                }
            }
            self.free.push(slot);
            // Dropped here: closed, and out of the set.
        }
    }
}

/// An idle connection has nothing to read: end of stream or stray bytes mean it is
/// done.
fn quiet(sock: &Socket) -> bool {
    let mut one = [MaybeUninit::<u8>::uninit(); 1];
    matches!(sock.peek(&mut one), Err(e) if e.kind() == ErrorKind::WouldBlock)
}

/// Takes the event `flags` to the run.
fn step(sock: &Socket, run: &mut Run, flags: EpollFlags, scratch: &mut [u8]) -> Step {
    if let Phase::Connecting = run.phase {
        if flags.contains(EpollFlags::EPOLLERR) {
            let e = match sock.take_error() {
                Ok(Some(e)) | Err(e) => e,
                Ok(None) => ErrorKind::ConnectionAborted.into(),
            };
            let target = run.ex.target;
            return Step::Done(Err(io_failure(&format!("connect {target}"), &e)), false);
        }
        if !flags.intersects(EpollFlags::EPOLLOUT | EpollFlags::EPOLLHUP) {
            return Step::Wait;
        }
        run.phase = Phase::Writing(0);
    }
    if let Phase::Writing(_) = run.phase {
        match write(sock, run) {
            Step::Wait if matches!(run.phase, Phase::Head) => {}
            other => return other,
        }
    }
    let ended = EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLHUP;
    if !flags.intersects(EpollFlags::EPOLLIN | ended) {
        return Step::Wait;
    }
    match read(sock, run, scratch) {
        // A close that came with the answer has no event of its own once idle.
        Step::Done(outcome, reusable) => Step::Done(outcome, reusable && !flags.intersects(ended)),
        other => other,
    }
}

/// Writes what is left of the request; `Wait` (in `Head` once all is written), or
/// the failure.
fn write(sock: &Socket, run: &mut Run) -> Step {
    let Phase::Writing(mut off) = run.phase else {
        return Step::Wait;
    };
    let request = if run.close {
        &run.ex.close
    } else {
        &run.ex.keep
    };
    while off < request.len() {
        match sock.send_with_flags(&request[off..], libc::MSG_NOSIGNAL) {
            Ok(n) => off += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                run.phase = Phase::Writing(off);
                return Step::Wait;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) if run.reused => return Step::Again,
            Err(e) => return Step::Done(Err(io_failure(&run.ex.what(), &e)), false),
        }
    }
    run.phase = Phase::Head;
    Step::Wait
}

/// Reads what has come (edge-triggered: until there is no more) and takes it in.
fn read(mut sock: &Socket, run: &mut Run, scratch: &mut [u8]) -> Step {
    loop {
        match sock.read(scratch) {
            Ok(0) => return closed(run),
            Ok(n) => {
                // A short read emptied the socket's queue; a full one may not have.
                let drained = n < scratch.len();
                let step = match take(run, &scratch[..n], drained) {
                    Step::Wait => continue,
                    other => other,
                };
                return step;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Step::Wait,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) if run.reused && !run.answered && run.buf.is_empty() => return Step::Again,
            Err(e) => return Step::Done(Err(io_failure(&run.ex.what(), &e)), false),
        }
    }
}

/// The server closed the connection.
fn closed(run: &mut Run) -> Step {
    let ex = run.ex.clone();
    match &run.phase {
        Phase::Body { body, sink, .. } => match body.closed() {
            Ok(_) => Step::Done(verdict(&ex, sink), false),
            Err(e) => Step::Done(Err(ex.down(e)), false),
        },
        _ if run.reused && !run.answered && run.buf.is_empty() => Step::Again,
        _ => Step::Done(Err(ex.down("closed before an answer")), false),
    }
}

/// Takes in `got`; `drained`: nothing more was waiting on the socket.
fn take(run: &mut Run, got: &[u8], drained: bool) -> Step {
    run.buf.extend_from_slice(got);
    let ex = run.ex.clone();
    loop {
        match &mut run.phase {
            Phase::Head => match parse_head(&run.buf) {
                Ok(Some((len, head))) => {
                    let _ = run.buf.split_to(len);
                    run.answered = true;
                    if (100..200).contains(&head.status) {
                        continue; // an interim answer: the real one follows
                    }
                    if !ex.expect.contains(head.status) {
                        let m = format!("status {}, expected {}", head.status, ex.expect);
                        return Step::Done(Err(ex.down(m)), false);
                    }
                    run.phase = Phase::Body {
                        body: Decoder::new(head.framing),
                        sink: Sink::new(ex.body.is_some(), ex.limit),
                        reusable: head.keeps && head.framing != Framing::UntilClose,
                    };
                }
                Ok(None) if run.buf.len() < HEAD_LIMIT => return Step::Wait,
                Ok(None) => {
                    let m = format!("the answer's head is over {HEAD_LIMIT} bytes");
                    return Step::Done(Err(ex.down(m)), false);
                }
                Err(e) => {
                    return Step::Done(Err(ex.down(format!("not an HTTP answer: {e}"))), false)
                }
            },
            Phase::Body {
                body,
                sink,
                reusable,
            } => {
                return match body.feed(&mut run.buf, sink) {
                    Ok(None) => Step::Wait,
                    Ok(Some(whole)) => {
                        let reusable =
                            whole && *reusable && !run.close && drained && run.buf.is_empty();
                        Step::Done(verdict(&ex, sink), reusable)
                    }
                    Err(BodyError::Io(e)) => Step::Done(Err(io_failure(&ex.what(), &e)), false),
                    Err(e) => Step::Done(Err(ex.down(e)), false),
                };
            }
            Phase::Connecting | Phase::Writing(_) => return Step::Wait,
        }
    }
}

/// The body's verdict.
fn verdict(ex: &Exchange, sink: &Sink) -> Result<(), CheckFailure> {
    match &ex.body {
        Some(re) if !re.is_match(&String::from_utf8_lossy(sink.got())) => {
            Err(ex.down(format!("body does not match {:?}", re.as_str())))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// A server on loopback whose connections `answer` handles; counts them.
    async fn serve<F, Fut>(answer: F) -> (SocketAddr, Arc<AtomicUsize>)
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let conns = Arc::new(AtomicUsize::new(0));
        let c2 = conns.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                c2.fetch_add(1, Relaxed);
                tokio::spawn(answer(s));
            }
        });
        (addr, conns)
    }

    /// Reads one request's head; false at the end of the stream.
    async fn request_in(s: &mut TcpStream) -> Option<String> {
        let mut got = Vec::new();
        let mut b = [0u8; 1];
        while !got.ends_with(b"\r\n\r\n") {
            if !matches!(s.read(&mut b).await, Ok(1)) {
                return None;
            }
            got.push(b[0]);
        }
        Some(String::from_utf8_lossy(&got).to_ascii_lowercase())
    }

    /// Answers `answer` to every request, closing when asked to.
    async fn keeps(mut s: TcpStream, answer: &'static str) {
        while let Some(head) = request_in(&mut s).await {
            if s.write_all(answer.as_bytes()).await.is_err() || head.contains("close") {
                return;
            }
        }
    }

    fn exchange(target: SocketAddr, status: &str, body: Option<&str>) -> Arc<Exchange> {
        let mut h = HttpCheck::get("/health");
        h.expect_status = StatusSet::parse(status).expect("status set");
        let body = body.map(|b| Regex::new(b).expect("regex"));
        Arc::new(Exchange::new(target, &h, body, 1024).expect("exchange"))
    }

    /// Runs one check `tag` of check `owner` (instance 1) to its end.
    async fn run(
        p: &mut HttpProber,
        owner: usize,
        tag: u64,
        ex: &Arc<Exchange>,
        close: bool,
    ) -> Result<(), CheckFailure> {
        p.start(owner, 1, tag, ex, close)?;
        let mut out = Vec::new();
        let ended = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                p.ready().await;
                p.drain(&mut out);
                if let Some(i) = out.iter().position(|f| f.1 == tag) {
                    return out.swap_remove(i);
                }
            }
        });
        let (o, _, outcome) = ended.await.expect("the run ended");
        assert_eq!(o, owner);
        outcome
    }

    const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

    #[tokio::test]
    async fn a_kept_connection_carries_the_runs_until_one_asks_to_close() {
        let (addr, conns) = serve(|s| keeps(s, OK)).await;
        let ex = exchange(addr, "200", Some("^ok$"));
        let mut p = HttpProber::new().expect("prober");
        for tag in 0..30 {
            let close = tag % 10 == 9;
            assert_eq!(run(&mut p, 3, tag, &ex, close).await, Ok(()), "run {tag}");
        }
        assert_eq!(conns.load(Relaxed), 3, "one connection per ten runs");
        for tag in 30..35 {
            assert_eq!(run(&mut p, 3, tag, &ex, true).await, Ok(()));
        }
        assert_eq!(
            conns.load(Relaxed),
            8,
            "a new connection for each closing run"
        );
        assert_eq!((p.in_flight(), p.slab.len() - p.free.len()), (0, 0));
    }

    /// The server ends each connection after one answer: at once (noticed while it
    /// is idle), or when the next request comes (which it reads and leaves
    /// unanswered): either way the run goes on a new connection and passes.
    #[tokio::test]
    async fn a_kept_connection_the_server_ended_is_replaced_without_a_failed_check() {
        for idle in [true, false] {
            let (addr, conns) = serve(move |mut s| async move {
                let chunked =
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
                if request_in(&mut s).await.is_none() {
                    return;
                }
                let _ = s.write_all(chunked.as_bytes()).await;
                if !idle {
                    let _ = request_in(&mut s).await;
                }
            })
            .await;
            let ex = exchange(addr, "200", Some("^ok$"));
            let mut p = HttpProber::new().expect("prober");
            for tag in 0..5 {
                if idle {
                    // Let the close come in first (the event is taken at the next drain).
                    let want = tag as usize;
                    for _ in 0..100 {
                        if conns.load(Relaxed) >= want {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                assert_eq!(
                    run(&mut p, 0, tag, &ex, false).await,
                    Ok(()),
                    "idle {idle}, run {tag}"
                );
            }
            assert_eq!(
                conns.load(Relaxed),
                5,
                "idle {idle}: a new connection each run"
            );
        }
    }

    /// A kept connection its server ended while idle is closed, and its slot taken by
    /// another check's connection: the first check's next run must not take that one
    /// for its own (it would write on the other's connection and end its run).
    #[tokio::test]
    async fn a_slot_freed_by_an_idle_close_is_not_taken_for_the_kept_connection() {
        let (closes, _) = serve(|mut s| async move {
            if request_in(&mut s).await.is_some() {
                let _ = s.write_all(OK.as_bytes()).await;
                // Closed once idle (a close with the answer is seen with it).
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        let (slow, _) = serve(|mut s| async move {
            while request_in(&mut s).await.is_some() {
                tokio::time::sleep(Duration::from_millis(300)).await;
                if s.write_all(OK.as_bytes()).await.is_err() {
                    return;
                }
            }
        })
        .await;
        let (a, b) = (exchange(closes, "200", None), exchange(slow, "200", None));
        let mut p = HttpProber::new().expect("prober");
        assert_eq!(run(&mut p, 0, 1, &a, false).await, Ok(()));
        let kept = p.kept[0].expect("kept").1;
        // The server's close is taken in as the set's next event.
        let t0 = std::time::Instant::now();
        while p.slab[kept].is_some() {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "the idle close was not seen"
            );
            let _ = tokio::time::timeout(Duration::from_millis(50), p.ready()).await;
            p.drain(&mut Vec::new());
        }
        // Check 1's run takes the freed slot and waits for its answer, while check 0
        // runs on a connection of its own.
        assert_eq!(p.start(1, 1, 2, &b, false), Ok(kept));
        assert!(p.start(0, 1, 3, &a, false).is_ok_and(|s| s != kept));
        let mut out = Vec::new();
        let both = tokio::time::timeout(Duration::from_secs(30), async {
            while out.len() < 2 {
                p.ready().await;
                p.drain(&mut out);
            }
        });
        assert!(both.await.is_ok(), "runs ended: {out:?}");
        out.sort_by_key(|f| f.1);
        assert_eq!(out, vec![(1, 2, Ok(())), (0, 3, Ok(()))]);
    }

    #[tokio::test]
    async fn wrong_answers_fail_with_what_was_wrong() {
        let mut p = HttpProber::new().expect("prober");
        let (addr, _) = serve(|s| keeps(s, "HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n")).await;
        let e = run(&mut p, 0, 1, &exchange(addr, "200-299", None), false).await;
        let e = e.expect_err("503").to_string();
        assert!(e.ends_with("/health: status 503, expected 200-299"), "{e}");

        let (addr, _) = serve(|s| keeps(s, OK)).await;
        let e = run(&mut p, 1, 2, &exchange(addr, "200", Some("^fine$")), false).await;
        assert!(e
            .expect_err("body")
            .to_string()
            .contains("body does not match \"^fine$\""));

        let (addr, _) = serve(|s| keeps(s, "SSH-2.0-OpenSSH_9.2\r\n\r\n")).await;
        let e = run(&mut p, 2, 3, &exchange(addr, "200", None), false).await;
        assert!(e
            .expect_err("not http")
            .to_string()
            .contains("not an HTTP answer"));

        let (addr, _) = serve(|mut s| async move {
            let _ = request_in(&mut s).await;
        })
        .await;
        let e = run(&mut p, 3, 4, &exchange(addr, "200", None), false).await;
        let e = e.expect_err("closed");
        assert!(
            matches!(&e, CheckFailure::Down(m) if m.ends_with("closed before an answer")),
            "{e}"
        );

        let (addr, _) = serve(|s| keeps(s, "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nok")).await;
        let e = run(&mut p, 4, 5, &exchange(addr, "200", None), true).await;
        assert!(e
            .expect_err("short")
            .to_string()
            .contains("closed before the body's end"));

        let refused = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = refused.local_addr().expect("addr");
        drop(refused);
        let e = run(&mut p, 5, 6, &exchange(addr, "200", None), false).await;
        let e = e.expect_err("refused");
        assert!(
            matches!(&e, CheckFailure::Down(m) if m.starts_with(&format!("connect {addr}: "))),
            "{e}"
        );
        assert_eq!(p.in_flight(), 0);
    }

    /// An answer that comes a few bytes at a time, in chunks, with an interim `100`.
    #[tokio::test]
    async fn an_answer_in_pieces_is_put_together() {
        let (addr, _) = serve(|mut s| async move {
            let answer = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nall\r\n5\r\n good\r\n0\r\n\r\n";
            while request_in(&mut s).await.is_some() {
                for piece in answer.as_bytes().chunks(7) {
                    if s.write_all(piece).await.is_err() {
                        return;
                    }
                    let _ = s.flush().await;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        })
        .await;
        let mut p = HttpProber::new().expect("prober");
        let ex = exchange(addr, "200", Some("^all good$"));
        for tag in 0..3 {
            assert_eq!(run(&mut p, 0, tag, &ex, false).await, Ok(()));
        }
    }

    /// A run out of time is ended by its deadline (the scheduler's), and a check no
    /// longer run has its kept connection closed.
    #[tokio::test]
    async fn abandon_and_forget_close_their_connections() {
        let ended = Arc::new(AtomicUsize::new(0));
        let e2 = ended.clone();
        let (addr, _) = serve(move |mut s| {
            let ended = e2.clone();
            async move {
                let mut n = 0;
                while request_in(&mut s).await.is_some() {
                    n += 1;
                    if n == 2 {
                        continue; // the second request is never answered
                    }
                    let _ = s.write_all(OK.as_bytes()).await;
                }
                ended.fetch_add(1, Relaxed);
            }
        })
        .await;
        let mut p = HttpProber::new().expect("prober");
        let ex = exchange(addr, "200", None);
        assert_eq!(run(&mut p, 7, 1, &ex, false).await, Ok(()));
        let slot = p.start(7, 1, 2, &ex, false).expect("started");
        assert!(!p.abandon(slot, 1), "another run's tag");
        assert!(p.abandon(slot, 2));
        assert_eq!(p.in_flight(), 0);
        assert_eq!(
            run(&mut p, 7, 3, &ex, false).await,
            Ok(()),
            "on a new connection"
        );
        // A check forgotten while its run is in flight keeps nothing when it ends.
        let (slow, _) = serve(|mut s| async move {
            while request_in(&mut s).await.is_some() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let _ = s.write_all(OK.as_bytes()).await;
            }
        })
        .await;
        let slow = exchange(slow, "200", None);
        p.start(8, 1, 4, &slow, false).expect("started");
        p.forget(8);
        let mut out = Vec::new();
        while out.is_empty() {
            p.ready().await;
            p.drain(&mut out);
        }
        assert_eq!(out, vec![(8, 4, Ok(()))]);
        assert_eq!(
            p.slab.len() - p.free.len(),
            1,
            "only check 7's kept connection"
        );
        p.forget(7);
        for _ in 0..3000 {
            if ended.load(Relaxed) == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(ended.load(Relaxed), 2, "both connections closed");
        assert_eq!(p.slab.len() - p.free.len(), 0);
    }
}
