//! `lvsdr-director pki init DIR --agent NAME… [--director NAME…]`: a small CA, a
//! director (client) certificate and one server certificate per agent, for labs and
//! small sites. Several directors pushing to the same agents each need a certificate
//! of their own (`--director NAME` makes `director-NAME.pem`, common name
//! `lvsdr-director NAME`): an agent keeps one VIP set per director certificate name.
//! An agent NAME that is an IP address goes into the certificate as an IP SAN (the
//! director connects to real servers by address); other names as DNS names.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// Making the certificates failed.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// The folder already has a CA.
    #[error("{0} already holds a CA (ca.key); not replacing it")]
    Exists(PathBuf),
    /// An agent name that cannot be part of a file name.
    #[error("agent name {0:?} cannot be a file name")]
    BadName(String),
    /// A file could not be written.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// rcgen refused.
    #[error("certificate for {what}: {source}")]
    Cert {
        /// Which certificate.
        what: String,
        /// Why.
        source: rcgen::Error,
    },
}

fn write(path: &Path, text: &str, private: bool) -> Result<(), PkiError> {
    let io = |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(path)
        .map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)
}

fn cert_err(what: &str) -> impl Fn(rcgen::Error) -> PkiError + '_ {
    move |source| PkiError::Cert {
        what: what.to_string(),
        source,
    }
}

fn leaf(
    dir: &Path,
    name: &str,
    cn: &str,
    sans: Vec<String>,
    usage: ExtendedKeyUsagePurpose,
    issuer: &Issuer<'_, KeyPair>,
) -> Result<Vec<PathBuf>, PkiError> {
    let mut p = CertificateParams::new(sans).map_err(cert_err(cn))?;
    p.distinguished_name.push(DnType::CommonName, cn);
    p.extended_key_usages = vec![usage];
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let key = KeyPair::generate().map_err(cert_err(cn))?;
    let cert = p.signed_by(&key, issuer).map_err(cert_err(cn))?;
    let (c, k) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    write(&c, &cert.pem(), false)?;
    write(&k, &key.serialize_pem(), true)?;
    Ok(vec![c, k])
}

/// Writes the CA and certificates into `dir`; refuses to replace an existing CA.
pub fn init(dir: &Path, agents: &[String]) -> Result<Vec<PathBuf>, PkiError> {
    init_with(dir, agents, &[])
}

/// As [`init`], with one more director certificate per name in `directors`.
pub fn init_with(
    dir: &Path,
    agents: &[String],
    directors: &[String],
) -> Result<Vec<PathBuf>, PkiError> {
    std::fs::create_dir_all(dir).map_err(|source| PkiError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    if dir.join("ca.key").exists() {
        return Err(PkiError::Exists(dir.to_path_buf()));
    }
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(cert_err("the CA"))?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name.push(DnType::CommonName, "lvsdr CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().map_err(cert_err("the CA"))?;
    let ca_cert = ca.self_signed(&ca_key).map_err(cert_err("the CA"))?;
    let mut files = vec![dir.join("ca.pem"), dir.join("ca.key")];
    write(&files[0], &ca_cert.pem(), false)?;
    write(&files[1], &ca_key.serialize_pem(), true)?;
    let issuer = Issuer::new(ca, ca_key);
    files.extend(leaf(
        dir,
        "director",
        "lvsdr-director",
        vec!["lvsdr-director".into()],
        ExtendedKeyUsagePurpose::ClientAuth,
        &issuer,
    )?);
    for d in directors {
        if d.is_empty() || d.contains('/') {
            return Err(PkiError::BadName(d.clone()));
        }
        files.extend(leaf(
            dir,
            &format!("director-{d}"),
            &format!("lvsdr-director {d}"),
            vec![format!("lvsdr-director-{d}")],
            ExtendedKeyUsagePurpose::ClientAuth,
            &issuer,
        )?);
    }
    for a in agents {
        if a.is_empty() || a.contains('/') {
            return Err(PkiError::BadName(a.clone()));
        }
        files.extend(leaf(
            dir,
            &format!("agent-{a}"),
            &format!("lvsdr-agent {a}"),
            vec![a.clone()],
            ExtendedKeyUsagePurpose::ServerAuth,
            &issuer,
        )?);
    }
    Ok(files)
}
