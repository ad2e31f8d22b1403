//! Running one check of each kind. A check passes (`Ok`) or fails with a reason.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use regex::Regex;
use tokio::net::{TcpStream, UdpSocket};

use crate::failure::{io_failure, root_cause, CheckFailure};
use crate::syn::SynProber;
use lvsdr::health::{CheckKind, CheckSpec, HttpCheck};

/// Runs checks; holds the HTTP clients so connections setup is shared (built with the
/// first HTTP check: loading the system's root certificates takes a while, and a
/// director without HTTP checks should not wait for it before programming the table),
/// and the half-open prober (started with the first `tcp-syn` check).
#[derive(Clone)]
pub struct Checker {
    http: std::sync::Arc<SharedClient>,
    http_insecure: std::sync::Arc<SharedClient>,
    syn: std::sync::Arc<tokio::sync::OnceCell<Result<SynProber, String>>>,
    cancel: tokio_util::sync::CancellationToken,
}

/// A check's compiled form: the spec plus what is costly to build per run.
pub struct Prepared {
    /// The spec.
    pub spec: std::sync::Arc<CheckSpec>,
    /// `expect_body` (http) or `expect` (tcp-expect), compiled.
    body: Option<Regex>,
    /// An HTTPS check with `sni` or `ca` has a client of its own.
    client: Option<reqwest::Client>,
    /// Runs so far (HTTP keep-alive: which of them goes on a new connection).
    runs: std::sync::atomic::AtomicU64,
    /// A plain-HTTP check's kept connection.
    kept: crate::http1::Kept,
}

impl Prepared {
    /// Compiles what the spec needs (its body regex was validated with the config),
    /// loading the TLS roots an HTTPS check of its own needs here. The scheduler
    /// loads them once, off its thread, and calls [`Prepared::with_tls`].
    pub fn new(spec: std::sync::Arc<CheckSpec>) -> Result<Prepared, String> {
        let tls = match &spec.kind {
            CheckKind::Http(h) => crate::roots::roots_of(h)
                .map(|r| crate::roots::load(&r))
                .transpose()?,
            _ => None,
        };
        Prepared::with_tls(spec, tls)
    }

    /// As [`Prepared::new`], with the TLS settings (see [`crate::roots`]) of an HTTPS
    /// check that verifies with roots of its own (`sni` or `ca`).
    pub fn with_tls(
        spec: std::sync::Arc<CheckSpec>,
        tls: Option<rustls::ClientConfig>,
    ) -> Result<Prepared, String> {
        let (body, client) = match &spec.kind {
            CheckKind::Http(h) => (
                h.expect_body
                    .as_deref()
                    .map(Regex::new)
                    .transpose()
                    .map_err(|e| format!("expect_body: {e}"))?,
                own_client(h, spec.target, tls)?,
            ),
            CheckKind::TcpExpect { expect, .. } => (
                Some(Regex::new(expect).map_err(|e| format!("expect: {e}"))?),
                None,
            ),
            _ => (None, None),
        };
        Ok(Prepared {
            spec,
            body,
            client,
            runs: Default::default(),
            kept: Default::default(),
        })
    }
}

impl Prepared {
    /// Whether this HTTP run asks the server to close the connection after answering:
    /// every run without keep-alive; with it, one in `FRESH_EVERY`, so the next run
    /// connects anew (a listener that stopped accepting is not hidden by a kept
    /// connection).
    fn close_this_run(&self, h: &HttpCheck) -> bool {
        let run = self.runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        !h.keepalive || run % HttpCheck::FRESH_EVERY == HttpCheck::FRESH_EVERY - 1
    }
}

/// The client of an HTTPS check that names its server (`sni`: the name is resolved
/// to the real server's address, so the TLS handshake sends and verifies it) or its
/// CA. `tls`: the shared settings with its roots (none for an `insecure` check, which
/// verifies nothing).
fn own_client(
    h: &HttpCheck,
    target: SocketAddr,
    tls: Option<rustls::ClientConfig>,
) -> Result<Option<reqwest::Client>, String> {
    if !h.tls || (h.sni.is_none() && h.ca.is_none()) {
        return Ok(None);
    }
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(1);
    if let Some(name) = &h.sni {
        b = b.resolve(name, target);
    }
    b = match tls {
        Some(tls) if !h.insecure => b.use_preconfigured_tls(tls),
        None if !h.insecure => return Err("the HTTPS check's roots were not loaded".into()),
        // Verifies nothing: no roots to load.
        _ => b
            .tls_built_in_root_certs(false)
            .danger_accept_invalid_certs(true),
    };
    b.build()
        .map(Some)
        .map_err(|e| format!("the https client: {e}"))
}

