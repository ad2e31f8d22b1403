//! `lvsdr-director prepare --config FILE`: sets the kernel settings the config needs
//! (as root, before `run`; the systemd unit does it).

use std::path::Path;

/// Writes each setting and prints it.
pub fn run(config: &Path) -> anyhow::Result<()> {
    let desired = lvsdr::config::load(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    for (path, value) in lvsdr::sysctl::wanted(&desired) {
        std::fs::write(path, value)
            .map_err(|e| anyhow::anyhow!("setting {path} = {value}: {e}"))?;
        println!("{path} = {value}");
    }
    Ok(())
}
