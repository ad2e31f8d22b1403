//! No decoder of outside input panics on arbitrary bytes: random bytes, and valid
//! samples with bytes changed, cut short or grown. (`benches/decoders.rs` runs the
//! same decoders over a million inputs each.)

use proptest::prelude::*;

use lvsdr_fuzz_harness as fuzz;

fn mutated(sample: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = sample.len().max(1);
    (
        proptest::collection::vec((0..len, any::<u8>()), 0..8),
        0..=len,
    )
        .prop_map(move |(edits, cut)| {
            let mut v = sample.clone();
            for (i, b) in edits {
                if let Some(x) = v.get_mut(i) {
                    *x = b;
                }
            }
            v.truncate(cut);
            v
        })
}

fn input(sample: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..600),
        mutated(sample)
    ]
}

fn check(name: &str, cases: u32) {
    let (_, decode, sample) = fuzz::all()
        .into_iter()
        .find(|(n, _, _)| *n == name)
        .unwrap_or_else(|| panic!("no decoder {name}"));
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let result = runner.run(&input(sample), |bytes| {
        decode(&bytes);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
}

#[test]
fn netlink_messages() {
    check("netlink", 4000);
}

#[test]
fn the_proc_listing() {
    check("proc", 2000);
}

#[test]
fn raw_tcp_segments() {
    check("tcp", 4000);
}

#[test]
fn dns_answers() {
    check("dns", 4000);
}

#[test]
fn agent_json() {
    check("agent-json", 2000);
}

#[test]
fn the_config() {
    check("config", 300);
}

#[test]
fn the_keepalived_importer() {
    check("import-keepalived", 300);
}

#[test]
fn the_ldirectord_importer() {
    check("import-ldirectord", 300);
}

#[test]
fn the_piranha_importer() {
    check("import-piranha", 300);
}

#[test]
fn the_ipvsadm_importer() {
    check("import-ipvsadm", 300);
}

#[test]
fn every_decoder_is_covered() {
    let names: Vec<&str> = fuzz::all().iter().map(|(n, _, _)| *n).collect();
    assert_eq!(
        names,
        [
            "netlink",
            "proc",
            "tcp",
            "dns",
            "agent-json",
            "config",
            "import-keepalived",
            "import-ldirectord",
            "import-piranha",
            "import-ipvsadm"
        ]
    );
    // And each has a coverage-guided target of the same name (fuzz/fuzz_targets/).
    let targets = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/fuzz_targets");
    for n in names {
        let file = format!("{targets}/{}.rs", n.replace('-', "_"));
        assert!(std::path::Path::new(&file).is_file(), "no {file}");
    }
}

/// Inputs a fuzzer once crashed (fuzz/regressions/TARGET/*) stay fixed.
#[test]
fn the_fuzzers_crashes_stay_fixed() {
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/regressions"));
    let mut n = 0;
    for (name, decode, _) in fuzz::all() {
        let Ok(entries) = std::fs::read_dir(dir.join(name.replace('-', "_"))) else {
            continue;
        };
        for e in entries {
            let path = e.expect("entry").path();
            decode(&std::fs::read(&path).expect("read"));
            n += 1;
        }
    }
    assert!(n > 0, "no regression inputs under {}", dir.display());
}
