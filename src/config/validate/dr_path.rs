//! What is checked across services once each is valid: the marks and fwmark services
//! of checks through the DR path, and VIPs that are also real servers' addresses.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::ops::Range;
use std::sync::Arc;

use super::values::V;
use crate::config::schema::File;
use crate::health::Via;
use crate::ipvs::{Dest, DestSettings, Family, Scheduler, Service, ServiceKey, ServiceSettings};
use crate::model::{DesiredService, OnFailure, RealServer, CHECK_MARK_BASE};

/// Checks through the DR path (`via = "vip"`): each real server address that has one
/// gets a firewall mark, from [`CHECK_MARK_BASE`] up in address order, and a fwmark
/// service of its own that holds only that real server (weight 1, no check: the
/// checks must reach it whatever its health). The config's own fwmark services must
/// stay out of that range.
pub(super) fn dr_path_checks(v: &mut V<'_>, raw: &File, services: &mut Vec<Arc<DesiredService>>) {
    let marks = check_marks(services);
    for s in &raw.services {
        if let Some(m) = &s.get_ref().fwmark {
            if marks.contains(m.get_ref()) {
                v.err(
                    m.span(),
                    &format!("service {:?}", s.get_ref().name.get_ref()),
                    format!(
                        "fwmark {:#x} is one lvsdr gives to checks through the DR path ({:#x}-{:#x})",
                        m.get_ref(),
                        marks.start,
                        marks.end - 1
                    ),
                );
            }
        }
    }
    add_check_services(services);
}

/// Whether a service's fwmark is one [`add_check_services`] would give (what
/// [`dr_path_checks`] reports, without the place).
pub(super) fn dr_path_clash(services: &[Arc<DesiredService>]) -> bool {
    let marks = check_marks(services);
    services.iter().any(|s| match s.service.key {
        ServiceKey::Fwmark { mark, .. } => marks.contains(&i64::from(mark)),
        ServiceKey::Addr { .. } => false,
    })
}

/// Whether a real server is checked through the DR path.
pub(super) fn via(rs: &RealServer) -> bool {
    rs.check.as_ref().is_some_and(|c| c.via.is_some())
}

/// The real server addresses checked through the DR path, in address order.
fn via_addrs(services: &[Arc<DesiredService>]) -> BTreeSet<IpAddr> {
    services
        .iter()
        .flat_map(|s| &s.real_servers)
        .filter(|rs| via(rs))
        .map(|rs| rs.dest.addr)
        .collect()
}

/// The marks those checks take.
fn check_marks(services: &[Arc<DesiredService>]) -> Range<i64> {
    let n = via_addrs(services).len() as i64;
    i64::from(CHECK_MARK_BASE)..i64::from(CHECK_MARK_BASE) + n
}

/// Gives each real server address checked through the DR path its mark, and a fwmark
/// service that holds only it.
pub(super) fn add_check_services(services: &mut Vec<Arc<DesiredService>>) {
    let addrs = via_addrs(services);
    if addrs.is_empty() {
        return;
    }
    let marks: HashMap<IpAddr, u32> = addrs
        .iter()
        .zip(CHECK_MARK_BASE..)
        .map(|(a, m)| (*a, m))
        .collect();
    let with_via = services
        .iter_mut()
        .filter(|s| s.real_servers.iter().any(via));
    for rs in with_via.flat_map(|s| Arc::make_mut(s).real_servers.iter_mut()) {
        if let Some(c) = &rs.check {
            if let Some(via) = c.via {
                let mut spec = (**c).clone();
                spec.via = Some(Via {
                    mark: marks[&rs.dest.addr],
                    ..via
                });
                rs.check = Some(Arc::new(spec));
            }
        }
    }
    for (addr, mark) in addrs.iter().map(|a| (*a, marks[a])) {
        let family = Family::of(&addr);
        services.push(Arc::new(DesiredService {
            name: format!("check-via-vip-{addr}"),
            service: Service {
                key: ServiceKey::Fwmark { mark, family },
                settings: ServiceSettings::new(Scheduler::Rr, family),
            },
            on_failure: OnFailure::Weight0,
            sorry_server: None,
            real_servers: vec![RealServer {
                dest: Dest {
                    addr,
                    port: 0,
                    settings: DestSettings::route(1),
                },
                check: None,
                agent: None,
                admin: None,
                slow_start: None,
            }],
            vips: Vec::new(),
        }));
    }
}

/// A VIP that is also a real server's (or an agent's) address would have the agent
/// refuse it and the server never get traffic; a fwmark service whose real servers
/// have agents must say which VIPs they hold, or nothing would be pushed for it.
pub(super) fn vips_against_real_servers(
    v: &mut V<'_>,
    raw: &File,
    services: &[Arc<DesiredService>],
) {
    let vips: HashMap<IpAddr, &str> = services
        .iter()
        .flat_map(|s| s.vips.iter().map(move |a| (*a, s.name.as_str())))
        .collect();
    // By name: a search per service would be quadratic (10,000 services: 50 million
    // name comparisons, most of the config load's time).
    let by_name: HashMap<&str, &DesiredService> =
        services.iter().map(|d| (d.name.as_str(), &**d)).collect();
    for s in &raw.services {
        let r = s.get_ref();
        let ctx = format!("service {:?}", r.name.get_ref());
        for rs in &r.real_server {
            let addr = rs.get_ref().address.get_ref().parse::<IpAddr>().ok();
            if let Some(name) = addr.and_then(|a| vips.get(&a)) {
                let msg = format!(
                    "real server {} is the VIP of service {name:?}: a real server cannot hold its own address as a VIP",
                    rs.get_ref().address.get_ref()
                );
                v.err(rs.get_ref().address.span(), &ctx, msg);
            }
        }
        let Some(svc) = by_name.get(r.name.get_ref().as_str()) else {
            continue;
        };
        let agented = svc.real_servers.iter().any(|rs| rs.agent.is_some());
        if matches!(svc.service.key, ServiceKey::Fwmark { .. }) && svc.vips.is_empty() && agented {
            v.err(
                s.span(),
                &ctx,
                "its real servers have agents: list the VIPs they must hold in `vips` (or set agent = false on each)",
            );
        }
    }
}

/// Whether a real server's address is some service's VIP, or a fwmark service whose
/// real servers have agents lists no VIPs (what [`vips_against_real_servers`] reports,
/// without the place).
pub(super) fn vips_clash(services: &[Arc<DesiredService>]) -> bool {
    // FNV: an address hashed for each of 100,000 real servers at 10,000 × 10.
    let vips: fnv::FnvHashSet<IpAddr> = services
        .iter()
        .flat_map(|s| s.vips.iter().copied())
        .collect();
    services.iter().any(|s| {
        s.real_servers.iter().any(|rs| vips.contains(&rs.dest.addr))
            || (matches!(s.service.key, ServiceKey::Fwmark { .. })
                && s.vips.is_empty()
                && s.real_servers.iter().any(|rs| rs.agent.is_some()))
    })
}
