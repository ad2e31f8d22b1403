//! TLS files that come in as systemd credentials. A credential that `LoadCredential=`
//! cannot read fails the whole unit with "243/CREDENTIALS" and no file named; so the
//! shipped units pair each one with a `SetCredential=` fallback whose text names the
//! file ("missing: LoadCredential= could not read /etc/lvsdr/…"). The daemon then starts,
//! finds that text where a PEM file should be, and says so: [`not_pem`].

use std::path::Path;

/// Why the file at `path` is no PEM file, when its content is short text with no PEM
/// block in it (a credential's fallback text, or a file written by mistake): that text.
/// `None` for anything else (PEM, binary, unreadable: the TLS loader's own error says
/// more).
pub fn not_pem(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    if bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return None;
    }
    let text = std::str::from_utf8(&bytes).ok()?.trim();
    (!text.is_empty() && text.len() <= 512)
        .then(|| format!("{}: not a PEM file; it reads: {text}", path.display()))
}

/// The first of `paths` that is not a PEM file, said as [`not_pem`] says it.
pub fn first_not_pem<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Option<String> {
    paths.into_iter().find_map(not_pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fallback_text_is_quoted_and_pem_or_binary_is_left_to_the_loader() {
        let dir = std::env::temp_dir().join(format!("lvsdr-creds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let missing = dir.join("director.key");
        std::fs::write(
            &missing,
            "missing: LoadCredential= could not read /etc/lvsdr/director.key\n",
        )
        .expect("write");
        let pem = dir.join("ca.pem");
        std::fs::write(
            &pem,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        let binary = dir.join("x.der");
        std::fs::write(&binary, [0x30u8, 0x82, 0xff, 0xfe]).expect("write");
        let why = not_pem(&missing).expect("named");
        assert!(
            why.ends_with(
                "it reads: missing: LoadCredential= could not read /etc/lvsdr/director.key"
            ),
            "{why}"
        );
        assert_eq!(not_pem(&pem), None);
        assert_eq!(not_pem(&binary), None);
        assert_eq!(not_pem(&dir.join("absent")), None);
        assert_eq!(first_not_pem([pem.as_path(), missing.as_path()]), Some(why));
        std::fs::remove_dir_all(&dir).expect("rm");
    }
}
