//! `/metrics`: the status in Prometheus text format, rebuilt on every scrape from the
//! published state (so there is no second copy of the numbers to keep in sync).
//!
//! Every family is named here without the `lvsdr_` prefix (the registry adds it) and
//! listed in [`FAMILIES`], which the README's names are checked against. Label values
//! are escaped here: `prometheus-client` writes them as they are, and one `"` in a
//! service name broke the whole scrape.

use std::sync::atomic::AtomicU64;

use crate::status::Status;
use lvsdr::ipvs::Stats;
use lvsdr_checks::lag::{LatenessCounts, LATENESS_BUCKETS};
use lvsdr_checks::Health;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// The metric families `/metrics` serves, by their full names (counters with the
/// `_total` their samples carry). The tests hold the output, the README and the
/// shipped alert rules to it.
#[cfg(test)]
pub const FAMILIES: &[&str] = &[
    "lvsdr_agent_confirmed",
    "lvsdr_agent_reachable",
    "lvsdr_bird_bgp_established",
    "lvsdr_check_latency_seconds",
    "lvsdr_check_scheduler_lateness_seconds",
    "lvsdr_config_generation",
    "lvsdr_config_last_reload_ok",
    "lvsdr_director_stalled_seconds_total",
    "lvsdr_health_check_inconclusive_total",
    "lvsdr_health_check_local_errors_total",
    "lvsdr_health_checks_completed_total",
    "lvsdr_notify_events_total",
    "lvsdr_real_server_active_connections",
    "lvsdr_real_server_admin_state",
    "lvsdr_real_server_bytes_in_total",
    "lvsdr_real_server_bytes_out_total",
    "lvsdr_real_server_configured_weight",
    "lvsdr_real_server_connections_total",
    "lvsdr_real_server_inactive_connections",
    "lvsdr_real_server_kernel_weight",
    "lvsdr_real_server_packets_in_total",
    "lvsdr_real_server_packets_out_total",
    "lvsdr_real_server_up",
    "lvsdr_reconcile_failures_total",
    "lvsdr_reconcile_held_ops",
    "lvsdr_reconcile_ops_total",
    "lvsdr_reconcile_passes_total",
    "lvsdr_service_bytes_in_total",
    "lvsdr_service_bytes_out_total",
    "lvsdr_service_connections_total",
    "lvsdr_service_in_kernel",
    "lvsdr_service_packets_in_total",
    "lvsdr_service_packets_out_total",
    "lvsdr_sync_daemons",
    "lvsdr_vip_announced",
];

use lvsdr_daemon::metrics::label_value as value;

