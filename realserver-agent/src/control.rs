//! The agent's control socket (`[agent] control_socket`) and its client,
//! `lvsdr-agent drain | ready | status`: a deploy script on the real server drains it
//! from every director without knowing them.
//!
//! One JSON object per line each way (scripts may speak it directly):
//!
//! ```text
//! → {"op":"drain","reason":"deploy 4711"}
//! ← {"ok":true,"message":"drained: …","status":{"drain":{…},"drained":false,"directors":[…]}}
//! → {"op":"status"}
//! ← {"ok":true,"status":{…},"holds":{"directors":[{"director":…,"vips":[…]}],"vip_repairs":0,…}}
//! → {"op":"ready"}
//! ```
//!
//! Only root may connect (the peer's credentials, SO_PEERCRED): a drain takes the
//! server out of service.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::applier::Request as ApplierRequest;
use crate::drain::{DrainStatus, DrainView};
use crate::overview::Overview;

pub use crate::config::DEFAULT_SOCKET;
/// The longest request line read.
const MAX_LINE: usize = 4096;
/// Connections served at once.
const MAX_CONNECTIONS: usize = 8;

/// A request on the control socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum Request {
    /// Every director gives this server weight 0.
    Drain {
        /// Why (shown on the directors).
        #[serde(default)]
        reason: String,
    },
    /// The drain is lifted.
    Ready,
    /// Where the drain stands, director by director.
    Status,
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Done.
    pub ok: bool,
    /// What was done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The drain, director by director.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<DrainStatus>,
    /// With `status`: what the agent holds, read back from the kernel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holds: Option<Overview>,
}

impl Response {
    fn error(e: impl Into<String>) -> Response {
        Response {
            ok: false,
            message: None,
            error: Some(e.into()),
            status: None,
            holds: None,
        }
    }
}

/// Binds the socket at `path` (see [`lvsdr_daemon::lines::bind`]).
pub fn bind(path: &Path) -> Option<UnixListener> {
    lvsdr_daemon::lines::bind(path, None)
}

/// Serves `listener` until `cancel`.
pub async fn serve(
    listener: UnixListener,
    applier: mpsc::Sender<ApplierRequest>,
    drain: watch::Receiver<DrainView>,
    cancel: CancellationToken,
) {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        let Ok((stream, _)) = accepted else {
            // A full file table: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (applier, drain, cancel) = (applier.clone(), drain.clone(), cancel.clone());
        tokio::spawn(async move {
            connection(stream, applier, drain, cancel).await;
            drop(permit);
        });
    }
}

/// Root only: the peer's uid, or why not.
fn check_peer(stream: &UnixStream) -> Result<u32, String> {
    let cred = stream
        .peer_cred()
        .map_err(|e| format!("cannot read the peer's credentials: {e}"))?;
    match cred.uid() {
        0 => Ok(0),
        uid => Err(format!(
            "uid {uid} may not use the control socket (root only)"
        )),
    }
}

async fn connection(
    stream: UnixStream,
    applier: mpsc::Sender<ApplierRequest>,
    drain: watch::Receiver<DrainView>,
    cancel: CancellationToken,
) {
    let peer = check_peer(&stream);
    if let Err(why) = &peer {
        warn!(target: "lvsdr_agent::audit", %why, "control socket: connection refused");
    }
    let ask = |req: Request, _uid: u32| {
        let (applier, drain) = (applier.clone(), drain.clone());
        async move { Some(answer(req, &applier, &drain).await) }
    };
    let refuse = |why: String| Response::error(why);
    lvsdr_daemon::lines::serve(stream, peer, MAX_LINE, cancel, refuse, ask).await;
}

