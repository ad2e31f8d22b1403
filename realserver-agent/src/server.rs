//! The listener: mutual TLS (a client certificate from `client_ca` is required; without
//! one the handshake fails and no request is read), or plaintext on loopback only when
//! the config says so. Each connection's local address reaches the handlers.

use std::sync::Arc;

use anyhow::Context;
use axum::{Extension, Router};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::api::ConnInfo;
use crate::config::TlsSection;

/// A rustls server config that requires client certificates from `client_ca`.
pub fn tls_config(t: &TlsSection) -> anyhow::Result<Arc<ServerConfig>> {
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

/// Serves `router` until cancelled.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<ServerConfig>>,
    cancel: CancellationToken,
) {
    let acceptor = tls.map(TlsAcceptor::from);
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => { debug!(error = %e, "accept"); continue }
            },
        };
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        let service = router
            .clone()
            .layer(Extension(ConnInfo { local: local.ip() }));
        let acceptor = acceptor.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let http = hyper::server::conn::http1::Builder::new();
            let svc = TowerToHyperService::new(service);
            let served = match acceptor {
                Some(a) => match a.accept(stream).await {
                    Ok(tls) => {
                        let conn = http.serve_connection(TokioIo::new(tls), svc);
                        tokio::select! { r = conn => r, _ = cancel.cancelled() => Ok(()) }
                    }
                    Err(e) => {
                        info!(%peer, error = %e, "TLS handshake refused");
                        return;
                    }
                },
                None => {
                    let conn = http.serve_connection(TokioIo::new(stream), svc);
                    tokio::select! { r = conn => r, _ = cancel.cancelled() => Ok(()) }
                }
            };
            if let Err(e) = served {
                debug!(%peer, error = %e, "connection");
            }
        });
    }
}
