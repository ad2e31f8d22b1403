//! The IPVS socket: resolves the family, sends requests, matches replies, turns errnos
//! into typed errors.
//!
//! [`IpvsHandle::execute`] sends runs of changes many to one `sendmsg` on a socket of
//! their own ([`super::batch`]); requests answered with data are pipelined on the
//! router's socket, up to [`DATA_WINDOW`] in flight, each answered through neli's
//! router by its sequence number. The windows bound what queues in the receive
//! buffers, so no answer is dropped.
//!
//! Dumps are the exception: netlink runs one dump at a time per socket (a second one
//! gets EBUSY), so a dump waits for everything in flight and holds `dump_lock`.
//!
//! Every answer has a deadline ([`REPLY_TIMEOUT`]). A request that misses it, or a
//! socket error, marks the handle broken: its owner replaces it (a new socket, the
//! family resolved again, as after an `ip_vs` module reload) instead of waiting on it
//! forever.

use std::collections::VecDeque;

use neli::consts::nl::NlmF;
use neli::consts::socket::NlFamily;
use neli::nl::NlPayload;
use neli::router::asynchronous::{NlRouter, NlRouterReceiverHandle};
use neli::utils::Groups;

use super::batch::Writer;
use super::consts as k;
use super::error::{describe, kernel_error, IpvsError};
use super::progress::Progress;
use super::types::{
    Daemon, DaemonState, Dest, DestEntry, Info, Service, ServiceEntry, ServiceKey, Timeouts,
};
use super::wire::{DaemonStop, DestAttrs, GenlMsg, Reply, Request};

/// Up to this many services are read with one request each; more, with one dump of
/// every service.
const ONE_BY_ONE: usize = 16;

/// How many requests answered with data may wait for their answer at once: each
/// answer takes a page-sized buffer in the socket's receive queue, and 128 of them
/// overflow it (the kernel then drops answers, and their requests would wait forever).
pub const DATA_WINDOW: usize = 16;

/// How long one answer (an ack, or the next message of a dump) may take.
pub const REPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

type Receiver = NlRouterReceiverHandle<u16, GenlMsg>;

/// A connection to the kernel's IPVS in the caller's network namespace.
pub struct IpvsHandle {
    router: NlRouter,
    family: u16,
    dump_lock: tokio::sync::Mutex<()>,
    writer: tokio::sync::Mutex<Writer>,
    sent: std::sync::atomic::AtomicU64,
    broken: std::sync::atomic::AtomicBool,
    progress: Progress,
}

/// The netns of this process, as `net:[inode]`, for error messages.
fn netns() -> String {
    std::fs::read_link("/proc/self/ns/net")
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "(unknown)".into())
}

fn socket_err(context: &str, e: impl std::fmt::Display) -> IpvsError {
    IpvsError::Socket {
        context: context.to_string(),
        detail: e.to_string(),
    }
}

impl IpvsHandle {
    /// Opens a generic-netlink socket and resolves the `IPVS` family.
    pub async fn connect() -> Result<IpvsHandle, IpvsError> {
        IpvsHandle::connect_counting(Progress::default()).await
    }

    /// The same, counting every answer it receives in `progress` (shared with the
    /// sockets before and after it).
    pub async fn connect_counting(progress: Progress) -> Result<IpvsHandle, IpvsError> {
        let (router, _multicast) = NlRouter::connect(NlFamily::Generic, None, Groups::empty())
            .await
            .map_err(|e| socket_err("connect", e))?;
        let family = match router.resolve_genl_family(k::FAMILY_NAME).await {
            Ok(id) => id,
            // The kernel's answer for a family it does not have (the errno, not
            // neli's wording).
            Err(neli::err::RouterError::Nlmsgerr(e)) if e.error().abs() == libc::ENOENT => {
                return Err(IpvsError::ModuleNotLoaded { netns: netns() })
            }
            Err(e) => return Err(socket_err("resolve the IPVS family", e)),
        };
        Ok(IpvsHandle {
            router,
            family,
            dump_lock: tokio::sync::Mutex::new(()),
            writer: tokio::sync::Mutex::new(Writer::connect(progress.clone())?),
            sent: std::sync::atomic::AtomicU64::new(0),
            broken: std::sync::atomic::AtomicBool::new(false),
            progress,
        })
    }

