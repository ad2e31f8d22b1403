//! The reconciler against the real kernel with a second writer: `ipvsadm` changes the
//! table between the reconciler's read and its write, so the kernel answers EEXIST to
//! an add and ENOENT to a delete. Those refusals mean "already done": the service is
//! read again and the pass converges, with no error, no backoff and no op held back.

use lvsdr_test_support as support;

use std::sync::{Arc, Mutex};

use lvsdr::health::{Health, HealthMap};
use lvsdr::ipvs::listing::Table;
use lvsdr::ipvs::{IpvsError, ServiceKey};
use lvsdr::model::Desired;
use lvsdr::reconcile::cache::Read;
use lvsdr::reconcile::driver::{PassReport, Reconciler};
use lvsdr::reconcile::{Gate, IpvsBackend, Kernel, Op, Scope};
use support::{fresh_netns, ipvsadm, runtime, sh};

/// The kernel keeps one IPVS service table for all network namespaces, and a dump or
/// the proc listing resumes by position in it: one test adding services in another
/// namespace shifts the other's listing. The tests of this file take turns.
static TURN: Mutex<()> = Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    // A test that panicked while holding it has already failed; carry on.
    TURN.lock().unwrap_or_else(|p| p.into_inner())
}

/// The real kernel, with a second writer that runs its `ipvsadm` commands just before
/// the reconciler's next write.
struct SecondWriter {
    kernel: Kernel,
    before_next_apply: Mutex<Vec<String>>,
}

impl SecondWriter {
    fn meddle(&self, cmds: &[&str]) {
        *self.before_next_apply.lock().expect("lock") =
            cmds.iter().map(|c| c.to_string()).collect();
    }
}

impl IpvsBackend for SecondWriter {
    async fn table(&self) -> Result<Table, IpvsError> {
        self.kernel.table().await
    }
    async fn listing(&self) -> Result<String, IpvsError> {
        self.kernel.listing().await
    }
    async fn services(&self, keys: &[ServiceKey]) -> Result<Vec<Read>, IpvsError> {
        self.kernel.services(keys).await
    }
    async fn daemons(&self) -> Result<Vec<lvsdr::ipvs::Daemon>, IpvsError> {
        self.kernel.daemons().await
    }
    async fn sync_op(&self, op: &lvsdr::reconcile::sync::SyncOp) -> Result<(), IpvsError> {
        self.kernel.sync_op(op).await
    }
    async fn apply(&self, ops: &[Op]) -> Vec<Result<(), IpvsError>> {
        let cmds = std::mem::take(&mut *self.before_next_apply.lock().expect("lock"));
        for c in cmds {
            ipvsadm(&c);
        }
        self.kernel.apply(ops).await
    }
    fn progress(&self) -> lvsdr::ipvs::Progress {
        self.kernel.progress()
    }
}

fn config(servers: &[&str]) -> Desired {
    let mut text = String::from(
        "[[service]]\nname = \"web\"\nvip = \"192.0.2.10\"\nport = 80\n\
         scheduler = \"wrr\"\n[service.check]\ntype = \"none\"\n",
    );
    for s in servers {
        text.push_str(&format!(
            "[[service.real_server]]\naddress = \"{s}\"\nweight = 5\n"
        ));
    }
    lvsdr::config::parse(&text, "test.toml").expect("config")
}

fn up(d: &Desired) -> HealthMap {
    d.checks().into_iter().map(|c| (c, Health::Up)).collect()
}

fn clean(r: &PassReport) {
    assert!(
        r.errors.is_empty() && r.held.is_empty() && r.read_error.is_none(),
        "{r:?}"
    );
}

/// Passes as the loop makes them after a reload: first what the reload changed, then
/// the services refused as already done, until a pass plans nothing.
async fn until_quiet(
    r: &mut Reconciler<SecondWriter>,
    d: &Arc<Desired>,
    gate: &Gate,
) -> Vec<PassReport> {
    let mut reports: Vec<PassReport> = Vec::new();
    let mut scope = Scope::none();
    for _ in 0..4 {
        let p = r.pass(d, &up(d), gate, scope).await;
        clean(&p);
        let quiet = p.ops.is_empty();
        scope = Scope::Services(p.converged.clone());
        reports.push(p);
        if quiet {
            break;
        }
    }
    reports
}

