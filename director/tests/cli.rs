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

#[test]
fn check_config_accepts_the_example_and_names_every_error() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../conf/director.toml");
    let out = std::process::Command::new(BIN)
        .args(["check-config", example])
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(": ok (3 services, 5 real servers"));

    let dir = std::env::temp_dir().join(format!("lvsdr-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[[service]]\nname = \"a\"\nvip = \"192.0.2.10\"\nport = 80\nscheduler = \"x\"\n\
         [[service.real_server]]\naddress = \"10.0.0.1\"\nweight = -1\n",
    )
    .expect("write");
    let out = std::process::Command::new(BIN)
        .arg("check-config")
        .arg(&bad)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("2 errors in the config"), "{err}");
    assert!(
        err.contains("bad.toml:5:13: service \"a\": unknown scheduler \"x\""),
        "{err}"
    );
    assert!(
        err.contains(
            "bad.toml:8:10: service \"a\", real_server 10.0.0.1: weight -1 out of range 0-65535"
        ),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// `check-config` (the unit's ExecStartPre=) loads the `[agents]` TLS files as a reload
/// would. Under systemd a credential that `LoadCredential=` could not read is the
/// drop-in's `SetCredential=` text; the error quotes it, so it names the missing file.
#[test]
fn check_config_names_a_tls_file_that_is_missing_or_a_credential_fallback() {
    let dir = std::env::temp_dir().join(format!("lvsdr-cli-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let run = |args: &[&str]| {
        std::process::Command::new(BIN)
            .args(args)
            .output()
            .expect("run")
    };
    let out = run(&[
        "pki",
        "init",
        &dir.display().to_string(),
        "--agent",
        "10.0.0.1",
    ]);
    assert!(out.status.success(), "{out:?}");
    let config = dir.join("director.toml");
    std::fs::write(
        &config,
        "[agents]\nca = \"ca.pem\"\ncert = \"director.pem\"\nkey = \"director.key\"\n",
    )
    .expect("write");
    let check = || run(&["check-config", &config.display().to_string()]);
    let out = check();
    assert!(out.status.success(), "{out:?}");
    // What the drop-in's SetCredential= puts in place of a file it could not load.
    std::fs::write(
        dir.join("director.key"),
        "missing: LoadCredential= could not read /etc/lvsdr/director.key",
    )
    .expect("write");
    let out = check();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[agents]: ")
            && err.contains("director.key: not a PEM file; it reads: missing: LoadCredential= could not read /etc/lvsdr/director.key"),
        "{err}"
    );
    std::fs::remove_file(dir.join("director.key")).expect("rm");
    let out = check();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("director.key") && err.contains("No such file"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_systemd_unit_runs_what_the_binary_offers() {
    let unit = include_str!("../../conf/lvsdr-director.service");
    let line = |k: &str| {
        unit.lines()
            .filter(|l| l.starts_with(&format!("{k}=")))
            .map(|l| l[k.len() + 1..].to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(line("Type"), ["notify"]);
    assert_eq!(
        line("ExecStart"),
        ["/usr/bin/lvsdr-director run --config /etc/lvsdr/director.toml"]
    );
    assert!(line("ExecStartPre")
        .iter()
        .any(|l| l.ends_with("check-config /etc/lvsdr/director.toml")));
    assert_eq!(line("ExecReload"), ["/bin/kill -HUP $MAINPID"]);
    assert_eq!(line("WatchdogSec"), ["60s"]);
    for (k, v) in [
        ("DynamicUser", "yes"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("StateDirectory", "lvsdr-director"),
        (
            "RestrictAddressFamilies",
            "AF_UNIX AF_NETLINK AF_INET AF_INET6",
        ),
        ("LimitNOFILE", "65536"),
        ("TasksMax", "256"),
    ] {
        assert_eq!(line(k), [v], "{k}");
    }
    // Exec checks drop their capabilities with setpriv (capset, in @privileged).
    assert_eq!(line("SystemCallFilter"), ["@system-service", "~@resources"]);
    // No credential in the unit (systemd fails a unit whose credential file is
    // missing; the shipped config has no [agents]): the [agents] drop-in has them.
    assert!(
        line("LoadCredential").is_empty(),
        "{:?}",
        line("LoadCredential")
    );
    let drop_in = include_str!("../../conf/lvsdr-director-agents.conf");
    for cred in ["ca.pem", "director.pem", "director.key"] {
        assert!(
            drop_in.contains(&format!("LoadCredential={cred}:/etc/lvsdr/{cred}")),
            "{cred}"
        );
        // Its fallback names the file, for check-config to quote (systemd alone would
        // fail the unit with 243/CREDENTIALS and no file named).
        assert!(
            drop_in.contains(&format!(
                "SetCredential={cred}:missing: LoadCredential= could not read /etc/lvsdr/{cred}"
            )),
            "{cred}"
        );
    }
    // The example config's state file is in the unit's state directory.
    assert!(include_str!("../../conf/director.toml")
        .contains("state_file = \"/var/lib/lvsdr-director/managed.json\""));
    assert_eq!(line("CapabilityBoundingSet"), ["CAP_NET_ADMIN CAP_NET_RAW"]);
    assert_eq!(line("AmbientCapabilities"), ["CAP_NET_ADMIN CAP_NET_RAW"]);
    // The subcommands and flags the unit uses exist.
    for args in [&["run", "--help"][..], &["check-config", "--help"][..]] {
        let out = std::process::Command::new(BIN)
            .args(args)
            .output()
            .expect("run");
        assert!(out.status.success(), "{args:?}: {out:?}");
    }
    let help = std::process::Command::new(BIN)
        .args(["run", "--help"])
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&help.stdout).contains("--config"));
}

#[test]
fn logs_to_a_file_or_pipe_carry_no_colour_codes() {
    // `run` logs "config loaded" before it connects to IPVS (which the dev and CI
    // hosts lack, so it then stops): enough to see what journald would get.
    let dir = std::env::temp_dir().join(format!("lvsdr-cli-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let cfg = dir.join("d.toml");
    std::fs::write(
        &cfg,
        "[director]\nstatus_listen = \"127.0.0.1:0\"\n[[service]]\nname = \"w\"\nvip = \"192.0.2.10\"\nport = 80\n",
    )
    .expect("write");
    let out = std::process::Command::new(BIN)
        .args(["run", "--config"])
        .arg(&cfg)
        .env_remove("LVSDR_LOG")
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("config loaded"), "{err}");
    assert!(
        !err.contains('\u{1b}'),
        "ANSI escape codes in a piped log: {err:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn import_exits_0_when_all_translated_2_when_a_person_must_look_1_when_unreadable() {
    let input = |f: &str| format!("{}/../import/tests/inputs/{f}", env!("CARGO_MANIFEST_DIR"));
    let run = |args: &[&str]| {
        std::process::Command::new(BIN)
            .args(args)
            .output()
            .expect("run")
    };
    let all = run(&["import", "ipvsadm", &input("ipvsadm.dump")]);
    assert_eq!(all.status.code(), Some(0), "{all:?}");
    assert!(String::from_utf8_lossy(&all.stdout).contains("[[service]]"));

    let some = run(&["import", "keepalived", &input("keepalived.conf")]);
    assert_eq!(some.status.code(), Some(2), "{some:?}");
    let err = String::from_utf8_lossy(&some.stderr);
    assert!(
        err.contains("keepalived.conf:65: review: digest"),
        "the report names file:line: {err}"
    );
    // The config still comes out, and check-config accepts it.
    let dir = std::env::temp_dir().join(format!("lvsdr-import-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let out = dir.join("imported.toml");
    std::fs::write(&out, &some.stdout).expect("write");
    let check = run(&["check-config", &out.display().to_string()]);
    assert!(check.status.success(), "{check:?}");

    let none = run(&["import", "piranha", "/nonexistent/lvs.cf"]);
    assert_eq!(none.status.code(), Some(1), "{none:?}");
    assert!(String::from_utf8_lossy(&none.stderr).contains("/nonexistent/lvs.cf"));
    let bad = run(&["import", "haproxy", &input("ipvsadm.dump")]);
    assert!(!bad.status.success());
    let _ = std::fs::remove_dir_all(dir);
}

/// Every import test input and the format it is written in. A new input must be named
/// here (the test below fails on one it does not know).
const IMPORT_INPUTS: &[(&str, &str)] = &[
    ("keepalived.conf", "keepalived"),
    ("keepalived.d/mail.conf", "keepalived"),
    ("merge.conf", "keepalived"),
    ("refused.conf", "keepalived"),
    ("template.conf", "keepalived"),
    ("hostile/fanout.conf", "keepalived"),
    ("hostile/secret.txt", "keepalived"),
    ("ldirectord.cf", "ldirectord"),
    ("names.cf", "ldirectord"),
    ("merge.cf", "ldirectord"),
    ("template.cf", "ldirectord"),
    ("lvs.cf", "piranha"),
    ("fwmark.cf", "piranha"),
    ("ipvsadm.dump", "ipvsadm"),
    ("names.dump", "ipvsadm"),
    ("fnat.dump", "ipvsadm"),
    ("listing.txt", "ipvsadm"),
    ("proc.txt", "ipvsadm"),
];

fn files_under(dir: &std::path::Path, base: &std::path::Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).expect("read_dir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            files_under(&p, base, out);
        } else {
            let rel = p.strip_prefix(base).expect("under").display().to_string();
            // Other tests' scratch files come and go.
            if !rel.contains(".tmp.") {
                out.push(rel);
            }
        }
    }
}

/// The import's promise: it never writes a config `check-config` refuses (what cannot
/// be represented is a review line, and left out). Every test input, read as its own
/// format and as each of the others, through the binary as an operator runs it.
#[test]
fn check_config_accepts_what_import_writes_from_every_test_input_in_every_format() {
    let base = std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../import/tests/inputs"
    ));
    let mut found = Vec::new();
    files_under(&base, &base, &mut found);
    for f in &found {
        assert!(
            IMPORT_INPUTS.iter().any(|(name, _)| name == f),
            "import/tests/inputs/{f} is not in IMPORT_INPUTS"
        );
    }
    let dir = std::env::temp_dir().join(format!("lvsdr-import-all-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let out = dir.join("imported.toml");
    let mut runs = 0;
    for (name, own) in IMPORT_INPUTS {
        for format in ["keepalived", "ldirectord", "piranha", "ipvsadm"] {
            let input = base.join(name);
            let import = std::process::Command::new(BIN)
                .args(["import", format, &input.display().to_string()])
                .output()
                .expect("run import");
            let err = String::from_utf8_lossy(&import.stderr);
            assert!(
                matches!(import.status.code(), Some(0 | 2)),
                "import {format} {name}: {:?}\n{err}",
                import.status
            );
            if format == *own {
                assert!(!err.contains("does not validate"), "{name}: {err}");
            }
            std::fs::write(&out, &import.stdout).expect("write");
            let check = std::process::Command::new(BIN)
                .args(["check-config", &out.display().to_string()])
                .output()
                .expect("run check-config");
            assert!(
                check.status.success(),
                "check-config refuses import {format} {name}:\n{}\n{}",
                String::from_utf8_lossy(&check.stderr),
                String::from_utf8_lossy(&import.stdout)
            );
            runs += 1;
        }
    }
    assert_eq!(runs, IMPORT_INPUTS.len() * 4);
    let _ = std::fs::remove_dir_all(dir);
}
