//! What wakes the applier between timer ticks: rtnetlink address and link events, and
//! (in the nft and arptables modes) `nft monitor ruleset`, so that an `ip addr del`
//! of a VIP or an `nft flush ruleset` is repaired within a second, not at the next
//! `resync_interval`. Each is best effort: if one cannot start, the timer still runs.

use std::process::Stdio;

use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::config::ArpMode;
use crate::vip;

/// One `()` per change seen.
pub fn watch(mode: ArpMode, cancel: CancellationToken) -> mpsc::UnboundedReceiver<()> {
    let (tx, rx) = mpsc::unbounded_channel();
    match vip::events() {
        Ok(mut events) => {
            let tx = tx.clone();
            tokio::spawn(async move {
                while events.recv().await.is_some() {
                    if tx.send(()).is_err() {
                        return;
                    }
                }
            });
        }
        Err(e) => {
            warn!(error = %format!("{e:#}"), "no address events; drift is repaired on the timer")
        }
    }
    if mode != ArpMode::Sysctl {
        tokio::spawn(nft_monitors(tx, cancel));
    }
    rx
}

/// `nft monitor`, started again whenever it ends (it was left dead, so that ruleset
/// drift waited for the timer), with a pass after each restart for what it missed.
async fn nft_monitors(tx: mpsc::UnboundedSender<()>, cancel: CancellationToken) {
    let mut backoff = std::time::Duration::from_secs(1);
    loop {
        let ran_for = std::time::Instant::now();
        if nft_monitor(&tx, &cancel).await.is_break() {
            return;
        }
        if ran_for.elapsed() > std::time::Duration::from_secs(60) {
            backoff = std::time::Duration::from_secs(1);
        }
        warn!(?backoff, "nft monitor ended; starting it again");
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(std::time::Duration::from_secs(30));
        if tx.send(()).is_err() {
            return;
        }
    }
}

/// One run of `nft monitor ruleset`: `Break` when the agent stops (cancelled, or the
/// applier is gone), `Continue` when the monitor ended or could not start.
async fn nft_monitor(
    tx: &mpsc::UnboundedSender<()>,
    cancel: &CancellationToken,
) -> std::ops::ControlFlow<()> {
    use std::ops::ControlFlow::{Break, Continue};
    let child = tokio::process::Command::new("nft")
        .args(["monitor", "ruleset"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "cannot run nft monitor; ruleset drift is repaired on the timer meanwhile");
            return Continue(());
        }
    };
    let Some(out) = child.stdout.take() else {
        return Continue(());
    };
    let mut lines = tokio::io::BufReader::new(out).lines();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Break(()),
            l = lines.next_line() => match l {
                Ok(Some(_)) => if tx.send(()).is_err() { return Break(()) },
                _ => return Continue(()),
            }
        }
    }
}
