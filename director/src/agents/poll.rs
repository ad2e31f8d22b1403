//! The director's drain polls: one long poll per agent (`POST /v1/drain`) learns
//! whether its real server drained itself (`lvsdr-agent drain`), within a second of
//! the drain, and carries this director's connection counts of that server back to
//! the agent (which `lvsdr-agent drain --wait` waits on).
//!
//! Cost: while a server is not drained, one request per agent per [`IDLE_WAIT`]
//! (answered at once when the drain changes); while it is drained, one per
//! [`DRAINED_WAIT`], so that its counts reach the agent that often.
//!
//! What is heard is published per agent address: `Some(drain)` or `None` (heard: not
//! drained). An agent not heard (unreachable, or an agent without the endpoint) is
//! absent: what was last known of it stays in force.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use lvsdr::agent_api::{AgentDrain, DrainAnswer, DrainPoll, ServerCount};
use lvsdr::model::Desired;
use lvsdr::reconcile::Observed;
use lvsdr::reconcile::ReconcileState;

/// How long an agent may hold a poll while its server is not drained.
pub const IDLE_WAIT: Duration = Duration::from_secs(20);
/// … and while it is drained (how often the counts reach it).
pub const DRAINED_WAIT: Duration = Duration::from_secs(1);
/// The longest pause between failed polls.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// What each agent said of its drain (absent: not heard in this run).
pub type AgentDrains = BTreeMap<IpAddr, Option<AgentDrain>>;

/// This real server's destinations in the kernel, for the agent at `agent`: every
/// configured real server whose agent it is.
pub fn counts_for(d: &Desired, observed: &Observed, agent: IpAddr) -> Vec<ServerCount> {
    let mut out = Vec::new();
    for svc in &d.services {
        let obs = observed.services.get(&svc.service.key);
        for rs in svc.real_servers.iter().filter(|rs| rs.agent == Some(agent)) {
            let e = obs.and_then(|o| o.dests.get(&(rs.dest.addr, rs.dest.port)));
            out.push(ServerCount {
                service: svc.name.clone(),
                server: SocketAddr::new(rs.dest.addr, rs.dest.port),
                weight: e.map(|e| e.dest.settings.weight),
                active: e.map_or(0, |e| e.active_conns),
                inactive: e.map_or(0, |e| e.inactive_conns),
            });
        }
    }
    out
}

/// The agents of `d` (each real server's `agent`).
fn agents_of(d: &Desired) -> BTreeSet<IpAddr> {
    d.services
        .iter()
        .flat_map(|s| s.real_servers.iter().filter_map(|rs| rs.agent))
        .collect()
}

/// Runs until cancelled: polls every agent of the config in `config`, publishing what
/// they say on `out`.
pub async fn run(
    mut config: watch::Receiver<Arc<Desired>>,
    table: watch::Receiver<ReconcileState>,
    out: watch::Sender<AgentDrains>,
    cancel: CancellationToken,
) {
    let (tx, mut heard) = mpsc::channel::<(IpAddr, Option<AgentDrain>)>(64);
    loop {
        let d = config.borrow_and_update().clone();
        let mut polls = JoinSet::new();
        let agents = match &d.agents {
            Some(settings) => match super::client(settings) {
                Ok(client) => {
                    for agent in agents_of(&d) {
                        let poller = Poller {
                            agent,
                            port: settings.port,
                            client: client.clone(),
                            config: d.clone(),
                            table: table.clone(),
                            tx: tx.clone(),
                        };
                        polls.spawn(poller.run());
                    }
                    agents_of(&d)
                }
                Err(e) => {
                    // The pusher reports and retries this too; the drains stay as known.
                    warn!(error = %e, "cannot poll the agents' drains");
                    agents_of(&d)
                }
            },
            None => BTreeSet::new(),
        };
        out.send_if_modified(|m| {
            let before = m.len();
            m.retain(|a, _| agents.contains(a));
            m.len() != before
        });
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                r = config.changed() => {
                    if r.is_err() {
                        return;
                    }
                    break;
                }
                Some((agent, drain)) = heard.recv() => {
                    out.send_if_modified(|m| {
                        let changed = m.get(&agent) != Some(&drain);
                        m.insert(agent, drain);
                        changed
                    });
                }
            }
        }
        // A new config: its agents are polled afresh (a poll held by an agent is
        // dropped with its task).
        polls.abort_all();
    }
}

/// One agent's poll loop.
struct Poller {
    agent: IpAddr,
    port: u16,
    client: reqwest::Client,
    config: Arc<Desired>,
    table: watch::Receiver<ReconcileState>,
    tx: mpsc::Sender<(IpAddr, Option<AgentDrain>)>,
}

