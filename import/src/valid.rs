//! The import's promise: what it writes is a config `check-config` accepts. A service
//! (or hook) lvsdr would refuse is left out, with a review line that says why, so the
//! rest can be used at once and the report names all that is missing.

use super::draft::{At, Draft, Level, Service};
use super::emit;

/// Leaves out of `d` every service and hook that keeps its config from validating.
pub fn keep_valid(d: &mut Draft) {
    if refusal(d).is_none() {
        return;
    }
    // Each service alone first: most refusals are a service's own, and this is linear.
    let services = std::mem::take(&mut d.services);
    let hooks = std::mem::take(&mut d.hooks);
    for s in services {
        let alone = Draft {
            services: vec![s],
            ..Draft::default()
        };
        match refusal(&alone) {
            Some(why) => alone.services.iter().for_each(|s| leave_out(d, s, &why)),
            None => d.services.extend(alone.services),
        }
    }
    // Then together (a refusal between services, e.g. one VIP two ways): in order,
    // each one joins only if the whole still validates.
    if refusal(d).is_some() {
        together(d);
    }
    for h in hooks {
        d.hooks.push(h);
        if let Some(why) = refusal(d) {
            d.hooks.pop();
            let at = d.services.first().map(|s| s.at.clone()).unwrap_or(At {
                file: String::new(),
                line: 0,
            });
            d.note(
                &at,
                Level::Review,
                format!("a [[notify]] hook is left out: lvsdr refuses it: {why}"),
            );
        }
    }
}

/// Services join one at a time, each only if the whole still validates.
fn together(d: &mut Draft) {
    let alone = std::mem::take(&mut d.services);
    let mut kept: Vec<Service> = Vec::new();
    for s in alone {
        let mut trial = Draft {
            services: kept.clone(),
            ..Draft::default()
        };
        trial.services.push(s);
        match refusal(&trial) {
            Some(why) => {
                if let Some(s) = trial.services.pop() {
                    leave_out(d, &s, &why);
                }
            }
            None => kept = trial.services,
        }
    }
    d.services = kept;
}

/// Why lvsdr refuses `d`'s config, in one line, or `None` when it accepts it.
fn refusal(d: &Draft) -> Option<String> {
    let text = emit::toml(d);
    let errors = lvsdr::config::parse(&text, "<imported>").err()?;
    let first = errors.0.first()?;
    Some(if first.context.is_empty() {
        first.message.clone()
    } else {
        format!("{}: {}", first.context, first.message)
    })
}

fn leave_out(d: &mut Draft, s: &Service, why: &str) {
    d.note(
        &s.at,
        Level::Review,
        format!("service {} is left out: lvsdr refuses it: {why}", s.name),
    );
}
