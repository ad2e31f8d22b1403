//! The production topology with every feature on at once, in the test VM: two
//! directors behind a router running BIRD (BGP + BFD, ECMP), each with `[announce]`,
//! `[sync]` and `[agents]` (`require = true`); agents on three real servers; an `mh`
//! service with persistence, a UDP service (checked half-open, `tcp-syn`), and a check
//! through the DR path. A schedule of events (restarts, reloads, a failing server, a
//! refused service, an invalid reload, a reload with a missing agent certificate, the
//! announce device deleted, a weight changed behind a director's back) runs while
//! client loops count failures: a persistent TCP client (a new connection every
//! 0.1 s), a UDP flow from one source port, and a long-lived connection. Each event
//! prints its figures. Every feature joins this test: it is how the next bug where two
//! features meet gets caught.

use lvsdr_test_support as support;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::clients::{ClientLoop, Tally};
use support::director::{start_director_in, Proc, NOBODY, STATUS};
use support::ha::{n, Net, VIP};
use support::lab::{get_in, in_ns, Server};
use support::{poll, sh};

const BIN: &str = env!("CARGO_BIN_EXE_lvsdr-director");

fn agent_bin() -> String {
    Path::new(BIN)
        .with_file_name("lvsdr-agent")
        .display()
        .to_string()
}

fn rip(i: usize) -> String {
    format!("10.81.0.2{i}")
}

/// What a director's config holds; the schedule changes it.
#[derive(Clone)]
struct Plan {
    /// Real servers of `web` and `echo`, and of `dns`.
    web: Vec<usize>,
    dns: Vec<usize>,
    /// A service on the VIP with a scheduler the kernel lacks (refused for good).
    refused: bool,
}

fn servers(list: &[usize]) -> String {
    list.iter()
        .map(|i| format!("[[service.real_server]]\naddress = \"{}\"\n", rip(*i)))
        .collect()
}

fn config_text(dir: &Path, i: u32, p: &Plan) -> String {
    let pki = dir.join("pki");
    let http = "[service.check]\ntype = \"http\"\nport = 80\npath = \"/healthz\"\n\
                interval = \"1s\"\ntimeout = \"500ms\"\nrise = 1\nfall = 2\n";
    // The UDP service's servers are checked half-open on their web port (tcp-syn).
    let syn = "[service.check]\ntype = \"tcp-syn\"\nport = 80\n\
               interval = \"1s\"\ntimeout = \"500ms\"\nrise = 1\nfall = 2\n";
    let mut c = format!(
        "[director]\nstatus_listen = \"{STATUS}\"\nresync_interval = \"2s\"\n\
         control_socket = \"{d}/hd{i}.sock\"\nadmin_file = \"{d}/hd{i}-admin.json\"\n\
         [announce]\ndevice = \"lvsdr0\"\nwithdraw_grace = \"2s\"\nbird_socket = \"/run/hd{i}.ctl\"\n\
         [sync]\ninterface = \"eth0\"\nsync_id = 1\n\
         [agents]\nca = \"{p}/ca.pem\"\ncert = \"{p}/director-hd{i}.pem\"\nkey = \"{p}/director-hd{i}.key\"\n\
         require = true\n\
         [[service]]\nname = \"web\"\nvip = \"{VIP}\"\nport = 80\nscheduler = \"mh\"\n\
         persistence = \"300s\"\nslow_start = \"5s\"\n{http}{}\
         [[service]]\nname = \"echo\"\nvip = \"{VIP}\"\nport = 7000\nscheduler = \"mh\"\n\
         [service.check]\ntype = \"tcp\"\nvia = \"vip\"\ninterval = \"1s\"\ntimeout = \"500ms\"\n\
         rise = 1\nfall = 2\n{}\
         [[service]]\nname = \"dns\"\nvip = \"{VIP}\"\nport = 53\nprotocol = \"udp\"\n\
         scheduler = \"mh\"\n{syn}{}",
        servers(&p.web),
        servers(&p.web),
        servers(&p.dns),
        p = pki.display(),
        d = dir.display(),
    );
    // A hook that keeps every event this director tells it of.
    c.push_str(&format!(
        "[[notify]]\nexec = [\"/bin/sh\", \"-c\", \"cat >> {}/hd{i}-events.jsonl\"]\n",
        dir.display()
    ));
    if p.refused {
        c.push_str(&format!(
            "[[service]]\nname = \"refused\"\nvip = \"{VIP}\"\nport = 8080\nscheduler = \"twos\"\n\
             [service.check]\ntype = \"none\"\n{}",
            servers(&[1])
        ));
    }
    c
}

