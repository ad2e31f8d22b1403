//! The TLS settings of the HTTPS checks that have a client of their own (`sni` or
//! `ca`): the roots they verify against, loaded once per CA file (or once for the
//! system's roots) and shared. Each such check used to load them itself, on the check
//! scheduler's thread: the system's roots took 0.4 s in the test VM, so a hundred
//! `sni` checks held every check for 40 s at each start or reload.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use lvsdr::health::HttpCheck;

/// Which roots a check verifies against: its CA file, or the system's (`None`).
pub type Roots = Option<PathBuf>;

/// The roots `h` needs loaded, if it has a client of its own that verifies (an
/// `insecure` check verifies nothing and needs none).
pub fn roots_of(h: &HttpCheck) -> Option<Roots> {
    (h.tls && !h.insecure && (h.sni.is_some() || h.ca.is_some())).then(|| h.ca.clone())
}

/// Loads `roots` into client settings (blocking: reads files).
pub fn load(roots: &Roots) -> Result<rustls::ClientConfig, String> {
    let mut store = rustls::RootCertStore::empty();
    match roots {
        Some(ca) => {
            let pem = std::fs::read(ca).map_err(|e| format!("reading {}: {e}", ca.display()))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| format!("{}: {e}", ca.display()))?;
                store
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", ca.display()))?;
            }
            if store.is_empty() {
                return Err(format!("{}: no certificate in it", ca.display()));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(format!(
                    "no system root certificates could be loaded ({} errors)",
                    found.errors.len()
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS settings: {e}"))?
        .with_root_certificates(store)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_is_loaded_and_a_file_without_a_certificate_is_refused() {
        let dir = std::env::temp_dir().join(format!("lvsdr-roots-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        lvsdr_pki::init(&dir, &["192.0.2.1".to_string()]).expect("pki");
        assert!(load(&Some(dir.join("ca.pem"))).is_ok());
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").expect("write");
        let e = load(&Some(empty)).expect_err("no certificate");
        assert!(e.contains("no certificate"), "{e}");
        let e = load(&Some(dir.join("missing.pem"))).expect_err("missing");
        assert!(e.contains("missing.pem"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
