//! `lvsdr-director check-config FILE`: validates a config as `run` would load it, and
//! its agents' TLS files as a reload would require.

use std::path::Path;
use std::process::ExitCode;

/// Prints the result; exit 1 on an error.
pub fn run(file: &Path) -> ExitCode {
    let d = match lvsdr::config::load(file) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let servers: usize = d.services.iter().map(|s| s.real_servers.len()).sum();
    println!(
        "{}: ok ({} services, {servers} real servers, {} distinct checks)",
        file.display(),
        d.services.len(),
        d.checks().len()
    );
    for w in lvsdr::config::warnings(&d) {
        println!("warning: {w}");
    }
    // The TLS files load, as a reload would require (under systemd: the credentials,
    // whose fallback text names a file that is missing).
    if let Some(a) = &d.agents {
        if let Err(e) = crate::agents::client(a) {
            let why = lvsdr_daemon::creds::first_not_pem([
                a.ca.as_path(),
                a.cert.as_path(),
                a.key.as_path(),
            ])
            .unwrap_or(e);
            eprintln!("{}: [agents]: {why}", file.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