fn write_config(dir: &Path, i: u32, p: &Plan) -> PathBuf {
    let path = dir.join(format!("d{i}.toml"));
    std::fs::write(&path, config_text(dir, i, p)).expect("config");
    path
}

fn st(d: &str) -> Option<serde_json::Value> {
    serde_json::from_str(&get_in(d, STATUS, "/status").ok()?).ok()
}

/// The real servers `/status` of director `d` lists for service `svc` (`None` when
/// the status or the service is missing: a check on it then fails, never passes).
fn servers_of(d: &str, svc: &str) -> Option<Vec<serde_json::Value>> {
    let s = st(d)?;
    let svc = s["services"]
        .as_array()?
        .iter()
        .find(|x| x["name"] == svc)?;
    svc["real_servers"].as_array().cloned()
}

/// Exactly the real servers `web` of `web` on director `d`, all at `weight` in its
/// kernel.
fn weights(d: &str, web: &[usize], weight: u64) -> bool {
    servers_of(d, "web")
        .is_some_and(|rs| rs.len() == web.len() && rs.iter().all(|r| r["kernel_weight"] == weight))
}

/// The destinations director `d`'s kernel has for `proto` (TCP, UDP) VIP:`port`.
fn kernel_dests(d: &str, proto: &str, port: u16) -> Vec<String> {
    let table = n(d, "ipvsadm -Ln");
    let head = format!("{proto}  {VIP}:{port}");
    let mut out = Vec::new();
    let mut inside = false;
    for l in table.lines() {
        if ["TCP", "UDP", "FWM"].iter().any(|p| l.starts_with(p)) {
            inside = l.starts_with(&head);
        } else if inside {
            if let Some(addr) = l.trim_start().strip_prefix("-> ") {
                out.push(addr.split_whitespace().next().unwrap_or("").to_string());
            }
        }
    }
    out
}

/// The kernel weight of real server `i` in service `svc` on director `d`.
fn weight_of(d: &str, svc: &str, i: usize) -> Option<u64> {
    servers_of(d, svc)?
        .iter()
        .find(|r| r["address"] == rip(i))?["kernel_weight"]
        .as_u64()
}

/// Director `d` is settled: agents confirmed, the last pass clean, a few passes made.
fn settled(d: &str, servers: usize) -> Option<serde_json::Value> {
    let s = st(d)?;
    let agents = s["agents"].as_array()?;
    let confirmed = agents.len() == servers && agents.iter().all(|a| a["confirmed"] == true);
    let clean = s["reconcile"]["errors"]
        .as_array()
        .is_some_and(Vec::is_empty);
    (confirmed && clean && s["reconcile"]["passes"].as_u64() >= Some(3)).then_some(s)
}

/// The running topology and what runs in it.
struct World {
    net: Net,
    directors: [Option<Proc>; 2],
    plans: [Plan; 2],
    agents: Vec<Proc>,
    web: Vec<Option<Server>>,
    _others: Vec<Server>,
    tcp: ClientLoop,
    udp: ClientLoop,
    echo: (TcpStream, BufReader<TcpStream>),
    pings: u32,
    rows: Vec<String>,
}

impl World {
    fn d(i: u32) -> String {
        format!("hd{i}")
    }