fn table() -> String {
    ipvsadm("-Ln")
        .lines()
        .filter(|l| l.contains("->") && !l.contains("RemoteAddress") || l.starts_with("TCP"))
        .map(|l| l.split_whitespace().take(4).collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
#[ignore = "needs the IPVS kernel: runs in the test VM (tests/run)"]
fn eexist_and_enoent_from_a_second_writer_mean_read_again_not_retry() {
    let _turn = turn();
    fresh_netns();
    runtime().block_on(async {
        let backend = SecondWriter {
            kernel: Kernel::connect().await.expect("IPVS family"),
            before_next_apply: Mutex::new(Vec::new()),
        };
        let gate = Gate::default();
        let both = Arc::new(config(&["10.9.0.11", "10.9.0.12"]));
        let mut r = Reconciler::new(backend, &both);

        // EEXIST: between our read of an empty table and our adds, another writer adds
        // the service (with another scheduler) and one of the two servers.
        r.backend().meddle(&[
            "-A -t 192.0.2.10:80 -s rr",
            "-a -t 192.0.2.10:80 -r 10.9.0.11:80 -g -w 1",
        ]);
        let first = r.pass(&both, &up(&both), &gate, Scope::All).await;
        clean(&first);
        let key = both.services[0].service.key.clone();
        assert!(first.converged.contains(&key), "{first:?}");
        // As the loop does: at once, that service read again and put right.
        let second = r
            .pass(
                &both,
                &up(&both),
                &gate,
                Scope::Services(first.converged.clone()),
            )
            .await;
        clean(&second);
        let again = r.pass(&both, &up(&both), &gate, Scope::All).await;
        clean(&again);
        assert!(again.ops.is_empty(), "not converged: {:?}", again.ops);
        assert_eq!(
            table(),
            "TCP 192.0.2.10:80 wrr\n-> 10.9.0.11:80 Route 5\n-> 10.9.0.12:80 Route 5"
        );

        // ENOENT: the config drops 10.9.0.12; another writer deletes it first.
        let one = Arc::new(config(&["10.9.0.11"]));
        r.backend().meddle(&["-d -t 192.0.2.10:80 -r 10.9.0.12:80"]);
        let reports = until_quiet(&mut r, &one, &gate).await;
        assert!(
            reports.iter().any(|p| p.converged.contains(&key)),
            "no ENOENT was seen: {reports:?}"
        );
        let last = r.pass(&one, &up(&one), &gate, Scope::All).await;
        clean(&last);
        assert!(last.ops.is_empty(), "not converged: {:?}", last.ops);
        assert_eq!(table(), "TCP 192.0.2.10:80 wrr\n-> 10.9.0.11:80 Route 5");

        // And a service another writer removed before our delete.
        let empty = Arc::new(Desired {
            services: Vec::new(),
            ..(*one).clone()
        });
        r.backend().meddle(&["-D -t 192.0.2.10:80"]);
        let reports = until_quiet(&mut r, &empty, &gate).await;
        assert!(
            reports.iter().any(|p| p.converged.contains(&key)),
            "no ENOENT was seen: {reports:?}"
        );
        assert_eq!(table(), "");
    });
}

/// The kernel's proc listing can skip services of this namespace when another one has
/// IPVS services too; the director's resync must stay exact regardless.
#[test]
#[ignore = "needs the IPVS kernel: runs in the test VM (tests/run)"]
fn resync_stays_exact_when_another_namespace_makes_the_proc_file_skip_services() {
    let _turn = turn();
    use lvsdr::reconcile::driver::{ReadKind, Reconciler};
    use lvsdr::reconcile::{Gate, IpvsBackend, Kernel, Scope};
    use std::sync::Arc;
    let foreign = format!("foreign{}", std::process::id());
    let mut save = String::new();
    for i in 0..300 {
        save.push_str(&format!(
            "-A -t 198.51.100.{}:{} -s rr\n",
            i % 250 + 1,
            1000 + i
        ));
    }
    std::fs::write(format!("/tmp/{foreign}.save"), save).expect("save file");
    sh(&format!(
        "ip netns add {foreign} && ip netns exec {foreign} ipvsadm -R < /tmp/{foreign}.save"
    ));
    fresh_netns();
    let mut config = String::from("[director]\n");
    for i in 0..100 {
        config.push_str(&format!(
            "[[service]]\nname = \"s{i}\"\nvip = \"192.0.2.{}\"\nport = {}\nscheduler = \"wrr\"\n\
             [service.check]\ntype = \"none\"\n",
            i % 250 + 1,
            2000 + i
        ));
        for j in 0..3 {
            config.push_str(&format!(
                "[[service.real_server]]\naddress = \"10.9.0.{}\"\nweight = {}\n",
                10 + j,
                j + 1
            ));
        }
    }
    let desired = Arc::new(lvsdr::config::parse(&config, "test.toml").expect("config"));
    runtime().block_on(async {
        let kernel = Arc::new(Kernel::connect().await.expect("IPVS family"));
        let mut r = Reconciler::new(kernel.clone(), &desired);
        let (h, g) = (Default::default(), Gate::default());
        let p = r.pass(&desired, &h, &g, Scope::All).await;
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        assert_eq!(p.ops.len(), 400);
        let listed = lvsdr::ipvs::proc::parse(&lvsdr::ipvs::proc::read().expect("proc"))
            .expect("parse")
            .len();
        eprintln!("the proc file lists {listed} of our 100 services (300 in another namespace)");
        assert!(
            listed < 100,
            "the kernel's listing no longer skips services: this test no longer covers that path"
        );
        for _ in 0..2 {
            let p = r.pass(&desired, &h, &g, Scope::All).await;
            assert!(matches!(p.read, ReadKind::Proc { .. }), "{}", p.read);
            assert!(
                p.ops.is_empty() && p.errors.is_empty(),
                "{:?} {:?}",
                p.ops,
                p.errors
            );
        }
        let full = lvsdr::reconcile::Observed::from(&kernel.table().await.expect("table"));
        let cached = r.observed().expect("cache");
        assert_eq!(cached.services.len(), full.services.len());
        for (k, s) in &full.services {
            assert_eq!(cached.services[k].dests, s.dests, "{k}");
            assert_eq!(cached.services[k].settings, s.settings, "{k}");
        }
        // Drift in every service is seen, listed or not.
        ipvsadm("-e -t 192.0.2.1:2000 -r 10.9.0.10:2000 -g -w 9");
        ipvsadm("-e -t 192.0.2.100:2099 -r 10.9.0.12:2099 -g -w 9");
        let p = r.pass(&desired, &h, &g, Scope::All).await;
        assert_eq!(p.ops.len(), 2, "{:?}", p.ops);
        assert!(p.errors.is_empty(), "{:?}", p.errors);
    });
    sh(&format!(
        "ip netns del {foreign}; rm -f /tmp/{foreign}.save"
    ));
}
