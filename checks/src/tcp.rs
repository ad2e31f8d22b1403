//! Connect checks (`type = "tcp"`) without a task or a future per check: non-blocking
//! connects watched by one epoll set of the prober's own. Per check: `socket`,
//! `setsockopt` (linger 0: the close sends RST, no FIN exchange, no TIME_WAIT for either
//! side), `connect`, `epoll_ctl` (add), then a shared `epoll_wait` and `getsockopt`
//! (`SO_ERROR`), `close` (which also leaves the epoll set). No allocation once the
//! slab has grown to the checks in flight.
//!
//! Tokio wakes the scheduler when the epoll set has events: a duplicate of its fd is
//! registered as a datagram socket would be (tokio only polls readiness), so no fd is
//! handled unsafely.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::os::fd::AsFd;

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use socket2::{Domain, SockAddr, Socket, Type};

use crate::failure::{io_failure, CheckFailure};

/// A connect in flight.
struct InFlight {
    sock: Socket,
    target: SocketAddr,
    /// Whose run it is: the scheduler's slot for the check, and the run's tag.
    owner: usize,
    tag: u64,
}

/// What a finished connect says: (owner, tag, outcome).
pub type Finished = (usize, u64, Result<(), CheckFailure>);

/// The epoll set and the connects in flight.
pub struct TcpProber {
    epoll: Epoll,
    ready: tokio::net::UdpSocket,
    slab: Vec<Option<InFlight>>,
    free: Vec<usize>,
    events: Vec<EpollEvent>,
}

impl TcpProber {
    /// An empty prober (needs a tokio runtime).
    pub fn new() -> std::io::Result<TcpProber> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let dup = std::net::UdpSocket::from(epoll.0.try_clone()?);
        // The flag is the open file's, shared with `epoll`: its waits have a zero
        // timeout anyway.
        dup.set_nonblocking(true)?;
        let ready = tokio::net::UdpSocket::from_std(dup)?;
        Ok(TcpProber {
            epoll,
            ready,
            slab: Vec::new(),
            free: Vec::new(),
            events: vec![EpollEvent::empty(); 256],
        })
    }

    /// Starts a connect for the run `tag` of `owner`. `Ok(slot)`: in flight, to be ended by
    /// [`TcpProber::drain`] or [`TcpProber::abandon`]; `Err`: it ended at once
    /// (refused, no route, or a local failure).
    pub fn start(
        &mut self,
        owner: usize,
        tag: u64,
        target: SocketAddr,
    ) -> Result<usize, CheckFailure> {
        let sock = Socket::new(
            Domain::for_address(target),
            Type::STREAM.nonblocking(),
            None,
        )
        .map_err(|e| CheckFailure::Local(format!("socket for {target}: {e}")))?;
        let _ = sock.set_linger(Some(std::time::Duration::ZERO));
        match sock.connect(&SockAddr::from(target)) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(io_failure(&format!("connect {target}"), &e)),
        }
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slab.push(None);
            self.slab.len() - 1
        });
        let ev = EpollEvent::new(EpollFlags::EPOLLOUT, slot as u64);
        if let Err(e) = self.epoll.add(sock.as_fd(), ev) {
            self.free.push(slot);
            return Err(CheckFailure::Local(format!("epoll for {target}: {e}")));
        }
        self.slab[slot] = Some(InFlight {
            sock,
            target,
            owner,
            tag,
        });
        Ok(slot)
    }

    /// Ends a connect that ran out of time, if `slot` still holds the run `tag`.
    pub fn abandon(&mut self, slot: usize, tag: u64) -> bool {
        match self.slab.get(slot) {
            Some(Some(f)) if f.tag == tag => {
                self.slab[slot] = None; // closes the socket
                self.free.push(slot);
                true
            }
            _ => false,
        }
    }

    /// How many connects are in flight.
    pub fn in_flight(&self) -> usize {
        self.slab.len() - self.free.len()
    }

    /// Waits until the epoll set has events.
    pub async fn ready(&self) {
        let _ = self.ready.readable().await;
    }

    /// Ends every connect that finished, into `out`.
    pub fn drain(&mut self, out: &mut Vec<Finished>) {
        // Readiness is cleared first, then the set emptied: an event that comes in
        // between sets it again (a spurious wake-up at worst, never a lost one).
        let _ = self.ready.try_io(tokio::io::Interest::READABLE, || {
            Err::<(), _>(ErrorKind::WouldBlock.into())
        });
        loop {
            let n = match self.epoll.wait(&mut self.events, EpollTimeout::ZERO) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => 0,
            };
            for ev in &self.events[..n] {
                let slot = ev.data() as usize;
                let Some(f) = self.slab.get_mut(slot).and_then(Option::take) else {
                    continue;
                };
                self.free.push(slot);
                let outcome = match f.sock.take_error() {
                    Ok(None) => Ok(()),
                    Ok(Some(e)) | Err(e) => Err(io_failure(&format!("connect {}", f.target), &e)),
                };
                out.push((f.owner, f.tag, outcome));
                // Dropped here: closed with RST, and out of the epoll set.
            }
            if n < self.events.len() {
                return;
            }
        }
    }
}
