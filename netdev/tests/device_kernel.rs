//! The announce device kept in place, in the test VM (dummy devices) and a network
//! namespace of its own: deleted, renamed away or set down, the next look repairs it.

use lvsdr_netdev::{Net, Repair};

fn sh(cmd: &str) -> String {
    let out = std::process::Command::new("bash")
        .args(["-c", cmd])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "needs the VM kernel (dummy devices): runs in the test VM (tests/run)"]
fn a_deleted_renamed_or_downed_device_is_repaired_at_the_next_look() {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let net = Net::connect().expect("rtnetlink");
        let (first, r) = net.keep_device("lvsdr0").await.expect("create");
        assert_eq!(r, Repair::Created);
        let vip = "192.0.2.10".parse().expect("ip");
        net.add(first, vip).await.expect("add");
        assert_eq!(
            net.keep_device("lvsdr0").await.expect("look"),
            (first, Repair::Nothing)
        );

        sh("ip link set lvsdr0 down");
        assert_eq!(
            net.keep_device("lvsdr0").await.expect("look"),
            (first, Repair::SetUp)
        );
        assert!(sh("ip -o link show lvsdr0").contains(",UP"), "not up again");
        // Its address stayed through down and up (beside the kernel's own IPv6
        // link-local one, which the announcer leaves alone).
        let addrs = net.addresses_on(first).await.expect("addrs");
        assert_eq!(
            addrs.iter().filter(|a| a.is_ipv4()).collect::<Vec<_>>(),
            vec![&vip]
        );

        sh("ip link del lvsdr0");
        let (second, r) = net.keep_device("lvsdr0").await.expect("recreate");
        assert_eq!(r, Repair::Created);
        assert_ne!(second, first, "a new device has a new index");
        assert!(
            sh("ip -o link show lvsdr0").contains(",UP"),
            "recreated down"
        );

        sh("ip link set lvsdr0 down && ip link set lvsdr0 name other0");
        let (third, r) = net.keep_device("lvsdr0").await.expect("renamed away");
        assert_eq!(r, Repair::Created);
        assert_ne!(third, second);
    });
}
