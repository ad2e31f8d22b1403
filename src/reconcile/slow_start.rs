//! The weight curve of a slow start: what a server coming back gets, step by step,
//! until its full weight (the planner's side; [`super::ramp`] tracks who ramps).

use std::net::IpAddr;
use std::time::Duration;

use crate::ipvs::ServiceKey;

/// A real server of a service.
pub type RampId = (ServiceKey, IpAddr, u16);

/// The steps a ramp takes below the full weight.
pub const STEPS: u32 = 5;

/// The weight `full` ramps to `elapsed` into a slow start of `over`: 1/6, 2/6, … 5/6
/// of it, in five equal steps (at least 1), then all of it.
pub fn ramped(full: u32, elapsed: Duration, over: Duration) -> u32 {
    if full == 0 || elapsed >= over {
        return full;
    }
    let step = elapsed.as_nanos() * u128::from(STEPS) / over.as_nanos().max(1) + 1;
    let w = u128::from(full) * step / u128::from(STEPS + 1);
    u32::try_from(w).unwrap_or(full).clamp(1, full)
}

/// When the step after `elapsed` begins, from the ramp's start (`None`: at full weight).
pub fn next_step(elapsed: Duration, over: Duration) -> Option<Duration> {
    if elapsed >= over {
        return None;
    }
    let step = elapsed.as_nanos() * u128::from(STEPS) / over.as_nanos().max(1) + 1;
    let at = over.as_nanos() * step / u128::from(STEPS);
    Some(Duration::from_nanos(u64::try_from(at).unwrap_or(u64::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_steps_then_the_full_weight() {
        let over = Duration::from_secs(30);
        let at = |s: u64| ramped(12, Duration::from_secs(s), over);
        assert_eq!(
            [at(0), at(5), at(6), at(12), at(18), at(24), at(29), at(30)],
            [2, 2, 4, 6, 8, 10, 10, 12]
        );
        assert_eq!(
            ramped(1, Duration::ZERO, over),
            1,
            "never 0 while it serves"
        );
        assert_eq!(ramped(0, Duration::ZERO, over), 0);
        assert_eq!(
            next_step(Duration::from_secs(7), over),
            Some(Duration::from_secs(12))
        );
        assert_eq!(next_step(Duration::from_secs(25), over), Some(over));
        assert_eq!(next_step(over, over), None);
    }
}
