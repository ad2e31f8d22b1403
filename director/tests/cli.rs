//! The director's command line where no IPVS is needed.

const BIN: &str = env!("CARGO_BIN_EXE_lvsdr-director");

#[test]
fn ipvs_list_without_the_module_says_what_is_missing() {
    let out = std::process::Command::new(BIN)
        .args(["ipvs", "list"])
        .output()
        .expect("run lvsdr-director");
    // The dev and CI hosts' kernel has no IPVS; where it is loaded, the table prints.
    if std::path::Path::new("/proc/net/ip_vs").exists() {
        assert!(out.status.success(), "{out:?}");
        return;
    }
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("generic netlink family IPVS not found in network namespace net:[")
            && err.contains("ip_vs kernel module is not loaded"),
        "{err}"
    );
}
