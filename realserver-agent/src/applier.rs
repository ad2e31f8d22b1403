//! The one writer of the agent: it owns the state file and every change to addresses
//! and ARP rules. The API, the drift watch and the timer send it requests; it answers
//! with the state read back from the kernel.
//!
//! The order of every pass keeps one promise: **no VIP is ever on the device without
//! ARP suppression** (the real server would answer ARP for it and take it from the
//! director). So addresses come off first, suppression is put in place for every VIP
//! that is or will be on the device, the addresses about to be added are recorded
//! as owned, and only then are they added. If suppression cannot be put in place, the
//! VIPs the agent owns that are not suppressed come off again.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use lvsdr_agent_api::{vip_problem, AgentDrain, AgentStatus, PushVips, ServerCount, VipStatus};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::{ArpMode, Config};
use crate::drain::{DrainView, Report};
use crate::host::Host;
use crate::sets;
use crate::state::{self, DirectorSet, Saver, State};

/// Why a push was refused: the HTTP status it maps to and a message.
#[derive(Debug)]
pub enum Refusal {
    /// 409: an older generation of the same director and epoch, or the same
    /// generation with another set.
    Conflict(String),
    /// 422: some VIPs cannot be held; the rest of the set was applied.
    Invalid(String, Box<AgentStatus>),
    /// 500: it was valid but could not be saved or applied (what was applied is safe:
    /// no VIP without suppression). The drift watch retries.
    Failed(String),
}

