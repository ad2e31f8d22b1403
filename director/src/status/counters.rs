//! Reads the traffic counters of busy services for the status endpoint, apart from
//! the reconciler ([`lvsdr::reconcile::counters`]): on an IPVS socket of its own, every
//! [`EVERY`], never a write.

use lvsdr::reconcile::counters::{Counters, EVERY};
use lvsdr::reconcile::Kernel;
use lvsdr::reconcile::ReconcileState;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Runs until cancelled. A failed read is logged and tried again at the next tick.
pub async fn run(
    state: watch::Receiver<ReconcileState>,
    out: watch::Sender<Counters>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut kernel: Option<Kernel> = None;
    let mut counters = Counters::default();
    let mut failing = false;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        // Nothing to count before the reconciler's first read: no socket yet (its
        // family lookup at start stood beside the first pass, issue 22).
        if state.borrow().observed.services.is_empty() {
            continue;
        }
        let k = match &kernel {
            Some(k) => k,
            None => match Kernel::connect().await {
                Ok(k) => kernel.insert(k),
                Err(e) => {
                    debug!(error = %e, "traffic counters: no IPVS socket yet");
                    continue;
                }
            },
        };
        let observed = state.borrow().observed.clone();
        match counters.read(k, &observed).await {
            Ok(n) => {
                if failing {
                    warn!(services = n, "traffic counters read again");
                    failing = false;
                }
                out.send_replace(counters.clone());
            }
            Err(e) if !failing => {
                warn!(error = %e, "reading the traffic counters failed; /status shows older ones");
                failing = true;
            }
            Err(_) => {}
        }
    }
}