    fn start(&mut self, i: u32) {
        let cfg = write_config(&self.net.dir, i, &self.plans[i as usize - 1]);
        self.directors[i as usize - 1] = Some(start_director_in(&Self::d(i), BIN, &cfg, 60));
    }

    fn log(&self, i: u32) -> String {
        self.directors[i as usize - 1]
            .as_ref()
            .map(Proc::log)
            .unwrap_or_default()
    }

    fn logs(&self) -> String {
        let tail = |p: &Proc| {
            let log = p.log();
            let lines: Vec<&str> = log.lines().collect();
            lines[lines.len().saturating_sub(15)..].join("\n")
        };
        let agents: Vec<String> = self
            .agents
            .iter()
            .enumerate()
            .map(|(i, a)| format!("--- agent on hrs{}:\n{}", i + 1, tail(a)))
            .collect();
        format!(
            "--- hd1:\n{}\n--- hd2:\n{}\n{}",
            self.log(1),
            self.log(2),
            agents.join("\n")
        )
    }

    fn reload(&mut self, i: u32, plan: Plan) {
        self.plans[i as usize - 1] = plan;
        write_config(&self.net.dir, i, &self.plans[i as usize - 1]);
        if let Some(d) = &self.directors[i as usize - 1] {
            d.signal("HUP");
        }
    }

    fn ping(&mut self) -> Result<(), String> {
        self.pings += 1;
        let k = self.pings;
        writeln!(self.echo.0, "ping {k}").map_err(|e| e.to_string())?;
        let mut line = String::new();
        self.echo
            .1
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        (line == format!("ping {k}\n")).then_some(()).ok_or(line)
    }

    /// Runs `event`, then waits for `done`; prints and returns what the loops counted.
    fn event(
        &mut self,
        name: &str,
        event: impl FnOnce(&mut World),
        done: impl Fn(&World) -> bool,
    ) -> (Tally, Tally) {
        self.tcp.reset();
        self.udp.reset();
        let t0 = Instant::now();
        event(self);
        let ok = poll(90, || done(self).then_some(()));
        assert!(ok.is_some(), "{name}: not done after 90 s\n{}", self.logs());
        // A little traffic after, so a flow that broke shows.
        std::thread::sleep(Duration::from_secs(1));
        let took = t0.elapsed();
        let (tcp, udp) = (self.tcp.reset(), self.udp.reset());
        let echo = self.ping();
        let row = format!(
            "{name:<42} {:>6.1} s | tcp {:>4} ok {:>2} failed, gap {:>5.2} s | udp {:>4} ok {:>2} lost, gap {:>5.2} s | long-lived {}",
            took.as_secs_f64(),
            tcp.ok,
            tcp.failed,
            tcp.longest_gap.as_secs_f64(),
            udp.ok,
            udp.failed,
            udp.longest_gap.as_secs_f64(),
            if echo.is_ok() { "ok" } else { "BROKEN" }
        );
        println!("{row}");
        self.rows.push(row);
        assert!(
            echo.is_ok(),
            "{name}: the long-lived connection broke: {echo:?}\n{}",
            self.logs()
        );
        (tcp, udp)
    }
}

fn no_failure(name: &str, w: &World, (tcp, udp): &(Tally, Tally)) {
    assert!(
        tcp.failed == 0 && udp.failed == 0 && tcp.ok > 0 && udp.ok > 0,
        "{name}: tcp {tcp:?}, udp {udp:?}\n{}",
        w.logs()
    );
}

/// The agent's `/metrics` in `ns` (its default listen, 127.0.0.1:9182) once `want`
/// holds of it (30 s at most); else the last scrape or error.
fn agent_metrics(ns: &str, want: impl Fn(&str) -> bool) -> Result<String, String> {
    let mut last = Err("not scraped".to_string());
    let got = poll(30, || {
        last = get_in(ns, "127.0.0.1:9182", "/metrics");
        last.as_deref().ok().filter(|m| want(m)).map(str::to_string)
    });
    got.ok_or_else(|| format!("{last:?}"))
}

