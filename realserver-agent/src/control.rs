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
//! → {"op":"ready"}
//! ```
//!
//! Only root may connect (the peer's credentials, SO_PEERCRED): a drain takes the
//! server out of service.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::codec::{FramedRead, LinesCodec};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::applier::Request as ApplierRequest;
use crate::drain::{DrainStatus, DrainView};

/// Where the socket is unless the config says (the unit's `RuntimeDirectory=`).
pub const DEFAULT_SOCKET: &str = "/run/lvsdr-agent/control.sock";
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
}

impl Response {
    fn error(e: impl Into<String>) -> Response {
        Response {
            ok: false,
            message: None,
            error: Some(e.into()),
            status: None,
        }
    }
}

/// Binds the socket at `path` (a file left by an agent that is gone is replaced; one
/// another process answers on is left alone: `None`, with a warning).
pub fn bind(path: &Path) -> Option<UnixListener> {
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        warn!(socket = %path.display(), "another process answers on the control socket; running without one (set [agent] control_socket)");
        return None;
    }
    let _ = std::fs::remove_file(path);
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match UnixListener::bind(path) {
        Ok(l) => {
            info!(socket = %path.display(), "control socket listening");
            Some(l)
        }
        Err(e) => {
            warn!(socket = %path.display(), error = %e, "cannot bind the control socket; running without one");
            None
        }
    }
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
    let (r, mut w) = stream.into_split();
    let mut lines = FramedRead::new(r, LinesCodec::new_with_max_length(MAX_LINE));
    if let Err(why) = peer {
        warn!(target: "lvsdr_agent::audit", %why, "control socket: connection refused");
        let _ = tokio::time::timeout(Duration::from_secs(5), lines.next()).await;
        let _ = write(&mut w, &Response::error(why)).await;
        return;
    }
    loop {
        let line = tokio::select! {
            _ = cancel.cancelled() => return,
            l = lines.next() => l,
        };
        let line = match line {
            None => return,
            Some(Ok(l)) => l,
            Some(Err(e)) => {
                let why = format!("unreadable request: {e} (at most {MAX_LINE} bytes a line)");
                let _ = write(&mut w, &Response::error(why)).await;
                return;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let response = match serde_json::from_str::<Request>(&line) {
            Err(e) => Response::error(format!("not a request: {e}")),
            Ok(req) => answer(req, &applier, &drain).await,
        };
        if write(&mut w, &response).await.is_err() {
            return;
        }
    }
}

async fn answer(
    req: Request,
    applier: &mpsc::Sender<ApplierRequest>,
    drain: &watch::Receiver<DrainView>,
) -> Response {
    let (reply, rx) = oneshot::channel();
    let (asked, message) = match req {
        Request::Status => (None, None),
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
    }
}

async fn write(w: &mut tokio::net::unix::OwnedWriteHalf, r: &Response) -> std::io::Result<()> {
    let mut text = serde_json::to_string(r).unwrap_or_else(|_| "{\"ok\":false}".into());
    text.push('\n');
    w.write_all(text.as_bytes()).await
}

/// A client connection (`lvsdr-agent drain | ready | status`).
pub struct Client {
    lines: tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
    w: tokio::net::unix::OwnedWriteHalf,
}

impl Client {
    /// Connects to `socket`.
    pub async fn open(socket: &Path) -> anyhow::Result<Client> {
        let s = UnixStream::connect(socket).await.with_context(|| {
            format!(
                "connecting to the agent's control socket {} (is lvsdr-agent running?)",
                socket.display()
            )
        })?;
        let (r, w) = s.into_split();
        Ok(Client {
            lines: BufReader::new(r).lines(),
            w,
        })
    }

    /// Sends `req` and reads its answer.
    pub async fn ask(&mut self, req: &Request) -> anyhow::Result<Response> {
        let mut line = serde_json::to_string(req)?;
        line.push('\n');
        let sent = self.w.write_all(line.as_bytes()).await;
        let answer = self
            .lines
            .next_line()
            .await
            .context("reading the answer")?
            .with_context(|| match &sent {
                Err(e) => format!("sending the request: {e}"),
                Ok(()) => "the agent closed the connection without an answer".into(),
            })?;
        serde_json::from_str(&answer).with_context(|| format!("not an answer: {answer}"))
    }
}

/// The lines `status` and `drain --wait` print: one per director.
pub fn describe(s: &DrainStatus) -> Vec<String> {
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
                "  {}: weight {}, {} active connections, {} inactive",
                d.director, d.weight, d.active, d.inactive
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
        let lines = describe(&s);
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
                    .expect("s")
            )[0],
            "drained: deploy"
        );
        let r = c.ask(&Request::Ready).await.expect("ready");
        assert!(r.ok && r.status.is_some_and(|s| s.drain.is_none()));
        let bad = {
            c.w.write_all(b"{\"op\":\"nope\"}\n").await.expect("write");
            c.lines.next_line().await.expect("read").expect("line")
        };
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