/// A shared client, built at its first use.
fn shared(cell: &SharedClient, insecure: bool) -> Result<&reqwest::Client, CheckFailure> {
    cell.get_or_init(|| client(insecure).map_err(|e| format!("the HTTP client: {e}")))
        .as_ref()
        .map_err(|e| CheckFailure::Local(e.clone()))
}

type SharedClient = std::sync::OnceLock<Result<reqwest::Client, String>>;

fn client(insecure: bool) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        // One connection kept per server (each check's is its own: the pool is keyed
        // by address and port); see `HttpCheck::keepalive` for when it is closed.
        .pool_max_idle_per_host(1)
        .danger_accept_invalid_certs(insecure)
        .build()
}

impl Checker {
    /// Builds the HTTP clients. TLS uses the process's rustls provider (ring), which the
    /// binary installs at start.
    pub fn new(cancel: tokio_util::sync::CancellationToken) -> Result<Checker, reqwest::Error> {
        Ok(Checker {
            http: Default::default(),
            http_insecure: Default::default(),
            syn: Default::default(),
            cancel,
        })
    }

    /// Builds the shared HTTP client a check of this kind uses, off the runtime thread
    /// (it loads the system's root certificates: 0.4 s in the test VM), so that no
    /// check's first run pays for it within its timeout.
    pub async fn prepare_http(&self, insecure: bool) {
        let cell = if insecure {
            self.http_insecure.clone()
        } else {
            self.http.clone()
        };
        if cell.get().is_some() {
            return;
        }
        let _ = tokio::task::spawn_blocking(move || {
            let _ = shared(&cell, insecure);
        })
        .await;
    }

    /// The half-open prober, started at the first call.
    pub async fn syn_prober(&self) -> Result<SynProber, CheckFailure> {
        let cancel = self.cancel.clone();
        self.syn
            .get_or_init(|| async move { SynProber::start(cancel) })
            .await
            .clone()
            .map_err(CheckFailure::Local)
    }

    /// Runs a check once, within its timeout.
    pub async fn run(&self, p: &Prepared) -> Result<(), CheckFailure> {
        let spec = &p.spec;
        match tokio::time::timeout(spec.timeout, self.run_unbounded(p)).await {
            Ok(r) => r,
            Err(_) => Err(CheckFailure::TimedOut(spec.timeout)),
        }
    }

    async fn run_unbounded(&self, p: &Prepared) -> Result<(), CheckFailure> {
        let target = p.spec.target;
        match &p.spec.kind {
            CheckKind::Tcp => {
                let s = open(&p.spec).await?;
                // Close with RST: no FIN exchange, no TIME_WAIT, for either side; a
                // check sends nothing that could be lost.
                let _ = s.set_zero_linger();
                Ok(())
            }
            CheckKind::TcpSyn => self.syn_prober().await?.probe(target).await,
            CheckKind::Http(h) => match &p.spec.via {
                None if !h.tls => {
                    let close = p.close_this_run(h);
                    crate::http1::get(&p.kept, target, h, p.body.as_ref(), BODY_LIMIT, close).await
                }
                None => self.http_check(target, h, p).await,
                Some(via) => {
                    let s = open(&p.spec).await?;
                    crate::via::http(s, h, via, p.body.as_ref(), BODY_LIMIT).await
                }
            },
            CheckKind::Dns { query, rcode } => dns_check(target, query, *rcode).await,
            CheckKind::Exec { command } => exec_check(target, command, p.spec.timeout).await,
            CheckKind::TcpExpect { send, .. } => match &p.body {
                Some(re) => tcp_expect(open(&p.spec).await?, target, send.as_bytes(), re).await,
                None => Err(CheckFailure::Local("tcp-expect without a regex".into())),
            },
            CheckKind::Smtp => smtp_check(open(&p.spec).await?, target).await,
        }
    }

