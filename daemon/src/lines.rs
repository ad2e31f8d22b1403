//! A control socket's protocol: one JSON object per line each way, a request then its
//! answer; a connection may carry several. Scripts may speak it directly (`socat -
//! UNIX-CONNECT:…`). The director's `ctl` socket and the agent's `drain | ready |
//! status` socket both speak it; each defines its own requests and answers.
//!
//! Who may ask is decided by the caller from the peer's credentials (SO_PEERCRED); a
//! refused peer gets its reason as the answer to its first request, then the connection
//! closes.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::codec::{FramedRead, LinesCodec};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Binds the socket at `path` with this file mode (who may connect is checked on each
/// connection, not by the mode). A socket file left by a process that is gone is
/// replaced; one another process still answers on is left alone (`None`, with a
/// warning: the daemon then runs without a control socket).
pub fn bind(path: &Path, mode: Option<u32>) -> Option<UnixListener> {
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        warn!(socket = %path.display(), "another process answers on the control socket; running without one");
        return None;
    }
    let _ = std::fs::remove_file(path);
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match UnixListener::bind(path) {
        Ok(l) => {
            if let Some(mode) = mode {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
            }
            info!(socket = %path.display(), "control socket listening");
            Some(l)
        }
        Err(e) => {
            warn!(socket = %path.display(), error = %e, "cannot bind the control socket; running without one");
            None
        }
    }
}