async fn answer(
    req: Request,
    applier: &mpsc::Sender<ApplierRequest>,
    drain: &watch::Receiver<DrainView>,
) -> Response {
    let (reply, rx) = oneshot::channel();
    let (asked, message) = match req {
        Request::Status => {
            let (reply, rx) = oneshot::channel();
            if applier
                .send(ApplierRequest::Overview { reply })
                .await
                .is_err()
            {
                return Response::error("the agent is shutting down");
            }
            let Ok(holds) = rx.await else {
                return Response::error("the agent is shutting down");
            };
            return Response {
                ok: true,
                message: None,
                error: None,
                status: Some(drain.borrow().status(Instant::now())),
                holds: Some(holds),
            };
        }
        Request::Drain { reason } => (
            Some(ApplierRequest::Drain { reason, reply }),
            Some("drained: every director that pushes to this agent gives it weight 0"),
        ),
        Request::Ready => (
            Some(ApplierRequest::Ready { reply }),
            Some("ready: the drain is lifted"),
        ),
    };
    if let Some(asked) = asked {
        if applier.send(asked).await.is_err() {
            return Response::error("the agent is shutting down");
        }
        match rx.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Response::error(e),
            Err(_) => return Response::error("the agent is shutting down"),
        }
    }
    let status = drain.borrow().status(Instant::now());
    Response {
        ok: true,
        message: message.map(str::to_string),
        error: None,
        status: Some(status),
        holds: None,
    }
}

/// A client connection (`lvsdr-agent drain | ready | status`).
pub struct Client(lvsdr_daemon::lines::Client);

impl Client {
    /// Connects to `socket`.
    pub async fn open(socket: &Path) -> anyhow::Result<Client> {
        Ok(Client(
            lvsdr_daemon::lines::Client::open(socket, "lvsdr-agent").await?,
        ))
    }

    /// Sends `req` and reads its answer.
    pub async fn ask(&mut self, req: &Request) -> anyhow::Result<Response> {
        Ok(self.0.ask(req).await?)
    }
}

/// The lines `status` and `drain --wait` print: one per director (with `polls`, how
/// many drain polls each made: `--wait` prints a line when it changes, so not there).
pub fn describe(s: &DrainStatus, polls: bool) -> Vec<String> {
    let mut out = Vec::new();
    match &s.drain {
        None => out.push("not drained".to_string()),
        Some(d) if d.reason.is_empty() => out.push("drained".to_string()),
        Some(d) => out.push(format!("drained: {}", d.reason)),
    }
    if s.directors.is_empty() {
        out.push("no director pushes to this agent".into());
    }
    for d in &s.directors {
        let line = match d.age_s {
            None => format!("  {}: no report yet", d.director),
            Some(_) if s.drain.is_some() && !d.reported_since_drain => {
                format!("  {}: no report since the drain yet", d.director)
            }
            Some(_) => format!(
                "  {}: weight {}, {} active connections, {} inactive{}",
                d.director,
                d.weight,
                d.active,
                d.inactive,
                if polls {
                    format!(" ({} polls since the agent started)", d.polls)
                } else {
                    String::new()
                }
            ),
        };
        out.push(line);
    }
    out
}

