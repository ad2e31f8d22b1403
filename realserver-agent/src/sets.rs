//! Which push a director's set accepts, and the key it is kept under: pure rules,
//! no I/O.
//!
//! Each director's pushes are ordered on their own. Within one epoch (one run of the
//! director process) a lower generation is stale; a new epoch is a restarted director
//! and always newer. No clock is involved, so a clock stepped back or a second
//! director can never make every later push a 409.

use std::net::IpAddr;

use lvsdr_agent_api::PushVips;

use crate::state::DirectorSet;

/// The key a director's VIP set is kept under: its certificate's name and the address
/// it connects from. Two directors given one certificate (the same files copied to
/// both, or a unit that loads one fixed file on every host) are two sets: keyed by
/// the name alone, each push replaced the other's set and took its VIPs off.
pub fn director_key(name: &str, from: IpAddr) -> String {
    format!("{name} at {}", from.to_canonical())
}

/// The certificate name part of a [`director_key`] (a key of an earlier state file
/// is the name alone).
pub fn name_of(key: &str) -> &str {
    key.rsplit_once(" at ").map_or(key, |(name, _)| name)
}

/// Whether `push` may replace `current` (the same director's set); the 409 text if not.
pub fn admit(current: Option<&DirectorSet>, push: &PushVips) -> Result<(), String> {
    let Some(cur) = current.filter(|c| !c.provisional) else {
        return Ok(());
    };
    let epoch = push.epoch.unwrap_or(0);
    if epoch != cur.epoch {
        return Ok(());
    }
    if push.generation < cur.generation {
        return Err(format!(
            "generation {} is older than the applied generation {} of this director",
            push.generation, cur.generation
        ));
    }
    if push.generation == cur.generation && sorted(&push.vips) != sorted(&cur.vips) {
        return Err(format!(
            "generation {} was already applied with another VIP set",
            push.generation
        ));
    }
    Ok(())
}

/// The set `push` becomes.
pub fn set_of(push: &PushVips) -> DirectorSet {
    DirectorSet {
        epoch: push.epoch.unwrap_or(0),
        generation: push.generation,
        vips: sorted(&push.vips),
        provisional: false,
    }
}

fn sorted(v: &[IpAddr]) -> Vec<IpAddr> {
    let mut v = v.to_vec();
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(epoch: Option<u64>, generation: u64, vips: &[&str]) -> PushVips {
        PushVips {
            generation,
            epoch,
            vips: vips.iter().map(|v| v.parse().expect("ip")).collect(),
        }
    }

    #[test]
    fn within_an_epoch_older_is_stale_and_a_new_epoch_always_wins() {
        let cur = set_of(&push(Some(9), 5, &["192.0.2.1"]));
        assert!(admit(Some(&cur), &push(Some(9), 4, &[])).is_err());
        assert!(admit(Some(&cur), &push(Some(9), 5, &["192.0.2.2"])).is_err());
        assert!(admit(Some(&cur), &push(Some(9), 5, &["192.0.2.1"])).is_ok());
        assert!(admit(Some(&cur), &push(Some(9), 6, &[])).is_ok());
        // A restarted director (or one whose clock went back) starts a new epoch.
        assert!(admit(Some(&cur), &push(Some(1), 1, &[])).is_ok());
        // u64::MAX in one epoch does not lock the director out of the next.
        let max = set_of(&push(Some(9), u64::MAX, &[]));
        assert!(admit(Some(&max), &push(Some(10), 1, &[])).is_ok());
    }

    #[test]
    fn the_form_without_an_epoch_orders_by_generation_and_a_provisional_set_yields() {
        let cur = set_of(&push(None, 5, &[]));
        assert!(admit(Some(&cur), &push(None, 4, &[])).is_err());
        assert!(admit(Some(&cur), &push(None, 6, &[])).is_ok());
        let provisional = DirectorSet {
            provisional: true,
            ..set_of(&push(None, 100, &[]))
        };
        assert!(admit(Some(&provisional), &push(None, 1, &[])).is_ok());
        assert!(admit(None, &push(None, 0, &[])).is_ok());
    }

    #[test]
    fn a_director_is_its_certificate_name_and_its_address() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let a = director_key("lvsdr-director", ip("10.0.0.1"));
        let b = director_key("lvsdr-director", ip("10.0.0.2"));
        assert_ne!(a, b, "one certificate on two directors is two sets");
        // Reached through an agent listening on [::]: the mapped form is the same one.
        assert_eq!(a, director_key("lvsdr-director", ip("::ffff:10.0.0.1")));
        assert_eq!(name_of(&a), "lvsdr-director");
        assert_eq!(name_of("lvsdr-director d2"), "lvsdr-director d2");
    }
}
