//! Several directors on existing engines (issue: director HA), in the VM: two directors
//! run lvsdr with `[announce]` and `[sync]` and BIRD 2 (eBGP + BFD) announcing what
//! lvsdr puts on `lvsdr0`; a router with BIRD installs both as ECMP next hops. Shown:
//! both directors carry traffic; a graceful stop withdraws first and loses no request;
//! a director whose link is cut is dropped by the router within the BFD time while a
//! long-lived connection goes on through the other (sync daemon + mh + sloppy_tcp); a
//! director whose real servers all fail withdraws the VIP, and announces it again when
//! they come back.

use lvsdr_test_support as support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::director::{start_director_in, Proc, STATUS};
use support::ha::{n, Net, VIP};
use support::lab::{get_in, in_ns, Server};
use support::poll;

const BIN: &str = env!("CARGO_BIN_EXE_lvsdr-director");

fn director_config(dir: &std::path::Path, i: u32) -> PathBuf {
    let mut c = format!(
        "[director]\nstatus_listen = \"{STATUS}\"\nresync_interval = \"2s\"\n\
         [announce]\ndevice = \"lvsdr0\"\nwithdraw_grace = \"2s\"\nbird_socket = \"/run/hd{i}.ctl\"\n\
         [sync]\ninterface = \"eth0\"\nsync_id = 1\n"
    );
    for (name, port) in [("web", 80), ("echo", 7000)] {
        c.push_str(&format!(
            "[[service]]\nname = \"{name}\"\nvip = \"{VIP}\"\nport = {port}\nscheduler = \"mh\"\n\
             scheduler_flags = [\"mh-fallback\", \"mh-port\"]\n\
             [service.check]\ntype = \"tcp\"\ninterval = \"1s\"\ntimeout = \"500ms\"\nrise = 1\nfall = 2\n\
             [[service.real_server]]\naddress = \"10.81.0.21\"\n\
             [[service.real_server]]\naddress = \"10.81.0.22\"\n"
        ));
    }
    let p = dir.join(format!("d{i}.toml"));
    std::fs::write(&p, c).expect("config");
    p
}

/// New HTTP connections every 50 ms from the client until stopped: (ok, failed, longest
/// time without a success).
struct Loop {
    stop: Arc<AtomicBool>,
    result: Arc<Mutex<(u32, u32, Duration)>>,
    thread: std::thread::JoinHandle<()>,
}

