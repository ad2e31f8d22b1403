//! Client loops for the VM tests: a thread in a client namespace makes a new request
//! every period until stopped, and counts what it got. What the scenario and restart
//! tests assert on: failed requests and the longest time without an answer.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::lab::in_ns;

/// What a loop counted.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Requests answered.
    pub ok: u64,
    /// Requests that failed, with when (UTC, to match against the logs) and why (the
    /// first 20).
    pub failed: u64,
    pub errors: Vec<String>,
    /// The longest time between two answered requests.
    pub longest_gap: Duration,
    /// Who answered, by the first line of the body (the test servers name
    /// themselves).
    pub answered_by: std::collections::BTreeMap<String, u64>,
}

impl Tally {
    fn record(&mut self, r: Result<String, String>, last_ok: &mut Instant) {
        match r {
            Ok(who) => {
                self.ok += 1;
                self.longest_gap = self.longest_gap.max(last_ok.elapsed());
                *last_ok = Instant::now();
                *self.answered_by.entry(who).or_default() += 1;
            }
            Err(e) => {
                self.failed += 1;
                if self.errors.len() < 20 {
                    let at = humantime::format_rfc3339_millis(std::time::SystemTime::now());
                    self.errors.push(format!("{at} {e}"));
                }
            }
        }
    }
}

/// A running loop.
pub struct ClientLoop {
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ClientLoop {
    /// HTTP/1.0 GET / to `addr` from namespace `ns`, a new connection every `every`.
    pub fn http(ns: &str, addr: SocketAddr, every: Duration) -> ClientLoop {
        ClientLoop::start(ns, every, move || move || get(addr))
    }

    /// One datagram to `addr` every `every`, always from source port `port` (one flow,
    /// as a resolver's client that keeps its socket): each answer names its server.
    pub fn udp(ns: &str, port: u16, addr: SocketAddr, every: Duration) -> ClientLoop {
        ClientLoop::start(ns, every, move || {
            let sock = std::net::UdpSocket::bind(("0.0.0.0", port)).expect("bind the client port");
            sock.set_read_timeout(Some(Duration::from_millis(300)))
                .expect("timeout");
            move || {
                sock.send_to(b"query", addr)
                    .map_err(|e| format!("send: {e}"))?;
                let mut buf = [0u8; 512];
                let (n, _) = sock
                    .recv_from(&mut buf)
                    .map_err(|e| format!("no answer: {e}"))?;
                Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
            }
        })
    }

    /// Runs `make()`'s request every `every`, in namespace `ns` (made there: a socket
    /// it opens belongs to the namespace).
    fn start<F>(ns: &str, every: Duration, make: impl FnOnce() -> F + Send + 'static) -> ClientLoop
    where
        F: FnMut() -> Result<String, String>,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let (s, t, ns) = (stop.clone(), tally.clone(), ns.to_string());
        let thread = std::thread::spawn(move || {
            in_ns(&ns, move || {
                let mut request = make();
                let mut last_ok = Instant::now();
                while !s.load(Ordering::Relaxed) {
                    let r = request();
                    if let Ok(mut t) = t.lock() {
                        t.record(r, &mut last_ok);
                    }
                    std::thread::sleep(every);
                }
            })
        });
        ClientLoop {
            stop,
            tally,
            thread: Some(thread),
        }
    }

    /// What it counted so far.
    pub fn tally(&self) -> Tally {
        self.tally.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Counts from zero again (per event figures).
    pub fn reset(&self) -> Tally {
        self.tally
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default()
    }

    /// Stops it and returns the count.
    pub fn stop(mut self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.tally()
    }
}

impl Drop for ClientLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One GET: the first line of the body (the server's name), or why not.
pub fn get(addr: SocketAddr) -> Result<String, String> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(s, "GET / HTTP/1.0\r\n\r\n").map_err(|e| format!("write: {e}"))?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)
        .map_err(|e| format!("read: {e}"))?;
    if !resp.starts_with("HTTP/1.0 200") && !resp.starts_with("HTTP/1.1 200") {
        return Err(format!("answer: {:?}", resp.lines().next()));
    }
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or("");
    Ok(body.lines().next().unwrap_or("").trim().to_string())
}
