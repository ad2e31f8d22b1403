//! The reconciler against the real kernel with a second writer: `ipvsadm` changes the
//! table between the reconciler's read and its write, so the kernel answers EEXIST to
//! an add and ENOENT to a delete. Those refusals mean "already done": the service is
//! read again and the pass converges, with no error, no backoff and no op held back.

use lvsdr_test_support as support;

use std::sync::{Arc, Mutex};

use lvsdr::health::{Health, HealthMap};
use lvsdr::ipvs::listing::Table;
use lvsdr::ipvs::proc::Block;
use lvsdr::ipvs::{IpvsError, ServiceKey};
use lvsdr::model::Desired;
use lvsdr::reconcile::cache::Read;
use lvsdr::reconcile::driver::{PassReport, Reconciler};
use lvsdr::reconcile::{Gate, IpvsBackend, Kernel, Op, Scope};
use support::{fresh_netns, ipvsadm, runtime};

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
    async fn summary(&self) -> Result<Vec<Block>, IpvsError> {
        self.kernel.summary().await
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
