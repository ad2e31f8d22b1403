//! The pass deadline: a pass is abandoned when the kernel has answered nothing for
//! [`STALL`], never merely for being long.
//!
//! A whole-pass timeout cut off a restart that was programming 10,000 services under
//! emulation: the pass was two minutes in and still moving, was abandoned, and each
//! pass after it (a full read, then the rest) was abandoned again, so the director
//! never converged. Every netlink answer already has its own deadline
//! ([`crate::ipvs::handle::REPLY_TIMEOUT`]); what is left to catch is a pass that
//! stopped moving (a lost reply, a socket gone bad), and for that the count of the
//! kernel's answers ([`Progress`]) stands still.

use std::future::Future;
use std::time::Duration;

use crate::ipvs::Progress;

/// How long a pass may go without a single answer from the kernel.
pub const STALL: Duration = Duration::from_secs(120);

/// How often the count is looked at (and movement reported).
const LOOK_EVERY: Duration = Duration::from_secs(5);

/// A pass that stopped moving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the kernel answered nothing for {0:?}")]
pub struct Stalled(pub Duration);

/// Runs `work` to its end unless `progress` stands still for `stall`. `moved` is
/// called (at most every few seconds) while the count moves: the driver publishes it,
/// so that liveness sees a long pass as alive.
pub async fn unless_stalled<F: Future>(
    work: F,
    progress: &Progress,
    stall: Duration,
    mut moved: impl FnMut(),
) -> Result<F::Output, Stalled> {
    tokio::pin!(work);
    let look = LOOK_EVERY.min(stall);
    let mut seen = progress.get();
    let mut still_since = tokio::time::Instant::now();
    loop {
        tokio::select! {
            out = &mut work => return Ok(out),
            _ = tokio::time::sleep(look) => {
                let now = progress.get();
                if now != seen {
                    seen = now;
                    still_since = tokio::time::Instant::now();
                    moved();
                } else if still_since.elapsed() >= stall {
                    return Err(Stalled(stall));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn work_that_keeps_moving_runs_past_the_stall_bound() {
        let p = Progress::default();
        let q = p.clone();
        // Ten stall bounds long, one answer every half bound.
        let work = async move {
            for _ in 0..20 {
                tokio::time::sleep(STALL / 2).await;
                q.tick(1);
            }
            "done"
        };
        let t0 = tokio::time::Instant::now();
        let mut told = 0;
        assert_eq!(
            unless_stalled(work, &p, STALL, || told += 1).await,
            Ok("done")
        );
        assert_eq!(t0.elapsed(), STALL * 10);
        assert_eq!(told, 19, "one report per move seen");
    }

    #[tokio::test(start_paused = true)]
    async fn work_that_stops_moving_is_abandoned_within_two_bounds() {
        let p = Progress::default();
        let q = p.clone();
        let work = async move {
            tokio::time::sleep(STALL / 3).await;
            q.tick(1);
            std::future::pending::<()>().await; // a reply that never comes
        };
        let t0 = tokio::time::Instant::now();
        let out = unless_stalled(work, &p, STALL, || {}).await;
        assert_eq!(out, Err(Stalled(STALL)));
        // The last answer at STALL / 3, seen at the next look; abandoned a bound later.
        let took = t0.elapsed();
        assert!(
            took >= STALL + STALL / 3 && took <= STALL + STALL / 3 + LOOK_EVERY * 2,
            "{took:?}"
        );
    }
}