    /// Whether a request timed out or the socket failed: replace the handle.
    pub fn is_broken(&self) -> bool {
        self.broken.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn broke(&self, e: IpvsError) -> IpvsError {
        if matches!(e, IpvsError::Timeout { .. } | IpvsError::Socket { .. }) {
            self.broken
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        e
    }

    /// How many requests (dumps included) this handle has sent.
    pub fn requests_sent(&self) -> u64 {
        self.sent.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn send(&self, req: &Request) -> Result<Receiver, IpvsError> {
        self.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let flags = if req.is_dump() { NlmF::DUMP } else { NlmF::ACK };
        self.router
            .send::<u16, GenlMsg, u16, GenlMsg>(
                self.family,
                flags,
                NlPayload::Payload(req.encode()?),
            )
            .await
            .map_err(|e| self.broke(socket_err("send", e)))
    }

    /// Reads a request's answers until its ack (or the end of its dump), each within
    /// [`REPLY_TIMEOUT`].
    async fn collect(&self, req: &Request, rx: Receiver) -> Result<Vec<Reply>, IpvsError> {
        match Self::collect_within(req, rx, REPLY_TIMEOUT, &self.progress).await {
            Ok(r) => Ok(r),
            Err((e, Some(libc::ENOENT))) => {
                // Also what the kernel says to a family id it no longer has (ip_vs was
                // reloaded and got a new one): if so, this socket is done.
                if self.family_changed().await {
                    self.broken
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                }
                Err(e)
            }
            Err((e, _)) => Err(self.broke(e)),
        }
    }

    /// Whether the `IPVS` family is gone or has another id than this handle's.
    async fn family_changed(&self) -> bool {
        match self.router.resolve_genl_family(k::FAMILY_NAME).await {
            Ok(id) => id != self.family,
            Err(_) => true,
        }
    }

    /// The answers to `req`, each within `deadline`; an error comes with the errno
    /// the kernel sent, if it sent one.
    async fn collect_within(
        req: &Request,
        mut rx: Receiver,
        deadline: std::time::Duration,
        progress: &Progress,
    ) -> Result<Vec<Reply>, (IpvsError, Option<i32>)> {
        let mut replies = Vec::new();
        loop {
            let Ok(next) = tokio::time::timeout(deadline, rx.next::<u16, GenlMsg>()).await else {
                let (op, object) = describe(req);
                let e = IpvsError::Timeout {
                    op: op.to_string(),
                    object,
                    after: deadline,
                };
                return Err((e, None));
            };
            let Some(msg) = next else { break };
            progress.tick(1);
            match msg {
                Ok(m) => {
                    if let NlPayload::Payload(p) = m.nl_payload() {
                        replies.push(Reply::decode(p).map_err(|e| (e.into(), None))?);
                    }
                }
                Err(neli::err::RouterError::Nlmsgerr(e)) => {
                    let errno = e.error().abs();
                    return Err((kernel_error(req, errno), Some(errno)));
                }
                Err(e) => return Err((socket_err("receive", e), None)),
            }
        }
        Ok(replies)
    }

    /// Sends one request and waits for its answers.
    pub async fn request(&self, req: Request) -> Result<Vec<Reply>, IpvsError> {
        let _one_dump_at_a_time = if req.is_dump() {
            Some(self.dump_lock.lock().await)
        } else {
            None
        };
        let rx = self.send(&req).await?;
        self.collect(&req, rx).await
    }

    /// Sends many requests and returns each one's outcome in order. One failure does
    /// not stop the others. Runs of changes go many to a buffer ([`super::batch`]);
    /// requests answered with data, pipelined.
    pub async fn execute(&self, reqs: Vec<Request>) -> Vec<Result<Vec<Reply>, IpvsError>> {
        let is_change = |r: &Request| !r.is_dump() && !r.returns_data();
        let mut out = Vec::with_capacity(reqs.len());
        let mut rest = reqs;
        while !rest.is_empty() {
            let changes = rest.iter().take_while(|r| is_change(r)).count();
            let n = if changes > 0 {
                changes
            } else {
                rest.iter().take_while(|r| !is_change(r)).count()
            };
            let tail = rest.split_off(n);
            if changes > 0 {
                out.extend(self.write(&rest).await);
            } else {
                out.extend(self.pipelined(rest).await);
            }
            rest = tail;
        }
        out
    }

    /// Changes, many to a buffer, on the writer's socket.
    async fn write(&self, reqs: &[Request]) -> Vec<Result<Vec<Reply>, IpvsError>> {
        self.sent
            .fetch_add(reqs.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let mut writer = self.writer.lock().await;
        match writer.write(self.family, reqs, REPLY_TIMEOUT).await {
            Ok(results) => {
                // ENOENT is also the answer to a family id the kernel no longer has
                // (ip_vs reloaded): then this handle is done, as for a request.
                let not_found = results
                    .iter()
                    .any(|r| matches!(r, Err(IpvsError::NotFound { .. })));
                if not_found && self.family_changed().await {
                    self.broken
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                }
                results
                    .into_iter()
                    .map(|r| r.map(|()| Vec::new()))
                    .collect()
            }
            Err(e) => {
                // The socket failed or an answer is overdue: none of these is known
                // to be done; the handle is replaced and the next pass reads again.
                let detail = e.to_string();
                let _ = self.broke(e);
                reqs.iter()
                    .map(|r| {
                        let (op, object) = describe(r);
                        Err(IpvsError::Socket {
                            context: format!("{op} {object}"),
                            detail: detail.clone(),
                        })
                    })
                    .collect()
            }
        }
    }

    /// Requests answered with data (and dumps), pipelined on the router's socket.
    async fn pipelined(&self, reqs: Vec<Request>) -> Vec<Result<Vec<Reply>, IpvsError>> {
        let mut out = Vec::with_capacity(reqs.len());
        let mut inflight: VecDeque<(Request, Result<Receiver, IpvsError>)> = VecDeque::new();
        for req in reqs {
            if req.is_dump() {
                while let Some((r, rx)) = inflight.pop_front() {
                    out.push(self.finish(&r, rx).await);
                }
                out.push(self.request(req).await);
                continue;
            }
            while inflight.len() >= DATA_WINDOW {
                if let Some((r, rx)) = inflight.pop_front() {
                    out.push(self.finish(&r, rx).await);
                }
            }
            let rx = self.send(&req).await;
            inflight.push_back((req, rx));
        }
        while let Some((r, rx)) = inflight.pop_front() {
            out.push(self.finish(&r, rx).await);
        }
        out
    }

    async fn finish(
        &self,
        req: &Request,
        rx: Result<Receiver, IpvsError>,
    ) -> Result<Vec<Reply>, IpvsError> {
        self.collect(req, rx?).await
    }

    async fn ack(&self, req: Request) -> Result<(), IpvsError> {
        self.request(req).await.map(|_| ())
    }

    /// IPVS version and connection table size.
    pub async fn info(&self) -> Result<Info, IpvsError> {
        let req = Request::GetInfo;
        match self.request(req.clone()).await?.into_iter().next() {
            Some(Reply::Info(i)) => Ok(i),
            other => Err(unexpected(&req, other)),
        }
    }

    /// Connection timeouts.
    pub async fn timeouts(&self) -> Result<Timeouts, IpvsError> {
        let req = Request::GetConfig;
        match self.request(req.clone()).await?.into_iter().next() {
            Some(Reply::Config(t)) => Ok(t),
            other => Err(unexpected(&req, other)),
        }
    }

    /// Sets connection timeouts (`None` or 0 leaves a value as it is).
    pub async fn set_timeouts(&self, t: Timeouts) -> Result<(), IpvsError> {
        self.ack(Request::SetConfig(t)).await
    }

    /// Every service, in one dump.
    pub async fn services(&self) -> Result<Vec<ServiceEntry>, IpvsError> {
        let replies = self.request(Request::DumpServices).await?;
        Ok(replies
            .into_iter()
            .filter_map(|r| match r {
                Reply::Service(s) => Some(s),
                _ => None,
            })
            .collect())
    }

    /// One service.
    pub async fn service(&self, key: &ServiceKey) -> Result<ServiceEntry, IpvsError> {
        let req = Request::GetService(key.clone().into());
        match self.request(req.clone()).await?.into_iter().next() {
            Some(Reply::Service(s)) => Ok(s),
            other => Err(unexpected(&req, other)),
        }
    }

    /// A service's destinations, in one dump. A missing service has none.
    pub async fn dests(&self, key: &ServiceKey) -> Result<Vec<DestEntry>, IpvsError> {
        dests_of(self.request(Request::DumpDests(key.clone().into())).await?)
    }

    /// The whole table: every service with its destinations (one dump each: netlink
    /// allows no more than one at a time on a socket).
    pub async fn table(&self) -> Result<Vec<(ServiceEntry, Vec<DestEntry>)>, IpvsError> {
        let services = self.services().await?;
        let reqs = services
            .iter()
            .map(|s| Request::DumpDests(s.service.key.clone().into()))
            .collect();
        let dests = self.execute(reqs).await;
        services
            .into_iter()
            .zip(dests)
            .map(|(s, d)| Ok((s, dests_of(d?)?)))
            .collect()
    }

    /// Some services, each with its destinations, read afresh: `None` for a service
    /// the kernel does not have. A few are asked for one by one; more, through one
    /// dump of every service.
    pub async fn services_by_key(
        &self,
        keys: &[ServiceKey],
    ) -> Result<Vec<(ServiceKey, Option<(ServiceEntry, Vec<DestEntry>)>)>, IpvsError> {
        let mut found: std::collections::HashMap<ServiceKey, ServiceEntry> = Default::default();
        if keys.len() <= ONE_BY_ONE {
            for k in keys {
                match self.service(k).await {
                    Ok(s) => {
                        found.insert(k.clone(), s);
                    }
                    Err(IpvsError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        } else {
            let wanted: std::collections::HashSet<&ServiceKey> = keys.iter().collect();
            for s in self.services().await? {
                if wanted.contains(&s.service.key) {
                    found.insert(s.service.key.clone(), s);
                }
            }
        }
        let present: Vec<ServiceKey> = keys
            .iter()
            .filter(|k| found.contains_key(*k))
            .cloned()
            .collect();
        let mut dests: std::collections::HashMap<ServiceKey, Vec<DestEntry>> =
            self.dests_by_key(&present).await?.into_iter().collect();
        Ok(keys
            .iter()
            .map(|k| {
                let entry = found
                    .remove(k)
                    .map(|s| (s, dests.remove(k).unwrap_or_default()));
                (k.clone(), entry)
            })
            .collect())
    }

    /// The destinations of some services, one dump each (a missing service has none).
    pub async fn dests_by_key(
        &self,
        keys: &[ServiceKey],
    ) -> Result<Vec<(ServiceKey, Vec<DestEntry>)>, IpvsError> {
        let dumps = keys
            .iter()
            .map(|k| Request::DumpDests(k.clone().into()))
            .collect();
        keys.iter()
            .zip(self.execute(dumps).await)
            .map(|(k, d)| Ok((k.clone(), dests_of(d?)?)))
            .collect()
    }

    /// Adds a service.
    pub async fn add_service(&self, s: &Service) -> Result<(), IpvsError> {
        self.ack(Request::NewService(s.clone())).await
    }

    /// Changes a service's settings.
    pub async fn edit_service(&self, s: &Service) -> Result<(), IpvsError> {
        self.ack(Request::SetService(s.clone())).await
    }

    /// Deletes a service and its destinations.
    pub async fn delete_service(&self, key: &ServiceKey) -> Result<(), IpvsError> {
        self.ack(Request::DelService(key.clone().into())).await
    }

    /// Adds a destination.
    pub async fn add_dest(&self, key: &ServiceKey, d: &Dest) -> Result<(), IpvsError> {
        self.ack(Request::NewDest(key.clone().into(), *d)).await
    }

    /// Changes a destination's settings.
    pub async fn edit_dest(&self, key: &ServiceKey, d: &Dest) -> Result<(), IpvsError> {
        self.ack(Request::SetDest(key.clone().into(), *d)).await
    }

    /// Deletes a destination.
    pub async fn delete_dest(
        &self,
        key: &ServiceKey,
        addr: std::net::IpAddr,
        port: u16,
    ) -> Result<(), IpvsError> {
        let d = DestAttrs {
            addr,
            port,
            settings: None,
        };
        self.ack(Request::DelDest(key.clone().into(), d)).await
    }

    /// Deletes every service.
    pub async fn flush(&self) -> Result<(), IpvsError> {
        self.ack(Request::Flush).await
    }

    /// Zeroes the counters of one service, or of all.
    pub async fn zero(&self, key: Option<&ServiceKey>) -> Result<(), IpvsError> {
        self.ack(Request::Zero(key.map(|k| k.clone().into()))).await
    }

    /// The running sync daemons.
    pub async fn daemons(&self) -> Result<Vec<Daemon>, IpvsError> {
        Ok(self
            .request(Request::DumpDaemons)
            .await?
            .into_iter()
            .filter_map(|r| match r {
                Reply::Daemon(d) => Some(d),
                _ => None,
            })
            .collect())
    }

    /// Starts a sync daemon.
    pub async fn start_daemon(&self, d: &Daemon) -> Result<(), IpvsError> {
        self.ack(Request::NewDaemon(d.clone())).await
    }

    /// Stops a sync daemon.
    pub async fn stop_daemon(&self, state: DaemonState) -> Result<(), IpvsError> {
        self.ack(Request::DelDaemon(DaemonStop {
            state,
            ifname: None,
            sync_id: None,
        }))
        .await
    }
}

fn dests_of(replies: Vec<Reply>) -> Result<Vec<DestEntry>, IpvsError> {
    Ok(replies
        .into_iter()
        .filter_map(|r| match r {
            Reply::Dest(d) => Some(d),
            _ => None,
        })
        .collect())
}

fn unexpected(req: &Request, got: Option<Reply>) -> IpvsError {
    let (op, object) = describe(req);
    IpvsError::Decode(super::wire::DecodeError::new(
        format!("reply to {op} {object}"),
        format!("expected one reply of its kind, got {got:?}"),
    ))
}
