//! `lvsdr-director plan --config FILE`: what `run` would change in the kernel now.

use std::path::PathBuf;

use lvsdr::reconcile::{plan, Drains, Gate, IpvsBackend, Kernel, Observed};

/// Plans against the live kernel with health unknown, as a starting director would:
/// servers the kernel has keep their weight, new ones would start at 0.
pub async fn run(config: PathBuf) -> anyhow::Result<()> {
    let desired = lvsdr::config::load(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let kernel = Kernel::connect().await?;
    let table = kernel.table().await?;
    let ops = plan(
        &desired,
        &Observed::from(&table),
        &Default::default(),
        &Gate::default(),
        &Drains::default(),
    );
    if ops.is_empty() {
        println!("nothing to do: the kernel matches {}", config.display());
    }
    for op in ops {
        println!("{op}");
    }
    Ok(())
}
