//! The agent's own `/metrics`, plain HTTP on a local listener (`metrics_listen`, default
//! 127.0.0.1:9182): what it holds, read back from the kernel (the same overview as
//! `lvsdr-agent status`), so that a real server whose VIP went missing or lost its
//! ARP suppression is seen on a dashboard, not only when traffic fails.
//!
//! Families (full names, `lvsdr_daemon::metrics::AGENT_FAMILIES`; `render` is a pure
//! function of the overview):
//! - `lvsdr_agent_vips{director}`: VIPs in each director's set;
//! - `lvsdr_agent_vip_in_place{director,vip}`: 1 when on the device and ARP-suppressed;
//! - `lvsdr_agent_vip_on_device{director,vip}`, `lvsdr_agent_vip_arp_suppressed{…}`;
//! - `lvsdr_agent_vip_refused{director,vip}`: 1 when the agent refused to hold it;
//! - `lvsdr_agent_last_push_age_seconds{director}`: absent until a director pushes;
//! - `lvsdr_agent_vip_repairs_total`: VIPs put back after they went missing;
//! - `lvsdr_agent_apply_error`: 1 while the last apply failed;
//! - `lvsdr_agent_drained`: 1 while `lvsdr-agent drain` is in force.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use lvsdr_daemon::metrics::label_value as value;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::applier::Request;
use crate::drain::DrainView;
use crate::overview::Overview;

type Labels = Vec<(&'static str, String)>;
/// Counts and flags (integers); ages are floats.
type G = Family<Labels, Gauge>;
type F = Family<Labels, Gauge<f64, AtomicU64>>;

fn register<T: Default + Clone + prometheus_client::registry::Metric>(
    reg: &mut Registry,
    name: &str,
    help: &str,
) -> T {
    let g = T::default();
    reg.register(name, help, g.clone());
    g
}

fn flag(b: bool) -> i64 {
    i64::from(b)
}

/// The Prometheus text for what the agent holds.
pub fn render(o: &Overview, drained: bool) -> Result<String, std::fmt::Error> {
    let mut reg = Registry::with_prefix("lvsdr_agent");
    let vips: G = register(&mut reg, "vips", "VIPs in each director's set");
    let in_place: G = register(
        &mut reg,
        "vip_in_place",
        "1 if the VIP is on the VIP device and ARP for it is suppressed",
    );
    let on_device: G = register(
        &mut reg,
        "vip_on_device",
        "1 if the VIP is on the VIP device",
    );
    let arp: G = register(
        &mut reg,
        "vip_arp_suppressed",
        "1 if ARP for the VIP is suppressed (always 1 for IPv6)",
    );
    let refused: G = register(
        &mut reg,
        "vip_refused",
        "1 if the agent refused to hold the VIP (the rest of the set is held)",
    );
    let age: F = register(
        &mut reg,
        "last_push_age_seconds",
        "Seconds since the director's last push (absent until it pushes)",
    );
    let repairs: Counter = register(
        &mut reg,
        "vip_repairs",
        "VIPs found missing from the device and put back since the agent started",
    );
    let error: Gauge = register(&mut reg, "apply_error", "1 while the last apply failed");
    let drain: Gauge = register(
        &mut reg,
        "drained",
        "1 while this real server is drained (lvsdr-agent drain)",
    );
    for d in &o.directors {
        let dl: Labels = vec![("director", value(&d.director))];
        vips.get_or_create(&dl)
            .set(i64::try_from(d.vips.len()).unwrap_or(i64::MAX));
        if let Some(s) = d.last_push_s {
            age.get_or_create(&dl).set(s);
        }
        for v in &d.vips {
            let l: Labels = vec![("director", value(&d.director)), ("vip", value(v.vip))];
            in_place.get_or_create(&l).set(flag(v.ok()));
            on_device.get_or_create(&l).set(flag(v.on_device));
            arp.get_or_create(&l).set(flag(v.arp_suppressed));
            refused.get_or_create(&l).set(flag(v.refused.is_some()));
        }
    }
    repairs.inc_by(o.vip_repairs);
    error.set(flag(o.last_error.is_some()));
    drain.set(flag(drained));
    let mut out = String::new();
    encode(&mut out, &reg)?;
    Ok(out)
}

#[derive(Clone)]
struct Sources {
    tx: mpsc::Sender<Request>,
    drain: watch::Receiver<DrainView>,
}

/// Serves `GET /metrics` on `listener` until `cancel`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tx: mpsc::Sender<Request>,
    drain: watch::Receiver<DrainView>,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(metrics))
        .with_state(Sources { tx, drain });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await
}