    async fn http_check(
        &self,
        target: SocketAddr,
        h: &HttpCheck,
        p: &Prepared,
    ) -> Result<(), CheckFailure> {
        let body_re = p.body.as_ref();
        let scheme = if h.tls { "https" } else { "http" };
        let url = match &h.sni {
            Some(name) => format!("{scheme}://{name}:{}{}", target.port(), h.path),
            None => format!("{scheme}://{target}{}", h.path),
        };
        let client = match (&p.client, h.insecure) {
            (Some(c), _) => c,
            (None, true) => shared(&self.http_insecure, true)?,
            (None, false) => shared(&self.http, false)?,
        };
        let mut req = client.get(&url);
        if let Some(host) = &h.host {
            req = req.header(reqwest::header::HOST, host);
        }
        if p.close_this_run(h) {
            req = req.header(reqwest::header::CONNECTION, "close");
        }
        let resp = req
            .send()
            .await
            .map_err(|e| root_cause(&format!("GET {url}"), &e))?;
        let status = resp.status().as_u16();
        if !h.expect_status.contains(status) {
            return Err(CheckFailure::Down(format!(
                "GET {url}: status {status}, expected {}",
                h.expect_status
            )));
        }
        if let Some(re) = body_re {
            // Up to BODY_LIMIT: a prefix is enough to match, and a huge or endless body
            // must not cost memory or time.
            let mut resp = resp;
            let mut bytes = Vec::new();
            while bytes.len() < BODY_LIMIT {
                match resp.chunk().await {
                    Ok(Some(c)) => {
                        bytes.extend_from_slice(&c[..c.len().min(BODY_LIMIT - bytes.len())])
                    }
                    Ok(None) => break,
                    Err(e) => return Err(root_cause(&format!("GET {url}: body"), &e)),
                }
            }
            let body = String::from_utf8_lossy(&bytes);
            if !re.is_match(&body) {
                return Err(CheckFailure::Down(format!(
                    "GET {url}: body does not match {:?}",
                    re.as_str()
                )));
            }
        }
        Ok(())
    }
}

/// How much of an HTTP body `expect_body` is matched against (and of a tcp-expect
/// answer `expect` is).
pub const BODY_LIMIT: usize = 64 * 1024;

/// The check's connection: to the real server, or through the DR path (see
/// [`crate::via`]).
async fn open(spec: &CheckSpec) -> Result<TcpStream, CheckFailure> {
    match &spec.via {
        None => TcpStream::connect(spec.target)
            .await
            .map_err(|e| io_failure(&format!("connect {}", spec.target), &e)),
        Some(via) => crate::via::connect(spec.target, via).await,
    }
}

/// On a new connection: sends `send`, and reads until what came matches `re`, the
/// server closes, or BODY_LIMIT bytes came. Closed with RST, as a tcp check is.
async fn tcp_expect(
    mut s: TcpStream,
    target: SocketAddr,
    send: &[u8],
    re: &Regex,
) -> Result<(), CheckFailure> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = s.set_zero_linger();
    if !send.is_empty() {
        s.write_all(send)
            .await
            .map_err(|e| io_failure(&format!("send to {target}"), &e))?;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s
            .read(&mut buf)
            .await
            .map_err(|e| io_failure(&format!("read from {target}"), &e))?;
        got.extend_from_slice(&buf[..n.min(BODY_LIMIT - got.len())]);
        if re.is_match(&String::from_utf8_lossy(&got)) {
            return Ok(());
        }
        if n == 0 || got.len() >= BODY_LIMIT {
            let shown: String = String::from_utf8_lossy(&got).chars().take(80).collect();
            return Err(CheckFailure::Down(format!(
                "{target}: answer {shown:?} does not match {:?}",
                re.as_str()
            )));
        }
    }
}

/// On a new connection: an SMTP greeting, the server's 220 banner (one line, or
/// several `220-` lines ending with `220 `), then QUIT.
async fn smtp_check(s: TcpStream, target: SocketAddr) -> Result<(), CheckFailure> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    // Lines of at most 1 KiB; a banner that never ends is a timeout.
    let mut s = BufReader::new(s);
    let mut line = String::new();
    loop {
        line.clear();
        let n = AsyncReadExt::take(&mut s, 1024)
            .read_line(&mut line)
            .await
            .map_err(|e| io_failure(&format!("read from {target}"), &e))?;
        if n == 0 {
            return Err(CheckFailure::Down(format!(
                "{target}: closed before a banner"
            )));
        }
        if !line.starts_with("220") {
            return Err(CheckFailure::Down(format!(
                "{target}: greeting {:?}, expected 220",
                line.trim_end()
            )));
        }
        if !line.starts_with("220-") {
            break;
        }
    }
    let s = s.get_mut();
    let _ = s.write_all(b"QUIT\r\n").await;
    let _ = s.set_zero_linger();
    Ok(())
}

