//! Migration, end to end in the VM: a table programmed by keepalived 2.2 (Debian's
//! package) or restored with `ipvsadm -R` is imported and taken over by lvsdr with no
//! change at all: `plan` says there is nothing to do, `run` applies 0 ops, and a
//! long-lived connection through the VIP stays up throughout. keepalived's table has a
//! service that leaves `lb_kind` and `lb_algo` out: the import must read keepalived's
//! defaults (NAT, wlc) as keepalived does, or the takeover would change it.

use lvsdr_test_support as support;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::director::*;
use support::lab::{web_and_echo, Lab, Server};
use support::{poll, sh};

const BIN: &str = env!("CARGO_BIN_EXE_lvsdr-director");

/// `lvsdr-director import FORMAT FILE` into `out`; its exit code.
fn import(format: &str, input: &Path, out: &Path) -> (i32, String) {
    let o = Command::new(BIN)
        .args(["import", format, &input.display().to_string()])
        .output()
        .expect("run import");
    std::fs::write(out, &o.stdout).expect("write the imported config");
    // The status endpoint where the lab's helpers look for it.
    let text = format!(
        "[director]\nstatus_listen = \"{STATUS}\"\nresync_interval = \"2s\"\n\n{}",
        String::from_utf8_lossy(&o.stdout)
    );
    std::fs::write(out, text).expect("write");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// `lvsdr-director plan` in the director's namespace.
fn plan(lab: &Lab, config: &Path) -> String {
    sh(&format!(
        "ip netns exec {} {BIN} plan --config {}",
        lab.director,
        config.display()
    ))
}

/// A connection to VIP:9000 that echoes lines; panics if it broke.
struct Echo {
    w: std::net::TcpStream,
    r: BufReader<std::net::TcpStream>,
    n: u32,
}

impl Echo {
    fn open(lab: &Lab) -> Echo {
        let c = lab.connect(9000);
        Echo {
            w: c.try_clone().expect("clone"),
            r: BufReader::new(c),
            n: 0,
        }
    }
    fn ping(&mut self) {
        self.n += 1;
        writeln!(self.w, "ping {}", self.n).expect("write on the long-lived connection");
        let mut line = String::new();
        self.r
            .read_line(&mut line)
            .expect("read on the long-lived connection");
        assert_eq!(line, format!("ping {}\n", self.n), "the connection broke");
    }
}

/// Runs the imported config: all servers up by lvsdr's own checks, 0 ops applied, the
/// table as it was.
fn take_over(lab: &Lab, config: &Path, before: &str, echo: &mut Echo) {
    let out = plan(lab, config);
    assert!(
        out.starts_with("nothing to do"),
        "plan wants changes:\n{out}\nthe kernel:\n{}\n{}\nthe config:\n{}",
        lab.ipvsadm("-Ln --thresholds"),
        sh(&format!("ip netns exec {} {BIN} ipvs list", lab.director)),
        std::fs::read_to_string(config).unwrap_or_default()
    );
    let d = start_director(lab, BIN, config);
    let all_up = poll(30, || {
        let st = status(lab);
        let services = st["services"].as_array()?.clone();
        let up = services.iter().all(|s| {
            s["real_servers"]
                .as_array()
                .is_some_and(|r| r.iter().all(|x| x["health"] == "up"))
        });
        (up && st["reconcile"]["passes"].as_u64()? >= 2).then_some(st)
    });
    let st = all_up.unwrap_or_else(|| panic!("not all up: {}\n{}", status(lab), d.log()));
    echo.ping();
    // A few more passes with every check up.
    std::thread::sleep(Duration::from_secs(3));
    let st2 = status(lab);
    assert_eq!(
        st2["reconcile"]["ops_applied"],
        0,
        "ops were applied: {st}\n{}",
        d.log()
    );
    assert!(st2["reconcile"]["errors"]
        .as_array()
        .is_some_and(Vec::is_empty));
    assert_eq!(lab.ipvsadm("-Sn"), before, "the table changed");
    echo.ping();
}

#[test]
#[ignore = "needs the IPVS kernel: runs in the test VM (tests/run)"]
fn a_keepalived_table_is_taken_over_with_no_change() {
    let lab = Lab::new("m", 62, 2);
    let _servers = web_and_echo(&lab, 2);
    let (vip, r1, r2) = (lab.vip(), lab.rip(1), lab.rip(2));
    let conf = write_file(
        &lab,
        "keepalived.conf",
        &format!(
            "global_defs {{\n  router_id takeover\n}}\n\
             virtual_server {vip} 80 {{\n  delay_loop 1\n  lb_algo wrr\n  lb_kind DR\n  \
             protocol TCP\n  persistence_timeout 60\n\
             real_server {r1} 80 {{\n    weight 2\n    HTTP_GET {{\n      url {{\n        \
             path /healthz\n        status_code 200\n      }}\n      connect_timeout 1\n    }}\n  }}\n\
             real_server {r2} 80 {{\n    weight 3\n    HTTP_GET {{\n      url {{\n        \
             path /healthz\n        status_code 200\n      }}\n      connect_timeout 1\n    }}\n  }}\n}}\n\
             virtual_server {vip} 9000 {{\n  delay_loop 1\n  lb_algo rr\n  lb_kind DR\n  \
             protocol TCP\n  inhibit_on_failure\n\
             real_server {r1} 9000 {{\n    weight 1\n    TCP_CHECK {{\n      connect_timeout 1\n    }}\n  }}\n\
             real_server {r2} 9000 {{\n    weight 1\n    TCP_CHECK {{\n      connect_timeout 1\n    }}\n  }}\n}}\n\
             virtual_server {vip} 8080 {{\n  delay_loop 1\n  protocol TCP\n\
             real_server {r1} 80 {{\n    TCP_CHECK {{\n      connect_timeout 1\n    }}\n  }}\n\
             real_server {r2} 80 {{\n    TCP_CHECK {{\n      connect_timeout 1\n    }}\n  }}\n}}\n"
        ),
    );
    let dir = conf.parent().expect("dir").to_path_buf();
    let mut k = Proc::spawn(
        &lab.director,
        "keepalived",
        &[
            "--check",
            "--dont-fork",
            "--dont-release-ipvs",
            "--log-console",
            "-f",
            &conf.display().to_string(),
            "-p",
            &dir.join("k.pid").display().to_string(),
            "-c",
            &dir.join("kc.pid").display().to_string(),
        ],
        dir.join("keepalived.log"),
    );
    let programmed = poll(30, || {
        let t = lab.ipvsadm("-Sn");
        (t.lines().filter(|l| l.starts_with("-a")).count() == 6).then_some(t)
    });
    let before = programmed.unwrap_or_else(|| {
        panic!(
            "keepalived did not program the table:\n{}\n{}",
            lab.ipvsadm("-Ln"),
            k.log()
        )
    });
    let mut echo = Echo::open(&lab);
    echo.ping();

    // Stopped the way that leaves the table.
    k.signal("TERM");
    let stopped = poll(15, || k.child.try_wait().ok().flatten());
    assert!(stopped.is_some(), "keepalived did not stop:\n{}", k.log());
    assert_eq!(
        lab.ipvsadm("-Sn"),
        before,
        "keepalived's stop changed the table"
    );
    echo.ping();

    let imported = dir.join("imported.toml");
    let (code, report) = import("keepalived", &conf, &imported);
    // keepalived's defaults, as keepalived read them: the third service has no lb_kind
    // (NAT) and no lb_algo (wlc), and the kernel shows it (-m, -s wlc).
    assert!(
        before.contains(&format!("-A -t {vip}:8080 -s wlc"))
            && before.contains(&format!("-a -t {vip}:8080 -r {r1}:80 -m -w 1")),
        "keepalived's defaults are not NAT and wlc:\n{before}"
    );
    let review: Vec<&str> = report
        .lines()
        .filter(|l| l.contains(": review: "))
        .collect();
    assert!(
        code == 2 && review.len() == 1 && review[0].contains("no lb_kind: keepalived uses NAT"),
        "the import's report (exit {code}) should hold one review line, for the missing \
         lb_kind:\n{report}"
    );
    take_over(&lab, &imported, &before, &mut echo);
    k.kill();
}

#[test]
#[ignore = "needs the IPVS kernel: runs in the test VM (tests/run)"]
fn an_ipvsadm_restored_table_is_taken_over_with_no_change() {
    let lab = Lab::new("n", 63, 2);
    let _e: Vec<Server> = (0..2)
        .map(|i| Server::echo(&lab.servers[i], 9000))
        .collect();
    let (vip, r1, r2) = (lab.vip(), lab.rip(1), lab.rip(2));
    // In `ipvsadm -Sn`'s own form (which has no -x/-y: it does not save thresholds).
    let rules = format!(
        "-A -t {vip}:9000 -s wlc -p 120\n\
         -a -t {vip}:9000 -r {r1}:9000 -g -w 4\n\
         -a -t {vip}:9000 -r {r2}:9000 -g -w 6\n\
         -A -u {vip}:53 -s rr -o\n\
         -a -u {vip}:53 -r {r1}:53 -g -w 1\n"
    );
    let rules_file = write_file(&lab, "rules", &rules);
    sh(&format!(
        "ip netns exec {} ipvsadm -R < {}",
        lab.director,
        rules_file.display()
    ));
    let before = lab.ipvsadm("-Sn");
    let dump = write_file(&lab, "dump", &before);
    let mut echo = Echo::open(&lab);
    echo.ping();

    let imported = dump.with_file_name("imported.toml");
    let (code, report) = import("ipvsadm", &dump, &imported);
    assert_eq!(code, 0, "the import needs review:\n{report}");
    take_over(&lab, &imported, &before, &mut echo);
}