type G = Family<Labels, Gauge<f64, AtomicU64>>;
type C = Family<Labels, Counter<u64>>;
type Cf = Family<Labels, Counter<f64, AtomicU64>>;

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
    fn seconds(&mut self, name: &str, help: &str) -> Cf {
        let c = Cf::default();
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

/// A histogram given as its counts (the scheduler keeps them; a scrape only reads).
#[derive(Debug)]
struct CountedHistogram(LatenessCounts);

impl EncodeMetric for CountedHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = LATENESS_BUCKETS
            .iter()
            .copied()
            .zip(self.0.counts.iter().copied().chain(std::iter::repeat(0)))
            .collect();
        let count = self.0.counts.iter().sum();
        encoder.encode_histogram::<NoLabelSet>(self.0.sum_seconds, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Renders the status as Prometheus text.
pub fn render(status: &Status) -> Result<String, std::fmt::Error> {
    let mut s = Sets {
        reg: Registry::with_prefix("lvsdr"),
    };
    s.reg.register(
        "check_scheduler_lateness_seconds",
        "How late the health checks' scheduler looked at the clock (every 50 ms): its thread held up by the host (short of CPU, a paused VM); target p99 under 50 ms",
        CountedHistogram(status.check_lateness.clone()),
    );
    let up = s.gauge(
        "real_server_up",
        "1 if the real server's check passes, 0 if it fails, -1 while unknown",
    );
    let cfg_w = s.gauge("real_server_configured_weight", "Weight in the config");
    let admin = s.gauge(
        "real_server_admin_state",
        "1 for the operator's override in force (lvsdr-director ctl): state is none, drain, disabled or weight",
    );
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
    let checks_inconclusive = s.counter(
        "health_check_inconclusive",
        "Health check timeouts not counted against their server: this director stalled for a quarter of the timeout or more while the check ran",
    );
    let stalled = s.seconds(
        "director_stalled_seconds",
        "How long, in all, the health checks' thread was seen stalled (its looks at the clock came late: the host short of CPU, a paused VM)",
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
        let sl: Labels = vec![("service", value(&svc.name))];
        in_kernel
            .get_or_create(&sl)
            .set(f64::from(u8::from(svc.in_kernel)));
        svc_traffic.set(&sl, &svc.stats);
        for rs in &svc.real_servers {
            let l: Labels = vec![
                ("service", value(&svc.name)),
                ("address", value(rs.address)),
                ("port", value(rs.port)),
            ];
            up.get_or_create(&l).set(match rs.health {
                Health::Up => 1.0,
                Health::Down => 0.0,
                Health::Unknown => -1.0,
            });
            cfg_w.get_or_create(&l).set(f64::from(rs.configured_weight));
            let mut with_state = l.clone();
            with_state.push(("state", value(&rs.admin_state)));
            admin.get_or_create(&with_state).set(1.0);
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
        let l: Labels = vec![("address", value(a.address))];
        agent_up
            .get_or_create(&l)
            .set(f64::from(u8::from(a.reachable)));
        agent_ok
            .get_or_create(&l)
            .set(f64::from(u8::from(a.confirmed)));
    }
    let announced = s.gauge(
        "vip_announced",
        "Whether this director announces the VIP ([announce]): 1 or 0",
    );
    for v in &status.announce {
        announced
            .get_or_create(&vec![("vip", value(v.vip))])
            .set(f64::from(u8::from(v.announced)));
    }
    let sync = s.gauge(
        "sync_daemons",
        "Connection sync daemons running ([sync]: 2, master and backup)",
    );
    let bgp = s.gauge(
        "bird_bgp_established",
        "BIRD's BGP sessions ([announce] bird_socket): 1 when Established",
    );
    for b in status.bird.iter().flat_map(|b| &b.sessions) {
        bgp.get_or_create(&vec![("session", value(&b.name))])
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
    checks_inconclusive
        .get_or_create(&none)
        .inc_by(status.checks_inconclusive);
    stalled.get_or_create(&none).inc_by(status.stalled_seconds);
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
    let hooks = s.counter(
        "notify_events",
        "Events for a [[notify]] hook: delivered, failed (after every try) or dropped (its queue was full)",
    );
    for h in &status.notify {
        for (result, n) in [
            ("delivered", h.delivered),
            ("failed", h.failed),
            ("dropped", h.dropped),
        ] {
            hooks
                .get_or_create(&vec![("hook", value(&h.hook)), ("result", value(result))])
                .inc_by(n);
        }
    }
    let mut out = String::new();
    encode(&mut out, &s.reg)?;
    Ok(out)
}

#[cfg(test)]
use lvsdr_daemon::metrics::text_format;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// A status with one of everything, and a service name with each character the
    /// text format escapes.
    fn full_status() -> Status {
        let text = "[director]\nstatus_listen = \"127.0.0.1:9180\"\n\
                    [[service]]\nname = \"we\\\"b\\\\x\\ny\"\nvip = \"192.0.2.10\"\nport = 80\n\
                    [service.check]\ntype = \"tcp\"\n\
                    [[service.real_server]]\naddress = \"10.0.0.11\"\n";
        let desired = lvsdr::config::parse(text, "t.toml").expect("config");
        let reload = crate::status::ReloadStatus {
            generation: 1,
            at: 0.0,
            ok: true,
            errors: vec![],
        };
        let mut st = crate::status::build(&crate::status::Snapshot {
            desired: std::sync::Arc::new(desired),
            reload,
            state: Default::default(),
            health: Default::default(),
            details: Default::default(),
            gate: Default::default(),
            agents: Default::default(),
            announce: Vec::new(),
            held: Vec::new(),
            bird: None,
            notify: Vec::new(),
            checks: Default::default(),
        });
        st.services[0].real_servers[0].kernel_weight = Some(1);
        st.services[0].real_servers[0].latency_ms = Some(2.0);
        st.agents = vec![serde_json::from_value(serde_json::json!({
            "address": "10.0.0.11", "vips": ["192.0.2.10"], "reachable": true,
            "confirmed": true, "generation": 1, "last_push": 1.0, "last_error": null
        }))
        .expect("agent")];
        st.announce = vec![crate::announce::Verdict {
            vip: "192.0.2.10".parse().expect("ip"),
            announced: true,
            why: String::new(),
            exported_to: vec![],
        }];
        st.bird = Some(crate::status::BirdStatus {
            sessions: vec![crate::bird::Session {
                name: "up\"link".into(),
                state: "up".into(),
                info: "Established".into(),
            }],
            error: None,
        });
        st.notify = vec![crate::status::HookStatus {
            hook: "/usr/local/bin/page \"ops\"".into(),
            delivered: 3,
            failed: 1,
            dropped: 0,
        }];
        st
    }

    /// One sample line of the text format: its name, and whether its labels parse
    /// (`k="v"` pairs, in values only the three escapes).
    fn sample(line: &str) -> Result<&str, String> {
        let (name, rest) = match line.find('{') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => return line.split_once(' ').map(|(n, _)| n).ok_or(line.to_string()),
        };
        let mut chars = rest.chars();
        if rest.starts_with('}') {
            chars.next();
        }
        while !rest.starts_with('}') {
            let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
            if key.is_empty() || chars.next() != Some('"') {
                return Err(format!("bad label in {line:?}"));
            }
            loop {
                match chars.next() {
                    Some('\\') => match chars.next() {
                        Some('\\' | '"' | 'n') => {}
                        _ => return Err(format!("bad escape in {line:?}")),
                    },
                    Some('"') => break,
                    Some('\n') | None => return Err(format!("unended value in {line:?}")),
                    Some(_) => {}
                }
            }
            match chars.next() {
                Some(',') => continue,
                Some('}') => break,
                _ => return Err(format!("bad label list in {line:?}")),
            }
        }
        let value: String = chars.collect();
        value
            .trim()
            .parse::<f64>()
            .map(|_| name)
            .map_err(|e| format!("{e} in {line:?}"))
    }

    #[test]
    fn every_family_under_its_documented_name_and_every_label_value_escaped() {
        let text = render(&full_status()).expect("render");
        if let Ok(path) = std::env::var("LVSDR_METRICS_OUT") {
            // tests/run hands this to `promtool check metrics`.
            std::fs::write(path, text_format(&text)).expect("write");
        }
        let mut names = BTreeSet::new();
        let want: BTreeSet<&str> = FAMILIES.iter().copied().collect();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = sample(line).unwrap_or_else(|e| panic!("{e}\n{text}"));
            // A histogram's samples carry a suffix its family's name does not.
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .filter_map(|s| name.strip_suffix(s))
                .find(|f| want.contains(f))
                .unwrap_or(name);
            names.insert(family);
        }
        assert_eq!(names, want, "{text}");
        assert!(
            text.contains(r#"service="we\"b\\x\ny""#),
            "the name was not escaped: {text}"
        );
        // The README names only what the director or the agent serves; the shipped
        // alert rules and dashboard, only what the director serves.
        let agent: BTreeSet<&str> = lvsdr_daemon::metrics::AGENT_FAMILIES
            .iter()
            .copied()
            .collect();
        let both: BTreeSet<&str> = want.union(&agent).copied().collect();
        for (file, served) in [
            ("README.md", &both),
            ("conf/prometheus/lvsdr-alerts.yml", &want),
            ("conf/grafana/lvsdr-director.json", &want),
        ] {
            let path = format!("{}/../{file}", env!("CARGO_MANIFEST_DIR"));
            let text = std::fs::read_to_string(&path).expect(file);
            for word in metric_names(&text) {
                // A histogram's buckets are a sample name, not the family's.
                let word = word.strip_suffix("_bucket").unwrap_or(word);
                assert!(
                    served.contains(word) || served.contains(format!("{word}_total").as_str()),
                    "{file} names {word}, which /metrics does not serve"
                );
            }
        }
    }

    fn metric_names(text: &str) -> impl Iterator<Item = &str> {
        text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("lvsdr_") && w.len() > "lvsdr_".len())
    }

    /// The dashboard (conf/grafana): valid JSON whose every query names a metric the
    /// director serves, and whose panels cover what an operator watches.
    #[test]
    fn every_dashboard_query_names_a_served_metric() {
        let text = include_str!("../../../conf/grafana/lvsdr-director.json");
        let d: serde_json::Value = serde_json::from_str(text).expect("JSON");
        let want: BTreeSet<&str> = FAMILIES.iter().copied().collect();
        let mut exprs = Vec::new();
        for p in d["panels"].as_array().expect("panels") {
            for t in p["targets"].as_array().into_iter().flatten() {
                exprs.push(t["expr"].as_str().expect("expr").to_string());
            }
        }
        for v in d["templating"]["list"].as_array().expect("variables") {
            if let Some(q) = v["query"].as_str().filter(|q| q.contains("lvsdr_")) {
                exprs.push(q.to_string());
            }
        }
        assert!(exprs.len() >= 20, "{} queries", exprs.len());
        let mut used = BTreeSet::new();
        for e in &exprs {
            let names: Vec<&str> = metric_names(e).collect();
            assert!(!names.is_empty(), "a query that names no lvsdr metric: {e}");
            for n in names {
                // A histogram's buckets are a sample name, not the family's.
                let n = n.strip_suffix("_bucket").unwrap_or(n);
                assert!(
                    want.contains(n) || want.contains(format!("{n}_total").as_str()),
                    "the dashboard's query {e:?} names {n}, which /metrics does not serve"
                );
                used.insert(n);
            }
        }
        let titles: Vec<&str> = d["panels"]
            .as_array()
            .expect("panels")
            .iter()
            .filter(|p| p["type"] == "row")
            .filter_map(|p| p["title"].as_str())
            .collect();
        for row in [
            "Services and real servers",
            "Health checks",
            "Reconcile and config",
            "Agents",
            "Several directors",
        ] {
            assert!(titles.contains(&row), "no {row:?} row: {titles:?}");
        }
        assert!(used.len() >= 20, "the dashboard shows only {used:?}");
    }

    #[test]
    fn the_text_format_names_counters_with_their_total() {
        let om = "# HELP x_passes Passes.\n# TYPE x_passes counter\nx_passes_total 3\n\
                  # HELP x_up Up.\n# TYPE x_up gauge\nx_up 1\n# EOF\n";
        assert_eq!(
            text_format(om),
            "# HELP x_passes_total Passes.\n# TYPE x_passes_total counter\nx_passes_total 3\n\
             # HELP x_up Up.\n# TYPE x_up gauge\nx_up 1\n"
        );
    }
}
