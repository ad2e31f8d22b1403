//! The director's side of the agents: pushes each real server's agent the VIPs of
//! every service it belongs to (at start, on every config change, and every
//! `push_interval`; failures are retried sooner, with backoff), and publishes what the
//! agents confirmed: per-agent state for status, and the readiness [`Gate`] the
//! planner reads.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::agent_api::{AgentStatus, PushVips};
use crate::model::{AgentSettings, Desired};
use crate::reconcile::Gate;

/// How one agent is doing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentState {
    /// The real server.
    pub address: IpAddr,
    /// The VIPs it should hold.
    pub vips: Vec<IpAddr>,
    /// Whether the last push got an answer.
    pub reachable: bool,
    /// Whether the agent holds every VIP, ARP suppressed (as it read back).
    pub confirmed: bool,
    /// The generation it applied.
    pub generation: Option<u64>,
    /// When it was last pushed (seconds since the epoch).
    pub last_push: Option<f64>,
    /// Why the last push failed.
    pub last_error: Option<String>,
}

/// Every agent, by real server address.
pub type AgentMap = BTreeMap<IpAddr, AgentState>;

/// The HTTPS client a director pushes with: its own certificate, the agents' CA only.
pub fn client(s: &AgentSettings) -> Result<reqwest::Client, String> {
    let read =
        |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()));
    let ca = reqwest::Certificate::from_pem(&read(&s.ca)?)
        .map_err(|e| format!("{}: {e}", s.ca.display()))?;
    let mut pem = read(&s.cert)?;
    pem.extend_from_slice(b"\n");
    pem.extend_from_slice(&read(&s.key)?);
    let identity = reqwest::Identity::from_pem(&pem)
        .map_err(|e| format!("{} and {}: {e}", s.cert.display(), s.key.display()))?;
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .identity(identity)
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| format!("building the agent client: {e}"))
}

fn now() -> f64 {
    crate::status::epoch(SystemTime::now())
}

async fn push_one(
    client: &reqwest::Client,
    addr: IpAddr,
    port: u16,
    push: &PushVips,
) -> Result<AgentStatus, String> {
    let url = format!("https://{}/v1/vips", SocketAddr::new(addr, port));
    let resp = client
        .put(&url)
        .json(push)
        .send()
        .await
        .map_err(|e| format!("PUT {url}: {e}"))?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        return Err(format!("PUT {url}: {status}: {}", body.trim()));
    }
    resp.json::<AgentStatus>()
        .await
        .map_err(|e| format!("PUT {url}: answer: {e}"))
}

/// Runs until cancelled.
pub async fn run(
    mut desired: watch::Receiver<Arc<Desired>>,
    gate: watch::Sender<Gate>,
    agents: watch::Sender<AgentMap>,
    cancel: CancellationToken,
) {
    loop {
        let d = desired.borrow_and_update().clone();
        // The load time orders configs across director restarts too.
        let generation = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(1, |t| t.as_millis() as u64);
        match &d.agents {
            None => {
                gate.send_if_modified(|g| std::mem::take(g) != Gate::default());
                agents.send_replace(AgentMap::new());
            }
            Some(settings) => {
                if let Some(stop) = push_loop(
                    &d,
                    settings,
                    generation,
                    &mut desired,
                    &gate,
                    &agents,
                    &cancel,
                )
                .await
                {
                    if stop {
                        return;
                    }
                    continue;
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = desired.changed() => if r.is_err() { return },
        }
    }
}

/// Pushes until the config changes (`Some(false)`) or shutdown (`Some(true)`);
/// `None` if the client cannot be built (then wait for a new config).
async fn push_loop(
    d: &Desired,
    settings: &AgentSettings,
    generation: u64,
    desired: &mut watch::Receiver<Arc<Desired>>,
    gate: &watch::Sender<Gate>,
    agents: &watch::Sender<AgentMap>,
    cancel: &CancellationToken,
) -> Option<bool> {
    let sets = d.agent_vips();
    let client = match client(settings) {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "cannot push to agents");
            let map = sets
                .iter()
                .map(|(a, v)| {
                    let st = AgentState {
                        address: *a,
                        vips: v.clone(),
                        reachable: false,
                        confirmed: false,
                        generation: None,
                        last_push: None,
                        last_error: Some(e.clone()),
                    };
                    (*a, st)
                })
                .collect();
            agents.send_replace(map);
            gate.send_replace(Gate {
                require: settings.require,
                confirmed: HashSet::new(),
            });
            return None;
        }
    };
    let push_interval = settings.push_interval;
    let mut backoff = Duration::from_secs(1);
    loop {
        let rounds = sets.iter().map(|(addr, vips)| {
            let client = &client;
            let push = PushVips {
                generation,
                vips: vips.clone(),
            };
            async move {
                (
                    *addr,
                    vips.clone(),
                    push_one(client, *addr, settings.port, &push).await,
                )
            }
        });
        let results = futures_util::future::join_all(rounds).await;
        let mut map = AgentMap::new();
        let mut confirmed = HashSet::new();
        let mut failed = false;
        let before = agents.borrow().clone();
        for (addr, vips, r) in results {
            let was = before.get(&addr);
            let st = match r {
                Ok(s) => {
                    let ok = s.confirms(&vips);
                    if ok {
                        confirmed.insert(addr);
                    } else {
                        failed = true;
                    }
                    if was.is_none_or(|w| !w.confirmed) && ok {
                        info!(agent = %addr, ?vips, "agent confirmed its VIPs");
                    }
                    AgentState {
                        address: addr,
                        vips,
                        reachable: true,
                        confirmed: ok,
                        generation: Some(s.generation),
                        last_push: Some(now()),
                        last_error: (!ok).then(|| {
                            s.last_error
                                .unwrap_or_else(|| "not all VIPs in place".into())
                        }),
                    }
                }
                Err(e) => {
                    failed = true;
                    if was.is_none_or(|w| w.last_error.as_deref() != Some(e.as_str())) {
                        warn!(agent = %addr, error = %e, "push failed");
                    }
                    AgentState {
                        address: addr,
                        vips,
                        reachable: false,
                        confirmed: false,
                        generation: was.and_then(|w| w.generation),
                        last_push: Some(now()),
                        last_error: Some(e),
                    }
                }
            };
            map.insert(addr, st);
        }
        agents.send_replace(map);
        let g = Gate {
            require: settings.require,
            confirmed,
        };
        gate.send_if_modified(|old| {
            let changed = *old != g;
            *old = g;
            changed
        });
        let wait = if failed {
            let w = backoff;
            backoff = (backoff * 2).min(push_interval);
            w
        } else {
            backoff = Duration::from_secs(1);
            push_interval
        };
        tokio::select! {
            _ = cancel.cancelled() => return Some(true),
            r = desired.changed() => return Some(r.is_err()),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
