//! A DR lab in network namespaces: a bridge; a client, a director (holding the VIP)
//! and real servers (the VIP on `lo`, ARP suppressed by sysctl) hanging off it. The
//! test process serves HTTP and echo from inside the real servers' namespaces
//! (threads that `setns` into them), so a test can stop and start a server at will,
//! and it makes client requests the same way.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::sh;

/// Runs `f` on a new thread inside network namespace `ns`.
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        enter(&path);
        f()
    })
    .join()
    .expect("thread in netns")
}

fn enter(path: &str) {
    let fd = File::open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
}

/// The lab's hosts. `net` picks the /24 (10.net.0.0/24) so that labs of tests
/// running in parallel do not meet.
pub struct Lab {
    pub tag: String,
    pub net: u8,
    pub client: String,
    pub director: String,
    pub servers: Vec<String>,
}

impl Lab {
    /// Builds the lab with `n` real servers holding the VIP on `lo`, ARP suppressed by
    /// sysctl: set up by hand, as the director tests need it.
    pub fn new(tag: &str, net: u8, n: usize) -> Lab {
        let lab = Lab::bare(tag, net, n);
        lab.vip_by_hand(true);
        lab
    }

    /// Puts the VIP on every real server's `lo`, with or without ARP suppression.
    pub fn vip_by_hand(&self, suppress: bool) {
        for s in &self.servers {
            sh(&format!("ip -n {s} addr add {}/32 dev lo", self.vip()));
            if suppress {
                sh(&format!(
                    "ip netns exec {s} sysctl -qw net.ipv4.conf.all.arp_ignore=1 \
                     net.ipv4.conf.all.arp_announce=2 net.ipv4.conf.eth0.arp_ignore=1 \
                     net.ipv4.conf.eth0.arp_announce=2"
                ));
            }
        }
    }

    /// The MAC address of `ns`'s eth0.
    pub fn mac(&self, ns: &str) -> String {
        sh(&format!(
            "ip netns exec {ns} cat /sys/class/net/eth0/address"
        ))
        .trim()
        .to_string()
    }

    /// The distinct MACs that answer an ARP request for the VIP from the client.
    pub fn arp_answers(&self) -> Vec<String> {
        let out = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.client,
                "busybox",
                "arping",
                "-c",
                "3",
                "-w",
                "3",
                "-I",
                "eth0",
            ])
            .arg(self.vip())
            .output()
            .expect("arping");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut macs: Vec<String> = text
            .lines()
            .filter_map(|l| Some(l.split_once('[')?.1.split_once(']')?.0.to_lowercase()))
            .collect();
        macs.sort();
        macs.dedup();
        macs
    }

    /// Builds the lab with `n` bare real servers (no VIP, no ARP settings).
    pub fn bare(tag: &str, net: u8, n: usize) -> Lab {
        let lab = Lab {
            tag: tag.to_string(),
            net,
            client: format!("{tag}c"),
            director: format!("{tag}d"),
            servers: (1..=n).map(|i| format!("{tag}r{i}")).collect(),
        };
        let br = format!("b{tag}");
        sh(&format!(
            "ip link add {br} type bridge forward_delay 0 && ip link set {br} up"
        ));
        let mut hosts = vec![(lab.client.clone(), 2u8), (lab.director.clone(), 1)];
        hosts.extend(
            lab.servers
                .iter()
                .enumerate()
                .map(|(i, s)| (s.clone(), 11 + i as u8)),
        );
        for (ns, host) in &hosts {
            sh(&format!(
                "ip netns add {ns} && ip link add v{ns} type veth peer name eth0 netns {ns} \
                 && ip link set v{ns} master {br} up && ip -n {ns} link set lo up \
                 && ip -n {ns} link set eth0 up && ip -n {ns} addr add 10.{net}.0.{host}/24 dev eth0"
            ));
        }
        sh(&format!(
            "ip -n {} addr add {}/32 dev eth0",
            lab.director,
            lab.vip()
        ));
        lab
    }

    /// The virtual IP.
    pub fn vip(&self) -> String {
        format!("10.{}.0.100", self.net)
    }

    /// Real server `i`'s address (1-based).
    pub fn rip(&self, i: usize) -> String {
        format!("10.{}.0.{}", self.net, 10 + i)
    }

    /// One HTTP GET of `path` from the client to VIP:port, on a fresh connection.
    pub fn get(&self, port: u16, path: &str) -> Result<String, String> {
        let addr: SocketAddr = format!("{}:{port}", self.vip()).parse().expect("addr");
        let path = path.to_string();
        in_ns(&self.client, move || {
            http_get(addr, &path, Duration::from_secs(5))
        })
    }

    /// GET from inside the director's namespace (its status endpoint).
    pub fn director_get(&self, addr: &str, path: &str) -> Result<String, String> {
        get_in(&self.director, addr, path)
    }

    /// Opens a TCP connection from the client to VIP:port.
    pub fn connect(&self, port: u16) -> TcpStream {
        let addr: SocketAddr = format!("{}:{port}", self.vip()).parse().expect("addr");
        in_ns(&self.client, move || {
            let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            s
        })
    }

    /// `ipvsadm ARGS` in the director's namespace.
    pub fn ipvsadm(&self, args: &str) -> String {
        sh(&format!("ip netns exec {} ipvsadm {args}", self.director))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let mut all = vec![self.client.clone(), self.director.clone()];
        all.extend(self.servers.iter().cloned());
        for ns in all {
            let _ = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("ip link del v{ns}; ip netns del {ns}"))
                .status();
        }
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &format!("b{}", self.tag)])
            .status();
    }
}

