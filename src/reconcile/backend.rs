//! The narrow privileged surface: the only way the director reads or writes the
//! kernel's IPVS table. [`Kernel`] is the real one; [`FakeKernel`] keeps a table in
//! memory with the kernel's refusals, for planner and loop tests.

use std::future::Future;
use std::sync::{Arc, Mutex};

use super::cache::Read;
use super::observed::{Observed, ObservedService};
use super::op::Op;
use super::sync::SyncOp;
use crate::ipvs::handle::kernel_error;
use crate::ipvs::listing::Table;
use crate::ipvs::proc::{self, Block};
use crate::ipvs::{
    Daemon, DestEntry, IpvsError, IpvsHandle, Progress, ServiceEntry, ServiceKey, Stats,
};

/// Reading and writing the IPVS table.
pub trait IpvsBackend: Send + Sync {
    /// The whole table, over netlink (one dump per service).
    fn table(&self) -> impl Future<Output = Result<Table, IpvsError>> + Send;
    /// The whole table as `/proc/net/ip_vs` lists it: one read, not every field.
    fn summary(&self) -> impl Future<Output = Result<Vec<Block>, IpvsError>> + Send;
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
    fn summary(&self) -> impl Future<Output = Result<Vec<Block>, IpvsError>> + Send {
        (**self).summary()
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

    async fn summary(&self) -> Result<Vec<Block>, IpvsError> {
        let read_err = |source| IpvsError::ProcRead {
            path: proc::PATH,
            source,
        };
        // Opened on this thread, whose network namespace it shows; read off the
        // runtime's thread (a large table is megabytes of text).
        let file = std::fs::File::open(proc::PATH).map_err(read_err)?;
        let text = tokio::task::spawn_blocking(move || proc::read_from(file))
            .await
            .map_err(|e| read_err(std::io::Error::other(e)))?
            .map_err(read_err)?;
        self.progress.tick(1);
        Ok(proc::parse(&text)?)
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

/// An in-memory IPVS table that refuses what the kernel refuses (EEXIST, ESRCH,
/// ENOENT), counts the ops it is sent, and can be told to fail some.
#[derive(Default)]
pub struct FakeKernel {
    state: Mutex<FakeState>,
    /// One tick per call answered and per op applied.
    progress: Progress,
}

#[derive(Default)]
struct FakeState {
    table: Observed,
    daemons: Vec<Daemon>,
    applied: usize,
    /// Services read over netlink (a full read counts them all).
    reads: usize,
    /// Ops whose text contains the key fail with the errno, as many times as the
    /// count says.
    failures: Vec<(String, usize, i32)>,
    /// `table()` fails this many more times.
    dump_failures: usize,
    /// The proc listing leaves out its first this many services.
    proc_skips: usize,
    /// `summary()` fails this many more times.
    proc_failures: usize,
    /// This many more netlink calls never answer (a lost reply).
    hangs: usize,
    /// How long each answer takes (a service read, an op): a slow kernel that moves.
    per_answer: std::time::Duration,
}

impl FakeKernel {
    /// A fake kernel holding `table`.
    pub fn with_table(table: Observed) -> FakeKernel {
        FakeKernel {
            state: Mutex::new(FakeState {
                table,
                ..FakeState::default()
            }),
            progress: Progress::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        // A test that panicked while holding the lock already failed; keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The table as it is now.
    pub fn observed(&self) -> Observed {
        self.lock().table.clone()
    }

    /// Changes the table behind the director's back (drift, connections).
    pub fn mutate(&self, f: impl FnOnce(&mut Observed)) {
        f(&mut self.lock().table)
    }

    /// How many services had their destinations read over netlink so far.
    pub fn reads(&self) -> usize {
        self.lock().reads
    }

    /// How many ops were sent so far.
    pub fn applied(&self) -> usize {
        self.lock().applied
    }

    /// Makes the next `times` ops whose text contains `pattern` fail with EIO.
    pub fn fail(&self, pattern: &str, times: usize) {
        self.fail_with(pattern, times, libc::EIO);
    }

    /// Makes the next `times` ops whose text contains `pattern` fail with `errno`.
    pub fn fail_with(&self, pattern: &str, times: usize, errno: i32) {
        self.lock()
            .failures
            .push((pattern.to_string(), times, errno));
    }

    /// Makes the proc listing leave out its first `n` services, as the kernel's does
    /// when another network namespace has IPVS services.
    pub fn hide_from_proc(&self, n: usize) {
        self.lock().proc_skips = n;
    }

    /// Makes the next `times` dumps fail.
    pub fn fail_dumps(&self, times: usize) {
        self.lock().dump_failures = times;
    }

    /// Makes the next `times` reads of the proc listing fail.
    pub fn fail_proc(&self, times: usize) {
        self.lock().proc_failures = times;
    }

    /// Makes the next `times` netlink calls (table, services, apply) never answer.
    pub fn hang(&self, times: usize) {
        self.lock().hangs = times;
    }

    /// Makes every answer (each service of a read, each op) take `d`: a long pass
    /// that keeps moving, as a large table under emulation.
    pub fn slow(&self, d: std::time::Duration) {
        self.lock().per_answer = d;
    }

    /// Waits `n` answers' time, counting each as it comes.
    async fn answer_slowly(&self, n: usize) {
        let d = self.lock().per_answer;
        if d.is_zero() {
            return;
        }
        for _ in 0..n {
            tokio::time::sleep(d).await;
            self.progress.tick(1);
        }
    }

    async fn maybe_hang(&self) {
        let hang = {
            let mut st = self.lock();
            let h = st.hangs > 0;
            st.hangs = st.hangs.saturating_sub(1);
            h
        };
        if hang {
            std::future::pending::<()>().await;
        }
    }
}

fn apply_one(t: &mut Observed, op: &Op) -> Result<(), i32> {
    let key = op.service();
    match op {
        Op::AddService(s) => {
            if t.services.contains_key(key) {
                return Err(libc::EEXIST);
            }
            t.services.insert(
                key.clone(),
                Arc::new(ObservedService {
                    settings: s.settings.clone(),
                    stats: Stats::default(),
                    dests: Default::default(),
                }),
            );
        }
        Op::DelService(_) => {
            t.services.remove(key).ok_or(libc::ESRCH)?;
        }
        _ => {
            let svc = Arc::make_mut(t.services.get_mut(key).ok_or(libc::ESRCH)?);
            match op {
                Op::EditService(s) => svc.settings = s.settings.clone(),
                Op::AddDest(_, d) => {
                    if svc.dests.contains_key(&(d.addr, d.port)) {
                        return Err(libc::EEXIST);
                    }
                    svc.dests.insert(
                        (d.addr, d.port),
                        DestEntry {
                            dest: *d,
                            active_conns: 0,
                            inactive_conns: 0,
                            persistent_conns: 0,
                            stats: Stats::default(),
                        },
                    );
                }
                Op::EditDest(_, d) => {
                    svc.dests
                        .get_mut(&(d.addr, d.port))
                        .ok_or(libc::ENOENT)?
                        .dest = *d;
                }
                Op::DelDest(_, addr, port) => {
                    svc.dests.remove(&(*addr, *port)).ok_or(libc::ENOENT)?;
                }
                Op::AddService(_) | Op::DelService(_) => {}
            }
        }
    }
    Ok(())
}

fn entry(k: &ServiceKey, s: &ObservedService) -> (ServiceEntry, Vec<DestEntry>) {
    let mut dests: Vec<DestEntry> = s.dests.values().cloned().collect();
    dests.sort_by_key(|d| (d.dest.addr, d.dest.port));
    (
        ServiceEntry {
            service: crate::ipvs::Service {
                key: k.clone(),
                settings: s.settings.clone(),
            },
            stats: s.stats,
        },
        dests,
    )
}

fn as_table(t: &Observed) -> Table {
    let mut keys: Vec<&ServiceKey> = t.services.keys().collect();
    keys.sort();
    keys.into_iter().map(|k| entry(k, &t.services[k])).collect()
}

impl FakeKernel {
    /// The sync daemons "running".
    pub fn daemons_now(&self) -> Vec<Daemon> {
        self.lock().daemons.clone()
    }
}

impl IpvsBackend for FakeKernel {
    async fn table(&self) -> Result<Table, IpvsError> {
        self.maybe_hang().await;
        let n = self.lock().table.services.len();
        self.answer_slowly(n).await;
        let mut st = self.lock();
        if st.dump_failures > 0 {
            st.dump_failures -= 1;
            return Err(IpvsError::Socket {
                context: "dump (fake)".into(),
                detail: "injected failure".into(),
            });
        }
        st.reads += st.table.services.len();
        self.progress.tick(1);
        Ok(as_table(&st.table))
    }

    async fn summary(&self) -> Result<Vec<Block>, IpvsError> {
        self.progress.tick(1);
        let mut st = self.lock();
        if st.proc_failures > 0 {
            st.proc_failures -= 1;
            return Err(IpvsError::ProcRead {
                path: proc::PATH,
                source: std::io::Error::other("injected failure"),
            });
        }
        let table: Table = as_table(&st.table)
            .into_iter()
            .skip(st.proc_skips)
            .collect();
        Ok(proc::parse(&proc::render(&table, 100))?)
    }

    async fn services(&self, keys: &[ServiceKey]) -> Result<Vec<Read>, IpvsError> {
        self.maybe_hang().await;
        self.answer_slowly(keys.len()).await;
        let mut st = self.lock();
        st.reads += keys.len();
        self.progress.tick(1);
        Ok(keys
            .iter()
            .map(|k| (k.clone(), st.table.services.get(k).map(|s| entry(k, s))))
            .collect())
    }

    async fn apply(&self, ops: &[Op]) -> Vec<Result<(), IpvsError>> {
        self.maybe_hang().await;
        self.answer_slowly(ops.len()).await;
        let mut st = self.lock();
        ops.iter()
            .map(|op| {
                st.applied += 1;
                self.progress.tick(1);
                let text = op.to_string();
                if let Some(f) = st
                    .failures
                    .iter_mut()
                    .find(|(p, n, _)| *n > 0 && text.contains(p.as_str()))
                {
                    f.1 -= 1;
                    return Err(kernel_error(&op.request(), f.2));
                }
                apply_one(&mut st.table, op).map_err(|errno| kernel_error(&op.request(), errno))
            })
            .collect()
    }

    async fn daemons(&self) -> Result<Vec<Daemon>, IpvsError> {
        self.maybe_hang().await;
        self.progress.tick(1);
        Ok(self.lock().daemons.clone())
    }

    async fn sync_op(&self, op: &SyncOp) -> Result<(), IpvsError> {
        self.maybe_hang().await;
        self.progress.tick(1);
        let mut st = self.lock();
        match op {
            SyncOp::Start(d) => {
                if st.daemons.iter().any(|x| x.state == d.state) {
                    return Err(kernel_error(
                        &crate::ipvs::wire::Request::NewDaemon(d.clone()),
                        libc::EEXIST,
                    ));
                }
                st.daemons.push(d.clone());
            }
            SyncOp::Stop(state) => st.daemons.retain(|x| x.state != *state),
        }
        Ok(())
    }

    fn progress(&self) -> Progress {
        self.progress.clone()
    }
}
