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
use lvsdr_agent_api::{vip_problem, AgentStatus, PushVips, VipStatus};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::arp;
use crate::config::{ArpMode, Config};
use crate::sets;
use crate::state::{self, DirectorSet, Saver, State};
use crate::vip::Net;

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
}

pub struct Applier {
    cfg: Config,
    net: Net,
    state: State,
    saver: Saver,
    /// When each director's set was last pushed (sets loaded at start count as
    /// refreshed then): a set not refreshed for `set_expiry` is dropped.
    refreshed: HashMap<String, Instant>,
    /// VIPs of some set the agent refuses to hold, with why (as of the last pass).
    refused: BTreeMap<IpAddr, String>,
    last_error: Option<String>,
}

impl Applier {
    /// Loads the state file. A corrupt file is moved aside and reported; with no
    /// usable file the agent adopts what its own ARP table shows it holds (see
    /// [`Applier::recover`]) instead of starting from nothing.
    pub async fn new(cfg: Config, net: Net) -> anyhow::Result<Applier> {
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
        let mut a = Applier {
            saver: Saver::new(cfg.state_file.clone()),
            cfg,
            net,
            state,
            refreshed,
            refused: BTreeMap::new(),
            last_error,
        };
        if a.state == State::default() {
            a.recover().await;
        }
        Ok(a)
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
            let present = self.net.host_addresses(index).await?;
            let (elems, _) = arp::nft_read(None).await?;
            anyhow::Ok(
                elems
                    .into_iter()
                    .map(IpAddr::V4)
                    .filter(|v| present.contains(v))
                    .collect::<Vec<_>>(),
            )
        };
        let vips = match found.await {
            Ok(v) if !v.is_empty() => v,
            Ok(_) => return,
            Err(e) => {
                warn!(error = %format!("{e:#}"), "no state file, and the ARP table cannot be read");
                return;
            }
        };
        warn!(?vips, "no state file: keeping the suppressed VIPs found in table arp lvsdr until a director pushes");
        let (elems_rip, real_ip) = (self.cfg.real_ip, self.nft_real_ip().await);
        self.state.real_ip = elems_rip.or(real_ip);
        self.state.owned_addresses = vips.clone();
        self.state.sets.insert(
            "(recovered at start)".into(),
            DirectorSet {
                vips,
                provisional: true,
                ..DirectorSet::default()
            },
        );
        self.refreshed
            .insert("(recovered at start)".into(), Instant::now());
    }

    /// The address the agent's nft output rule rewrites VIP senders to.
    async fn nft_real_ip(&self) -> Option<IpAddr> {
        let out = tokio::process::Command::new("nft")
            .args(["-j", "list", "chain", "arp", "lvsdr", "output"])
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(5), out)
            .await
            .ok()?
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v["nftables"].as_array()?.iter().find_map(|o| {
            o["rule"]["expr"]
                .as_array()?
                .iter()
                .find_map(|e| e["mangle"]["value"].as_str()?.parse().ok())
        })
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
        let host = if vip.is_ipv4() { 32 } else { 128 };
        addrs
            .iter()
            .find(|(i, a, p)| a == vip && (*i != index || *p != host))
            .map(|_| format!("{vip} is already an address of this host (not a VIP the agent added); refusing it"))
    }

    /// Applies the state to the kernel (see the module doc for the order).
    pub async fn apply(&mut self) -> anyhow::Result<()> {
        let index = self.net.ensure_device(&self.cfg.vip_device).await?;
        let addrs = self.net.all_addresses().await?;
        let host = |v: &IpAddr| if v.is_ipv4() { 32 } else { 128 };
        let present: Vec<IpAddr> = addrs
            .iter()
            .filter(|(i, a, p)| *i == index && *p == host(a))
            .map(|(_, a, _)| *a)
            .collect();
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
        if let Err(e) =
            arp::apply(mode, &suppress, real_ip, iface.as_deref(), &mut self.state).await
        {
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
        for v in to_add {
            match self.net.add(index, v).await {
                Ok(()) => info!(vip = %v, device = %self.cfg.vip_device, "VIP added"),
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
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
        let ok = arp::in_place(self.cfg.arp, &owned, self.real_ip(), iface)
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

    /// `director`'s view, read back from the kernel.
    pub async fn status(&self, director: &str) -> AgentStatus {
        let mut last_error = self.last_error.clone();
        let set = self.state.sets.get(director).cloned().unwrap_or_default();
        let read = || async {
            let index = self.net.link_index(&self.cfg.vip_device).await?;
            let present = self.net.host_addresses(index).await?;
            let iface = match self.real_ip() {
                Some(ip) => self.net.interface_of(ip).await?,
                None => None,
            };
            let arp =
                arp::in_place(self.cfg.arp, &set.vips, self.real_ip(), iface.as_deref()).await?;
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

    async fn push(
        &mut self,
        director: String,
        push: PushVips,
        local: IpAddr,
    ) -> Result<AgentStatus, Refusal> {
        sets::admit(self.state.sets.get(&director), &push).map_err(Refusal::Conflict)?;
        // The new state is on disk before anything changes, in memory or kernel.
        let mut next = self.state.clone();
        next.sets.retain(|_, s| !s.provisional);
        next.sets.insert(director.clone(), sets::set_of(&push));
        next.real_ip = Some(self.cfg.real_ip.unwrap_or(local));
        self.saver
            .save(&next)
            .await
            .map_err(|e| Refusal::Failed(format!("saving the state file: {e:#}")))?;
        self.refreshed.retain(|k, _| next.sets.contains_key(k));
        self.refreshed.insert(director.clone(), Instant::now());
        self.state = next;
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
                self.last_error = None;
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

    /// Drops the sets no director refreshed within `set_expiry`.
    async fn expire(&mut self) {
        let expiry = self.cfg.set_expiry;
        let old: Vec<String> = self
            .refreshed
            .iter()
            .filter(|(_, t)| t.elapsed() >= expiry)
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
                    self.expire().await;
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
                }
            }
        }
    }
}