/// A minimal DNS query (header + one question, type A, class IN): the check needs any
/// well-formed answer to its id, nothing a resolver library adds.
fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(32);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD; 1 question
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        let bytes = &label.as_bytes()[..label.len().min(63)];
        q.push(bytes.len() as u8);
        q.extend_from_slice(bytes);
    }
    q.push(0);
    q.extend_from_slice(&[0, 1, 0, 1]); // A, IN
    q
}

/// What an answer to query `id` says: `None` if it is not one (someone else's, or
/// malformed), else whether its rcode is the one expected.
pub fn dns_answer(buf: &[u8], id: u16, expect: u8) -> Option<Result<(), String>> {
    // A full header, our id, the QR (response) bit.
    if buf.len() < 12 || buf[..2] != id.to_be_bytes() || buf[2] & 0x80 == 0 {
        return None;
    }
    let rcode = buf[3] & 0x0f;
    Some(if rcode == expect {
        Ok(())
    } else {
        Err(format!("answered with rcode {rcode}, expected {expect}"))
    })
}

async fn dns_check(target: SocketAddr, name: &str, rcode: u8) -> Result<(), CheckFailure> {
    let bind: SocketAddr = if target.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(bind)
        .await
        .map_err(|e| io_failure("udp bind", &e))?;
    sock.connect(target)
        .await
        .map_err(|e| io_failure(&format!("udp connect {target}"), &e))?;
    // Unpredictable, so that nobody off-path answers for the server.
    let id = {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u16(target.port());
        h.finish() as u16
    };
    let query = dns_query(id, name);
    sock.send(&query)
        .await
        .map_err(|e| io_failure(&format!("dns query to {target}"), &e))?;
    let mut buf = [0u8; 1500];
    loop {
        let n = sock
            .recv(&mut buf)
            .await
            .map_err(|e| io_failure(&format!("dns answer from {target}"), &e))?;
        if let Some(r) = dns_answer(&buf[..n], id, rcode) {
            return r.map_err(|e| CheckFailure::Down(format!("dns {target}: {e}")));
        }
    }
}

/// Kills a check command's whole process group when the check ends, however it
/// ends (done, timed out, cancelled): nothing it started outlives it.
struct Group(nix::unistd::Pid);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = nix::sys::signal::killpg(self.0, nix::sys::signal::Signal::SIGKILL);
    }
}

/// How much of an exec check's stderr is kept (its last line names the failure).
const EXEC_OUTPUT_LIMIT: usize = 4096;

/// Reads `r` to its end, keeping only its last `EXEC_OUTPUT_LIMIT` bytes. The whole
/// of it is read: a pipe closed after the first 4 KiB killed a talkative command
/// with SIGPIPE, and its check went down for it.
async fn tail_of(mut r: impl tokio::io::AsyncRead + Unpin) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut kept = Vec::with_capacity(EXEC_OUTPUT_LIMIT);
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = r.read(&mut buf).await {
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > EXEC_OUTPUT_LIMIT {
            kept.drain(..kept.len() - EXEC_OUTPUT_LIMIT);
        }
    }
    kept
}

/// `setpriv`, where it is: it runs the command with no capabilities inherited from
/// the director (CAP_NET_ADMIN must not reach an operator's script).
pub fn setpriv() -> Option<&'static str> {
    ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
}