/// Serves one connection: `peer` is the peer's uid, or why it is refused; each request
/// line is answered with `answer(request, uid)` (`None`: the daemon is stopping, the
/// connection closes), a line that is not a request with `refuse(why)`. Lines longer
/// than `max_line` end the connection with an answer that says so.
pub async fn serve<Q, A, F, Fut>(
    stream: UnixStream,
    peer: Result<u32, String>,
    max_line: usize,
    cancel: CancellationToken,
    refuse: fn(String) -> A,
    mut answer: F,
) where
    Q: DeserializeOwned,
    A: Serialize,
    F: FnMut(Q, u32) -> Fut,
    Fut: Future<Output = Option<A>>,
{
    let (r, mut w) = stream.into_split();
    let mut lines = FramedRead::new(r, LinesCodec::new_with_max_length(max_line));
    let uid = match peer {
        Ok(uid) => uid,
        Err(why) => {
            // The answer to its first request (read first, bounded: closing before the
            // client wrote it would meet it with EPIPE instead of the reason).
            let _ = tokio::time::timeout(Duration::from_secs(5), lines.next()).await;
            let _ = write(&mut w, &refuse(why)).await;
            return;
        }
    };
    loop {
        let line = tokio::select! {
            _ = cancel.cancelled() => return,
            l = lines.next() => l,
        };
        let line = match line {
            None => return,
            Some(Ok(line)) => line,
            Some(Err(e)) => {
                let why = format!("unreadable request: {e} (at most {max_line} bytes a line)");
                let _ = write(&mut w, &refuse(why)).await;
                return;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let response = match serde_json::from_str::<Q>(&line) {
            Err(e) => refuse(format!("not a request: {e}")),
            Ok(request) => match answer(request, uid).await {
                Some(a) => a,
                None => return,
            },
        };
        if write(&mut w, &response).await.is_err() {
            return;
        }
    }
}

async fn write(w: &mut OwnedWriteHalf, r: &impl Serialize) -> std::io::Result<()> {
    let mut text = serde_json::to_string(r).unwrap_or_else(|_| "{\"ok\":false}".into());
    text.push('\n');
    w.write_all(text.as_bytes()).await
}

/// What went wrong talking to a control socket.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    /// The socket cannot be reached.
    #[error("connecting to the control socket {socket} (is {who} running?): {source}")]
    Connect {
        socket: PathBuf,
        who: &'static str,
        source: std::io::Error,
    },
    /// The request cannot be encoded.
    #[error("encoding the request: {0}")]
    Encode(serde_json::Error),
    /// No answer could be read.
    #[error("reading the answer: {0}")]
    Read(std::io::Error),
    /// The connection closed without an answer.
    #[error("{who} closed the connection without an answer{}", .sent.as_ref().map_or(String::new(), |e| format!(" (sending the request: {e})")))]
    Closed {
        who: &'static str,
        sent: Option<std::io::Error>,
    },
    /// The answer is not one.
    #[error("not an answer: {line}: {source}")]
    NotAnAnswer {
        line: String,
        source: serde_json::Error,
    },
}

/// A client connection.
pub struct Client {
    lines: tokio::io::Lines<BufReader<OwnedReadHalf>>,
    w: OwnedWriteHalf,
    who: &'static str,
}

impl Client {
    /// Connects to `socket`, served by `who` ("the director", "lvsdr-agent": for
    /// messages).
    pub async fn open(socket: &Path, who: &'static str) -> Result<Client, LineError> {
        let s = UnixStream::connect(socket)
            .await
            .map_err(|source| LineError::Connect {
                socket: socket.to_path_buf(),
                who,
                source,
            })?;
        let (r, w) = s.into_split();
        Ok(Client {
            lines: BufReader::new(r).lines(),
            w,
            who,
        })
    }

    /// Sends `request` and reads its answer.
    pub async fn ask<A: DeserializeOwned>(
        &mut self,
        request: &impl Serialize,
    ) -> Result<A, LineError> {
        let mut line = serde_json::to_string(request).map_err(LineError::Encode)?;
        line.push('\n');
        // A refused peer may find the connection closed as it writes: the answer, the
        // reason, is still there to read.
        let sent = self.w.write_all(line.as_bytes()).await.err();
        let answer = self.lines.next_line().await.map_err(LineError::Read)?;
        let Some(answer) = answer else {
            return Err(LineError::Closed {
                who: self.who,
                sent,
            });
        };
        serde_json::from_str(&answer).map_err(|source| LineError::NotAnAnswer {
            line: answer,
            source,
        })
    }

    /// Sends a raw line (for tests of bad input) and reads the raw answer line.
    pub async fn raw(&mut self, line: &str) -> Result<Option<String>, LineError> {
        let _ = self.w.write_all(format!("{line}\n").as_bytes()).await;
        self.lines.next_line().await.map_err(LineError::Read)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Q {
        n: u32,
    }

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct A {
        n: Option<u32>,
        error: Option<String>,
    }

    fn refusal(why: String) -> A {
        A {
            n: None,
            error: Some(why),
        }
    }

    async fn served(peer: Result<u32, String>) -> (Client, CancellationToken, PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "lvsdr-lines-{}-{}",
            std::process::id(),
            peer.is_ok()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("s.sock");
        let listener = bind(&path, None).expect("bind");
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            serve(stream, peer, 64, c, refusal, |q: Q, uid| async move {
                Some(A {
                    n: Some(q.n + uid),
                    error: None,
                })
            })
            .await;
        });
        let client = Client::open(&path, "the test").await.expect("open");
        (client, cancel, dir)
    }

    #[tokio::test]
    async fn requests_are_answered_in_order_and_bad_lines_say_why() {
        let (mut c, cancel, dir) = served(Ok(5)).await;
        let a: A = c.ask(&Q { n: 1 }).await.expect("ask");
        assert_eq!(a.n, Some(6));
        let a: A = c.ask(&Q { n: 2 }).await.expect("ask");
        assert_eq!(a.n, Some(7));
        let bad = c.raw("{\"m\":1}").await.expect("raw").expect("line");
        assert!(bad.contains("not a request"), "{bad}");
        let long = c.raw(&"x".repeat(100)).await.expect("raw").expect("line");
        assert!(long.contains("at most 64 bytes a line"), "{long}");
        cancel.cancel();
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_refused_peer_reads_why() {
        let (mut c, cancel, dir) = served(Err("uid 65534 may not".into())).await;
        let a: A = c.ask(&Q { n: 1 }).await.expect("the refusal");
        assert_eq!(a.error.as_deref(), Some("uid 65534 may not"));
        let e = c.ask::<A>(&Q { n: 2 }).await.expect_err("closed");
        assert!(e.to_string().contains("closed the connection"), "{e}");
        cancel.cancel();
        let _ = std::fs::remove_dir_all(dir);
    }
}
