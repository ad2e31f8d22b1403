//! The one writer of the agent: it owns the state file and every change to addresses
//! and ARP rules. The API and the drift timer send it requests; it answers with the
//! state read back from the kernel.

use std::net::IpAddr;

use anyhow::Context;
use lvsdr::agent_api::{vip_problem, AgentStatus, PushVips, VipStatus};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::arp;
use crate::config::Config;
use crate::state::{self, State};
use crate::vip::Net;

/// Why a push was refused: the HTTP status it maps to and a message.
#[derive(Debug)]
pub enum Refusal {
    /// 409: an older generation, or the same generation with another set.
    Conflict(String),
    /// 422: an address that cannot be a VIP.
    Invalid(String),
    /// 500: it was valid but could not be applied (it is retried by the drift timer).
    Failed(String),
}

/// A request to the applier.
pub enum Request {
    /// Apply a VIP set. `local` is the address the director connected to.
    Push {
        push: PushVips,
        local: IpAddr,
        reply: oneshot::Sender<Result<AgentStatus, Refusal>>,
    },
    /// Read the status back.
    Status { reply: oneshot::Sender<AgentStatus> },
}

pub struct Applier {
    cfg: Config,
    net: Net,
    state: State,
    last_error: Option<String>,
}

impl Applier {
    /// Loads the state file (a corrupt one is moved aside and reported).
    pub fn new(cfg: Config, net: Net) -> anyhow::Result<Applier> {
        let (state, corrupt) = state::load(&cfg.state_file)?;
        let mut last_error = None;
        if let Some(c) = corrupt {
            error!(
                "{}; kept as {} for inspection, starting empty",
                c.error,
                c.moved_to.display()
            );
            last_error = Some(format!("{}; kept as {}", c.error, c.moved_to.display()));
        }
        Ok(Applier {
            cfg,
            net,
            state,
            last_error,
        })
    }

    fn real_ip(&self) -> Option<IpAddr> {
        self.cfg.real_ip.or(self.state.real_ip)
    }

    /// Applies the state to the kernel: adds missing VIPs, removes the ones it added
    /// that are no longer wanted, and puts ARP suppression in place.
    pub async fn apply(&mut self) -> anyhow::Result<()> {
        let index = self.net.ensure_device(&self.cfg.vip_device).await?;
        let present = self.net.host_addresses(index).await?;
        let vips = self.state.vips.clone();
        for v in &vips {
            if !present.contains(v) {
                self.net.add(index, *v).await?;
                info!(vip = %v, device = %self.cfg.vip_device, "VIP added");
                if !self.state.owned_addresses.contains(v) {
                    self.state.owned_addresses.push(*v);
                }
            }
        }
        let gone: Vec<IpAddr> = self
            .state
            .owned_addresses
            .iter()
            .filter(|a| !vips.contains(a))
            .copied()
            .collect();
        for a in gone {
            self.net.remove(index, a).await?;
            info!(vip = %a, "VIP removed");
            self.state.owned_addresses.retain(|x| *x != a);
        }
        let iface = match self.real_ip() {
            Some(ip) => self.net.interface_of(ip).await?,
            None => None,
        };
        let (mode, real_ip) = (self.cfg.arp, self.real_ip());
        arp::apply(mode, &vips, real_ip, iface.as_deref(), &mut self.state)?;
        state::save(&self.cfg.state_file, &self.state).context("saving the state file")?;
        Ok(())
    }

    /// The state as the kernel has it now.
    pub async fn status(&self) -> AgentStatus {
        let mut last_error = self.last_error.clone();
        let read = || async {
            let index = self.net.link_index(&self.cfg.vip_device).await?;
            let present = self.net.host_addresses(index).await?;
            let iface = match self.real_ip() {
                Some(ip) => self.net.interface_of(ip).await?,
                None => None,
            };
            let arp = arp::in_place(
                self.cfg.arp,
                &self.state.vips,
                self.real_ip(),
                iface.as_deref(),
            )?;
            anyhow::Ok((present, arp))
        };
        let (present, arp) = match read().await {
            Ok(x) => x,
            Err(e) => {
                last_error = Some(format!("reading back: {e:#}"));
                (Vec::new(), vec![false; self.state.vips.len()])
            }
        };
        let vips: Vec<VipStatus> = self
            .state
            .vips
            .iter()
            .zip(arp)
            .map(|(v, a)| VipStatus {
                vip: *v,
                on_device: present.contains(v),
                arp_suppressed: a,
            })
            .collect();
        AgentStatus {
            generation: self.state.generation,
            arp_mode: self.cfg.arp.name().to_string(),
            real_ip: self.real_ip(),
            vip_device: self.cfg.vip_device.clone(),
            in_place: vips.iter().all(|v| v.on_device && v.arp_suppressed),
            vips,
            last_error,
        }
    }

    async fn push(&mut self, push: PushVips, local: IpAddr) -> Result<AgentStatus, Refusal> {
        let mut vips = push.vips.clone();
        vips.sort();
        vips.dedup();
        let mut applied = self.state.vips.clone();
        applied.sort();
        if push.generation < self.state.generation {
            return Err(Refusal::Conflict(format!(
                "generation {} is older than the applied generation {}",
                push.generation, self.state.generation
            )));
        }
        if push.generation == self.state.generation && vips != applied && self.state.generation != 0
        {
            return Err(Refusal::Conflict(format!(
                "generation {} was already applied with another VIP set",
                push.generation
            )));
        }
        let real_ip = self.cfg.real_ip.unwrap_or(local);
        for v in &vips {
            if let Some(why) = vip_problem(v, Some(real_ip)) {
                return Err(Refusal::Invalid(format!("{v} cannot be a VIP: it {why}")));
            }
        }
        self.state.generation = push.generation;
        self.state.vips = vips;
        self.state.real_ip = Some(real_ip);
        // The desired state is on disk before anything changes.
        state::save(&self.cfg.state_file, &self.state)
            .map_err(|e| Refusal::Failed(format!("saving the state file: {e:#}")))?;
        info!(generation = push.generation, vips = ?self.state.vips, "push accepted");
        match self.apply().await {
            Ok(()) => self.last_error = None,
            Err(e) => {
                let msg = format!("{e:#}");
                warn!(error = %msg, "applying the push failed; the drift timer retries");
                self.last_error = Some(msg.clone());
                return Err(Refusal::Failed(msg));
            }
        }
        Ok(self.status().await)
    }

    /// Serves requests and re-applies on the drift timer until cancelled.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Request>, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(self.cfg.resync_interval);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {
                    if let Err(e) = self.apply().await {
                        warn!(error = %format!("{e:#}"), "re-applying the state failed");
                        self.last_error = Some(format!("{e:#}"));
                    } else {
                        self.last_error = None;
                    }
                }
                req = rx.recv() => match req {
                    None => return,
                    Some(Request::Push { push, local, reply }) => {
                        let _ = reply.send(self.push(push, local).await);
                    }
                    Some(Request::Status { reply }) => {
                        let _ = reply.send(self.status().await);
                    }
                }
            }
        }
    }
}