fn both_settled(servers: usize) -> impl Fn(&World) -> bool {
    move |_| settled("hd1", servers).is_some() && settled("hd2", servers).is_some()
}

#[test]
#[ignore = "needs the IPVS kernel, BIRD and the agents: runs in the test VM (tests/run)"]
fn everything_on_through_restarts_reloads_failures_and_refusals() {
    let net = Net::new(3, false);
    let pki = net.dir.join("pki");
    lvsdr_pki::init_with(
        &pki,
        &[rip(1), rip(2), rip(3)],
        &["hd1".into(), "hd2".into()],
    )
    .expect("pki");
    sh(&format!("chown -R {NOBODY} {}", pki.display()));
    // The directors (nobody) keep their control sockets and overrides here.
    sh(&format!("chown {NOBODY} {}", net.dir.display()));
    let mut agents = Vec::new();
    let mut others = Vec::new();
    let mut web = Vec::new();
    for i in 1..=3 {
        let ns = format!("hrs{i}");
        let r = rip(i);
        let cfg = net.dir.join(format!("agent{i}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "[agent]\nlisten = \"0.0.0.0:9181\"\nstate_file = \"{d}/agent{i}.json\"\n\
                 control_socket = \"{d}/agent{i}.sock\"\n\
                 [agent.tls]\ncert = \"{p}/agent-{r}.pem\"\nkey = \"{p}/agent-{r}.key\"\nclient_ca = \"{p}/ca.pem\"\n",
                d = net.dir.display(),
                p = pki.display()
            ),
        )
        .expect("agent config");
        agents.push(Proc::spawn(
            &ns,
            &agent_bin(),
            &["--config", &cfg.display().to_string()],
            net.dir.join(format!("agent{i}.log")),
        ));
        web.push(Some(Server::http(&ns, 80, &ns)));
        others.push(Server::echo(&ns, 7000));
        others.push(Server::udp(&ns, 53, &ns));
    }
    // No link is cut here: slow BFD, so that a loaded emulator does not flap it.
    net.start_bird(500, 6);
    let plan = Plan {
        web: vec![1, 2],
        dns: vec![1, 2],
        refused: false,
    };
    for i in 1..=2u32 {
        let cfg = write_config(&net.dir, i, &plan);
        let set = n(
            &format!("hd{i}"),
            &format!("{BIN} prepare --config {}", cfg.display()),
        );
        assert!(set.contains("expire_nodest_conn = 1"), "{set}");
    }
    let mut directors = [None, None];
    for i in 1..=2u32 {
        let cfg = net.dir.join(format!("d{i}.toml"));
        directors[i as usize - 1] = Some(start_director_in(&format!("hd{i}"), BIN, &cfg, 60));
    }
    let up = poll(120, || {
        (net.next_hops().len() == 2
            && weights("hd1", &[1, 2], 1)
            && weights("hd2", &[1, 2], 1)
            && settled("hd1", 2).is_some()
            && settled("hd2", 2).is_some())
        .then_some(())
    });
    let logs = directors
        .iter()
        .flatten()
        .map(Proc::log)
        .collect::<Vec<_>>()
        .join("\n---\n");
    assert!(
        up.is_some(),
        "not up: {:?}\n{}\n{}",
        net.next_hops(),
        st("hd1").unwrap_or_default(),
        logs
    );
    let vip = |port: u16| -> SocketAddr { format!("{VIP}:{port}").parse().expect("vip") };
    let echo = in_ns("hclient", move || {
        let s = TcpStream::connect_timeout(&vip(7000), Duration::from_secs(3)).expect("echo");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s
    });
    let reader = BufReader::new(echo.try_clone().expect("clone"));
    let mut w = World {
        net,
        directors,
        plans: [plan.clone(), plan.clone()],
        agents,
        web,
        _others: others,
        tcp: ClientLoop::http("hclient", vip(80), Duration::from_millis(100)),
        udp: ClientLoop::udp("hclient", 5353, vip(53), Duration::from_millis(100)),
        echo: (echo, reader),
        pings: 0,
        rows: Vec::new(),
    };
    w.ping().expect("the long-lived connection");
    println!(
        "{:<42} {:>8} | per event: requests ok / failed, longest gap",
        "event", "took"
    );

    // 1-4. Each director killed with -9, then stopped with SIGTERM, and started: the
    // table stays as it is (0 ops), no request fails.
    for (i, how) in [(1u32, "KILL"), (2, "KILL"), (1, "TERM"), (2, "TERM")] {
        let name = format!("SIG{how} hd{i} and a start");
        let r = w.event(
            &name,
            |w| {
                let mut d = w.directors[i as usize - 1].take().expect("running");
                d.signal(how);
                let _ = d.child.wait();
                w.start(i);
            },
            both_settled(2),
        );
        no_failure(&name, &w, &r);
        let s = settled(&World::d(i), 2).expect("settled");
        assert_eq!(
            s["reconcile"]["ops_applied"],
            0,
            "{name}: the restart changed the table\n{}",
            w.log(i)
        );
    }

    // 5. A reload adds a real server; 6. another removes it (it drains).
    let mut grown = w.plans[0].clone();
    grown.web = vec![1, 2, 3];
    let r = w.event(
        "reload: hrs3 joins web and echo",
        |w| {
            w.reload(1, grown.clone());
            w.reload(2, grown.clone());
        },
        |_| weights("hd1", &[1, 2, 3], 1) && weights("hd2", &[1, 2, 3], 1),
    );
    no_failure("reload: hrs3 joins", &w, &r);
    let r = w.event(
        "reload: hrs3 leaves web and echo",
        |w| {
            w.reload(1, plan.clone());
            w.reload(2, plan.clone());
        },
        |_| {
            weights("hd1", &[1, 2], 1)
                && weights("hd2", &[1, 2], 1)
                && ["hd1", "hd2"].iter().all(|d| {
                    !kernel_dests(d, "TCP", 80)
                        .iter()
                        .any(|a| a.starts_with(&rip(3)))
                })
        },
    );
    no_failure("reload: hrs3 leaves", &w, &r);

    // 7. A real server leaves one service and stays in the others.
    let mut fewer = plan.clone();
    fewer.dns = vec![1];
    let dns_only_hrs1 = |d: &str| {
        servers_of(d, "dns").is_some_and(|r| r.len() == 1)
            && !kernel_dests(d, "UDP", 53)
                .iter()
                .any(|a| a.starts_with(&rip(2)))
    };
    let r = w.event(
        "reload: hrs2 leaves dns",
        |w| {
            w.reload(1, fewer.clone());
            w.reload(2, fewer.clone());
        },
        |_| dns_only_hrs1("hd1") && dns_only_hrs1("hd2"),
    );
    no_failure("reload: hrs2 leaves dns", &w, &r);
    let r = w.event(
        "reload: hrs2 back in dns",
        |w| {
            w.reload(1, plan.clone());
            w.reload(2, plan.clone());
        },
        both_settled(2),
    );
    no_failure("reload: hrs2 back in dns", &w, &r);

    // 8. A real server fails (its web server stops) and comes back. Requests already
    // on their way to it fail until the checks see it (the detection bound, 2.5 s);
    // then the persistent client is scheduled elsewhere.
    let (tcp, _) = w.event(
        "hrs1's web server fails",
        |w| {
            if let Some(s) = w.web[0].take() {
                s.stop();
            }
        },
        // The UDP service's half-open check sees it too (the same port refuses), and
        // a down UDP server leaves the kernel (its flows move).
        |_| {
            ["hd1", "hd2"].iter().all(|d| {
                weight_of(d, "web", 1) == Some(0)
                    && !kernel_dests(d, "UDP", 53).contains(&format!("{}:53", rip(1)))
            })
        },
    );
    assert!(
        tcp.longest_gap <= Duration::from_millis(4500),
        "the persistent client was without an answer for {:?} (bound 2.5 s + 2 s)",
        tcp.longest_gap
    );
    let r = w.event(
        "hrs1's web server comes back",
        |w| w.web[0] = Some(Server::http("hrs1", 80, "hrs1")),
        |_| {
            weights("hd1", &[1, 2], 1)
                && weights("hd2", &[1, 2], 1)
                && ["hd1", "hd2"]
                    .iter()
                    .all(|d| kernel_dests(d, "UDP", 53).contains(&format!("{}:53", rip(1))))
        },
    );
    no_failure("hrs1 back", &w, &r);

    // 8b. An operator drains hrs2 on both directors (lvsdr-director ctl), then enables
    // it: weight 0 everywhere it serves while its connections go on, then back.
    let ctl = |w: &World, i: u32, args: &[&str]| {
        let sock = w.net.dir.join(format!("hd{i}.sock"));
        let out = std::process::Command::new(BIN)
            .arg("ctl")
            .arg("--socket")
            .arg(&sock)
            .args(args)
            .output()
            .expect("ctl");
        assert!(out.status.success(), "ctl {args:?} on hd{i}: {out:?}");
    };
    let everywhere = |want: u64| {
        move |_: &World| {
            ["hd1", "hd2"].iter().all(|d| {
                ["web", "echo", "dns"]
                    .iter()
                    .all(|s| weight_of(d, s, 2) == Some(want))
            })
        }
    };
    let r = w.event(
        "ctl drain hrs2 on both directors",
        |w| {
            for i in 1..=2 {
                ctl(w, i, &["drain", &rip(2), "--reason", "scenario"]);
            }
        },
        everywhere(0),
    );
    no_failure("ctl drain hrs2", &w, &r);
    w.ping()
        .expect("the long-lived connection across the drain");
    let r = w.event(
        "ctl enable hrs2 on both directors",
        |w| {
            for i in 1..=2 {
                ctl(w, i, &["enable", &rip(2)]);
            }
        },
        everywhere(1),
    );
    no_failure("ctl enable hrs2", &w, &r);

    // 8c. hrs2 drains itself (lvsdr-agent drain, as a deploy script would): both
    // directors hear it from the agent and give it weight 0; ready brings it back.
    let agent2_sock = w.net.dir.join("agent2.sock");
    let agent = |args: &[&str]| {
        let out = std::process::Command::new(agent_bin())
            .args(args)
            .arg("--socket")
            .arg(&agent2_sock)
            .output()
            .expect("lvsdr-agent");
        assert!(out.status.success(), "lvsdr-agent {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let r = w.event(
        "lvsdr-agent drain on hrs2",
        |_| {
            agent(&["drain", "--reason", "scenario deploy"]);
        },
        everywhere(0),
    );
    no_failure("lvsdr-agent drain", &w, &r);
    let shown = support::poll(30, || {
        let s = agent(&["status"]);
        (s.matches("weight 0, ").count() == 2).then_some(s)
    });
    assert!(
        shown.is_some(),
        "hrs2's agent does not show both directors at weight 0"
    );
    // Its /metrics says the same to a scraper: drained, the VIP still in place for
    // both directors (a drain keeps the VIP: connections go on).
    let drained = agent_metrics("hrs2", |m| {
        m.lines().any(|l| l == "lvsdr_agent_drained 1")
            && m.lines()
                .filter(|l| l.starts_with("lvsdr_agent_vip_in_place{") && l.ends_with(" 1"))
                .count()
                == 2
    });
    assert!(
        drained.is_ok(),
        "hrs2's agent metrics during its drain: {drained:?}"
    );
    w.ping()
        .expect("the long-lived connection across the agent's drain");
    let r = w.event(
        "lvsdr-agent ready on hrs2",
        |_| {
            agent(&["ready"]);
        },
        everywhere(1),
    );
    no_failure("lvsdr-agent ready", &w, &r);
    let ready = agent_metrics("hrs2", |m| m.lines().any(|l| l == "lvsdr_agent_drained 0"));
    assert!(ready.is_ok(), "hrs2's agent metrics after ready: {ready:?}");

    // 9. One director gets a service the kernel refuses for good: only that
    // service is held; the VIP stays announced by both (sampled for 20 s).
    let mut refused = plan.clone();
    refused.refused = true;
    let r = w.event(
        "reload hd1: a service the kernel refuses",
        |w| w.reload(1, refused.clone()),
        |w| {
            st("hd1").is_some_and(|s| {
                s["reconcile"]["held"]
                    .as_array()
                    .is_some_and(|h| !h.is_empty())
            }) && (0..40).all(|_| {
                std::thread::sleep(Duration::from_millis(500));
                w.net.next_hops().len() == 2
            })
        },
    );
    no_failure("a refused service", &w, &r);
    let r = w.event(
        "reload hd1: the refused service goes",
        |w| w.reload(1, plan.clone()),
        |_| st("hd1").is_some_and(|s| s["reconcile"]["held"].as_array().is_some_and(Vec::is_empty)),
    );
    no_failure("the refused service goes", &w, &r);

    // 10. An invalid reload: rejected, the running config stays, nothing moves.
    let generation = st("hd2").expect("status")["config"]["generation"].clone();
    let r = w.event(
        "reload hd2: an invalid config",
        |w| {
            let path = w.net.dir.join("d2.toml");
            let text = config_text(&w.net.dir, 2, &plan)
                .replace("scheduler = \"mh\"", "scheduler = \"fastest\"");
            std::fs::write(path, text).expect("write");
            if let Some(d) = &w.directors[1] {
                d.signal("HUP");
            }
        },
        |_| {
            st("hd2").is_some_and(|s| {
                s["config"]["ok"] == false && s["config"]["generation"] == generation
            })
        },
    );
    no_failure("an invalid reload", &w, &r);
    assert!(weights("hd2", &[1, 2], 1), "the invalid reload changed hd2");
    assert_eq!(w.net.next_hops().len(), 2);

    // 10b. A reload that reads the file while its writer has just truncated it (an
    // editor or tool writing in place): empty, it would parse as a config without
    // services and retire them all; it is refused, and nothing moves.
    let r = w.event(
        "reload hd2: the file caught empty",
        |w| {
            std::fs::write(w.net.dir.join("d2.toml"), "").expect("truncate");
            if let Some(d) = &w.directors[1] {
                d.signal("HUP");
            }
        },
        |_| {
            st("hd2").is_some_and(|s| {
                s["config"]["generation"] == generation
                    && s["config"]["errors"]
                        .as_array()
                        .is_some_and(|e| e.iter().any(|e| e.to_string().contains("is empty")))
            })
        },
    );
    no_failure("a reload of an empty file", &w, &r);
    assert!(weights("hd2", &[1, 2], 1), "the empty file changed hd2");
    assert_eq!(w.net.next_hops().len(), 2);

    // 11. A reload whose agent TLS files do not load: refused, the running config
    // (and every push) stays.
    let generation = st("hd1").expect("status")["config"]["generation"].clone();
    let r = w.event(
        "reload hd1: an agent certificate missing",
        |w| {
            let path = w.net.dir.join("d1.toml");
            let text = config_text(&w.net.dir, 1, &plan).replace("director-hd1.pem", "gone.pem");
            std::fs::write(path, text).expect("write");
            if let Some(d) = &w.directors[0] {
                d.signal("HUP");
            }
        },
        |_| {
            st("hd1").is_some_and(|s| {
                s["config"]["ok"] == false && s["config"]["generation"] == generation
            }) && settled("hd1", 2).is_some()
        },
    );
    no_failure("a reload with a missing certificate", &w, &r);
    w.reload(1, plan.clone());

    // 12. The announce device deleted under a running director: created again and
    // announced again; the other director carries the traffic meanwhile.
    let r = w.event(
        "hd1's lvsdr0 deleted",
        |_| {
            n("hd1", "ip link del lvsdr0");
        },
        |w| {
            w.net.next_hops().len() == 2
                && n("hd1", "ip -o addr show dev lvsdr0").contains(VIP)
                && st("hd1").is_some_and(|s| s["announce"][0]["announced"] == true)
        },
    );
    no_failure("the announce device deleted", &w, &r);

    // 13. Another writer changes a weight in hd1's kernel behind its back: the next
    // resync sees it in the listing and puts it back, whether its passes had been
    // stopping at an unchanged listing (nothing moved) or reading what traffic moved.
    let kernel_weight = |d: &str, i: usize| -> Option<u64> {
        let head = format!("TCP  {VIP}:80");
        let dest = format!("-> {}:80 ", rip(i));
        n(d, "ipvsadm -Ln")
            .lines()
            .skip_while(|l| !l.starts_with(&head))
            .skip(1)
            .take_while(|l| l.trim_start().starts_with("->"))
            .find(|l| l.contains(&dest))
            .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
    };
    assert_eq!(
        kernel_weight("hd1", 1),
        Some(1),
        "{}",
        n("hd1", "ipvsadm -Ln")
    );
    let last_read = st("hd1").map(|s| s["reconcile"]["last_read"].clone());
    println!("hd1's last pass before the drift read: {last_read:?}");
    let r = w.event(
        "ipvsadm sets a weight behind hd1's back",
        |_| {
            n(
                "hd1",
                &format!("ipvsadm -e -t {VIP}:80 -r {}:80 -g -w 7", rip(1)),
            );
        },
        |_| kernel_weight("hd1", 1) == Some(1),
    );
    no_failure("drift repaired", &w, &r);

    // Each director's hook was told of hrs1's web server going down, the operator's
    // drain of hrs2, the rejected reload and a VIP withdrawn and announced again.
    for i in 1..=2 {
        let told = std::fs::read_to_string(w.net.dir.join(format!("hd{i}-events.jsonl")))
            .unwrap_or_default();
        let has = |parts: &[&str]| told.lines().any(|l| parts.iter().all(|p| l.contains(p)));
        let server = format!(r#""server":"{}:80""#, rip(1));
        assert!(
            has(&[r#""event":"server""#, &server, r#""state":"down""#]),
            "hd{i}: no down event:\n{told}"
        );
        assert!(
            has(&[r#""event":"admin""#, r#""state":"drain""#, "scenario"]),
            "hd{i}: no drain event:\n{told}"
        );
        assert!(
            has(&[r#""state":"drain""#, r#""agent":true"#, "scenario deploy"]),
            "hd{i}: no agent drain event:\n{told}"
        );
        println!("hd{i}'s hook was told {} events", told.lines().count());
    }
    let told1 = std::fs::read_to_string(w.net.dir.join("hd1-events.jsonl")).unwrap_or_default();
    let told2 = std::fs::read_to_string(w.net.dir.join("hd2-events.jsonl")).unwrap_or_default();
    let vip = |t: &str| {
        t.lines()
            .any(|l| l.contains(r#""event":"vip""#) && l.contains(r#""announced":true"#))
    };
    assert!(
        vip(&told1) || vip(&told2),
        "no VIP event:\n{told1}\n{told2}"
    );
    assert!(
        told2
            .lines()
            .any(|l| l.contains(r#""event":"config""#) && l.contains(r#""ok":false"#)),
        "hd2: no rejected reload event:\n{told2}"
    );

    // How often each director's own thread stalled, and the check timeouts that were
    // not counted for it (the VM under emulation stalls; see health::lag).
    for d in ["hd1", "hd2"] {
        if let Some(s) = st(d) {
            println!(
                "{d}: stalled {:.1} s in all, {} check timeouts inconclusive, {} checks completed",
                s["stalled_seconds"].as_f64().unwrap_or_default(),
                s["checks_inconclusive"],
                s["checks_completed"]
            );
        }
    }
    println!("\nscenario: {} events", w.rows.len());
    for row in &w.rows {
        println!("  {row}");
    }
}