impl Poller {
    async fn run(self) {
        let url = format!(
            "https://{}/v1/drain",
            SocketAddr::new(self.agent, self.port)
        );
        let mut known: Option<DrainAnswer> = None;
        let mut backoff = Duration::from_secs(1);
        let mut last_error: Option<String> = None;
        loop {
            let wait = match &known {
                None => Duration::ZERO,
                Some(a) if a.drain.is_some() => DRAINED_WAIT,
                Some(_) => IDLE_WAIT,
            };
            let poll = DrainPoll {
                known: known.as_ref().map(|a| a.version),
                wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                servers: counts_for(&self.config, &self.table.borrow().observed, self.agent),
            };
            match self.ask(&url, &poll, wait).await {
                Ok(answer) => {
                    if last_error.take().is_some() {
                        info!(agent = %self.agent, "drain poll answered again");
                    }
                    let was = known.as_ref().map(|a| a.drain.clone());
                    if was.as_ref() != Some(&answer.drain) {
                        match &answer.drain {
                            Some(d) => {
                                info!(agent = %self.agent, reason = %d.reason, "the real server drained itself")
                            }
                            None if was.flatten().is_some() => {
                                info!(agent = %self.agent, "the real server is ready again")
                            }
                            None => {}
                        }
                    }
                    if self
                        .tx
                        .send((self.agent, answer.drain.clone()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    known = Some(answer);
                    backoff = Duration::from_secs(1);
                }
                Err(e) => {
                    if last_error.as_deref() != Some(e.as_str()) {
                        warn!(agent = %self.agent, error = %e, "drain poll failed; what is known of its drain stays");
                        last_error = Some(e);
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    async fn ask(
        &self,
        url: &str,
        poll: &DrainPoll,
        wait: Duration,
    ) -> Result<DrainAnswer, String> {
        let resp = self
            .client
            .post(url)
            .json(poll)
            .timeout(wait + Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| format!("POST {url}: {}", super::root_cause(&e)))?;
        let code = resp.status();
        let body = super::read_bounded(resp, super::ANSWER_LIMIT)
            .await
            .map_err(|e| format!("POST {url}: reading the answer: {e}"))?;
        if !code.is_success() {
            return Err(format!(
                "POST {url}: {code}: {}",
                String::from_utf8_lossy(&body).trim()
            ));
        }
        serde_json::from_slice(&body).map_err(|e| format!("POST {url}: answer: {e}"))
    }
}

/// Which agents' drains changed from `before` to `after` (for the control task, which
/// keeps them): `(agent, drain)` for each heard agent whose drain differs.
pub fn changes(
    kept: &BTreeMap<IpAddr, AgentDrain>,
    heard: &AgentDrains,
) -> Vec<(IpAddr, Option<AgentDrain>)> {
    let mut out = Vec::new();
    for (agent, drain) in heard {
        if kept.get(agent) != drain.as_ref() {
            out.push((*agent, drain.clone()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(reason: &str) -> AgentDrain {
        AgentDrain {
            reason: reason.into(),
            since: 1,
        }
    }

    #[test]
    fn only_heard_agents_change_what_is_kept() {
        let a = |s: &str| s.parse::<IpAddr>().expect("ip");
        let kept = BTreeMap::from([(a("10.0.0.11"), drain("deploy"))]);
        // Not heard yet (absent): the kept drain stays.
        assert!(changes(&kept, &AgentDrains::new()).is_empty());
        let heard = AgentDrains::from([
            (a("10.0.0.11"), None),
            (a("10.0.0.12"), Some(drain("reboot"))),
            (a("10.0.0.13"), None),
        ]);
        assert_eq!(
            changes(&kept, &heard),
            vec![
                (a("10.0.0.11"), None),
                (a("10.0.0.12"), Some(drain("reboot")))
            ]
        );
    }

    #[test]
    fn the_counts_are_the_agents_servers_in_the_kernel() {
        let text = "[agents]\nca = \"/ca.pem\"\ncert = \"/c.pem\"\nkey = \"/k.pem\"\n\
                    [[service]]\nname = \"web\"\nvip = \"192.0.2.10\"\nport = 80\n\
                    [[service.real_server]]\naddress = \"10.0.0.11\"\n\
                    [[service.real_server]]\naddress = \"10.0.0.12\"\n";
        let d = lvsdr::config::parse(text, "d.toml").expect("config");
        let agent: IpAddr = "10.0.0.11".parse().expect("ip");
        let c = counts_for(&d, &Observed::default(), agent);
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c[0].server.to_string(), "10.0.0.11:80");
        assert_eq!((c[0].weight, c[0].active), (None, 0), "not in the kernel");
        assert_eq!(agents_of(&d).len(), 2);
    }
}
