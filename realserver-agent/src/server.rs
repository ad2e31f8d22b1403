//! The listener: mutual TLS (a client certificate from `client_ca` is required; without
//! one the handshake fails and no request is read), or plaintext on loopback only when
//! the config says so. Each connection's local address and the director's name (its
//! certificate's common name) reach the handlers.
//!
//! Anyone who can reach the port can open connections, so what an unauthenticated
//! peer can hold is bounded (see [`Limits`]): handshakes have a deadline, at most a
//! few per source address, and at most so many in all, the oldest evicted first, so
//! a director's handshake always finds room and completes in milliseconds. Requests
//! must send their headers in time (which also closes idle keep-alive connections),
//! and a full file table makes `accept` back off instead of spinning.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::{Extension, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::api::ConnInfo;
use crate::config::TlsSection;
use crate::sets;

/// A rustls server config that requires client certificates from `client_ca`.
pub fn tls_config(t: &TlsSection) -> anyhow::Result<Arc<ServerConfig>> {
    load_tls(t).map_err(|e| {
        // Under systemd a credential that could not be loaded is its fallback text,
        // which names the missing file: that says more than a PEM parse error. Looked
        // at only when loading failed, so the files are read once at start.
        match lvsdr_daemon::creds::first_not_pem([
            t.cert.as_path(),
            t.key.as_path(),
            t.client_ca.as_path(),
        ]) {
            Some(why) => anyhow::anyhow!("[agent.tls]: {why}"),
            None => e,
        }
    })
}

fn load_tls(t: &TlsSection) -> anyhow::Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&t.cert)
        .with_context(|| format!("reading {}", t.cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing {}", t.cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(&t.key)
        .with_context(|| format!("reading the key {}", t.key.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(&t.client_ca)
        .with_context(|| format!("reading {}", t.client_ca.display()))?
    {
        roots
            .add(ca.with_context(|| format!("parsing {}", t.client_ca.display()))?)
            .context("adding the client CA")?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .context("building the client certificate verifier")?;
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .context("the agent's certificate and key")?;
    Ok(Arc::new(config))
}

/// Bounds on connections.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A TLS handshake must finish within this.
    pub handshake_timeout: Duration,
    /// A request's headers must arrive within this (from the end of the previous
    /// request on a kept-alive connection: the idle timeout too).
    pub header_timeout: Duration,
    /// Handshakes under way at once, in all.
    pub handshakes: usize,
    /// Handshakes under way at once from one source address.
    pub handshakes_per_address: usize,
    /// Authenticated connections at once.
    pub authenticated: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            handshake_timeout: Duration::from_secs(3),
            header_timeout: Duration::from_secs(10),
            handshakes: 256,
            handshakes_per_address: 8,
            authenticated: 64,
        }
    }
}

/// The handshakes under way: owned by the accept loop alone.
#[derive(Debug, Default)]
struct Pending {
    next: u64,
    order: VecDeque<(u64, IpAddr, CancellationToken)>,
    per_address: HashMap<IpAddr, usize>,
}

impl Pending {
    /// Room for a handshake from `ip`: `None` if that address holds its share; the
    /// oldest handshake is evicted (cancelled) when all the room is taken.
    fn admit(&mut self, ip: IpAddr, limits: &Limits) -> Option<(u64, CancellationToken)> {
        if self.per_address.get(&ip).copied().unwrap_or(0) >= limits.handshakes_per_address {
            return None;
        }
        if self.order.len() >= limits.handshakes {
            if let Some((id, _, token)) = self.order.front().cloned() {
                token.cancel();
                self.done(id);
            }
        }
        self.next += 1;
        let token = CancellationToken::new();
        self.order.push_back((self.next, ip, token.clone()));
        *self.per_address.entry(ip).or_default() += 1;
        Some((self.next, token))
    }

    fn done(&mut self, id: u64) {
        let Some(pos) = self.order.iter().position(|(i, _, _)| *i == id) else {
            return;
        };
        if let Some((_, ip, _)) = self.order.remove(pos) {
            if let Some(n) = self.per_address.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    self.per_address.remove(&ip);
                }
            }
        }
    }
}

/// The name a director is known by: its certificate's common name (its serial number
/// if it has none).
fn director_name(certs: Option<&[CertificateDer<'_>]>) -> String {
    let Some(der) = certs.and_then(|c| c.first()) else {
        return "(no certificate)".into();
    };
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, cert)) => cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string)
            .unwrap_or_else(|| format!("serial:{}", cert.raw_serial_as_string())),
        Err(_) => "(unreadable certificate)".into(),
    }
}

