//! `lvsdr-director ipvs list` against `ipvsadm -Ln` on the same kernel table (written by
//! ipvsadm itself). Runs in the test VM; ignored on an ordinary `cargo test`.

use lvsdr_test_support as support;

use support::{fresh_netns, ipvsadm, sh};

const BIN: &str = env!("CARGO_BIN_EXE_lvsdr-director");

#[test]
#[ignore = "needs the IPVS kernel: runs in the test VM (tests/run)"]
fn ipvs_list_prints_what_ipvsadm_prints() {
    fresh_netns();
    for cmd in [
        "-A -t 192.0.2.10:80 -s wrr",
        "-a -t 192.0.2.10:80 -r 10.9.0.11:80 -g -w 100",
        "-a -t 192.0.2.10:80 -r 10.9.0.12:80 -g -w 200 -x 1000 -y 10",
        "-A -u 192.0.2.10:53 -s sh -b sh-fallback -o",
        "-a -u 192.0.2.10:53 -r 10.9.0.14:5353 -m -w 1",
        "-A -f 7 -s lc -p 300 -M 255.255.255.0",
        "-a -f 7 -r 10.9.0.13 -i --tun-type gue --tun-port 6080 -w 2",
        "-A -t [2001:db8::10]:443 -s mh -p 60 -M 64",
        "-a -t [2001:db8::10]:443 -r [2001:db8:9::11]:443 -g -w 3",
        "-A -t 192.0.2.9:8080 -s rr",
    ] {
        ipvsadm(cmd);
    }
    assert_eq!(sh(&format!("{BIN} ipvs list")), ipvsadm("-Ln"));
    assert_eq!(
        sh(&format!("{BIN} ipvs list --stats")),
        ipvsadm("-Ln --stats")
    );
    let json: serde_json::Value =
        serde_json::from_str(&sh(&format!("{BIN} ipvs list --json"))).expect("JSON");
    let services = json["services"].as_array().expect("services");
    assert_eq!(services.len(), 5);
    let fwm = services
        .iter()
        .find(|s| s["fwmark"] == 7)
        .expect("fwmark service");
    assert_eq!(fwm["persistence_netmask"], "255.255.255.0");
    assert_eq!(fwm["destinations"][0]["tunnel"], "gue");
    assert_eq!(json["version"], "1.2.1");
}

#[test]
#[ignore = "needs the IPVS kernel: runs in the test VM (tests/run)"]
fn an_empty_table_prints_the_header_only() {
    fresh_netns();
    assert_eq!(sh(&format!("{BIN} ipvs list")), ipvsadm("-Ln"));
}
