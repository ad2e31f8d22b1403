//! `[announce]`: keeps the VIPs that [`crate::announce::decide`] says are announced on
//! the director's own dummy device (created when missing), and no others; BIRD's
//! `direct` protocol announces what is there. It owns that device only. At start it
//! adopts what the device holds and changes nothing until the reconciler's first pass;
//! on shutdown it withdraws every VIP and waits `withdraw_grace` before returning, so
//! that routers move the traffic before the director goes.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::announce::{decide, Verdict};
use lvsdr::model::Desired;
use lvsdr::reconcile::ReconcileState;
use lvsdr_netdev::{Net, Repair};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Addresses of the device that count: not IPv6 link-local ones (the kernel's own).
fn ours(addrs: Vec<IpAddr>) -> BTreeSet<IpAddr> {
    addrs
        .into_iter()
        .filter(|a| match a {
            IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
            IpAddr::V4(_) => true,
        })
        .collect()
}

/// The VIPs this host holds where ARP can find them (not on `lo`, not on the announce
/// device): with keepalived's VRRP, whether this director is the master.
async fn publish_held(
    net: &Net,
    d: &Desired,
    lo: Option<u32>,
    device: Option<u32>,
    held: &watch::Sender<Vec<IpAddr>>,
) {
    let vips = crate::announce::all_vips(d);
    if let Ok(all) = net.all_addresses().await {
        let mut h: Vec<IpAddr> = all
            .into_iter()
            .filter(|(i, ip, _)| vips.contains(ip) && Some(*i) != lo && Some(*i) != device)
            .map(|(_, ip, _)| ip)
            .collect();
        h.sort();
        h.dedup();
        held.send_if_modified(|x| {
            let changed = *x != h;
            *x = h;
            changed
        });
    }
}

/// The verdicts as the device has them: `announced` says whether the VIP is on the
/// device (what BIRD exports), and `why` says so where that differs from the decision
/// (an add or a removal the kernel refused, or before the first pass).
fn as_on_device(
    verdicts: Vec<Verdict>,
    on: &BTreeSet<IpAddr>,
    device: &str,
    failed: &std::collections::BTreeMap<IpAddr, String>,
) -> Vec<Verdict> {
    verdicts
        .into_iter()
        .map(|mut x| {
            let is_on = on.contains(&x.vip);
            if is_on != x.announced {
                let error = failed
                    .get(&x.vip)
                    .map_or(String::new(), |e| format!(": {e}"));
                x.why = if is_on {
                    format!("still on {device} ({}, not withdrawn{error})", x.why)
                } else {
                    format!("not on {device} ({}, not added{error})", x.why)
                };
                x.announced = is_on;
            }
            x
        })
        .collect()
}

/// Runs until cancelled, then withdraws.
pub async fn run(
    mut desired: watch::Receiver<Arc<Desired>>,
    mut state: watch::Receiver<ReconcileState>,
    verdicts: watch::Sender<Vec<Verdict>>,
    held: watch::Sender<Vec<IpAddr>>,
    bird: watch::Sender<Option<crate::status::BirdStatus>>,
    started: Instant,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let net = Net::connect()?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut device: Option<(String, u32)> = None;
    // lo's index does not change: looked up once, not every second.
    let lo = net.link_index("lo").await.ok();
    let mut exports: std::collections::BTreeMap<IpAddr, Vec<String>> = Default::default();
    let mut ticks = 0u64;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
            r = desired.changed() => if r.is_err() { break },
            r = state.changed() => if r.is_err() { break },
        }
        let d = desired.borrow_and_update().clone();
        publish_held(&net, &d, lo, device.as_ref().map(|x| x.1), &held).await;
        let Some(a) = &d.announce else { continue };
        // Looked up every tick, not kept: a device deleted, recreated (a new index),
        // renamed away or set down is repaired within a second.
        let index = match net.keep_device(&a.device).await {
            Ok((i, repair)) => {
                let first = device.is_none();
                device = Some((a.device.clone(), i));
                match repair {
                    Repair::Nothing => {}
                    Repair::Created if first => {
                        info!(device = %a.device, "announce device created")
                    }
                    Repair::Created => {
                        warn!(device = %a.device, "the announce device was gone (deleted or renamed): created again")
                    }
                    Repair::SetUp => {
                        warn!(device = %a.device, "the announce device was down: set up")
                    }
                }
                i
            }
            Err(e) => {
                warn!("announce: {e}");
                continue;
            }
        };
        // BIRD's view, every few seconds: a slow or absent BIRD delays nothing else.
        ticks += 1;
        if let Some(path) = &a.bird_socket {
            if ticks % 5 == 1 {
                let vips = crate::announce::all_vips(&d);
                let view = match crate::bird::client::ask(path, &vips).await {
                    Ok((sessions, ex)) => {
                        exports = ex;
                        crate::status::BirdStatus {
                            sessions,
                            error: None,
                        }
                    }
                    Err(e) => {
                        exports.clear();
                        crate::status::BirdStatus {
                            sessions: Vec::new(),
                            error: Some(e),
                        }
                    }
                };
                bird.send_replace(Some(view));
            }
        }
        let st = state.borrow_and_update().clone();
        let mut v = decide(&d, &st, started, Instant::now());
        for x in &mut v {
            x.exported_to = exports.get(&x.vip).cloned().unwrap_or_default();
        }
        let have = match net.addresses_on(index).await {
            Ok(a) => ours(a),
            Err(e) => {
                warn!("announce: {e}");
                verdicts.send_replace(v);
                continue;
            }
        };
        if st.last_pass.is_none() {
            // Adopt what is there until the first pass.
            verdicts.send_replace(as_on_device(v, &have, &a.device, &Default::default()));
            continue;
        }
        let want: BTreeSet<IpAddr> = v.iter().filter(|x| x.announced).map(|x| x.vip).collect();
        let mut failed: std::collections::BTreeMap<IpAddr, String> = Default::default();
        let mut now_on = have.clone();
        for ip in want.difference(&have) {
            match net.add(index, *ip).await {
                Ok(()) => {
                    info!(vip = %ip, device = %a.device, "announcing");
                    now_on.insert(*ip);
                }
                Err(e) => {
                    warn!("announce: {e}");
                    failed.insert(*ip, e.to_string());
                }
            }
        }
        for ip in have.difference(&want) {
            let why = v
                .iter()
                .find(|x| x.vip == *ip)
                .map_or("not a VIP of the config".to_string(), |x| x.why.clone());
            match net.remove(index, *ip).await {
                Ok(()) => {
                    info!(vip = %ip, device = %a.device, %why, "withdrawing");
                    now_on.remove(ip);
                }
                Err(e) => {
                    warn!("announce: {e}");
                    failed.insert(*ip, e.to_string());
                }
            }
        }
        verdicts.send_replace(as_on_device(v, &now_on, &a.device, &failed));
    }
    // Shutdown: withdraw first, then give the routers time to move the traffic.
    let grace = desired.borrow().announce.as_ref().map(|a| a.withdraw_grace);
    if let (Some((name, index)), Some(grace)) = (device, grace) {
        let have = net.addresses_on(index).await.map(ours).unwrap_or_default();
        for ip in &have {
            if let Err(e) = net.remove(index, *ip).await {
                warn!("withdrawing on shutdown: {e}");
            }
        }
        verdicts.send_modify(|v| {
            for x in v.iter_mut() {
                x.announced = false;
                x.why = "the director is shutting down".into();
            }
        });
        info!(device = %name, vips = have.len(), ?grace, "withdrawn; waiting for the routers");
        tokio::time::sleep(grace).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(vip: &str, announced: bool) -> Verdict {
        Verdict {
            vip: vip.parse().expect("ip"),
            announced,
            why: "2 of 2 real servers have weight".into(),
            exported_to: Vec::new(),
        }
    }

    /// `/status` says what BIRD can see: a VIP decided but refused by the kernel is
    /// not announced, one that could not be withdrawn still is.
    #[test]
    fn the_verdicts_say_what_is_on_the_device() {
        let on: BTreeSet<IpAddr> = ["192.0.2.20".parse().expect("ip")].into();
        let failed = [("192.0.2.10".parse().expect("ip"), "EPERM".to_string())].into();
        let v = as_on_device(
            vec![
                verdict("192.0.2.10", true),
                verdict("192.0.2.20", false),
                verdict("192.0.2.30", false),
            ],
            &on,
            "lvsdr0",
            &failed,
        );
        assert!(
            !v[0].announced && v[0].why.contains("not on lvsdr0") && v[0].why.contains("EPERM"),
            "{v:?}"
        );
        assert!(
            v[1].announced && v[1].why.contains("still on lvsdr0"),
            "{v:?}"
        );
        assert!(
            !v[2].announced && v[2].why == "2 of 2 real servers have weight",
            "{v:?}"
        );
    }
}