async fn metrics(
    State(s): State<Sources>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let (reply, rx) = oneshot::channel();
    let asked = s.tx.send(Request::Overview { reply }).await.is_ok();
    let overview = match tokio::time::timeout(Duration::from_secs(10), rx).await {
        Ok(Ok(o)) if asked => o,
        _ => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "the applier did not answer\n",
            )
                .into_response()
        }
    };
    let drained = s.drain.borrow().drain.is_some();
    match render(&overview, drained) {
        Ok(text) => {
            let (kind, body) = lvsdr_daemon::metrics::negotiated(openmetrics, text);
            ([(header::CONTENT_TYPE, kind)], body).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// Binds the metrics listener; a failure is a warning (the agent's work goes on).
pub async fn bind(addr: std::net::SocketAddr) -> Option<tokio::net::TcpListener> {
    match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => {
            info!(%addr, "metrics listening");
            Some(l)
        }
        Err(e) => {
            warn!(%addr, error = %e, "cannot bind the metrics listener; running without /metrics");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overview::DirectorView;
    use lvsdr_agent_api::VipStatus;

    fn vip(v: &str, on: bool, arp: bool, refused: Option<&str>) -> VipStatus {
        VipStatus {
            vip: v.parse().expect("ip"),
            on_device: on,
            arp_suppressed: arp,
            refused: refused.map(str::to_owned),
        }
    }

    #[test]
    fn every_family_by_its_full_name_with_escaped_labels() {
        let o = Overview {
            arp_mode: "nft".into(),
            vip_device: "lo".into(),
            real_ip: None,
            directors: vec![
                DirectorView {
                    director: "d\"1\\ at 10.0.0.1".into(),
                    generation: 3,
                    last_push_s: Some(2.5),
                    provisional: false,
                    vips: vec![
                        vip("192.0.2.10", true, true, None),
                        vip("192.0.2.11", false, true, None),
                        vip("192.0.2.12", false, false, Some("on eth0 already")),
                    ],
                },
                DirectorView {
                    director: "d2".into(),
                    generation: 1,
                    last_push_s: None,
                    provisional: true,
                    vips: vec![],
                },
            ],
            vip_repairs: 4,
            last_error: Some("nft: exit 1".into()),
        };
        let text = render(&o, true).expect("render");
        let families: std::collections::BTreeSet<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        // Counters are typed without the `_total` their samples carry.
        let want: std::collections::BTreeSet<&str> = lvsdr_daemon::metrics::AGENT_FAMILIES
            .iter()
            .map(|f| f.trim_end_matches("_total"))
            .collect();
        assert_eq!(families, want, "{text}");
        for line in [
            r#"lvsdr_agent_vips{director="d\"1\\ at 10.0.0.1"} 3"#,
            r#"lvsdr_agent_vips{director="d2"} 0"#,
            r#"lvsdr_agent_vip_in_place{director="d\"1\\ at 10.0.0.1",vip="192.0.2.10"} 1"#,
            r#"lvsdr_agent_vip_in_place{director="d\"1\\ at 10.0.0.1",vip="192.0.2.11"} 0"#,
            r#"lvsdr_agent_vip_on_device{director="d\"1\\ at 10.0.0.1",vip="192.0.2.11"} 0"#,
            r#"lvsdr_agent_vip_refused{director="d\"1\\ at 10.0.0.1",vip="192.0.2.12"} 1"#,
            r#"lvsdr_agent_last_push_age_seconds{director="d\"1\\ at 10.0.0.1"} 2.5"#,
            "lvsdr_agent_vip_repairs_total 4",
            "lvsdr_agent_apply_error 1",
            "lvsdr_agent_drained 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
        // No push yet from d2: no age for it.
        assert!(!text.contains(r#"last_push_age_seconds{director="d2"}"#));
    }
}
