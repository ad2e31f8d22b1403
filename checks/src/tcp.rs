//! Connect checks (`type = "tcp"`) without a task or a future per check: non-blocking
//! connects watched by one epoll set of the prober's own. Per check: `socket`,
//! `setsockopt` (linger 0: the close sends RST, no FIN exchange, no TIME_WAIT for either
//! side), `connect`, `epoll_ctl` (add), then a shared `epoll_wait` and `getsockopt`
//! (`SO_ERROR`), `close` (which also leaves the epoll set). No allocation once the
//! slab has grown to the checks in flight. The set is an [`EpollSet`].

use std::net::SocketAddr;
use std::os::fd::AsFd;

use nix::sys::epoll::{EpollEvent, EpollFlags};
use socket2::{Domain, SockAddr, Socket, Type};

use crate::epoll_set::EpollSet;
use crate::failure::{io_failure, CheckFailure};

/// A non-blocking socket connecting to `target`, that closes with RST: whichever side
/// closes first, no TIME_WAIT is left on the director (a thousand checks a second
/// would hold 60,000 ports) and none on the server unless it closed first. `Err`: the
/// connect failed at once (refused, no route, or a local failure).
pub fn connecting(target: SocketAddr) -> Result<Socket, CheckFailure> {
    let sock = Socket::new(
        Domain::for_address(target),
        Type::STREAM.nonblocking(),
        None,
    )
    .map_err(|e| CheckFailure::Local(format!("socket for {target}: {e}")))?;
    let _ = sock.set_linger(Some(std::time::Duration::ZERO));
    match sock.connect(&SockAddr::from(target)) {
        Ok(()) => Ok(sock),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(sock),
        Err(e) => Err(io_failure(&format!("connect {target}"), &e)),
    }
}

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
    set: EpollSet,
    slab: Vec<Option<InFlight>>,
    free: Vec<usize>,
    events: Vec<EpollEvent>,
}

impl TcpProber {
    /// An empty prober (needs a tokio runtime).
    pub fn new() -> std::io::Result<TcpProber> {
        Ok(TcpProber {
            set: EpollSet::new()?,
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
        let sock = connecting(target)?;
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slab.push(None);
            self.slab.len() - 1
        });
        if let Err(e) = self.set.add(sock.as_fd(), EpollFlags::EPOLLOUT, slot) {
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
        self.set.ready().await;
    }

    /// Ends every connect that finished, into `out`.
    pub fn drain(&mut self, out: &mut Vec<Finished>) {
        self.set.clear();
        loop {
            let n = self.set.wait(&mut self.events);
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