impl Loop {
    fn start() -> Loop {
        let stop = Arc::new(AtomicBool::new(false));
        let result = Arc::new(Mutex::new((0, 0, Duration::ZERO)));
        let (s, r) = (stop.clone(), result.clone());
        let thread = std::thread::spawn(move || {
            in_ns("hclient", move || {
                let mut last_ok = Instant::now();
                while !s.load(Ordering::Relaxed) {
                    let ok = get_once();
                    let mut g = r.lock().expect("lock");
                    if ok {
                        g.0 += 1;
                        g.2 = g.2.max(last_ok.elapsed());
                        last_ok = Instant::now();
                    } else {
                        g.1 += 1;
                    }
                    drop(g);
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        });
        Loop {
            stop,
            result,
            thread,
        }
    }

    fn stop(self) -> (u32, u32, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        *self.result.lock().expect("lock")
    }
}

fn get_once() -> bool {
    let addr = format!("{VIP}:80").parse().expect("addr");
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"GET / HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).is_ok() && line.contains("200")
}

/// Connections each director's IPVS has scheduled for VIP:port (the synced copies of
/// the other's are not counted).
fn conns(d: &str, port: u16) -> u64 {
    let svc = format!("{VIP}:{port}");
    n(d, "ipvsadm -Ln --stats")
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|w| w.first() == Some(&"TCP") && w.get(1) == Some(&svc.as_str()))
        .and_then(|w| w.get(2).and_then(|c| c.parse().ok()))
        .unwrap_or(0)
}

#[test]
#[ignore = "needs the IPVS kernel and BIRD: runs in the test VM (tests/run)"]
fn two_directors_behind_ecmp_survive_a_stop_a_cut_link_and_failing_servers() {
    let net = Net::new(2, true);
    let servers: Vec<Server> = ["hrs1", "hrs2"]
        .iter()
        .flat_map(|rs| [Server::http(rs, 80, rs), Server::echo(rs, 7000)])
        .collect();
    net.start_bird(100, 3);
    let mut directors: Vec<Proc> = Vec::new();
    for i in 1..=2u32 {
        let d = format!("hd{i}");
        let cfg = director_config(&net.dir, i);
        // The kernel settings the config needs, as the unit's ExecStartPre=+ does.
        let set = n(&d, &format!("{BIN} prepare --config {}", cfg.display()));
        assert!(set.contains("sloppy_tcp = 1"), "{set}");
        directors.push(start_director_in(&d, BIN, &cfg, 30));
    }
    let both = poll(60, || (net.next_hops().len() == 2).then_some(()));
    let logs = |ds: &[Proc]| ds.iter().map(Proc::log).collect::<Vec<_>>().join("\n---\n");
    assert!(
        both.is_some(),
        "the router has not both directors: {:?}\n{}",
        net.next_hops(),
        logs(&directors)
    );
    let st: serde_json::Value =
        serde_json::from_str(&get_in("hd1", STATUS, "/status").expect("status")).expect("json");
    assert_eq!(st["announce"][0]["announced"], true, "{}", st["announce"]);
    assert_eq!(
        st["sync_daemons"].as_array().map(Vec::len),
        Some(2),
        "{}",
        st["sync_daemons"]
    );
    // BIRD's view, over its control socket.
    let bird = poll(15, || {
        let st: serde_json::Value =
            serde_json::from_str(&get_in("hd1", STATUS, "/status").ok()?).ok()?;
        (st["bird"]["sessions"][0]["info"] == "Established"
            && st["announce"][0]["exported_to"][0] == "up")
            .then_some(())
    });
    assert!(
        bird.is_some(),
        "BIRD's view is not in /status: {}",
        get_in("hd1", STATUS, "/status").unwrap_or_default()
    );
    let metrics = get_in("hd1", STATUS, "/metrics").expect("metrics");
    // A sample's value by its whole name and labels: a substring match let
    // `lvsdr_lvsdr_vip_announced` pass.
    let value = |key: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.parse::<f64>().ok())
    };
    assert_eq!(
        value("lvsdr_bird_bgp_established{session=\"up\"}"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        value(&format!("lvsdr_vip_announced{{vip=\"{VIP}\"}}")),
        Some(1.0),
        "{metrics}"
    );
    let page = get_in("hd1", STATUS, "/").expect("page");
    assert!(page.contains("announced VIPs") && page.contains("Connection sync: master on eth0"));

    // Both directors carry new connections (the router hashes on ports).
    let answered = (0..30).filter(|_| in_ns("hclient", get_once)).count();
    // The kernel folds its per-CPU counters into what ipvsadm reads every 2 s.
    std::thread::sleep(Duration::from_secs(3));
    let (c1, c2) = (conns("hd1", 80), conns("hd2", 80));
    println!("30 requests, {answered} answered: {c1} through hd1, {c2} through hd2");
    assert!(
        answered == 30 && c1 > 0 && c2 > 0,
        "{answered} of 30 answered, {c1} / {c2}\n{}\n{}\n{}\n{}",
        n("hrouter", &format!("ip route show {VIP}")),
        n("hd1", "ipvsadm -Ln --stats"),
        n("hd2", "ipvsadm -Ln --stats"),
        n("hd1", "ip addr")
    );

    // 1. A graceful stop withdraws first: no request of the loop fails.
    let l = Loop::start();
    std::thread::sleep(Duration::from_secs(2));
    let t0 = Instant::now();
    directors[0].signal("TERM");
    let gone = poll(15, || {
        (net.next_hops() == ["10.81.0.12"]).then(|| t0.elapsed())
    });
    assert!(
        gone.is_some(),
        "hd1 was not withdrawn: {:?}",
        net.next_hops()
    );
    let _ = directors[0].child.wait();
    std::thread::sleep(Duration::from_secs(1));
    let (ok, failed, gap) = l.stop();
    println!("graceful stop of hd1: withdrawn after {:?}; loop {ok} ok, {failed} failed, longest gap {gap:?}", gone.unwrap_or_default());
    assert_eq!(failed, 0, "requests failed across a graceful stop");
    directors[0] = start_director_in("hd1", BIN, &net.dir.join("d1.toml"), 30);
    let back = poll(30, || (net.next_hops().len() == 2).then_some(()));
    assert!(
        back.is_some(),
        "hd1 did not announce again: {}",
        directors[0].log()
    );

    // 2. A long-lived connection, a loop of new ones, and the link of the director
    // carrying the long-lived one cut.
    let echo = in_ns("hclient", || {
        let s = TcpStream::connect_timeout(
            &format!("{VIP}:7000").parse().expect("addr"),
            Duration::from_secs(3),
        )
        .expect("echo connect");
        s.set_read_timeout(Some(Duration::from_secs(3)))
            .expect("timeout");
        s
    });
    let mut w = echo.try_clone().expect("clone");
    let mut r = BufReader::new(echo);
    let mut ping = |k: u32| -> Result<(), String> {
        writeln!(w, "ping {k}").map_err(|e| e.to_string())?;
        let mut line = String::new();
        r.read_line(&mut line).map_err(|e| e.to_string())?;
        (line == format!("ping {k}\n")).then_some(()).ok_or(line)
    };
    ping(1).expect("echo");
    std::thread::sleep(Duration::from_secs(3));
    let carrier = if conns("hd1", 7000) > 0 { "hd1" } else { "hd2" };
    let (other, other_ip) = if carrier == "hd1" {
        ("hd2", "10.81.0.12")
    } else {
        ("hd1", "10.81.0.11")
    };
    let synced = n(other, "ipvsadm -Lnc").matches(":7000").count();
    println!("the long-lived connection goes through {carrier}; {other} has {synced} synced entries for it");
    let l = Loop::start();
    std::thread::sleep(Duration::from_secs(2));
    let t0 = Instant::now();
    n(carrier, "ip link set eth0 down");
    let dropped = poll(10, || (net.next_hops() == [other_ip]).then(|| t0.elapsed()));
    assert!(
        dropped.is_some(),
        "the router kept the cut director: {:?}",
        net.next_hops()
    );
    // The long-lived connection goes on through the other director (retrying while TCP
    // retransmits what was lost in the switch).
    let mut k = 2;
    let t1 = Instant::now();
    let mut longest = Duration::ZERO;
    while t1.elapsed() < Duration::from_secs(6) {
        let t = Instant::now();
        ping(k).unwrap_or_else(|e| panic!("the long-lived connection broke: {e}"));
        longest = longest.max(t.elapsed());
        k += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let (ok, failed, gap) = l.stop();
    println!(
        "link of {carrier} cut: router dropped it after {:?}; long-lived connection: {} echoes after, longest wait {longest:?}; loop {ok} ok, {failed} failed, longest gap {gap:?}",
        dropped.unwrap_or_default(),
        k - 2
    );
    assert!(
        gap < Duration::from_secs(3),
        "new connections stopped for {gap:?}"
    );

    // 3. All real servers fail: the remaining director withdraws; they come back: it
    // announces again.
    let t0 = Instant::now();
    drop(servers);
    let withdrawn = poll(15, || net.next_hops().is_empty().then(|| t0.elapsed()));
    assert!(
        withdrawn.is_some(),
        "the VIP was not withdrawn: {:?}",
        net.next_hops()
    );
    let st: serde_json::Value =
        serde_json::from_str(&get_in(other, STATUS, "/status").expect("status")).expect("json");
    let why = st["announce"][0]["why"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(why.contains("0 of 2"), "{why}");
    let t0 = Instant::now();
    let _servers: Vec<Server> = ["hrs1", "hrs2"]
        .iter()
        .flat_map(|rs| [Server::http(rs, 80, rs), Server::echo(rs, 7000)])
        .collect();
    let announced = poll(15, || (net.next_hops() == [other_ip]).then(|| t0.elapsed()));
    assert!(
        announced.is_some(),
        "the VIP was not announced again: {:?}",
        net.next_hops()
    );
    println!(
        "all real servers down: withdrawn after {:?} ({why}); back: announced after {:?}",
        withdrawn.unwrap_or_default(),
        announced.unwrap_or_default()
    );
    for mut d in directors {
        d.kill();
    }
}
