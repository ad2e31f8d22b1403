//! Health checks against real listeners, in a network namespace of the test's own
//! (no IPVS needed). Needs root; `tests/run` runs these.

mod support;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use lvsdr::health::{CheckKind, CheckSpec, Checker, Prepared};
use support::{runtime, sh};

fn spec(target: SocketAddr, kind: CheckKind) -> Prepared {
    Prepared::new(Arc::new(CheckSpec {
        via: None,
        target,
        kind,
        interval: Duration::from_secs(1),
        timeout: Duration::from_millis(500),
        rise: 1,
        fall: 1,
    }))
    .expect("spec")
}

/// The listener's accept queue and the namespace's half-open connections.
fn connections() -> (usize, usize) {
    let count = |state: &str| {
        sh(&format!("ss -Htn state {state} | wc -l"))
            .trim()
            .parse::<usize>()
            .expect("count")
    };
    (count("established"), count("syn-recv"))
}

#[test]
#[ignore = "needs root and network namespaces: runs in tests/run"]
fn a_half_open_check_finds_listeners_and_leaves_no_connection_behind() {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    sh("ip link set lo up && ip route add blackhole 192.0.2.0/24");
    let v4 = TcpListener::bind("127.0.0.1:0").expect("listen");
    let v6 = TcpListener::bind("[::1]:0").expect("listen v6");
    v4.set_nonblocking(true).expect("nonblocking");
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    runtime().block_on(async {
        let cancel = tokio_util::sync::CancellationToken::new();
        let checker = Checker::new(cancel.clone()).expect("checker");
        let up = spec(v4.local_addr().expect("addr"), CheckKind::TcpSyn);
        for _ in 0..20 {
            assert_eq!(checker.run(&up).await, Ok(()));
        }
        assert_eq!(
            checker
                .run(&spec(v6.local_addr().expect("addr"), CheckKind::TcpSyn))
                .await,
            Ok(())
        );
        let refused = checker.run(&spec(closed, CheckKind::TcpSyn)).await;
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.to_string().contains("RST")),
            "{refused:?}"
        );
        let silent = checker
            .run(&spec(
                "192.0.2.1:80".parse().expect("addr"),
                CheckKind::TcpSyn,
            ))
            .await;
        assert!(silent.is_err(), "{silent:?}");

        // Twenty SYN-ACKs were answered with a RST by the kernel: nothing to accept,
        // nothing half-open left on the listener.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            v4.accept().is_err(),
            "a half-open check completed a connection"
        );
        assert_eq!(connections(), (0, 0));
        // A connect check, by contrast, is a connection the listener sees.
        assert_eq!(
            checker
                .run(&spec(v4.local_addr().expect("addr"), CheckKind::Tcp))
                .await,
            Ok(())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            v4.accept().is_ok(),
            "the connect check reached the accept queue"
        );
        cancel.cancel();
    });
}