/// One HTTP GET of `path` from namespace `ns` to `addr`.
pub fn get_in(ns: &str, addr: &str, path: &str) -> Result<String, String> {
    get_in_within(ns, addr, path, Duration::from_secs(5))
}

/// [`get_in`], waiting up to `wait` for the answer to start (a status of 10,000 × 10
/// services takes a debug build under emulation longer than 5 s to render).
pub fn get_in_within(ns: &str, addr: &str, path: &str, wait: Duration) -> Result<String, String> {
    let addr: SocketAddr = addr.parse().expect("addr");
    let path = path.to_string();
    in_ns(ns, move || http_get(addr, &path, wait))
}

fn http_get(addr: SocketAddr, path: &str, wait: Duration) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(wait)).map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let (head, body) = resp.split_once("\r\n\r\n").ok_or("no header end")?;
    if !head.starts_with("HTTP/1.") || !head.contains(" 200 ") {
        return Err(format!(
            "GET {path} from {addr}: {}",
            head.lines().next().unwrap_or("")
        ));
    }
    Ok(body.to_string())
}

/// A server running inside a namespace until stopped or dropped.
pub struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// HTTP on `port`: `/healthz` answers "ok", anything else `name`.
    pub fn http(ns: &str, port: u16, name: &str) -> Server {
        let name = name.to_string();
        Server::spawn(ns, port, move |mut s, _stop| {
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let text = String::from_utf8_lossy(&req);
            let path = text.split_whitespace().nth(1).unwrap_or("/");
            let body = if path == "/healthz" {
                "ok\n".to_string()
            } else {
                format!("{name}\n")
            };
            let _ = write!(
                s,
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        })
    }

    /// A line echo on `port`; each connection gets a thread of its own.
    pub fn echo(ns: &str, port: u16) -> Server {
        Server::spawn(ns, port, |s, stop| {
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                let mut w = match s.try_clone() {
                    Ok(w) => w,
                    Err(_) => return,
                };
                let mut r = BufReader::new(s);
                let mut line = String::new();
                while !stop.load(Ordering::Relaxed) {
                    match r.read_line(&mut line) {
                        Ok(0) => return,
                        Ok(_) => {
                            if w.write_all(line.as_bytes()).is_err() {
                                return;
                            }
                            line.clear();
                        }
                        Err(e)
                            if e.kind() == std::io::ErrorKind::WouldBlock
                                || e.kind() == std::io::ErrorKind::TimedOut => {}
                        Err(_) => return,
                    }
                }
            });
        })
    }

    /// A UDP responder on `port` that answers every datagram with `name` (a
    /// stand-in for a DNS server: what the data path sees is the same, and the client
    /// learns who answered).
    pub fn udp(ns: &str, port: u16, name: &str) -> Server {
        let stop = Arc::new(AtomicBool::new(false));
        let path = format!("/run/netns/{ns}");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (flag, name) = (stop.clone(), name.to_string());
        let thread = std::thread::spawn(move || {
            enter(&path);
            let sock = std::net::UdpSocket::bind(("0.0.0.0", port)).expect("bind udp");
            sock.set_read_timeout(Some(Duration::from_millis(50)))
                .expect("timeout");
            let _ = ready_tx.send(());
            let mut buf = [0u8; 512];
            while !flag.load(Ordering::Relaxed) {
                if let Ok((_, from)) = sock.recv_from(&mut buf) {
                    let _ = sock.send_to(name.as_bytes(), from);
                }
            }
        });
        ready_rx.recv().expect("udp server started");
        Server {
            stop,
            thread: Some(thread),
        }
    }

    fn spawn(
        ns: &str,
        port: u16,
        handle: impl Fn(TcpStream, Arc<AtomicBool>) + Send + 'static,
    ) -> Server {
        let stop = Arc::new(AtomicBool::new(false));
        let path = format!("/run/netns/{ns}");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            enter(&path);
            let l = TcpListener::bind(("0.0.0.0", port)).expect("bind");
            l.set_nonblocking(true).expect("nonblocking");
            let _ = ready_tx.send(());
            while !flag.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((s, _)) => {
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                        handle(s, flag.clone());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        ready_rx.recv().expect("server started");
        Server {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops it: the listener closes (connects are refused).
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.halt();
    }
}

/// An HTTP server on port 80 ("rs1", "rs2", …) and a line echo on port 9000 on each
/// of the lab's first `n` real servers.
pub fn web_and_echo(lab: &Lab, n: usize) -> Vec<Server> {
    (0..n)
        .flat_map(|i| {
            [
                Server::http(&lab.servers[i], 80, &format!("rs{}", i + 1)),
                Server::echo(&lab.servers[i], 9000),
            ]
        })
        .collect()
}