/// Serves `router` until cancelled.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<ServerConfig>>,
    limits: Limits,
    cancel: CancellationToken,
) {
    let acceptor = tls.map(TlsAcceptor::from);
    let mut pending = Pending::default();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<u64>();
    let authenticated = Arc::new(Semaphore::new(limits.authenticated));
    let mut refused = lvsdr_daemon::accept::Refusals::default();
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => return,
            Some(id) = done_rx.recv() => { pending.done(id); continue }
            c = lvsdr_daemon::accept::next(&listener, "agent API") => c,
        };
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        let Some((id, evicted)) = pending.admit(peer.ip(), &limits) else {
            if let Some(refused) = refused.count() {
                info!(%peer, refused, "too many handshakes from one address; closing");
            }
            continue; // dropping the stream closes it
        };
        let router = router.clone();
        let acceptor = acceptor.clone();
        let cancel = cancel.clone();
        let done = done_tx.clone();
        let authenticated = authenticated.clone();
        tokio::spawn(async move {
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            let handshake = async {
                match &acceptor {
                    Some(a) => {
                        let tls = a.accept(stream).await.map_err(|e| e.to_string())?;
                        let name = director_name(tls.get_ref().1.peer_certificates());
                        Ok::<_, String>((
                            Io::Tls(Box::new(tls)),
                            sets::director_key(&name, peer.ip()),
                        ))
                    }
                    None => Ok((
                        Io::Plain(stream),
                        sets::director_key("(plaintext)", peer.ip()),
                    )),
                }
            };
            let shaken = tokio::select! {
                r = tokio::time::timeout(limits.handshake_timeout, handshake) => r,
                _ = evicted.cancelled() => { let _ = done.send(id); return }
            };
            let _ = done.send(id);
            let (io, director) = match shaken {
                Ok(Ok(x)) => x,
                Ok(Err(e)) => {
                    info!(%peer, error = %e, "TLS handshake refused");
                    return;
                }
                Err(_) => {
                    debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let Ok(_permit) = authenticated.try_acquire_owned() else {
                warn!(%peer, "too many authenticated connections; closing");
                return;
            };
            let service = router.layer(Extension(ConnInfo {
                local: local.ip(),
                director,
            }));
            let svc = TowerToHyperService::new(service);
            let served = match io {
                Io::Tls(tls) => {
                    let conn = http.serve_connection(TokioIo::new(tls), svc);
                    tokio::select! { r = conn => r, _ = cancel.cancelled() => Ok(()) }
                }
                Io::Plain(s) => {
                    let conn = http.serve_connection(TokioIo::new(s), svc);
                    tokio::select! { r = conn => r, _ = cancel.cancelled() => Ok(()) }
                }
            };
            if let Err(e) = served {
                debug!(%peer, error = %e, "connection");
            }
        });
    }
}

enum Io {
    Tls(Box<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>),
    Plain(tokio::net::TcpStream),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The TLS files load as they are; a credential's fallback text where the key
    /// should be is quoted, whatever the PEM loader would have said of it.
    #[test]
    fn tls_files_load_and_a_credential_fallback_is_named() {
        let dir = std::env::temp_dir().join(format!("lvsdr-agent-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        lvsdr_pki::init(&dir, &["192.0.2.7".to_string()]).expect("pki");
        let t = TlsSection {
            cert: dir.join("agent-192.0.2.7.pem"),
            key: dir.join("agent-192.0.2.7.key"),
            client_ca: dir.join("ca.pem"),
        };
        assert!(tls_config(&t).is_ok());
        let why = "missing: LoadCredential= could not read /etc/lvsdr/agent.key";
        std::fs::write(&t.key, format!("{why}\n")).expect("write");
        let e = format!("{:#}", tls_config(&t).expect_err("no key"));
        assert!(e.starts_with("[agent.tls]: ") && e.contains(why), "{e}");
        std::fs::write(&t.key, [0u8, 159, 146, 150]).expect("write");
        let e = format!("{:#}", tls_config(&t).expect_err("no key"));
        assert!(e.contains("reading the key"), "the loader's own error: {e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn one_address_gets_its_share_and_a_full_table_evicts_the_oldest() {
        let limits = Limits {
            handshakes: 3,
            handshakes_per_address: 2,
            ..Limits::default()
        };
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let mut p = Pending::default();
        let (a1, t1) = p.admit(ip("10.0.0.9"), &limits).expect("first");
        let _a2 = p.admit(ip("10.0.0.9"), &limits).expect("second");
        assert!(
            p.admit(ip("10.0.0.9"), &limits).is_none(),
            "a third from one address"
        );
        let _b = p.admit(ip("10.0.0.8"), &limits).expect("another address");
        // Full: the director's handshake still gets in, the oldest goes.
        assert!(!t1.is_cancelled());
        let _d = p.admit(ip("10.0.0.1"), &limits).expect("the director");
        assert!(t1.is_cancelled(), "the oldest handshake was not evicted");
        assert_eq!(p.order.len(), 3);
        p.done(a1); // its task reports in late: nothing happens
        assert_eq!(p.order.len(), 3);
        assert_eq!(p.per_address[&ip("10.0.0.9")], 1);
    }
}
