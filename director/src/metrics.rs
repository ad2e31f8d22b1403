//! `/metrics`: the status in Prometheus text format, rebuilt on every scrape from the
//! published state (so there is no second copy of the numbers to keep in sync).

use std::sync::atomic::AtomicU64;

use lvsdr::health::Health;
use lvsdr::ipvs::Stats;
use lvsdr::status::Status;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;
type G = Family<Labels, Gauge<f64, AtomicU64>>;
type C = Family<Labels, Counter<u64>>;

struct Sets {
    reg: Registry,
}

impl Sets {
    fn gauge(&mut self, name: &str, help: &str) -> G {
        let g = G::default();
        self.reg.register(name, help, g.clone());
        g
    }
    fn counter(&mut self, name: &str, help: &str) -> C {
        let c = C::default();
        self.reg.register(name, help, c.clone());
        c
    }
}

struct Traffic {
    conns: C,
    in_pkts: C,
    out_pkts: C,
    in_bytes: C,
    out_bytes: C,
}

impl Traffic {
    fn new(s: &mut Sets, prefix: &str, what: &str) -> Traffic {
        Traffic {
            conns: s.counter(
                &format!("{prefix}_connections"),
                &format!("Connections scheduled to the {what}"),
            ),
            in_pkts: s.counter(
                &format!("{prefix}_packets_in"),
                &format!("Packets in, {what}"),
            ),
            out_pkts: s.counter(
                &format!("{prefix}_packets_out"),
                &format!("Packets out, {what}"),
            ),
            in_bytes: s.counter(&format!("{prefix}_bytes_in"), &format!("Bytes in, {what}")),
            out_bytes: s.counter(
                &format!("{prefix}_bytes_out"),
                &format!("Bytes out, {what}"),
            ),
        }
    }
    fn set(&self, l: &Labels, st: &Stats) {
        self.conns.get_or_create(l).inc_by(st.conns);
        self.in_pkts.get_or_create(l).inc_by(st.in_pkts);
        self.out_pkts.get_or_create(l).inc_by(st.out_pkts);
        self.in_bytes.get_or_create(l).inc_by(st.in_bytes);
        self.out_bytes.get_or_create(l).inc_by(st.out_bytes);
    }
}

/// Renders the status as Prometheus text.
pub fn render(status: &Status) -> Result<String, std::fmt::Error> {
    let mut s = Sets {
        reg: Registry::with_prefix("lvsdr"),
    };
    let up = s.gauge(
        "real_server_up",
        "1 if the real server's check passes, 0 if it fails, -1 while unknown",
    );
    let cfg_w = s.gauge("real_server_configured_weight", "Weight in the config");
    let kern_w = s.gauge(
        "real_server_kernel_weight",
        "Weight in the kernel's IPVS table",
    );
    let active = s.gauge("real_server_active_connections", "Established connections");
    let inactive = s.gauge("real_server_inactive_connections", "Other connections");
    let latency = s.gauge("check_latency_seconds", "Duration of the last health check");
    let in_kernel = s.gauge(
        "service_in_kernel",
        "1 if the managed service is in the kernel",
    );
    let rs_traffic = Traffic::new(&mut s, "real_server", "real server");
    let svc_traffic = Traffic::new(&mut s, "service", "virtual service");
    let passes = s.counter("reconcile_passes", "Reconcile passes");
    let checks_done = s.counter(
        "health_checks_completed",
        "Health check runs that ended (passed, failed or timed out)",
    );
    let checks_local = s.counter(
        "health_check_local_errors",
        "Health check runs this host could not carry out (out of file descriptors, a fork refused by TasksMax, no route); their servers keep their weight",
    );
    let ops = s.counter("reconcile_ops", "Kernel changes applied");
    let failures = s.counter(
        "reconcile_failures",
        "Kernel changes refused and failed dumps",
    );
    let held = s.gauge(
        "reconcile_held_ops",
        "Kernel changes refused for good (EINVAL, missing scheduler, EPERM), held back until the config or the kernel changes",
    );
    let generation = s.gauge("config_generation", "Config generation in force");
    let agent_up = s.gauge("agent_reachable", "1 if the agent answered the last push");
    let agent_ok = s.gauge(
        "agent_confirmed",
        "1 if the agent holds every VIP it should",
    );
    let reload_ok = s.gauge(
        "config_last_reload_ok",
        "1 if the last config load was accepted",
    );

    for svc in &status.services {
        let sl: Labels = vec![("service", svc.name.clone())];
        in_kernel
            .get_or_create(&sl)
            .set(f64::from(u8::from(svc.in_kernel)));
        svc_traffic.set(&sl, &svc.stats);
        for rs in &svc.real_servers {
            let l: Labels = vec![
                ("service", svc.name.clone()),
                ("address", rs.address.to_string()),
                ("port", rs.port.to_string()),
            ];
            up.get_or_create(&l).set(match rs.health {
                Health::Up => 1.0,
                Health::Down => 0.0,
                Health::Unknown => -1.0,
            });
            cfg_w.get_or_create(&l).set(f64::from(rs.configured_weight));
            if let Some(w) = rs.kernel_weight {
                kern_w.get_or_create(&l).set(f64::from(w));
            }
            active.get_or_create(&l).set(f64::from(rs.active_conns));
            inactive.get_or_create(&l).set(f64::from(rs.inactive_conns));
            if let Some(ms) = rs.latency_ms {
                latency.get_or_create(&l).set(ms / 1000.0);
            }
            rs_traffic.set(&l, &rs.stats);
        }
    }
    for a in &status.agents {
        let l: Labels = vec![("address", a.address.to_string())];
        agent_up
            .get_or_create(&l)
            .set(f64::from(u8::from(a.reachable)));
        agent_ok
            .get_or_create(&l)
            .set(f64::from(u8::from(a.confirmed)));
    }
    let announced = s.gauge(
        "lvsdr_vip_announced",
        "Whether this director announces the VIP ([announce]): 1 or 0",
    );
    for v in &status.announce {
        announced
            .get_or_create(&vec![("vip", v.vip.to_string())])
            .set(f64::from(u8::from(v.announced)));
    }
    let sync = s.gauge(
        "lvsdr_sync_daemons",
        "Connection sync daemons running ([sync]: 2, master and backup)",
    );
    let bgp = s.gauge(
        "lvsdr_bird_bgp_established",
        "BIRD's BGP sessions ([announce] bird_socket): 1 when Established",
    );
    for b in status.bird.iter().flat_map(|b| &b.sessions) {
        bgp.get_or_create(&vec![("session", b.name.clone())])
            .set(f64::from(u8::from(b.info.starts_with("Established"))));
    }
    let none: Labels = Vec::new();
    sync.get_or_create(&none)
        .set(status.sync_daemons.len() as f64);
    passes.get_or_create(&none).inc_by(status.reconcile.passes);
    checks_done
        .get_or_create(&none)
        .inc_by(status.checks_completed);
    checks_local
        .get_or_create(&none)
        .inc_by(status.checks_local_errors);
    ops.get_or_create(&none)
        .inc_by(status.reconcile.ops_applied);
    failures
        .get_or_create(&none)
        .inc_by(status.reconcile.failures);
    held.get_or_create(&none)
        .set(status.reconcile.held.len() as f64);
    generation
        .get_or_create(&none)
        .set(status.config.generation as f64);
    reload_ok
        .get_or_create(&none)
        .set(f64::from(u8::from(status.config.ok)));
    let mut out = String::new();
    encode(&mut out, &s.reg)?;
    Ok(out)
}
