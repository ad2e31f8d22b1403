//! The director survives its kernel module going away: `ip_vs` unloaded and loaded
//! again (it comes back with a new generic-netlink family id) while the director runs.
//! It must replace its socket, resolve the family again and program the table anew.
//! In a test binary of its own: unloading needs every other IPVS user gone.

use lvsdr_test_support as support;

use support::director::*;
use support::lab::{Lab, Server};
use support::poll;

const BIN: &str = env!("CARGO_BIN_EXE_lvsdr-director");

/// The IPVS modules loaded now.
fn loaded_modules() -> Vec<String> {
    std::fs::read_to_string("/proc/modules")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|m| *m == "ip_vs" || m.starts_with("ip_vs_"))
        .map(str::to_string)
        .collect()
}

#[test]
#[ignore = "needs the IPVS kernel: runs in the test VM (tests/run)"]
fn the_director_follows_an_ip_vs_module_reload() {
    let lab = Lab::new("m", 60, 1);
    let _s = Server::http(&lab.servers[0], 80, "rs1");
    let config = write_file(&lab, "d.toml", &web_config(&lab, &[(1, 1)], ""));
    let d = start_director(&lab, BIN, &config);
    wait_weights(&lab, &[(1, 1)], 20, &d);

    // Hold the director still while the module goes: its passes would re-add the
    // service and pin the module.
    d.signal("STOP");
    lab.ipvsadm("-C");
    // Namespaces of earlier tests release their services asynchronously.
    let unloaded = poll(30, || {
        let mods = loaded_modules();
        let schedulers: Vec<&String> = mods.iter().filter(|m| *m != "ip_vs").collect();
        for m in schedulers {
            let _ = std::process::Command::new("rmmod").arg(m).status();
        }
        let _ = std::process::Command::new("rmmod").arg("ip_vs").status();
        loaded_modules().is_empty().then_some(())
    });
    assert!(
        unloaded.is_some(),
        "ip_vs could not be unloaded: {:?}",
        loaded_modules()
    );
    // Loaded again the way the kernel does it on demand (resolving the family makes
    // it request the module). Family ids are allocated cyclically: the new IPVS
    // family gets another id.
    lab.ipvsadm("-Ln");
    assert!(loaded_modules().contains(&"ip_vs".to_string()));
    d.signal("CONT");

    // The director finds the new family and programs the table again (the resync
    // timer runs every 2 s; retries back off to at most 30 s).
    let back = poll(60, || {
        (kernel_weight(&lab, "web", &lab.rip(1)) == Some(1)
            && lab.ipvsadm("-Ln").contains(&format!("{}:80", lab.rip(1))))
        .then_some(())
    });
    assert!(
        back.is_some(),
        "the director did not reprogram the table after the module reload:\n{}\n{}",
        lab.ipvsadm("-Ln"),
        d.log()
    );
    assert!(
        d.log().contains("replacing the netlink socket"),
        "{}",
        d.log()
    );
    let seen = spread(&lab, 2);
    assert_eq!(seen.get("rs1"), Some(&2), "{seen:?}");
}
