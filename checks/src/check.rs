//! Running a check: the [`Checker`] (shared clients and the half-open prober), a
//! check's [`Prepared`] form, and the dispatch to each kind. The `tcp` connect and
//! HTTPS (through reqwest) are here; every other kind's exchange is in a file of its
//! own: `syn`, `http1` (plain HTTP on a kept connection), `via` (through the DR
//! path), `dns`, `exec`, `tcp_expect`, `smtp`. A check passes (`Ok`) or fails with a
//! reason.

use std::net::SocketAddr;

use regex::Regex;
use tokio::net::TcpStream;

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
    /// A plain-HTTP check's request and expectations, for the scheduler's epoll
    /// prober ([`crate::http_probe`]).
    exchange: Option<std::sync::Arc<crate::http_probe::Exchange>>,
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
        let exchange = match &spec.kind {
            CheckKind::Http(h) if !h.tls && spec.via.is_none() => {
                crate::http_probe::Exchange::new(spec.target, h, body.clone(), BODY_LIMIT)
                    .ok()
                    .map(std::sync::Arc::new)
            }
            _ => None,
        };
        Ok(Prepared {
            spec,
            body,
            client,
            runs: Default::default(),
            kept: Default::default(),
            exchange,
        })
    }
}

impl Prepared {
    /// A plain-HTTP check's exchange, for the epoll prober.
    pub(crate) fn exchange(&self) -> Option<&std::sync::Arc<crate::http_probe::Exchange>> {
        self.exchange.as_ref()
    }

    /// Whether this HTTP run asks the server to close the connection after answering:
    /// every run without keep-alive; with it, one in `FRESH_EVERY`, so the next run
    /// connects anew (a listener that stopped accepting is not hidden by a kept
    /// connection).
    pub(crate) fn close_this_run(&self, h: &HttpCheck) -> bool {
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
            CheckKind::Dns { query, rcode } => crate::dns::dns_check(target, query, *rcode).await,
            CheckKind::Exec { command } => {
                crate::exec::exec_check(target, command, p.spec.timeout).await
            }
            CheckKind::TcpExpect { send, .. } => match &p.body {
                Some(re) => {
                    let s = open(&p.spec).await?;
                    crate::tcp_expect::tcp_expect(s, target, send.as_bytes(), re, BODY_LIMIT).await
                }
                None => Err(CheckFailure::Local("tcp-expect without a regex".into())),
            },
            CheckKind::Smtp => crate::smtp::smtp_check(open(&p.spec).await?, target).await,
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