async fn exec_check(
    target: SocketAddr,
    command: &str,
    timeout: Duration,
) -> Result<(), CheckFailure> {
    let mut cmd = match setpriv() {
        Some(sp) => {
            let mut c = tokio::process::Command::new(sp);
            c.args([
                "--inh-caps=-all",
                "--ambient-caps=-all",
                "--",
                "sh",
                "-c",
                command,
            ]);
            c
        }
        None => {
            let mut c = tokio::process::Command::new("sh");
            c.args(["-c", command]);
            c
        }
    };
    // A clean environment: the check gets what it needs and nothing of the director's.
    cmd.env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("LVSDR_RS_ADDR", target.ip().to_string())
        .env("LVSDR_RS_PORT", target.port().to_string())
        .env("LVSDR_CHECK_TIMEOUT", timeout.as_secs_f64().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| io_failure(&format!("exec {command:?}"), &e))?;
    let _group = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(|id| Group(nix::unistd::Pid::from_raw(id)));
    let err = match child.stderr.take() {
        Some(stderr) => tail_of(stderr).await,
        None => Vec::new(),
    };
    let status = child
        .wait()
        .await
        .map_err(|e| io_failure(&format!("exec {command:?}"), &e))?;
    if status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&err);
    let tail = err.lines().last().unwrap_or("").trim();
    Err(CheckFailure::Down(format!(
        "exec {command:?}: {status}{}",
        if tail.is_empty() {
            String::new()
        } else {
            format!(": {tail}")
        }
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dns_answer_counts_only_with_our_id_and_the_expected_rcode() {
        let mut a = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        assert_eq!(dns_answer(&a, 0x1234, 0), Some(Ok(())));
        assert_eq!(dns_answer(&a, 0x9999, 0), None, "someone else's id");
        a[3] = 0x83; // NXDOMAIN
        assert!(dns_answer(&a, 0x1234, 0).is_some_and(|r| r.is_err()));
        assert_eq!(dns_answer(&a, 0x1234, 3), Some(Ok(())));
        a[2] = 0x01; // a query, not an answer
        assert_eq!(dns_answer(&a, 0x1234, 3), None);
        assert_eq!(dns_answer(&a[..5], 0x1234, 3), None);
    }

    #[tokio::test]
    async fn an_exec_check_runs_clean_and_its_whole_group_dies_with_it() {
        let target: SocketAddr = "192.0.2.7:25".parse().expect("addr");
        std::env::set_var("LVSDR_TEST_SECRET", "x");
        let clean = exec_check(
            target,
            "test -z \"$LVSDR_TEST_SECRET\" && test \"$LVSDR_RS_ADDR\" = 192.0.2.7",
            Duration::from_secs(5),
        )
        .await;
        assert!(clean.is_ok(), "{clean:?}");
        // A command that leaves a child behind and outlives its timeout.
        let marker = format!("sleep 299.{}", std::process::id());
        let cmd = format!("{marker} & {marker}");
        let r = tokio::time::timeout(
            Duration::from_millis(300),
            exec_check(target, &cmd, Duration::from_millis(300)),
        )
        .await;
        assert!(r.is_err(), "the check did not time out");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let left = std::process::Command::new("pgrep")
            .args(["-f", &marker])
            .output()
            .expect("pgrep");
        assert!(
            left.stdout.is_empty(),
            "the command outlived its check: {:?}",
            String::from_utf8_lossy(&left.stdout)
        );
        let err = exec_check(
            target,
            "echo first >&2; echo 'the real reason' >&2; exit 3",
            Duration::from_secs(5),
        )
        .await;
        assert!(err.is_err_and(|e| e.to_string().ends_with("exit status: 3: the real reason")));
    }

    /// More than 4 KiB on stderr: the pipe was closed after 4 KiB, the command died of
    /// SIGPIPE, and a healthy server was marked down.
    #[tokio::test]
    async fn an_exec_check_that_writes_much_to_stderr_still_succeeds() {
        let target: SocketAddr = "192.0.2.7:25".parse().expect("addr");
        let loud = exec_check(
            target,
            "i=0; while [ $i -lt 2000 ]; do echo \"line $i of noise\" >&2; i=$((i+1)); done; exit 0",
            Duration::from_secs(20),
        )
        .await;
        assert!(loud.is_ok(), "{loud:?}");
        let last = exec_check(
            target,
            "i=0; while [ $i -lt 2000 ]; do echo noise >&2; i=$((i+1)); done; echo 'why' >&2; exit 4",
            Duration::from_secs(20),
        )
        .await;
        assert!(last.is_err_and(|e| e.to_string().ends_with("exit status: 4: why")));
    }

    #[test]
    fn dns_query_encodes_the_name_as_labels() {
        let q = dns_query(0x1234, "example.com.");
        assert_eq!(&q[..4], &[0x12, 0x34, 0x01, 0x00]);
        assert_eq!(&q[12..], b"\x07example\x03com\x00\x00\x01\x00\x01");
        assert_eq!(&dns_query(1, ".")[12..], b"\x00\x00\x01\x00\x01");
    }
}
