//! The narrow privileged surface: the only way the director reads or writes the
//! kernel's IPVS table. [`Kernel`] is the real one; `FakeKernel` (beside it, in
//! `fake.rs`, built for tests only) keeps a table in memory with the kernel's refusals.

use std::future::Future;
use std::sync::Arc;

use super::cache::Read;
use super::op::Op;
use super::sync::SyncOp;
use crate::ipvs::listing::Table;
use crate::ipvs::proc;
use crate::ipvs::{Daemon, IpvsError, IpvsHandle, Progress, ServiceKey};

/// Reading and writing the IPVS table.
pub trait IpvsBackend: Send + Sync {
    /// The whole table, over netlink (one dump per service).
    fn table(&self) -> impl Future<Output = Result<Table, IpvsError>> + Send;
    /// The whole table as `/proc/net/ip_vs` lists it, as text (one read, not every
    /// field; [`proc::parse`] makes it blocks): the driver compares it with the last
    /// listing before it parses anything.
    fn listing(&self) -> impl Future<Output = Result<String, IpvsError>> + Send;
    /// Some services with their destinations, over netlink.
    fn services(
        &self,
        keys: &[ServiceKey],
    ) -> impl Future<Output = Result<Vec<Read>, IpvsError>> + Send;
    /// Applies ops in order (pipelined where the backend can); one outcome per op.
    fn apply(&self, ops: &[Op]) -> impl Future<Output = Vec<Result<(), IpvsError>>> + Send;
    /// The running connection sync daemons.
    fn daemons(&self) -> impl Future<Output = Result<Vec<Daemon>, IpvsError>> + Send;
    /// Starts or stops a sync daemon.
    fn sync_op(&self, op: &SyncOp) -> impl Future<Output = Result<(), IpvsError>> + Send;
    /// The count of the kernel's answers, which moves while a request is served: the
    /// driver abandons a pass only when it stands still (a hang), not when a pass is
    /// long.
    fn progress(&self) -> Progress;
}

impl<T: IpvsBackend> IpvsBackend for Arc<T> {
    fn table(&self) -> impl Future<Output = Result<Table, IpvsError>> + Send {
        (**self).table()
    }
    fn listing(&self) -> impl Future<Output = Result<String, IpvsError>> + Send {
        (**self).listing()
    }
    fn services(
        &self,
        keys: &[ServiceKey],
    ) -> impl Future<Output = Result<Vec<Read>, IpvsError>> + Send {
        (**self).services(keys)
    }
    fn apply(&self, ops: &[Op]) -> impl Future<Output = Vec<Result<(), IpvsError>>> + Send {
        (**self).apply(ops)
    }
    fn daemons(&self) -> impl Future<Output = Result<Vec<Daemon>, IpvsError>> + Send {
        (**self).daemons()
    }
    fn sync_op(&self, op: &SyncOp) -> impl Future<Output = Result<(), IpvsError>> + Send {
        (**self).sync_op(op)
    }
    fn progress(&self) -> Progress {
        (**self).progress()
    }
}

/// After this many requests the socket is replaced. neli's router forgets a finished
/// request only if its lock is free at that moment; a fresh socket bounds whatever a
/// long-running director might otherwise accumulate.
pub const REQUESTS_PER_SOCKET: u64 = 1_000_000;

/// The kernel, through one generic-netlink socket at a time.
pub struct Kernel {
    handle: tokio::sync::Mutex<std::sync::Arc<IpvsHandle>>,
    requests_before: std::sync::atomic::AtomicU64,
    /// Answers over every socket so far (each new socket counts on).
    progress: Progress,
}

impl Kernel {
    /// Connects to IPVS in this process's network namespace.
    pub async fn connect() -> Result<Kernel, IpvsError> {
        let progress = Progress::default();
        let handle = IpvsHandle::connect_counting(progress.clone()).await?;
        Ok(Kernel {
            handle: tokio::sync::Mutex::new(std::sync::Arc::new(handle)),
            requests_before: std::sync::atomic::AtomicU64::new(0),
            progress,
        })
    }

    /// The socket in use, replaced first if it broke (a reply timed out, a socket
    /// error: the new one resolves the family again, as after an `ip_vs` reload) or
    /// has served its share of requests.
    async fn current(&self) -> Result<std::sync::Arc<IpvsHandle>, IpvsError> {
        let mut h = self.handle.lock().await;
        let sent = h.requests_sent();
        if h.is_broken() || sent >= REQUESTS_PER_SOCKET {
            if h.is_broken() {
                tracing::warn!("replacing the netlink socket after a timeout or socket error");
            }
            *h = std::sync::Arc::new(IpvsHandle::connect_counting(self.progress.clone()).await?);
            self.requests_before
                .fetch_add(sent, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(h.clone())
    }

    /// Requests sent so far, over every socket.
    pub async fn requests_sent(&self) -> u64 {
        self.requests_before
            .load(std::sync::atomic::Ordering::Relaxed)
            + self.handle.lock().await.requests_sent()
    }
}

impl IpvsBackend for Kernel {
    async fn table(&self) -> Result<Table, IpvsError> {
        self.current().await?.table().await
    }

    async fn listing(&self) -> Result<String, IpvsError> {
        let read_err = |source| IpvsError::ProcRead {
            path: proc::PATH,
            source,
        };
        // Opened on this thread, whose network namespace it shows; read off the
        // runtime's thread (a large table is megabytes of text).
        let file = std::fs::File::open(proc::PATH).map_err(read_err)?;
        let progress = self.progress.clone();
        let text = tokio::task::spawn_blocking(move || proc::read_counting(file, &progress))
            .await
            .map_err(|e| read_err(std::io::Error::other(e)))?
            .map_err(read_err)?;
        self.progress.tick(1);
        Ok(text)
    }

    async fn services(&self, keys: &[ServiceKey]) -> Result<Vec<Read>, IpvsError> {
        self.current().await?.services_by_key(keys).await
    }

    async fn apply(&self, ops: &[Op]) -> Vec<Result<(), IpvsError>> {
        let handle = match self.current().await {
            Ok(h) => h,
            Err(e) => {
                let msg = e.to_string();
                return ops
                    .iter()
                    .map(|_| {
                        Err(IpvsError::Socket {
                            context: "reconnect".into(),
                            detail: msg.clone(),
                        })
                    })
                    .collect();
            }
        };
        handle
            .execute(ops.iter().map(Op::request).collect())
            .await
            .into_iter()
            .map(|r| r.map(|_| ()))
            .collect()
    }

    async fn daemons(&self) -> Result<Vec<Daemon>, IpvsError> {
        self.current().await?.daemons().await
    }

    async fn sync_op(&self, op: &SyncOp) -> Result<(), IpvsError> {
        let h = self.current().await?;
        match op {
            SyncOp::Start(d) => h.start_daemon(d).await,
            SyncOp::Stop(state) => h.stop_daemon(*state).await,
        }
    }

    fn progress(&self) -> Progress {
        self.progress.clone()
    }
}
