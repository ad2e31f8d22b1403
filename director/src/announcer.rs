//! `[announce]`: keeps the VIPs that [`lvsdr::announce::decide`] says are announced on
//! the director's own dummy device (created when missing), and no others; BIRD's
//! `direct` protocol announces what is there. It owns that device only. At start it
//! adopts what the device holds and changes nothing until the reconciler's first pass;
//! on shutdown it withdraws every VIP and waits `withdraw_grace` before returning, so
//! that routers move the traffic before the director goes.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lvsdr::announce::{decide, Verdict};
use lvsdr::model::Desired;
use lvsdr::reconcile::driver::ReconcileState;
use lvsdr_netdev::Net;
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
    let vips = lvsdr::announce::all_vips(d);
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

/// Runs until cancelled, then withdraws.
pub async fn run(
    mut desired: watch::Receiver<Arc<Desired>>,
    mut state: watch::Receiver<ReconcileState>,
    verdicts: watch::Sender<Vec<Verdict>>,
    held: watch::Sender<Vec<IpAddr>>,
    bird: watch::Sender<Option<lvsdr::status::BirdStatus>>,
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
        let index = match &device {
            Some((name, i)) if *name == a.device => *i,
            _ => match net.ensure_device(&a.device).await {
                Ok(i) => {
                    device = Some((a.device.clone(), i));
                    i
                }
                Err(e) => {
                    warn!("announce: {e}");
                    continue;
                }
            },
        };
        // BIRD's view, every few seconds: a slow or absent BIRD delays nothing else.
        ticks += 1;
        if let Some(path) = &a.bird_socket {
            if ticks % 5 == 1 {
                let vips = lvsdr::announce::all_vips(&d);
                let view = match crate::bird_client::ask(path, &vips).await {
                    Ok((sessions, ex)) => {
                        exports = ex;
                        lvsdr::status::BirdStatus {
                            sessions,
                            error: None,
                        }
                    }
                    Err(e) => {
                        exports.clear();
                        lvsdr::status::BirdStatus {
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
        verdicts.send_replace(v.clone());
        if st.last_pass.is_none() {
            continue; // adopt what is there until the first pass
        }
        let want: BTreeSet<IpAddr> = v.iter().filter(|x| x.announced).map(|x| x.vip).collect();
        let have = match net.addresses_on(index).await {
            Ok(a) => ours(a),
            Err(e) => {
                warn!("announce: {e}");
                continue;
            }
        };
        for ip in want.difference(&have) {
            match net.add(index, *ip).await {
                Ok(()) => info!(vip = %ip, device = %a.device, "announcing"),
                Err(e) => warn!("announce: {e}"),
            }
        }
        for ip in have.difference(&want) {
            let why = v
                .iter()
                .find(|x| x.vip == *ip)
                .map_or("not a VIP of the config".to_string(), |x| x.why.clone());
            match net.remove(index, *ip).await {
                Ok(()) => info!(vip = %ip, device = %a.device, %why, "withdrawing"),
                Err(e) => warn!("announce: {e}"),
            }
        }
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
