//! `[[notify]]`: hooks told of events (a real server up or down, an operator's
//! override, a VIP announced or withdrawn, a config load). One task watches what the
//! director publishes and finds the events ([`events`]); each hook has a queue and a
//! delivery task of its own ([`deliver`]), so no hook delays the reconciler, the checks
//! or another hook. A full queue drops the event, counted in `/status` and
//! `lvsdr_notify_events_total{result="dropped"}`. Hooks are set at start (a reload's
//! change to `[[notify]]` takes effect at the next restart).

mod deliver;
pub mod events;

use std::sync::Arc;

use crate::announce::Verdict;
use crate::status::{HookStatus, ReloadStatus};
use lvsdr::model::Desired;
use lvsdr_checks::HealthMap;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use events::Event;

/// What the notify task watches.
pub struct Watched {
    pub desired: watch::Receiver<Arc<Desired>>,
    pub health: watch::Receiver<HealthMap>,
    pub announce: watch::Receiver<Vec<Verdict>>,
    pub reload: watch::Receiver<ReloadStatus>,
}

/// Starts a delivery task per hook of `desired` and runs the watcher until `cancel`.
/// `tally` gets one entry per hook.
pub async fn run(
    mut w: Watched,
    tally: Arc<watch::Sender<Vec<HookStatus>>>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let hooks = w.desired.borrow().notify.clone();
    tally.send_replace(
        hooks
            .iter()
            .map(|h| HookStatus {
                hook: deliver::name(h),
                ..HookStatus::default()
            })
            .collect(),
    );
    let mut queues = Vec::new();
    for (i, h) in hooks.into_iter().enumerate() {
        let (tx, rx) = mpsc::channel(deliver::QUEUE);
        queues.push((h.events.clone(), tx));
        tokio::spawn(deliver::run(h, rx, tally.clone(), i, cancel.child_token()));
    }
    if queues.is_empty() {
        cancel.cancelled().await;
        return Ok(());
    }
    let mut desired = w.desired.borrow_and_update().clone();
    let mut health = w.health.borrow_and_update().clone();
    let mut announce = w.announce.borrow_and_update().clone();
    let mut reload = w.reload.borrow_and_update().clone();
    loop {
        let found: Vec<Event> = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            r = w.desired.changed() => {
                if r.is_err() { return Ok(()) }
                let now = w.desired.borrow_and_update().clone();
                let e = events::admin(&desired, &now);
                desired = now;
                e
            }
            r = w.health.changed() => {
                if r.is_err() { return Ok(()) }
                let now = w.health.borrow_and_update().clone();
                let e = events::servers(&desired, &health, &now);
                health = now;
                e
            }
            r = w.announce.changed() => {
                if r.is_err() { return Ok(()) }
                let now = w.announce.borrow_and_update().clone();
                let e = events::vips(&announce, &now);
                announce = now;
                e
            }
            r = w.reload.changed() => {
                if r.is_err() { return Ok(()) }
                let now = w.reload.borrow_and_update().clone();
                let e = events::config(&reload, &now);
                reload = now;
                e
            }
        };
        for e in found {
            let text = envelope(&e);
            for (i, (kinds, tx)) in queues.iter().enumerate() {
                if !kinds.iter().any(|k| k == e.kind()) {
                    continue;
                }
                if tx.try_send(text.clone()).is_err() {
                    tally.send_modify(|t| {
                        if let Some(s) = t.get_mut(i) {
                            s.dropped += 1;
                        }
                    });
                }
            }
        }
    }
}

/// The event as one JSON object, with when it was seen.
fn envelope(e: &Event) -> String {
    let mut v = serde_json::to_value(e).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert(
            "at".into(),
            serde_json::json!(crate::status::epoch(std::time::SystemTime::now())),
        );
    }
    v.to_string()
}
