//! Running one check of each kind. A check passes (`Ok`) or fails with a reason.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use regex::Regex;
use tokio::net::{TcpStream, UdpSocket};

use super::failure::{io_failure, root_cause, CheckFailure};
use super::spec::{CheckKind, CheckSpec, HttpCheck};
use super::syn::SynProber;

/// Runs checks; holds the HTTP clients so connections setup is shared, and the
/// half-open prober (started with the first `tcp-syn` check).
#[derive(Clone)]
pub struct Checker {
    http: reqwest::Client,
    http_insecure: reqwest::Client,
    syn: std::sync::Arc<tokio::sync::OnceCell<Result<SynProber, String>>>,
    cancel: tokio_util::sync::CancellationToken,
}

/// A check's compiled form: the spec plus what is costly to build per run.
pub struct Prepared {
    /// The spec.
    pub spec: std::sync::Arc<CheckSpec>,
    body: Option<Regex>,
}

impl Prepared {
    /// Compiles what the spec needs (its body regex was validated with the config).
    pub fn new(spec: std::sync::Arc<CheckSpec>) -> Result<Prepared, String> {
        let body = match &spec.kind {
            CheckKind::Http(HttpCheck {
                expect_body: Some(re),
                ..
            }) => Some(Regex::new(re).map_err(|e| format!("expect_body: {e}"))?),
            _ => None,
        };
        Ok(Prepared { spec, body })
    }
}

fn client(insecure: bool) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        // A fresh connection per check: a pooled one would hide a dead listener.
        .pool_max_idle_per_host(0)
        .danger_accept_invalid_certs(insecure)
        .build()
}

impl Checker {
    /// Builds the HTTP clients. TLS uses the process's rustls provider (ring), which the
    /// binary installs at start.
    pub fn new(cancel: tokio_util::sync::CancellationToken) -> Result<Checker, reqwest::Error> {
        Ok(Checker {
            http: client(false)?,
            http_insecure: client(true)?,
            syn: Default::default(),
            cancel,
        })
    }

    /// Runs a check once, within its timeout.
    pub async fn run(&self, p: &Prepared) -> Result<(), CheckFailure> {
        let spec = &p.spec;
        match tokio::time::timeout(spec.timeout, self.run_unbounded(p)).await {
            Ok(r) => r,
            Err(_) => Err(CheckFailure::Down(format!(
                "timed out after {:?}",
                spec.timeout
            ))),
        }
    }

    async fn run_unbounded(&self, p: &Prepared) -> Result<(), CheckFailure> {
        let target = p.spec.target;
        match &p.spec.kind {
            CheckKind::Tcp => {
                let s = TcpStream::connect(target)
                    .await
                    .map_err(|e| io_failure(&format!("connect {target}"), &e))?;
                // Close with RST: no FIN exchange, no TIME_WAIT, for either side; a
                // check sends nothing that could be lost.
                let _ = s.set_zero_linger();
                Ok(())
            }
            CheckKind::TcpSyn => {
                let cancel = self.cancel.clone();
                let prober = self
                    .syn
                    .get_or_init(|| async move { SynProber::start(cancel) })
                    .await
                    .as_ref()
                    .map_err(|e| CheckFailure::Local(e.clone()))?;
                prober.probe(target).await
            }
            CheckKind::Http(h) => self.http_check(target, h, p.body.as_ref()).await,
            CheckKind::Dns { query } => dns_check(target, query).await,
            CheckKind::Exec { command } => exec_check(target, command, p.spec.timeout)
                .await
                .map_err(CheckFailure::from),
        }
    }

    async fn http_check(
        &self,
        target: SocketAddr,
        h: &HttpCheck,
        body_re: Option<&Regex>,
    ) -> Result<(), CheckFailure> {
        let scheme = if h.tls { "https" } else { "http" };
        let url = format!("{scheme}://{target}{}", h.path);
        let client = if h.insecure {
            &self.http_insecure
        } else {
            &self.http
        };
        let mut req = client.get(&url);
        if let Some(host) = &h.host {
            req = req.header(reqwest::header::HOST, host);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| root_cause(&format!("GET {url}"), &e))?;
        let status = resp.status().as_u16();
        if status != h.expect_status {
            return Err(CheckFailure::Down(format!(
                "GET {url}: status {status}, expected {}",
                h.expect_status
            )));
        }
        if let Some(re) = body_re {
            let body = resp
                .text()
                .await
                .map_err(|e| root_cause(&format!("GET {url}: body"), &e))?;
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

async fn dns_check(target: SocketAddr, name: &str) -> Result<(), CheckFailure> {
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
    // The id only has to differ between checks: time is good enough.
    let id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x4c56, |d| d.subsec_nanos() as u16);
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
        // Well-formed: a full header, our id, the QR (response) bit.
        if n >= 12 && buf[..2] == id.to_be_bytes() && buf[2] & 0x80 != 0 {
            return Ok(());
        }
    }
}

async fn exec_check(target: SocketAddr, command: &str, timeout: Duration) -> Result<(), String> {
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("LVSDR_RS_ADDR", target.ip().to_string())
        .env("LVSDR_RS_PORT", target.port().to_string())
        .env("LVSDR_CHECK_TIMEOUT", timeout.as_secs_f64().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("exec {command:?}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let tail = err.lines().last().unwrap_or("").trim();
    Err(format!(
        "exec {command:?}: {}{}",
        out.status,
        if tail.is_empty() {
            String::new()
        } else {
            format!(": {tail}")
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_query_encodes_the_name_as_labels() {
        let q = dns_query(0x1234, "example.com.");
        assert_eq!(&q[..4], &[0x12, 0x34, 0x01, 0x00]);
        assert_eq!(&q[12..], b"\x07example\x03com\x00\x00\x01\x00\x01");
        assert_eq!(&dns_query(1, ".")[12..], b"\x00\x00\x01\x00\x01");
    }
}
