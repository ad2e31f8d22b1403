//! The director's side of the agents: pushes each agent the VIPs of every service its
//! real servers belong to (at start, on every config change, and every
//! `push_interval`; failures are retried sooner, with backoff), and publishes what the
//! agents confirmed: per-agent state for status, and the readiness [`Gate`] the
//! planner reads.
//!
//! Pushes are ordered by an epoch drawn at random when this process starts and a
//! generation counted per config within it, so no clock is involved (see
//! `lvsdr_agent_api::PushVips`). The agent keeps this director's set apart from other
//! directors' sets, keyed by this director's certificate name and its address.
//!
//! The gate has hysteresis: an agent that confirmed a VIP stays confirmed for it
//! through failed pushes for `confirm_grace` (a director restart, a lost packet or an
//! agent restart must not drain a server that still holds the VIP); a VIP the agent
//! *refuses* is unconfirmed at once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use lvsdr::agent_api::{AgentStatus, ErrorBody, PushVips};
use lvsdr::clock::now;
use lvsdr::model::{AgentSettings, Desired};
use lvsdr::reconcile::{Gate, ReconcileState};

pub mod poll;
mod sets;
pub use sets::{vip_sets, Former};

/// How one agent is doing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentState {
    /// The agent's address.
    pub address: IpAddr,
    /// The VIPs it should hold.
    pub vips: Vec<IpAddr>,
    /// Whether the last push got an answer.
    pub reachable: bool,
    /// Whether every VIP counts as confirmed (held and ARP suppressed as the agent
    /// read back, or so within the grace period).
    pub confirmed: bool,
    /// The VIPs that count as confirmed.
    #[serde(default)]
    pub confirmed_vips: Vec<IpAddr>,
    /// VIPs the agent refused, with its reason.
    #[serde(default)]
    pub refused: Vec<(IpAddr, String)>,
    /// The generation it applied.
    pub generation: Option<u64>,
    /// When it was last pushed (seconds since the epoch).
    pub last_push: Option<f64>,
    /// Why the last push failed.
    pub last_error: Option<String>,
}

/// Every agent, by address.
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

/// What one push came to.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The agent answered with its status: all applied (`refusal: None`), or some
    /// VIPs refused (422) and the rest applied.
    Answered {
        status: AgentStatus,
        refusal: Option<String>,
    },
    /// No usable answer: unreachable, timed out, 5xx, 409. Transient.
    Failed(String),
}

/// Pushes `push` to the agent at `addr`.
pub async fn push_one(
    client: &reqwest::Client,
    addr: IpAddr,
    port: u16,
    push: &PushVips,
) -> Outcome {
    let url = format!("https://{}/v1/vips", SocketAddr::new(addr, port));
    let resp = match client.put(&url).json(push).send().await {
        Ok(r) => r,
        Err(e) => return Outcome::Failed(format!("PUT {url}: {}", root_cause(&e))),
    };
    let code = resp.status();
    let body = match read_bounded(resp, ANSWER_LIMIT).await {
        Ok(b) => b,
        Err(e) => return Outcome::Failed(format!("PUT {url}: reading the answer: {e}")),
    };
    if code.is_success() {
        return match serde_json::from_slice::<AgentStatus>(&body) {
            Ok(status) => Outcome::Answered {
                status,
                refusal: None,
            },
            Err(e) => Outcome::Failed(format!("PUT {url}: answer: {e}")),
        };
    }
    match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(ErrorBody {
            error,
            status: Some(status),
        }) if code == reqwest::StatusCode::UNPROCESSABLE_ENTITY => Outcome::Answered {
            status,
            refusal: Some(format!("PUT {url}: {code}: {error}")),
        },
        Ok(b) => Outcome::Failed(format!("PUT {url}: {code}: {}", b.error)),
        Err(_) => Outcome::Failed(format!(
            "PUT {url}: {code}: {}",
            String::from_utf8_lossy(&body).trim()
        )),
    }
}

/// The most of an agent's answer that is read: a status of thousands of VIPs fits many
/// times over; an answer that does not end (a broken or hostile agent) is cut.
pub const ANSWER_LIMIT: usize = 1 << 20;