/// `drain --wait`: asks for the status every half second, printing each director's
/// count as it changes, until every director reports 0 (true) or `timeout` (false).
pub async fn wait_drained(client: &mut Client, timeout: Duration) -> anyhow::Result<bool> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last: Vec<String> = Vec::new();
    loop {
        let r = client.ask(&Request::Status).await?;
        if let Some(e) = r.error {
            anyhow::bail!("{e}");
        }
        let Some(s) = r.status else {
            anyhow::bail!("the agent's answer has no status");
        };
        if s.drain.is_none() {
            anyhow::bail!("the drain was lifted (lvsdr-agent ready) while waiting");
        }
        let lines = describe(&s, false);
        for l in lines.iter().skip(1) {
            if !last.contains(l) {
                println!("{l}");
            }
        }
        last = lines;
        if s.drained {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The socket a client uses: `--socket`, else the config's, else the default.
pub fn socket_of(socket: Option<&PathBuf>, config: Option<&PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(s) = socket {
        return Ok(s.clone());
    }
    match config {
        Some(c) => Ok(crate::config::Config::load(c)?.control_socket),
        None => Ok(DEFAULT_SOCKET.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_protocol_is_one_json_object_per_line() {
        let r: Request =
            serde_json::from_str(r#"{"op":"drain","reason":"deploy"}"#).expect("drain");
        assert_eq!(
            r,
            Request::Drain {
                reason: "deploy".into()
            }
        );
        let r: Request = serde_json::from_str(r#"{"op":"ready"}"#).expect("ready");
        assert_eq!(r, Request::Ready);
        assert!(serde_json::from_str::<Request>(r#"{"op":"drain","bogus":1}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"op":"flush"}"#).is_err());
    }

    /// Through a real socket against a fake applier: drain is kept (answered after the
    /// applier said so), status shows it, ready lifts it.
    #[tokio::test]
    async fn drain_status_and_ready_over_the_socket() {
        let dir = std::env::temp_dir().join(format!("lvsdr-agent-ctl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("control.sock");
        let listener = bind(&path).expect("bind");
        let (tx, mut rx) = mpsc::channel(4);
        let (view_tx, view_rx) = watch::channel(DrainView::new(None, Instant::now()));
        let cancel = CancellationToken::new();
        tokio::spawn(serve(listener, tx, view_rx, cancel.clone()));
        // The fake applier: keeps the drain in the view, as the real one does.
        tokio::spawn(async move {
            while let Some(req) = rx.recv().await {
                match req {
                    ApplierRequest::Drain { reason, reply } => {
                        let d = lvsdr_agent_api::AgentDrain { reason, since: 1 };
                        view_tx.send_modify(|v| v.set(Some(d), Instant::now()));
                        let _ = reply.send(Ok(()));
                    }
                    ApplierRequest::Ready { reply } => {
                        view_tx.send_modify(|v| v.set(None, Instant::now()));
                        let _ = reply.send(Ok(()));
                    }
                    ApplierRequest::Overview { reply } => {
                        let _ = reply.send(Overview {
                            arp_mode: "nft".into(),
                            vip_device: "lo".into(),
                            real_ip: None,
                            directors: vec![],
                            vip_repairs: 0,
                            last_error: None,
                        });
                    }
                    _ => {}
                }
            }
        });
        let mut c = Client::open(&path).await.expect("connect");
        let uid = nix_uid();
        let r = c
            .ask(&Request::Drain {
                reason: "deploy".into(),
            })
            .await
            .expect("drain");
        if uid != 0 {
            // Not root here: the socket must refuse, saying why.
            assert!(!r.ok);
            assert!(
                r.error.as_deref().is_some_and(|e| e.contains("root only")),
                "{r:?}"
            );
            cancel.cancel();
            return;
        }
        assert!(r.ok, "{r:?}");
        let s = c.ask(&Request::Status).await.expect("status");
        let status = s.status.expect("status");
        assert_eq!(status.drain.map(|d| d.reason).as_deref(), Some("deploy"));
        assert_eq!(
            describe(
                &c.ask(&Request::Status)
                    .await
                    .expect("st")
                    .status
                    .expect("s"),
                true
            )[0],
            "drained: deploy"
        );
        let r = c.ask(&Request::Ready).await.expect("ready");
        assert!(r.ok && r.status.is_some_and(|s| s.drain.is_none()));
        let bad =
            c.0.raw("{\"op\":\"nope\"}")
                .await
                .expect("read")
                .expect("line");
        assert!(bad.contains("not a request"), "{bad}");
        cancel.cancel();
        let _ = std::fs::remove_dir_all(dir);
    }

    /// This process's uid (from /proc: no unsafe code in this crate).
    fn nix_uid() -> u32 {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Uid:"))
                    .and_then(|l| l.split_whitespace().next().map(str::to_string))
            })
            .and_then(|u| u.parse().ok())
            .unwrap_or(u32::MAX)
    }
}
