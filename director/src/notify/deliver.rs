//! Delivering one hook's events, in order, from a bounded queue of its own: a slow or
//! failing hook delays only itself. A program gets the event as JSON on stdin, with
//! no capabilities and a clean environment (as exec checks run); a URL gets it as a
//! JSON POST, tried again with backoff.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use crate::status::HookStatus;
use lvsdr::model::{HookTarget, NotifySettings};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Events a hook may have waiting; more are dropped (and counted).
pub const QUEUE: usize = 256;
/// Tries of a URL before an event counts as failed.
const TRIES: u32 = 3;

/// The hook's name in the status: its program or URL.
pub fn name(h: &NotifySettings) -> String {
    match &h.target {
        HookTarget::Exec(argv) => argv.join(" "),
        HookTarget::Url(u) => u.clone(),
    }
}

/// Delivers what arrives on `rx` until it closes or `cancel`; counts into `tally[i]`.
pub async fn run(
    hook: NotifySettings,
    mut rx: mpsc::Receiver<String>,
    tally: Arc<watch::Sender<Vec<HookStatus>>>,
    i: usize,
    cancel: CancellationToken,
) {
    let client = reqwest::Client::builder()
        .timeout(hook.timeout)
        .build()
        .ok();
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => return,
            e = rx.recv() => match e { Some(e) => e, None => return },
        };
        let result = match &hook.target {
            HookTarget::Exec(argv) => exec(argv, &event, hook.timeout).await,
            HookTarget::Url(url) => post(client.as_ref(), url, &event, &cancel).await,
        };
        if let Err(e) = &result {
            warn!(hook = %name(&hook), error = %e, "a notify hook did not take an event");
        }
        tally.send_modify(|t| {
            if let Some(s) = t.get_mut(i) {
                match result {
                    Ok(()) => s.delivered += 1,
                    Err(_) => s.failed += 1,
                }
            }
        });
    }
}

async fn exec(argv: &[String], event: &str, timeout: Duration) -> Result<(), String> {
    let (program, args) = argv.split_first().ok_or("no program")?;
    let mut cmd = match lvsdr_checks::setpriv() {
        Some(sp) => {
            let mut c = tokio::process::Command::new(sp);
            c.args(["--inh-caps=-all", "--ambient-caps=-all", "--", program]);
            c.args(args);
            c
        }
        None => {
            let mut c = tokio::process::Command::new(program);
            c.args(args);
            c
        }
    };
    cmd.env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let run = async {
        let mut child = cmd.spawn().map_err(|e| format!("{program}: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A hook that does not read its stdin is not an error.
            let _ = stdin.write_all(event.as_bytes()).await;
            let _ = stdin.write_all(b"\n").await;
        }
        let status = child.wait().await.map_err(|e| format!("{program}: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("{program}: {status}"))
        }
    };
    tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| format!("{program}: still running after {timeout:?} (killed)"))?
}

async fn post(
    client: Option<&reqwest::Client>,
    url: &str,
    event: &str,
    cancel: &CancellationToken,
) -> Result<(), String> {
    let client = client.ok_or("no HTTP client")?;
    let mut last = String::new();
    for attempt in 0..TRIES {
        if attempt > 0 {
            let backoff = Duration::from_secs(1 << (attempt - 1));
            tokio::select! {
                _ = cancel.cancelled() => return Err("shutting down".into()),
                _ = tokio::time::sleep(backoff) => {}
            }
        }
        let sent = client
            .post(url)
            .header("content-type", "application/json")
            .body(event.to_string())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => last = format!("{url}: HTTP {}", r.status()),
            Err(e) => last = format!("{url}: {e}"),
        }
    }
    Err(last)
}
