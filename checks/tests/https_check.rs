//! HTTPS checks against a TLS server on loopback: with `sni` (and the site's CA) the
//! certificate is verified for the server's name while the connection goes to the
//! real server's address, so nobody needs `insecure_skip_verify`; a large body is read
//! to a limit only.

use std::sync::Arc;
use std::time::Duration;

use lvsdr_checks::{CheckKind, CheckSpec, Checker, HttpCheck, Prepared, StatusSet};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Serves `body` over TLS with the certificate for `web.test`, until dropped.
async fn server(dir: &std::path::Path, body: Vec<u8>) -> std::net::SocketAddr {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(dir.join("agent-web.test.pem"))
            .expect("cert")
            .collect::<Result<_, _>>()
            .expect("cert");
    let key = PrivateKeyDer::from_pem_file(dir.join("agent-web.test.key")).expect("key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let body = Arc::new(body);
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let (acceptor, body) = (acceptor.clone(), body.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(s).await else {
                    return;
                };
                let mut buf = [0u8; 1024];
                let _ = tls.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = tls.write_all(head.as_bytes()).await;
                let _ = tls.write_all(&body).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

fn spec(
    target: std::net::SocketAddr,
    sni: Option<&str>,
    ca: &std::path::Path,
    body: Option<&str>,
) -> Prepared {
    let spec = CheckSpec {
        via: None,
        target,
        kind: CheckKind::Http(HttpCheck {
            tls: true,
            insecure: false,
            path: "/healthz".into(),
            host: None,
            expect_status: StatusSet::one(200),
            expect_body: body.map(str::to_string),
            sni: sni.map(str::to_string),
            ca: Some(ca.to_path_buf()),
            keepalive: true,
        }),
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(5),
        rise: 1,
        fall: 1,
    };
    Prepared::new(Arc::new(spec)).expect("prepared")
}

#[tokio::test]
async fn sni_verifies_the_name_while_connecting_to_the_address() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = std::env::temp_dir().join(format!("lvsdr-https-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    lvsdr_pki::init(&dir, &["web.test".to_string()]).expect("pki");
    // The body is larger than what is read: the match needs only its start.
    let mut body = b"ok, healthy\n".to_vec();
    body.resize(8 * 1024 * 1024, b'x');
    let addr = server(&dir, body).await;
    let checker = Checker::new(tokio_util::sync::CancellationToken::new()).expect("checker");
    let ca = dir.join("ca.pem");

    let r = checker
        .run(&spec(addr, Some("web.test"), &ca, Some("^ok, healthy")))
        .await;
    assert!(r.is_ok(), "{r:?}");

    // Without sni the certificate (for web.test) does not match the address.
    let r = checker.run(&spec(addr, None, &ca, None)).await;
    let e = r.expect_err("an unverified certificate passed").to_string();
    assert!(
        e.contains("certificate") || e.contains("Certificate"),
        "{e}"
    );
    // The wrong name fails too.
    let r = checker
        .run(&spec(addr, Some("other.test"), &ca, None))
        .await;
    assert!(r.is_err(), "a certificate for another name passed");
    let _ = std::fs::remove_dir_all(dir);
}