/// A request to the applier.
pub enum Request {
    /// Apply `director`'s VIP set. `local` is the address the director connected to.
    Push {
        director: String,
        push: PushVips,
        local: IpAddr,
        reply: oneshot::Sender<Result<AgentStatus, Refusal>>,
    },
    /// Read `director`'s view back.
    Status {
        director: String,
        reply: oneshot::Sender<AgentStatus>,
    },
    /// Drain this real server (`lvsdr-agent drain`): kept on disk before the answer.
    Drain {
        reason: String,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Lift the drain (`lvsdr-agent ready`).
    Ready {
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// What the agent holds, for `lvsdr-agent status`.
    Overview {
        reply: oneshot::Sender<crate::overview::Overview>,
    },
    /// What `director` has of this real server in its kernel (with each drain poll).
    Report {
        director: String,
        servers: Vec<ServerCount>,
    },
}

fn host_prefix(a: &IpAddr) -> u8 {
    if a.is_ipv4() {
        32
    } else {
        128
    }
}

/// The host addresses (/32, /128) on interface `index`.
fn on_device(addrs: &[(u32, IpAddr, u8)], index: u32) -> Vec<IpAddr> {
    addrs
        .iter()
        .filter(|(i, a, p)| *i == index && *p == host_prefix(a))
        .map(|(_, a, _)| *a)
        .collect()
}

/// The name the VIPs recovered at start (no state file) are held under.
const RECOVERED: &str = "(recovered at start)";

pub struct Applier<H> {
    cfg: Config,
    net: H,
    state: State,
    saver: Saver,
    /// When each director's set was last pushed (sets loaded at start count as
    /// refreshed then): a set not refreshed for `set_expiry` is dropped.
    refreshed: HashMap<String, Instant>,
    /// VIPs of some set the agent refuses to hold, with why (as of the last pass).
    refused: BTreeMap<IpAddr, String>,
    last_error: Option<String>,
    /// A state file found corrupt at start: reported as the last error (through
    /// passes that succeed) until a push writes a good one.
    state_problem: Option<String>,
    /// The drain, published for the directors' polls and the control socket.
    drain: watch::Sender<DrainView>,
    /// When each director last pushed (in this run).
    last_push: HashMap<String, Instant>,
    /// The VIPs on the device after the last pass: one missing at the next pass was
    /// taken away (by hand, a network restart) and is a repair when put back.
    placed: Vec<IpAddr>,
    /// Such repairs since the start.
    repairs: u64,
}

impl<H: Host> Applier<H> {
    /// Loads the state file. A corrupt file is moved aside and reported; with no
    /// usable file the agent adopts what its own ARP table shows it holds (see
    /// [`Applier::recover`]) instead of starting from nothing.
    pub async fn new(cfg: Config, net: H) -> anyhow::Result<Applier<H>> {
        let (state, corrupt) = state::load(&cfg.state_file)?;
        let mut last_error = None;
        if let Some(c) = &corrupt {
            error!(
                "{}; kept as {} for inspection",
                c.error,
                c.moved_to.display()
            );
            last_error = Some(format!("{}; kept as {}", c.error, c.moved_to.display()));
        }
        let now = Instant::now();
        let refreshed = state.sets.keys().map(|k| (k.clone(), now)).collect();
        if let Some(d) = &state.drain {
            info!(reason = %d.reason, since = d.since, "this real server is drained (lvsdr-agent ready lifts it)");
        }
        let (drain, _) = watch::channel(DrainView::new(state.drain.clone(), now));
        let mut a = Applier {
            drain,
            last_push: HashMap::new(),
            placed: Vec::new(),
            repairs: 0,
            saver: Saver::new(cfg.state_file.clone()),
            cfg,
            net,
            state,
            refreshed,
            refused: BTreeMap::new(),
            state_problem: last_error.clone(),
            last_error,
        };
        if a.state == State::default() {
            a.recover().await;
        }
        a.publish_directors();
        Ok(a)
    }

    /// The drain as published (for the API's polls and the control socket).
    pub fn drain_view(&self) -> watch::Receiver<DrainView> {
        self.drain.subscribe()
    }

    /// Publishes which directors push to this agent (each must report for a drain).
    fn publish_directors(&self) {
        let keys: Vec<String> = self
            .state
            .sets
            .iter()
            .filter(|(_, s)| !s.provisional)
            .map(|(k, _)| k.clone())
            .collect();
        self.drain.send_if_modified(|v| {
            let changed = v.directors != keys;
            v.directors = keys;
            changed
        });
    }

    /// Sets or lifts the drain: on disk first, then published.
    async fn set_drain(&mut self, drain: Option<AgentDrain>) -> Result<(), String> {
        if drain.is_none() && self.state.drain.is_none() {
            return Ok(());
        }
        let mut next = self.state.clone();
        next.drain = drain.clone();
        self.saver
            .save(&next)
            .await
            .map_err(|e| format!("not done: saving the state file: {e:#}"))?;
        self.state = next;
        match &drain {
            Some(d) => {
                info!(target: "lvsdr_agent::audit", reason = %d.reason, "drained: every director gives this server weight 0")
            }
            None => info!(target: "lvsdr_agent::audit", "ready: the drain is lifted"),
        }
        self.drain.send_modify(|v| v.set(drain, Instant::now()));
        Ok(())
    }

    /// Without a state file, the VIPs in the agent's own nft table that are on the
    /// device were put there by the agent: keep holding and suppressing them (as a
    /// provisional set, until a director pushes) rather than tearing the table down
    /// under a live VIP.
    async fn recover(&mut self) {
        if self.cfg.arp != ArpMode::Nft {
            return;
        }
        let found = async {
            let index = self.net.link_index(&self.cfg.vip_device).await?;
            let addrs = self.net.all_addresses().await?;
            let (elems, real_ip) = self.net.arp_left_over().await?;
            let present = on_device(&addrs, index);
            let vips: Vec<IpAddr> = elems
                .into_iter()
                .map(IpAddr::V4)
                .filter(|v| present.contains(v))
                .collect();
            anyhow::Ok((vips, real_ip))
        };
        let (vips, real_ip) = match found.await {
            Ok((v, r)) if !v.is_empty() => (v, r),
            Ok(_) => return,
            Err(e) => {
                warn!(error = %format!("{e:#}"), "no state file, and the ARP table cannot be read");
                return;
            }
        };
        warn!(?vips, "no state file: keeping the suppressed VIPs found in table arp lvsdr until a director pushes");
        self.state.real_ip = self.cfg.real_ip.or(real_ip);
        self.state.owned_addresses = vips.clone();
        self.state.sets.insert(
            RECOVERED.into(),
            DirectorSet {
                vips,
                provisional: true,
                ..DirectorSet::default()
            },
        );
        self.refreshed.insert(RECOVERED.into(), Instant::now());
    }

    fn real_ip(&self) -> Option<IpAddr> {
        self.cfg.real_ip.or(self.state.real_ip)
    }

    /// Why `vip` cannot be held on this host, if it cannot: never a VIP at all, or an
    /// address this host already has in another role (on another interface, or with
    /// a network prefix).
    fn problem(&self, vip: &IpAddr, addrs: &[(u32, IpAddr, u8)], index: u32) -> Option<String> {
        if let Some(why) = vip_problem(vip, self.real_ip()) {
            return Some(format!("{vip} cannot be a VIP: it {why}"));
        }
        addrs
            .iter()
            .find(|(i, a, p)| a == vip && (*i != index || *p != host_prefix(a)))
            .map(|_| format!("{vip} is already an address of this host (not a VIP the agent added); refusing it"))
    }

    /// Applies the state to the kernel (see the module doc for the order).
    pub async fn apply(&mut self) -> anyhow::Result<()> {
        let index = self.net.ensure_device(&self.cfg.vip_device).await?;
        let addrs = self.net.all_addresses().await?;
        let present = on_device(&addrs, index);
        self.refused = self
            .state
            .union()
            .into_iter()
            .filter_map(|v| Some((v, self.problem(&v, &addrs, index)?)))
            .collect();
        let wanted: Vec<IpAddr> = self
            .state
            .union()
            .into_iter()
            .filter(|v| !self.refused.contains_key(v))
            .collect();

        // 1. Addresses come off first, while their suppression still stands.
        let mut errors = Vec::new();
        for a in self.owned_unwanted(&wanted) {
            match self.net.remove(index, a).await {
                Ok(()) => {
                    info!(vip = %a, "VIP removed");
                    self.state.owned_addresses.retain(|x| *x != a);
                }
                Err(e) => errors.push(format!("{e:#}")),
            }
        }

        // 2. Suppression for every VIP that is or will be on the device.
        let mut suppress = wanted.clone();
        suppress.extend(self.state.owned_addresses.iter().copied());
        suppress.extend(present.iter().filter(|p| self.wanted_by_some(p)).copied());
        suppress.sort();
        suppress.dedup();
        let iface = match self.real_ip() {
            Some(ip) => self.net.interface_of(ip).await?,
            None => None,
        };
        let (mode, real_ip) = (self.cfg.arp, self.real_ip());
        let applied = self
            .net
            .arp_apply(mode, &suppress, real_ip, iface.as_deref(), &mut self.state)
            .await;
        if let Err(e) = applied {
            let removed = self.take_off_unsuppressed(index, iface.as_deref()).await;
            self.saver.save(&self.state).await.ok();
            return Err(e.context(format!(
                "ARP suppression could not be put in place; VIPs taken off so that none is unsuppressed: {removed:?}"
            )));
        }

        // 3. What is about to be added is recorded as owned before it is added.
        let to_add: Vec<IpAddr> = wanted
            .iter()
            .filter(|v| !present.contains(v))
            .copied()
            .collect();
        for v in &to_add {
            if !self.state.owned_addresses.contains(v) {
                self.state.owned_addresses.push(*v);
            }
        }
        self.saver
            .save(&self.state)
            .await
            .context("saving the state file before adding the VIPs")?;

        // 4. Add.
        let mut placed: Vec<IpAddr> = wanted
            .iter()
            .filter(|v| present.contains(v))
            .copied()
            .collect();
        for v in to_add {
            match self.net.add(index, v).await {
                Ok(()) if self.placed.contains(&v) => {
                    self.repairs += 1;
                    warn!(vip = %v, device = %self.cfg.vip_device, "VIP was missing from the device: put back");
                    placed.push(v);
                }
                Ok(()) => {
                    info!(vip = %v, device = %self.cfg.vip_device, "VIP added");
                    placed.push(v);
                }
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
        self.placed = placed;
        if let Some(e) = errors.first() {
            return Err(anyhow!("{e}"));
        }
        Ok(())
    }

    fn wanted_by_some(&self, a: &IpAddr) -> bool {
        self.state.sets.values().any(|s| s.vips.contains(a))
    }

    fn owned_unwanted(&self, wanted: &[IpAddr]) -> Vec<IpAddr> {
        self.state
            .owned_addresses
            .iter()
            .filter(|a| !wanted.contains(a))
            .copied()
            .collect()
    }

    /// After suppression failed: every owned IPv4 VIP that the kernel does not show
    /// suppressed comes off (all of them, if suppression cannot even be read).
    async fn take_off_unsuppressed(&mut self, index: u32, iface: Option<&str>) -> Vec<IpAddr> {
        let owned: Vec<IpAddr> = self
            .state
            .owned_addresses
            .iter()
            .filter(|a| a.is_ipv4())
            .copied()
            .collect();
        let ok = self
            .net
            .arp_in_place(self.cfg.arp, &owned, self.real_ip(), iface)
            .await
            .unwrap_or_else(|_| vec![false; owned.len()]);
        let mut removed = Vec::new();
        for (a, suppressed) in owned.into_iter().zip(ok) {
            if suppressed {
                continue;
            }
            match self.net.remove(index, a).await {
                Ok(()) => {
                    self.state.owned_addresses.retain(|x| *x != a);
                    removed.push(a);
                }
                Err(e) => {
                    error!(vip = %a, error = %format!("{e:#}"), "cannot take an unsuppressed VIP off")
                }
            }
        }
        removed
    }

    /// Every director's set, read back from the kernel (`lvsdr-agent status`).
    async fn overview(&self) -> crate::overview::Overview {
        let mut directors = Vec::new();
        let mut last_error = self.last_error.clone();
        for (key, set) in &self.state.sets {
            let st = self.status(key).await;
            last_error = last_error.or(st.last_error);
            directors.push(crate::overview::DirectorView {
                director: key.clone(),
                generation: set.generation,
                last_push_s: self.last_push.get(key).map(|t| t.elapsed().as_secs_f64()),
                provisional: set.provisional,
                vips: st.vips,
            });
        }
        crate::overview::Overview {
            arp_mode: self.cfg.arp.name().to_string(),
            vip_device: self.cfg.vip_device.clone(),
            real_ip: self.real_ip(),
            directors,
            vip_repairs: self.repairs,
            last_error,
        }
    }

    /// `director`'s view, read back from the kernel.
    pub async fn status(&self, director: &str) -> AgentStatus {
        let mut last_error = self.last_error.clone();
        let set = self.state.sets.get(director).cloned().unwrap_or_default();
        let read = || async {
            let index = self.net.link_index(&self.cfg.vip_device).await?;
            let present = on_device(&self.net.all_addresses().await?, index);
            let iface = match self.real_ip() {
                Some(ip) => self.net.interface_of(ip).await?,
                None => None,
            };
            let arp = self
                .net
                .arp_in_place(self.cfg.arp, &set.vips, self.real_ip(), iface.as_deref())
                .await?;
            anyhow::Ok((present, arp))
        };
        let (present, arp) = match read().await {
            Ok(x) => x,
            Err(e) => {
                last_error = Some(format!("reading back: {e:#}"));
                (Vec::new(), vec![false; set.vips.len()])
            }
        };
        let vips: Vec<VipStatus> = set
            .vips
            .iter()
            .zip(arp)
            .map(|(v, a)| VipStatus {
                vip: *v,
                on_device: present.contains(v),
                arp_suppressed: a,
                refused: self.refused.get(v).cloned(),
            })
            .collect();
        AgentStatus {
            generation: set.generation,
            epoch: Some(set.epoch),
            director: Some(director.to_string()),
            arp_mode: self.cfg.arp.name().to_string(),
            real_ip: self.real_ip(),
            vip_device: self.cfg.vip_device.clone(),
            in_place: vips.iter().all(VipStatus::ok),
            vips,
            last_error,
            held: self.state.union(),
        }
    }

    /// The real server's IPv4 address, learned from the address a director reached
    /// this agent at. IPv4 suppression rewrites ARP senders to it, so an IPv6 one will
    /// not do: a director connecting over IPv6 (or to `[::]` with a mapped IPv4
    /// address) made every push fail and took the IPv4 VIPs off. Then: the IPv4
    /// address learned before, or one on the interface that holds the IPv6 address.
    async fn learned_real_ip(&self, local: IpAddr) -> IpAddr {
        let local = local.to_canonical();
        if local.is_ipv4() {
            return local;
        }
        if let Some(v4) = self.state.real_ip.filter(IpAddr::is_ipv4) {
            return v4;
        }
        let Ok(all) = self.net.all_addresses().await else {
            return local;
        };
        let index = all
            .iter()
            .find(|(_, ip, _)| *ip == local)
            .map(|(i, _, _)| *i);
        all.iter()
            .find(|(i, ip, _)| Some(*i) == index && ip.is_ipv4())
            .map_or(local, |(_, ip, _)| *ip)
    }

    async fn push(
        &mut self,
        director: String,
        push: PushVips,
        local: IpAddr,
    ) -> Result<AgentStatus, Refusal> {
        sets::admit(self.state.sets.get(&director), &push).map_err(Refusal::Conflict)?;
        if !self.state.sets.contains_key(&director) {
            self.note_a_shared_name(&director);
        }
        // The new state is on disk before anything changes, in memory or kernel.
        let mut next = self.state.clone();
        next.sets.retain(|_, s| !s.provisional);
        next.sets.insert(director.clone(), sets::set_of(&push));
        next.real_ip = Some(match self.cfg.real_ip {
            Some(ip) => ip,
            None => self.learned_real_ip(local).await,
        });
        self.saver
            .save(&next)
            .await
            .map_err(|e| Refusal::Failed(format!("saving the state file: {e:#}")))?;
        self.state_problem = None;
        self.refreshed.retain(|k, _| next.sets.contains_key(k));
        self.refreshed.insert(director.clone(), Instant::now());
        self.last_push.insert(director.clone(), Instant::now());
        self.state = next;
        self.publish_directors();
        info!(%director, epoch = ?push.epoch, generation = push.generation, vips = ?push.vips, "push accepted");
        self.apply_and_note().await.map_err(Refusal::Failed)?;
        let status = self.status(&director).await;
        let refused: Vec<String> = status.refused().map(|(_, why)| why.to_string()).collect();
        if !refused.is_empty() {
            return Err(Refusal::Invalid(refused.join("; "), Box::new(status)));
        }
        Ok(status)
    }

    async fn apply_and_note(&mut self) -> Result<(), String> {
        match self.apply().await {
            Ok(()) => {
                self.last_error = self.state_problem.clone();
                Ok(())
            }
            Err(e) => {
                let msg = format!("{e:#}");
                warn!(error = %msg, "applying failed; retried on the next change or tick");
                self.last_error = Some(msg.clone());
                Err(msg)
            }
        }
    }

    /// Says so when a new director presents a certificate name another director's set
    /// is kept under: both sets are kept (by address), but it is a mistake to fix.
    fn note_a_shared_name(&self, director: &str) {
        let name = sets::name_of(director);
        let others: Vec<&String> = self
            .state
            .sets
            .keys()
            // A key of an earlier state file (the name alone) is this director's own
            // set from before the upgrade; it expires.
            .filter(|k| k.as_str() != director && k.as_str() != name && sets::name_of(k) == name)
            .collect();
        if !others.is_empty() {
            warn!(
                %director, ?others,
                "directors at different addresses present one certificate name: their VIP sets are kept apart by address; give each director its own certificate (lvsdr-director pki init --director NAME)"
            );
        }
    }

    /// Drops the sets no director refreshed within `set_expiry`.
    async fn expire(&mut self, now: Instant) {
        let expiry = self.cfg.set_expiry;
        let old: Vec<String> = self
            .refreshed
            .iter()
            .filter(|(_, t)| now.saturating_duration_since(**t) >= expiry)
            .map(|(k, _)| k.clone())
            .collect();
        if old.is_empty() {
            return;
        }
        let mut next = self.state.clone();
        for k in &old {
            next.sets.remove(k);
        }
        match self.saver.save(&next).await {
            Ok(()) => {
                warn!(directors = ?old, ?expiry, "VIP sets not refreshed in time expired");
                for k in &old {
                    self.refreshed.remove(k);
                }
                self.state = next;
                self.publish_directors();
            }
            Err(e) => warn!(error = %format!("{e:#}"), "cannot save the expiry of old VIP sets"),
        }
    }

    /// Serves requests and repairs drift until cancelled: at once when the kernel
    /// reports an address, link or ruleset change (`drift`), and on the timer.
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<Request>,
        mut drift: mpsc::UnboundedReceiver<()>,
        cancel: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(self.cfg.resync_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {
                    self.expire(Instant::now()).await;
                    let _ = self.apply_and_note().await;
                }
                Some(()) = drift.recv() => {
                    // Events come in bursts (one per address, and our own writes):
                    // settle, drain, then one pass.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    while drift.try_recv().is_ok() {}
                    let _ = self.apply_and_note().await;
                }
                req = rx.recv() => match req {
                    None => return,
                    Some(Request::Push { director, push, local, reply }) => {
                        let _ = reply.send(self.push(director, push, local).await);
                    }
                    Some(Request::Status { director, reply }) => {
                        let _ = reply.send(self.status(&director).await);
                    }
                    Some(Request::Drain { reason, reply }) => {
                        let since = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_secs());
                        let _ = reply.send(self.set_drain(Some(AgentDrain { reason, since })).await);
                    }
                    Some(Request::Overview { reply }) => {
                        let _ = reply.send(self.overview().await);
                    }
                    Some(Request::Ready { reply }) => {
                        let _ = reply.send(self.set_drain(None).await);
                    }
                    Some(Request::Report { director, servers }) => {
                        let at = Instant::now();
                        self.drain.send_modify(|v| {
                            let polls = v.reports.get(&director).map_or(0, |r| r.polls) + 1;
                            v.reports.insert(director, Report { servers, at, polls });
                        });
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The order of operations against a fake host that checks, after every change,
    //! that no IPv4 VIP on the device is unsuppressed, and at every add, that the
    //! address is already recorded as owned on disk.

    use std::cell::RefCell;
    use std::net::Ipv4Addr;
    use std::path::PathBuf;

    use super::*;

    const LO: u32 = 1;
    const ETH0: u32 = 2;

    #[derive(Default)]
    struct World {
        addrs: Vec<(u32, IpAddr, u8)>,
        suppressed: Vec<IpAddr>,
        fail_arp: bool,
        fail_add: Option<IpAddr>,
        /// The real IP the leftover ARP rules name (as found at start).
        left_over_real_ip: Option<IpAddr>,
        state_file: PathBuf,
        violations: Vec<String>,
        log: Vec<String>,
    }

    #[derive(Default)]
    struct Fake(RefCell<World>);

    impl Fake {
        fn check(&self, after: &str) {
            let mut w = self.0.borrow_mut();
            let bad: Vec<IpAddr> = on_device(&w.addrs, LO)
                .into_iter()
                .filter(|a| a.is_ipv4() && !w.suppressed.contains(a))
                .collect();
            if !bad.is_empty() {
                w.violations
                    .push(format!("after {after}: {bad:?} on the device unsuppressed"));
            }
        }
    }

    impl Host for Fake {
        async fn ensure_device(&self, _: &str) -> anyhow::Result<u32> {
            Ok(LO)
        }
        async fn link_index(&self, _: &str) -> anyhow::Result<u32> {
            Ok(LO)
        }
        async fn all_addresses(&self) -> anyhow::Result<Vec<(u32, IpAddr, u8)>> {
            Ok(self.0.borrow().addrs.clone())
        }
        async fn add(&self, index: u32, ip: IpAddr) -> anyhow::Result<()> {
            {
                let mut w = self.0.borrow_mut();
                let (saved, _) = state::load(&w.state_file)?;
                if !saved.owned_addresses.contains(&ip) {
                    w.violations
                        .push(format!("{ip} added before it was saved as owned"));
                }
                w.log.push(format!("add {ip}"));
                if w.fail_add == Some(ip) {
                    anyhow::bail!("adding {ip}/128: permission denied");
                }
                w.addrs.push((index, ip, host_prefix(&ip)));
            }
            self.check("add");
            Ok(())
        }
        async fn remove(&self, index: u32, ip: IpAddr) -> anyhow::Result<()> {
            let mut w = self.0.borrow_mut();
            w.log.push(format!("remove {ip}"));
            w.addrs.retain(|(i, a, _)| !(*i == index && *a == ip));
            Ok(())
        }
        async fn interface_of(&self, _: IpAddr) -> anyhow::Result<Option<String>> {
            Ok(Some("eth0".into()))
        }
        async fn arp_apply(
            &self,
            _: ArpMode,
            vips: &[IpAddr],
            real_ip: Option<IpAddr>,
            _: Option<&str>,
            _: &mut State,
        ) -> anyhow::Result<()> {
            {
                let mut w = self.0.borrow_mut();
                w.log.push(format!("suppress {vips:?}"));
                if w.fail_arp {
                    anyhow::bail!("running nft: No such file or directory");
                }
                // As arp.rs: IPv4 senders are rewritten to the real IPv4 address.
                if vips.iter().any(IpAddr::is_ipv4) && !real_ip.is_some_and(|r| r.is_ipv4()) {
                    anyhow::bail!("the real IPv4 address is not known yet");
                }
                w.suppressed = vips.iter().filter(|v| v.is_ipv4()).copied().collect();
            }
            self.check("suppress");
            Ok(())
        }
        async fn arp_in_place(
            &self,
            _: ArpMode,
            vips: &[IpAddr],
            _: Option<IpAddr>,
            _: Option<&str>,
        ) -> anyhow::Result<Vec<bool>> {
            let w = self.0.borrow();
            if w.fail_arp {
                anyhow::bail!("running nft: No such file or directory");
            }
            Ok(vips
                .iter()
                .map(|v| v.is_ipv6() || w.suppressed.contains(v))
                .collect())
        }
        async fn arp_left_over(&self) -> anyhow::Result<(Vec<Ipv4Addr>, Option<IpAddr>)> {
            let w = self.0.borrow();
            let v4 = w
                .suppressed
                .iter()
                .filter_map(|v| match v {
                    IpAddr::V4(a) => Some(*a),
                    IpAddr::V6(_) => None,
                })
                .collect();
            Ok((v4, w.left_over_real_ip))
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("lvsdr-applier-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("dir");
        d.join("agent.json")
    }

    fn config(state_file: PathBuf) -> Config {
        Config {
            listen: "127.0.0.1:9181".parse().expect("addr"),
            state_file,
            vip_device: "lo".into(),
            arp: ArpMode::Nft,
            real_ip: Some(ip("10.0.0.11")),
            resync_interval: Duration::from_secs(10),
            set_expiry: Duration::from_secs(3600),
            tls: None,
            control_socket: "/nonexistent/control.sock".into(),
            metrics_listen: None,
        }
    }

    fn world(state_file: &std::path::Path) -> Fake {
        let f = Fake::default();
        {
            let mut w = f.0.borrow_mut();
            w.state_file = state_file.to_path_buf();
            w.left_over_real_ip = Some(ip("10.0.0.11"));
            w.addrs = vec![
                (LO, ip("127.0.0.1"), 8),
                (ETH0, ip("10.0.0.11"), 24),
                (ETH0, ip("10.0.0.250"), 24),
            ];
        }
        f
    }

    fn push(generation: u64, vips: &[&str]) -> PushVips {
        PushVips {
            generation,
            epoch: Some(1),
            vips: vips.iter().map(|v| ip(v)).collect(),
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    fn on_lo(a: &Applier<Fake>) -> Vec<IpAddr> {
        on_device(&a.net.0.borrow().addrs, LO)
    }

    impl Applier<Fake> {
        fn world(&self) -> std::cell::Ref<'_, World> {
            self.net.0.borrow()
        }
    }

    /// A director reaching the agent over IPv6 (or at `[::]` through a mapped IPv4
    /// address): IPv4 suppression still uses the real server's IPv4 address. The
    /// connection's IPv6 address was taken, every push answered 500 and the IPv4 VIPs
    /// came off.
    #[test]
    fn a_push_over_ipv6_keeps_the_real_ipv4_address_for_suppression() {
        for (tag, local) in [("v6", "2001:db8::11"), ("mapped", "::ffff:10.0.0.11")] {
            let path = scratch(tag);
            rt().block_on(async {
                let mut cfg = config(path.clone());
                cfg.real_ip = None;
                let host = world(&path);
                {
                    let mut w = host.0.borrow_mut();
                    // Nothing learned before: the IPv4 address beside the IPv6 one.
                    w.left_over_real_ip = None;
                    w.addrs.insert(1, (ETH0, ip("2001:db8::11"), 64));
                }
                let mut a = Applier::new(cfg, host).await.expect("new");
                let st = a
                    .push("d1".into(), push(1, &["192.0.2.1"]), ip(local))
                    .await;
                assert!(st.is_ok(), "{tag}: {:?}", st.err());
                assert_eq!(a.real_ip(), Some(ip("10.0.0.11")), "{tag}");
                assert_eq!(on_lo(&a), vec![ip("192.0.2.1")], "{tag}");
            });
        }
    }

    /// A VIP taken off the device by hand is put back and counted as a repair (what
    /// `lvsdr-agent status` shows); a first add, or a new VIP, is not a repair. The drain
    /// is kept in the state file.
    #[test]
    fn a_vip_put_back_after_it_went_missing_is_a_repair_and_a_drain_is_kept() {
        let path = scratch("repairs");
        rt().block_on(async {
            let mut a = Applier::new(config(path.clone()), world(&path))
                .await
                .expect("new");
            a.push("d1".into(), push(1, &["192.0.2.1"]), ip("10.0.0.11"))
                .await
                .expect("push");
            a.push(
                "d1".into(),
                push(2, &["192.0.2.1", "192.0.2.2"]),
                ip("10.0.0.11"),
            )
            .await
            .expect("push");
            assert_eq!(a.overview().await.vip_repairs, 0);
            a.net
                .0
                .borrow_mut()
                .addrs
                .retain(|(_, v, _)| *v != ip("192.0.2.1"));
            a.apply().await.expect("apply");
            let mut held = on_lo(&a);
            held.sort();
            assert_eq!(held, vec![ip("192.0.2.1"), ip("192.0.2.2")]);
            let o = a.overview().await;
            assert_eq!(o.vip_repairs, 1);
            assert_eq!(o.directors.len(), 1);
            assert!(o.directors[0].vips.iter().all(VipStatus::ok), "{o:?}");
            assert!(o.directors[0].last_push_s.is_some());
            a.set_drain(Some(AgentDrain {
                reason: "deploy".into(),
                since: 1,
            }))
            .await
            .expect("drain");
            let (kept, _) = state::load(&path).expect("load");
            assert_eq!(kept.drain.map(|d| d.reason).as_deref(), Some("deploy"));
            a.set_drain(None).await.expect("ready");
            assert_eq!(state::load(&path).expect("load").0.drain, None);
        });
    }

    #[test]
    fn a_corrupt_state_file_stays_reported_through_passes_until_a_push_saves_one() {
        let path = scratch("corrupt");
        std::fs::write(&path, "{ not json").expect("corrupt");
        rt().block_on(async {
            let mut a = Applier::new(config(path.clone()), world(&path))
                .await
                .expect("new");
            let named = |e: &Option<String>| {
                e.as_deref()
                    .is_some_and(|e| e.contains("is not a valid state file"))
            };
            assert!(named(&a.status("d1").await.last_error));
            // A resync or drift pass that succeeds does not hide it.
            a.apply_and_note().await.expect("pass");
            let st = a.status("d1").await;
            assert!(named(&st.last_error), "{st:?}");
            // A push writes a good state file: then it is gone.
            let st = a
                .push("d1".into(), push(1, &["192.0.2.1"]), ip("10.0.0.11"))
                .await;
            assert!(st.is_ok(), "{:?}", st.err());
            assert_eq!(a.status("d1").await.last_error, None);
        });
    }

    #[test]
    fn no_vip_is_ever_unsuppressed_and_every_add_is_saved_as_owned_first() {
        let path = scratch("order");
        rt().block_on(async {
            let mut a = Applier::new(config(path.clone()), world(&path))
                .await
                .expect("new");
            let me = "d1".to_string();
            for (g, set) in [
                (1, vec!["192.0.2.1", "192.0.2.2", "2001:db8::1"]),
                (2, vec!["192.0.2.2", "192.0.2.3"]),
                (3, vec![]),
                (4, vec!["192.0.2.1"]),
            ] {
                let st = a.push(me.clone(), push(g, &set), ip("10.0.0.11")).await;
                assert!(st.is_ok(), "{g}: {:?}", st.err());
                let mut want: Vec<IpAddr> = set.iter().map(|v| ip(v)).collect();
                want.sort();
                let mut got = on_lo(&a);
                got.sort();
                assert_eq!(got, want, "generation {g}");
            }
            let w = a.world();
            assert!(w.violations.is_empty(), "{:#?}\n{:#?}", w.violations, w.log);
            // Addresses come off before their suppression does.
            let rm = w
                .log
                .iter()
                .position(|l| l == "remove 192.0.2.1")
                .expect("removed");
            let unsuppress = w
                .log
                .iter()
                .skip(rm)
                .position(|l| l.starts_with("suppress") && !l.contains("192.0.2.1"));
            assert!(unsuppress.is_some(), "{:#?}", w.log);
        });
    }

    #[test]
    fn when_suppression_fails_unsuppressed_vips_come_off_and_none_goes_on() {
        let path = scratch("arp");
        rt().block_on(async {
            let mut a = Applier::new(config(path.clone()), world(&path))
                .await
                .expect("new");
            let me = "d1".to_string();
            assert!(a
                .push(me.clone(), push(1, &["192.0.2.1"]), ip("10.0.0.11"))
                .await
                .is_ok());
            {
                // Someone flushes the ruleset, and nft has gone missing.
                let mut w = a.net.0.borrow_mut();
                w.suppressed.clear();
                w.fail_arp = true;
            }
            let r = a
                .push(
                    me.clone(),
                    push(2, &["192.0.2.1", "192.0.2.2"]),
                    ip("10.0.0.11"),
                )
                .await;
            match r {
                Err(Refusal::Failed(m)) => assert!(m.contains("nft"), "{m}"),
                other => panic!("{other:?}"),
            }
            assert_eq!(
                on_lo(&a),
                Vec::<IpAddr>::new(),
                "an unsuppressed VIP stayed on"
            );
            assert!(
                a.world().violations.is_empty(),
                "{:#?}",
                a.world().violations
            );
        });
    }

    #[test]
    fn a_failed_add_leaves_what_went_on_suppressed() {
        let path = scratch("add");
        rt().block_on(async {
            let f = world(&path);
            f.0.borrow_mut().fail_add = Some(ip("2001:db8::1"));
            let mut a = Applier::new(config(path.clone()), f).await.expect("new");
            let r = a
                .push(
                    "d1".into(),
                    push(1, &["192.0.2.1", "2001:db8::1"]),
                    ip("10.0.0.11"),
                )
                .await;
            assert!(
                matches!(&r, Err(Refusal::Failed(m)) if m.contains("2001:db8::1")),
                "{r:?}"
            );
            assert_eq!(on_lo(&a), vec![ip("192.0.2.1")]);
            assert!(
                a.world().violations.is_empty(),
                "{:#?}",
                a.world().violations
            );
        });
    }

    #[test]
    fn a_push_that_cannot_be_saved_changes_nothing() {
        let path = scratch("save");
        rt().block_on(async {
            let mut a = Applier::new(config(path.clone()), world(&path))
                .await
                .expect("new");
            // A state file under a regular file cannot be written, even by root.
            a.saver = Saver::new(PathBuf::from("/dev/null/agent.json"));
            let before = a.state.clone();
            let r = a
                .push("d1".into(), push(1, &["192.0.2.1"]), ip("10.0.0.11"))
                .await;
            assert!(
                matches!(&r, Err(Refusal::Failed(m)) if m.contains("saving the state file")),
                "{r:?}"
            );
            assert_eq!(a.state, before, "the in-memory set changed");
            assert!(on_lo(&a).is_empty());
            assert!(
                a.world().log.iter().all(|l| !l.starts_with("add")),
                "{:#?}",
                a.world().log
            );
        });
    }

    #[test]
    fn a_host_address_is_refused_alone_and_sets_expire() {
        let path = scratch("refuse");
        rt().block_on(async {
            let mut a = Applier::new(config(path.clone()), world(&path))
                .await
                .expect("new");
            let r = a
                .push(
                    "d1".into(),
                    push(1, &["192.0.2.1", "10.0.0.250"]),
                    ip("10.0.0.11"),
                )
                .await;
            let Err(Refusal::Invalid(m, st)) = r else {
                panic!("{r:?}")
            };
            assert!(
                m.contains("10.0.0.250 is already an address of this host"),
                "{m}"
            );
            assert!(st.confirms(&[ip("192.0.2.1")]));
            assert_eq!(on_lo(&a), vec![ip("192.0.2.1")]);

            // A second director's set; the first stops pushing and its set expires.
            assert!(a
                .push("d2".into(), push(1, &["192.0.2.9"]), ip("10.0.0.11"))
                .await
                .is_ok());
            let later = Instant::now() + Duration::from_secs(1800);
            a.refreshed.insert("d2".into(), later);
            a.expire(later + Duration::from_secs(1)).await;
            assert!(a.state.sets.contains_key("d1"), "expired early");
            a.expire(Instant::now() + Duration::from_secs(3601)).await;
            assert!(!a.state.sets.contains_key("d1"), "did not expire");
            assert!(a.state.sets.contains_key("d2"), "a refreshed set expired");
            a.apply().await.expect("apply");
            assert_eq!(on_lo(&a), vec![ip("192.0.2.9")]);
        });
    }

    #[test]
    fn without_a_state_file_the_suppressed_vips_on_the_device_are_kept() {
        let path = scratch("recover");
        rt().block_on(async {
            let f = world(&path);
            {
                let mut w = f.0.borrow_mut();
                w.addrs.push((LO, ip("192.0.2.1"), 32));
                w.addrs.push((LO, ip("192.0.2.77"), 32)); // by hand, not in the table
                w.suppressed = vec![ip("192.0.2.1")];
            }
            let mut a = Applier::new(config(path.clone()), f).await.expect("new");
            a.apply().await.expect("apply");
            assert_eq!(
                a.world().suppressed,
                vec![ip("192.0.2.1")],
                "the table was torn down"
            );
            assert_eq!(a.state.owned_addresses, vec![ip("192.0.2.1")]);
            // The first push replaces the recovered set.
            assert!(a
                .push("d1".into(), push(1, &["192.0.2.2"]), ip("10.0.0.11"))
                .await
                .is_ok());
            let mut lo = on_lo(&a);
            lo.sort();
            assert_eq!(
                lo,
                vec![ip("192.0.2.2"), ip("192.0.2.77")],
                "the hand-added address must stay"
            );
        });
    }
}
