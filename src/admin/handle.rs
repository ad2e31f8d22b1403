//! What a control request does to the overrides: a pure function of the request,
//! the overrides, the config and the kernel's table as last read. The control task
//! around it reads the socket, keeps the file and publishes the result.

use super::protocol::{ConnCount, Request, Response};
use super::{Kind, Override, Overrides, Target, WeightSpec};
use crate::model::Desired;
use crate::reconcile::Observed;

/// Who asks, and when.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    /// The peer's uid.
    pub uid: u32,
    /// Now, in seconds since the epoch.
    pub now: u64,
}

/// Carries out `req`. Returns the answer, and whether the overrides changed (to be
/// kept and published before the answer goes out).
pub fn handle(
    req: Request,
    overrides: &mut Overrides,
    config: &Desired,
    observed: &Observed,
    caller: Caller,
) -> (Response, bool) {
    let req = match Change::of(req) {
        Ok(change) => return set(overrides, config, caller, change),
        Err(other) => other,
    };
    match req {
        Request::List => {
            let r = Response {
                ok: true,
                overrides: overrides.overrides.clone(),
                ..Response::default()
            };
            (r, false)
        }
        Request::Conns { servers, service } => {
            let r = match counts(&servers, service.as_deref(), config, observed) {
                Ok(conns) => Response {
                    ok: true,
                    conns,
                    ..Response::default()
                },
                Err(e) => Response::error(e),
            };
            (r, false)
        }
        Request::Enable { servers, service } => enable(overrides, config, &servers, service),
        // Carried out by `set` above.
        Request::Drain { .. } | Request::Disable { .. } | Request::Weight { .. } => {
            (Response::error("internal: a change not carried out"), false)
        }
    }
}

/// A request that sets an override, whichever it is.
struct Change {
    servers: Vec<Target>,
    service: Option<String>,
    state: Kind,
    weight: Option<WeightSpec>,
    reason: String,
}

impl Change {
    /// The change `req` asks for; any other request back.
    fn of(req: Request) -> Result<Change, Request> {
        let (servers, service, state, weight, reason) = match req {
            Request::Drain {
                servers,
                service,
                reason,
            } => (servers, service, Kind::Drain, None, reason),
            Request::Disable {
                servers,
                service,
                reason,
            } => (servers, service, Kind::Disabled, None, reason),
            Request::Weight {
                servers,
                service,
                weight,
                reason,
            } => (servers, service, Kind::Weight, Some(weight), reason),
            other => return Err(other),
        };
        Ok(Change {
            servers,
            service,
            state,
            weight,
            reason,
        })
    }
}

fn set(overrides: &mut Overrides, config: &Desired, caller: Caller, c: Change) -> (Response, bool) {
    let n = match known(&c.servers, c.service.as_deref(), config) {
        Ok(n) => n,
        Err(e) => return (Response::error(e), false),
    };
    let mut scopes = Vec::new();
    for server in c.servers {
        let o = Override {
            server,
            service: c.service.clone(),
            state: c.state,
            weight: c.weight,
            reason: c.reason.clone(),
            by: caller.uid,
            since: caller.now,
        };
        scopes.push(o.scope());
        overrides.set(o);
    }
    let what = match c.weight {
        Some(w) => format!("weight {w}"),
        None => c.state.to_string(),
    };
    let plural = if n == 1 { "" } else { "s" };
    let msg = format!("{}: {what} ({n} real server{plural})", scopes.join(", "));
    (Response::done(msg), true)
}

/// Lifts the overrides within the scope; says what still holds a server.
fn enable(
    overrides: &mut Overrides,
    config: &Desired,
    servers: &[Target],
    service: Option<String>,
) -> (Response, bool) {
    if let Err(e) = known(servers, service.as_deref(), config) {
        return (Response::error(e), false);
    }
    let mut gone = Vec::new();
    for t in servers {
        gone.extend(overrides.clear(t, service.as_deref()));
    }
    let mut msg = if gone.is_empty() {
        "nothing to enable: no override within that scope".to_string()
    } else {
        let names: Vec<String> = gone
            .iter()
            .map(|o| format!("{} ({})", o.scope(), o.state))
            .collect();
        format!("enabled: {}", names.join(", "))
    };
    // A wider override still covers a server (enable --service under a drain of every
    // service): say so, and by whom.
    for t in servers {
        let wider = overrides
            .overrides
            .iter()
            .find(|o| o.server.covers(t) || t.covers(&o.server));
        if let Some(o) = wider {
            msg.push_str(&format!(
                "; still {}: {} (set by uid {})",
                o.state,
                o.scope(),
                o.by
            ));
        }
    }
    (Response::done(msg), !gone.is_empty())
}

/// Checks that `service` exists and each server is in it (or in some service);
/// returns how many real servers the servers name.
fn known(servers: &[Target], service: Option<&str>, config: &Desired) -> Result<usize, String> {
    if servers.is_empty() {
        return Err("no real server named".into());
    }
    if let Some(s) = service {
        if config.services.iter().all(|x| x.name != s) {
            return Err(format!("no service named {s:?} in the config"));
        }
    }
    let mut total = 0;
    for t in servers {
        let n = config
            .services
            .iter()
            .filter(|s| service.is_none_or(|n| n == s.name))
            .flat_map(|s| &s.real_servers)
            .filter(|rs| t.matches(rs.dest.addr, rs.dest.port))
            .count();
        if n == 0 {
            return Err(match service {
                Some(s) => format!("{t} is not a real server of {s:?} in the config"),
                None => format!("{t} is not a real server of any service in the config"),
            });
        }
        total += n;
    }
    Ok(total)
}

/// The kernel's counts for each real server the servers name.
fn counts(
    servers: &[Target],
    service: Option<&str>,
    config: &Desired,
    observed: &Observed,
) -> Result<Vec<ConnCount>, String> {
    known(servers, service, config)?;
    let mut out = Vec::new();
    for svc in config
        .services
        .iter()
        .filter(|s| service.is_none_or(|n| n == s.name))
    {
        let obs = observed.services.get(&svc.service.key);
        for rs in &svc.real_servers {
            if !servers
                .iter()
                .any(|t| t.matches(rs.dest.addr, rs.dest.port))
            {
                continue;
            }
            let e = obs.and_then(|o| o.dests.get(&(rs.dest.addr, rs.dest.port)));
            out.push(ConnCount {
                service: svc.name.clone(),
                server: std::net::SocketAddr::new(rs.dest.addr, rs.dest.port).to_string(),
                weight: e.map(|e| e.dest.settings.weight),
                active: e.map_or(0, |e| e.active_conns),
                inactive: e.map_or(0, |e| e.inactive_conns),
            });
        }
    }
    Ok(out)
}
