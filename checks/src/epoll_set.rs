//! An epoll set of the checks' own that the tokio runtime watches: the probers
//! ([`crate::tcp`], [`crate::http_probe`]) keep their sockets in one each, with no
//! tokio registration, task or future per socket. Tokio wakes the scheduler when the
//! set has events: a duplicate of its fd is registered as a datagram socket would be
//! (tokio only polls readiness), so no fd is handled unsafely.

use std::io::ErrorKind;
use std::os::fd::AsFd;

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

/// The set, and its readiness as tokio sees it.
pub struct EpollSet {
    epoll: Epoll,
    ready: tokio::net::UdpSocket,
}

impl EpollSet {
    /// An empty set (needs a tokio runtime).
    pub fn new() -> std::io::Result<EpollSet> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let dup = std::net::UdpSocket::from(epoll.0.try_clone()?);
        // The flag is the open file's, shared with `epoll`: its waits have a zero
        // timeout anyway.
        dup.set_nonblocking(true)?;
        let ready = tokio::net::UdpSocket::from_std(dup)?;
        Ok(EpollSet { epoll, ready })
    }

    /// Watches `fd` for `flags`; its events carry `data`. A socket leaves the set
    /// when it is closed.
    pub fn add<F: AsFd>(&self, fd: F, flags: EpollFlags, data: usize) -> nix::Result<()> {
        self.epoll.add(fd, EpollEvent::new(flags, data as u64))
    }

    /// Waits until the set has events.
    pub async fn ready(&self) {
        let _ = self.ready.readable().await;
    }

    /// Clears tokio's readiness; call before emptying the set with [`EpollSet::wait`]:
    /// an event that comes in between sets it again (a spurious wake-up at worst,
    /// never a lost one).
    pub fn clear(&self) {
        let _ = self.ready.try_io(tokio::io::Interest::READABLE, || {
            Err::<(), _>(ErrorKind::WouldBlock.into())
        });
    }

    /// The events there are now, into `events`; how many.
    pub fn wait(&self, events: &mut [EpollEvent]) -> usize {
        loop {
            match self.epoll.wait(events, EpollTimeout::ZERO) {
                Ok(n) => return n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return 0,
            }
        }
    }
}
