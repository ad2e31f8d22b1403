//! The several-directors topology of the VM tests (HA, the production scenario):
//! client — router (BIRD) — one L2 segment with two directors (`hd1`, `hd2`) and real
//! servers (`hrs1`…). Removed when dropped.

use std::path::PathBuf;

use super::sh;

/// The VIP the directors serve.
pub const VIP: &str = "10.91.0.100";

/// The topology. Removed when dropped.
pub struct Net {
    pub dir: PathBuf,
    servers: usize,
}

/// A command in namespace `ns`.
pub fn n(ns: &str, cmd: &str) -> String {
    sh(&format!("ip netns exec {ns} {cmd}"))
}

impl Net {
    /// `servers` real servers (`hrs1`…, 10.81.0.21…); with `vip_by_hand`, each holds
    /// the VIP on `lo` with ARP suppressed by sysctl (else agents do it).
    pub fn new(servers: usize, vip_by_hand: bool) -> Net {
        let dir = PathBuf::from("/tmp/lvsdr-ha");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        sh("ip link add bha type bridge forward_delay 0 && ip link set bha up");
        let rs: Vec<String> = (1..=servers).map(|i| format!("hrs{i}")).collect();
        let hosts = ["hrouter", "hd1", "hd2"].map(String::from);
        for ns in hosts.iter().chain(&rs) {
            sh(&format!(
                "ip netns add {ns} && ip link add v{ns} type veth peer name eth0 netns {ns} \
                 && ip link set v{ns} master bha up && ip -n {ns} link set lo up \
                 && ip -n {ns} link set eth0 up"
            ));
        }
        sh("ip netns add hclient && ip link add c0 netns hclient type veth peer name eth1 netns hrouter \
            && ip -n hclient link set lo up && ip -n hclient link set c0 up && ip -n hrouter link set eth1 up \
            && ip -n hclient addr add 10.61.1.2/24 dev c0 && ip -n hclient route add default via 10.61.1.1 \
            && ip -n hrouter addr add 10.61.1.1/24 dev eth1 && ip -n hrouter addr add 10.81.0.1/24 dev eth0");
        n(
            "hrouter",
            "sysctl -qw net.ipv4.ip_forward=1 net.ipv4.fib_multipath_hash_policy=1 \
             net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.eth0.rp_filter=0",
        );
        for i in 1..=servers {
            let rs = format!("hrs{i}");
            sh(&format!(
                "ip -n {rs} addr add 10.81.0.2{i}/24 dev eth0 && ip -n {rs} route add default via 10.81.0.1"
            ));
            if vip_by_hand {
                sh(&format!("ip -n {rs} addr add {VIP}/32 dev lo"));
                n(
                    &rs,
                    "sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 \
                     net.ipv4.conf.eth0.arp_ignore=1 net.ipv4.conf.eth0.arp_announce=2",
                );
            }
        }
        for i in 1..=2 {
            let d = format!("hd{i}");
            // The VIP stays local on lo (not announced: BIRD exports lvsdr0 only), so
            // that packets arriving while a withdrawal converges are still served.
            sh(&format!(
                "ip -n {d} addr add 10.81.0.1{i}/24 dev eth0 && ip -n {d} route add default via 10.81.0.1 \
                 && ip -n {d} addr add {VIP}/32 dev lo"
            ));
            n(
                &d,
                "sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.eth0.arp_ignore=1",
            );
        }
        Net { dir, servers }
    }

    /// Starts BIRD in `ns` with `conf`.
    pub fn bird(&self, ns: &str, conf: &str) {
        let c = self.dir.join(format!("{ns}.conf"));
        std::fs::write(&c, conf).expect("bird conf");
        n(
            ns,
            &format!(
                "bird -c {} -s /run/{ns}.ctl -P {} 2>>{}",
                c.display(),
                self.dir.join(format!("{ns}.pid")).display(),
                self.dir.join("bird.log").display()
            ),
        );
    }

    /// BIRD on the router (ECMP over both directors, BGP + BFD every `bfd_ms`, down after
    /// `multiplier` missed) and on each director (exporting what is on `lvsdr0`); the
    /// directors' control sockets are open to the director, which runs as nobody (on a
    /// real host: BIRD's group).
    pub fn start_bird(&self, bfd_ms: u32, multiplier: u32) {
        let bfd = format!(
            "protocol bfd {{ interface \"eth0\" {{ min rx interval {bfd_ms} ms; \
             min tx interval {bfd_ms} ms; multiplier {multiplier}; }}; }}\n"
        );
        // A session BFD takes down (a link cut, or the emulated VM stalled past the
        // BFD time) comes back within seconds: BIRD's defaults wait 60 s after an
        // error and retry a connect every 120 s, longer than any wait here.
        let timers = "connect delay time 1; connect retry time 2; error wait time 1, 5;";
        self.bird(
            "hrouter",
            &format!(
                "router id 10.81.0.1;\nprotocol device {{}}\n\
                 protocol kernel {{ ipv4 {{ export all; }}; merge paths on; }}\n{bfd}\
                 protocol bgp d1 {{ local 10.81.0.1 as 65000; neighbor 10.81.0.11 as 65001; bfd on; {timers} ipv4 {{ import all; export none; }}; }}\n\
                 protocol bgp d2 {{ local 10.81.0.1 as 65000; neighbor 10.81.0.12 as 65001; bfd on; {timers} ipv4 {{ import all; export none; }}; }}\n"
            ),
        );
        for i in 1..=2u32 {
            let d = format!("hd{i}");
            self.bird(
                &d,
                &format!(
                    "router id 10.81.0.1{i};\nprotocol device {{}}\n\
                     protocol direct {{ ipv4; interface \"lvsdr0\"; }}\n{bfd}\
                     protocol bgp up {{ local 10.81.0.1{i} as 65001; neighbor 10.81.0.1 as 65000; bfd on; {timers} \
                     ipv4 {{ import none; export where source = RTS_DEVICE; }}; }}\n"
                ),
            );
            // The director runs as nobody; on a real host it gets BIRD's group
            // (SupplementaryGroups=bird).
            sh(&format!("chmod 0666 /run/{d}.ctl"));
        }
    }

    /// The router's next hops for the VIP.
    pub fn next_hops(&self) -> Vec<String> {
        let r = n("hrouter", &format!("ip route show {VIP}"));
        let mut hops: Vec<String> = r
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w[0] == "via")
            .map(|w| w[1].to_string())
            .collect();
        hops.sort();
        hops
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in ["hrouter", "hd1", "hd2"] {
            let pid =
                std::fs::read_to_string(self.dir.join(format!("{ns}.pid"))).unwrap_or_default();
            let _ = std::process::Command::new("kill").arg(pid.trim()).status();
        }
        let rs = (1..=self.servers).map(|i| format!("hrs{i}"));
        for ns in ["hrouter", "hd1", "hd2", "hclient"]
            .map(String::from)
            .into_iter()
            .chain(rs)
        {
            let _ = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("ip link del v{ns} 2>/dev/null; ip netns del {ns}"))
                .status();
        }
        let _ = std::process::Command::new("ip")
            .args(["link", "del", "bha"])
            .status();
    }
}