/// The body of `resp`, or an error once it passes `limit` bytes.
async fn read_bounded(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| root_cause(&e))? {
        if body.len() + chunk.len() > limit {
            return Err(format!("longer than {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The innermost error: "connection refused", not "error sending request for url".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// When an agent last confirmed which VIPs (in this run), and since when its pushes
/// fail.
#[derive(Debug, Clone, Default)]
pub struct LastGood {
    at: Option<Instant>,
    vips: HashSet<IpAddr>,
    /// The first failed push since the last answer.
    failing_since: Option<Instant>,
}

impl LastGood {
    /// Whether the agent is heard from (its gate open or closed), not pending: it
    /// answered in this run, or its pushes have failed for `grace` since the first
    /// failure. Counted from that failure, not from the director's start: a restart
    /// with a large config, or slow TLS under load, may take longer than the grace
    /// before the first push even ends, and a failed first push then closed the gate
    /// at once and zeroed servers the kernel had right.
    pub fn heard(&self, now: Instant, grace: Duration) -> bool {
        self.at.is_some()
            || self
                .failing_since
                .is_some_and(|t| now.saturating_duration_since(t) >= grace)
    }
}

/// The VIPs of `wanted` that count as confirmed after `outcome`, and the new memory.
/// Pure: the gate's hysteresis in one place.
pub fn confirmed_after(
    outcome: &Outcome,
    wanted: &[IpAddr],
    last: &LastGood,
    now: Instant,
    grace: Duration,
) -> (HashSet<IpAddr>, LastGood) {
    match outcome {
        Outcome::Answered { status, .. } => {
            let ok: HashSet<IpAddr> = status.confirmed().filter(|v| wanted.contains(v)).collect();
            let memory = LastGood {
                at: Some(now),
                vips: ok.clone(),
                failing_since: None,
            };
            (ok, memory)
        }
        Outcome::Failed(_) => {
            // Through failed pushes for `grace`, counted from the first failure: from
            // the last success, one lost periodic push (push_interval 30 s, grace 30 s,
            // the defaults) was already past the grace and drained the agent's servers.
            let since = last.failing_since.unwrap_or(now);
            let within = last.at.is_some() && now.saturating_duration_since(since) < grace;
            let ok = if within {
                last.vips
                    .iter()
                    .filter(|v| wanted.contains(v))
                    .copied()
                    .collect()
            } else {
                HashSet::new()
            };
            let memory = LastGood {
                failing_since: last.failing_since.or(Some(now)),
                ..last.clone()
            };
            (ok, memory)
        }
    }
}

/// A number no other run of this director drew: the push epoch.
fn random_epoch() -> u64 {
    // RandomState is seeded from the OS's randomness, once per process.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}

/// Runs until cancelled. `table` is the reconciler's state: a VIP stays in an agent's
/// set while a destination on its host carries it in the kernel ([`vip_sets`]).
pub async fn run(
    mut desired: watch::Receiver<Arc<Desired>>,
    mut table: watch::Receiver<ReconcileState>,
    gate: watch::Sender<Gate>,
    agents: watch::Sender<AgentMap>,
    cancel: CancellationToken,
) {
    let epoch = random_epoch();
    let mut carried = Carried::default();
    let mut before: Option<Arc<Desired>> = None;
    loop {
        let d = desired.borrow_and_update().clone();
        if let Some(b) = &before {
            carried.former.update(b, &d);
        }
        before = Some(d.clone());
        // A new config is a new generation; so is each change of the sets under one
        // config (below): the agent refuses a generation it applied with another set.
        carried.generation += 1;
        match &d.agents {
            None => {
                gate.send_if_modified(|g| std::mem::take(g) != Gate::default());
                agents.send_replace(AgentMap::new());
            }
            Some(settings) => {
                let push = Pushing {
                    d: &d,
                    settings,
                    epoch,
                    gate: &gate,
                    agents: &agents,
                };
                if push
                    .run(&mut carried, &mut desired, &mut table, &cancel)
                    .await
                {
                    return;
                }
                continue;
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = desired.changed() => if r.is_err() { return },
        }
    }
}

/// What the pusher carries from one config to the next.
#[derive(Default)]
struct Carried {
    /// The generation of the sets pushed (one per config and per change of the sets).
    generation: u64,
    /// Each agent's last good answer (its confirmations through failed pushes).
    memory: HashMap<IpAddr, LastGood>,
    /// Agents of earlier configs, told their draining VIPs, then an empty set once.
    former: Former,
}

/// One config's pushing.
struct Pushing<'a> {
    d: &'a Desired,
    settings: &'a AgentSettings,
    epoch: u64,
    gate: &'a watch::Sender<Gate>,
    agents: &'a watch::Sender<AgentMap>,
}

/// Why a wait between push rounds ended.
enum Woken {
    /// Time for the next round.
    Push,
    /// The sets changed (the kernel let go of a draining destination, or holds one):
    /// push them now, as a new generation.
    SetsChanged,
    /// A new config: start over with it.
    Config,
    /// Shutdown.
    Stop,
}

impl Pushing<'_> {
    /// Pushes until the config changes (`false`) or shutdown (`true`).
    async fn run(
        &self,
        carried: &mut Carried,
        desired: &mut watch::Receiver<Arc<Desired>>,
        table: &mut watch::Receiver<ReconcileState>,
        cancel: &CancellationToken,
    ) -> bool {
        let mut sets = vip_sets(self.d, &table.borrow_and_update(), &carried.former);
        carried.memory.retain(|a, _| sets.contains_key(a));
        // `require` takes effect now, not after the first round of pushes.
        let require = self.settings.require;
        self.gate.send_if_modified(|g| {
            let changed = g.require != require;
            g.require = require;
            changed
        });
        let push_interval = self.settings.push_interval;
        let mut backoff = Duration::from_secs(1);
        // A client that cannot be built (a TLS file gone or broken since the config
        // was accepted) is tried again with backoff; each failure is published, so
        // confirmations run out after confirm_grace as for any failed push (the gate
        // froze with its old confirmations when the pusher stopped here).
        let client = loop {
            match client(self.settings) {
                Ok(c) => break c,
                Err(e) => {
                    warn!(error = %e, "cannot push to agents; trying again");
                    let failed = Outcome::Failed(e);
                    let results = sets.iter().map(|(a, v)| (*a, v.clone(), failed.clone()));
                    self.publish(results.collect(), &mut carried.memory);
                    let wait = backoff;
                    backoff = (backoff * 2).min(push_interval);
                    match self
                        .wait(wait, desired, table, &mut sets, &carried.former, cancel)
                        .await
                    {
                        Woken::Push => continue,
                        Woken::SetsChanged => {
                            carried.generation += 1;
                            continue;
                        }
                        Woken::Config => return false,
                        Woken::Stop => return true,
                    }
                }
            }
        };
        backoff = Duration::from_secs(1);
        loop {
            let rounds = sets.iter().map(|(addr, vips)| {
                let client = &client;
                let push = PushVips {
                    generation: carried.generation,
                    epoch: Some(self.epoch),
                    vips: vips.clone(),
                };
                async move {
                    let outcome = push_one(client, *addr, self.settings.port, &push).await;
                    (*addr, vips.clone(), outcome)
                }
            });
            let results = futures_util::future::join_all(rounds).await;
            // A former agent told its empty set is done with (whatever it answered:
            // its own set_expiry is the fallback).
            let told_empty: Vec<IpAddr> = results
                .iter()
                .filter(|(a, vips, _)| vips.is_empty() && carried.former.contains(a))
                .map(|(a, _, _)| *a)
                .collect();
            let all_confirmed = self.publish(results, &mut carried.memory);
            if !told_empty.is_empty() {
                info!(agents = ?told_empty, "former agents told their empty sets; forgotten");
                carried.former.forget(&told_empty);
                carried.memory.retain(|a, _| !told_empty.contains(a));
                sets = vip_sets(self.d, &table.borrow(), &carried.former);
            }
            let wait = if all_confirmed {
                backoff = Duration::from_secs(1);
                push_interval
            } else {
                let w = backoff;
                backoff = (backoff * 2).min(push_interval);
                w
            };
            match self
                .wait(wait, desired, table, &mut sets, &carried.former, cancel)
                .await
            {
                Woken::Push => {}
                // Pushed with the generation of the set before, the agent refused it
                // (409: applied with another set) and the server lost its confirmation.
                Woken::SetsChanged => carried.generation += 1,
                Woken::Config => return false,
                Woken::Stop => return true,
            }
        }
    }

    /// Waits `wait`, or less: a new config, shutdown, or a change of the kernel's
    /// table that changes the sets (then `sets` is the new one, pushed at once).
    async fn wait(
        &self,
        wait: Duration,
        desired: &mut watch::Receiver<Arc<Desired>>,
        table: &mut watch::Receiver<ReconcileState>,
        sets: &mut BTreeMap<IpAddr, Vec<IpAddr>>,
        former: &Former,
        cancel: &CancellationToken,
    ) -> Woken {
        let until = tokio::time::Instant::now() + wait;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return Woken::Stop,
                r = desired.changed() => return if r.is_err() { Woken::Stop } else { Woken::Config },
                _ = tokio::time::sleep_until(until) => return Woken::Push,
                r = table.changed() => {
                    if r.is_err() {
                        return Woken::Stop;
                    }
                    let now = vip_sets(self.d, &table.borrow_and_update(), former);
                    if now != *sets {
                        info!("the kernel let go of a draining destination, or holds one: pushing the new VIP sets");
                        *sets = now;
                        return Woken::SetsChanged;
                    }
                }
            }
        }
    }

    /// Publishes the agents' state and the gate; whether every agent confirmed all.
    fn publish(
        &self,
        results: Vec<(IpAddr, Vec<IpAddr>, Outcome)>,
        memory: &mut HashMap<IpAddr, LastGood>,
    ) -> bool {
        let before = self.agents.borrow().clone();
        let mut map = AgentMap::new();
        let mut confirmed = HashSet::new();
        let mut heard = HashSet::new();
        let mut all = true;
        let now_i = Instant::now();
        for (addr, vips, outcome) in results {
            let was = before.get(&addr);
            let last = memory.get(&addr).cloned().unwrap_or_default();
            let (ok, next) =
                confirmed_after(&outcome, &vips, &last, now_i, self.settings.confirm_grace);
            if next.heard(now_i, self.settings.confirm_grace) {
                heard.insert(addr);
            }
            memory.insert(addr, next);
            let every = vips.iter().all(|v| ok.contains(v));
            let answered = matches!(outcome, Outcome::Answered { refusal: None, .. });
            all &= every && answered;
            confirmed.extend(ok.iter().map(|v| (addr, *v)));
            let mut confirmed_vips: Vec<IpAddr> = ok.into_iter().collect();
            confirmed_vips.sort();
            let st = match outcome {
                Outcome::Answered { status, refusal } => {
                    if every && was.is_none_or(|w| !w.confirmed) {
                        info!(agent = %addr, ?vips, "agent confirmed its VIPs");
                    }
                    if let Some(r) = &refusal {
                        if was.is_none_or(|w| w.last_error.as_deref() != Some(r.as_str())) {
                            warn!(agent = %addr, error = %r, "agent refused VIPs");
                        }
                    }
                    let refused = status.refused().map(|(v, w)| (v, w.to_string())).collect();
                    let last_error = refusal.or_else(|| {
                        (!every).then(|| {
                            status
                                .last_error
                                .clone()
                                .unwrap_or_else(|| "not all VIPs in place".into())
                        })
                    });
                    AgentState {
                        address: addr,
                        vips,
                        reachable: true,
                        confirmed: every,
                        confirmed_vips,
                        refused,
                        generation: Some(status.generation),
                        last_push: Some(now()),
                        last_error,
                    }
                }
                Outcome::Failed(e) => {
                    if was.is_none_or(|w| w.last_error.as_deref() != Some(e.as_str())) {
                        warn!(agent = %addr, error = %e, "push failed");
                    }
                    AgentState {
                        address: addr,
                        vips,
                        reachable: false,
                        confirmed: every,
                        confirmed_vips,
                        refused: was.map(|w| w.refused.clone()).unwrap_or_default(),
                        generation: was.and_then(|w| w.generation),
                        last_push: Some(now()),
                        last_error: Some(e),
                    }
                }
            };
            map.insert(addr, st);
        }
        self.agents.send_replace(map);
        let g = Gate {
            require: self.settings.require,
            confirmed,
            heard,
        };
        self.gate.send_if_modified(|old| {
            let changed = *old != g;
            *old = g;
            changed
        });
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lvsdr::agent_api::VipStatus;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn answered(ok: &[&str], refused: &[&str]) -> Outcome {
        let mut vips: Vec<VipStatus> = ok
            .iter()
            .map(|v| VipStatus {
                vip: ip(v),
                on_device: true,
                arp_suppressed: true,
                refused: None,
            })
            .collect();
        vips.extend(refused.iter().map(|v| VipStatus {
            vip: ip(v),
            on_device: false,
            arp_suppressed: false,
            refused: Some("is on eth0".into()),
        }));
        Outcome::Answered {
            status: AgentStatus {
                generation: 1,
                epoch: Some(1),
                director: None,
                arp_mode: "nft".into(),
                real_ip: None,
                vip_device: "lo".into(),
                vips,
                in_place: refused.is_empty(),
                last_error: None,
                held: vec![],
            },
            refusal: (!refused.is_empty()).then(|| "422".to_string()),
        }
    }

    #[test]
    fn a_confirmed_agent_stays_confirmed_through_failures_for_the_grace_period_only() {
        let wanted = [ip("192.0.2.1"), ip("192.0.2.2")];
        let grace = Duration::from_secs(30);
        let t0 = Instant::now();
        let (ok, mem) = confirmed_after(
            &answered(&["192.0.2.1", "192.0.2.2"], &[]),
            &wanted,
            &LastGood::default(),
            t0,
            grace,
        );
        assert_eq!(ok.len(), 2);
        let failed = Outcome::Failed("connection refused".into());
        // The next periodic push, a push_interval (30 s, the default) later, fails.
        let first = t0 + Duration::from_secs(31);
        let (ok, mem) = confirmed_after(&failed, &wanted, &mem, first, grace);
        assert_eq!(ok.len(), 2, "one failed push closed the gate");
        let (ok, mem) = confirmed_after(
            &failed,
            &wanted,
            &mem,
            first + grace - Duration::from_secs(1),
            grace,
        );
        assert_eq!(
            ok.len(),
            2,
            "failing for less than the grace closed the gate"
        );
        let (ok, _) = confirmed_after(&failed, &wanted, &mem, first + grace, grace);
        assert!(ok.is_empty(), "the grace period did not end");
        // Never confirmed: a failure confirms nothing.
        let (ok, _) = confirmed_after(&failed, &wanted, &LastGood::default(), t0, grace);
        assert!(ok.is_empty());
    }

    /// A restarted director's agent stays pending (the kernel keeps its weight)
    /// through failed pushes for the grace, counted from the first failure; an answer
    /// makes it heard at once.
    #[test]
    fn a_pending_agent_is_heard_after_failing_for_the_grace_from_its_first_failure() {
        let wanted = [ip("192.0.2.1")];
        let grace = Duration::from_secs(30);
        let t0 = Instant::now();
        let failed = Outcome::Failed("tls handshake eof".into());
        let (_, mem) = confirmed_after(&failed, &wanted, &LastGood::default(), t0, grace);
        assert!(!mem.heard(t0, grace), "one failure closed the gate");
        let later = t0 + Duration::from_secs(29);
        let (_, mem) = confirmed_after(&failed, &wanted, &mem, later, grace);
        assert!(
            !mem.heard(later, grace),
            "the grace restarted or ended early"
        );
        assert!(mem.heard(t0 + grace, grace), "failing for the grace: heard");
        let (_, mem) = confirmed_after(&answered(&["192.0.2.1"], &[]), &wanted, &mem, later, grace);
        assert!(mem.heard(later, grace));
        // Failing again after an answer: still heard (the confirmations' own grace
        // decides the gate), and a new failure run starts its clock anew.
        let (_, mem) = confirmed_after(&failed, &wanted, &mem, later + grace * 2, grace);
        assert!(mem.heard(later + grace * 2, grace));
        assert_eq!(mem.failing_since, Some(later + grace * 2));
    }

    #[test]
    fn a_refused_vip_is_unconfirmed_at_once_and_the_rest_stays() {
        let wanted = [ip("192.0.2.1"), ip("192.0.2.2")];
        let grace = Duration::from_secs(30);
        let t0 = Instant::now();
        let (_, mem) = confirmed_after(
            &answered(&["192.0.2.1", "192.0.2.2"], &[]),
            &wanted,
            &LastGood::default(),
            t0,
            grace,
        );
        let (ok, _) = confirmed_after(
            &answered(&["192.0.2.1"], &["192.0.2.2"]),
            &wanted,
            &mem,
            t0 + Duration::from_secs(1),
            grace,
        );
        assert_eq!(ok, HashSet::from([ip("192.0.2.1")]));
    }

    /// An agent (or anything at its address) that answers without end is cut at the
    /// bound; the director's memory is not the answer's to fill.
    #[tokio::test]
    async fn an_answer_past_the_bound_is_cut() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf).await;
                    let endless = buf.starts_with(b"GET /endless");
                    let head = if endless {
                        "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"
                    } else {
                        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                    };
                    let _ = s.write_all(head.as_bytes()).await;
                    let chunk = vec![b'x'; 64 * 1024];
                    while endless && s.write_all(&chunk).await.is_ok() {}
                });
            }
        });
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::new();
        let get = |path: &str| client.get(format!("http://{addr}{path}")).send();
        let small = read_bounded(get("/small").await.expect("get"), ANSWER_LIMIT).await;
        assert_eq!(small.as_deref(), Ok(&b"ok"[..]));
        let endless = read_bounded(get("/endless").await.expect("get"), ANSWER_LIMIT).await;
        assert!(endless.is_err_and(|e| e.contains("longer than")));
    }

    #[test]
    fn epochs_differ_between_runs() {
        assert_ne!(random_epoch(), random_epoch());
    }
}
