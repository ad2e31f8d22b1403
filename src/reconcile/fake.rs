//! The in-memory IPVS table the planner and loop tests run against: it refuses what
//! the kernel refuses (EEXIST, ESRCH, ENOENT) and can be told to fail, hang or be
//! slow. Built for tests only; the real [`super::backend::Kernel`] is beside it.

use std::sync::{Arc, Mutex};

use super::backend::IpvsBackend;
use super::cache::Read;
use super::observed::{Observed, ObservedService};
use super::op::Op;
use super::sync::SyncOp;
use crate::ipvs::error::kernel_error;
use crate::ipvs::listing::Table;
use crate::ipvs::proc;
use crate::ipvs::{Daemon, DestEntry, IpvsError, Progress, ServiceEntry, ServiceKey, Stats};

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
    /// `listing()` fails this many more times.
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

    async fn listing(&self) -> Result<String, IpvsError> {
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
        Ok(proc::render(&table, 100))
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
