//! Wall-clock times as the status documents, the history and the agents' records carry
//! them: seconds since the Unix epoch, as a float.

use std::time::SystemTime;

/// Seconds since the Unix epoch (0 for a clock set before it).
pub fn epoch(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// [`epoch`] of now.
pub fn now() -> f64 {
    epoch(SystemTime::now())
}
