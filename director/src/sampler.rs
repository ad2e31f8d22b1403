//! Feeds the status page's history: every `SAMPLE_EVERY`, a status snapshot is taken
//! and recorded (both off the runtime thread: at 10,000 services they take a while).

use std::sync::Arc;

use lvsdr::history::{History, SAMPLE_EVERY};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::http::Sources;

/// Runs until cancelled.
pub async fn run(
    sources: Sources,
    history: Arc<watch::Sender<History>>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        let (s, h) = (sources.clone(), history.clone());
        tokio::task::spawn_blocking(move || {
            let status = s.status();
            let at = lvsdr::status::epoch(std::time::SystemTime::now());
            h.send_modify(|h| h.record(&status, at));
        })
        .await?;
    }
}
