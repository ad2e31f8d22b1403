//! Feeds the status page's history: every `SAMPLE_EVERY`, each service's conn/s and
//! servers up are taken from the config, the table and the checks and recorded (off
//! the runtime thread: at 10,000 services it takes a while).

use std::sync::Arc;

use crate::status::history::{History, SAMPLE_EVERY};
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
            let desired = s.desired.borrow().clone();
            let observed = s.counters.borrow().overlay(&s.state.borrow().observed);
            let health = s.health.borrow().clone();
            let points = crate::status::history::points(&desired, &observed, &health);
            let at = lvsdr::clock::now();
            h.send_modify(|h| h.record_points(points, at));
        })
        .await?;
    }
}
