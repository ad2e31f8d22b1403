//! `lvsdr-director ipvs …`: the operator's view of the kernel table, without ipvsadm.

use std::io::Write;

use anyhow::Context;
use clap::Subcommand;
use lvsdr::ipvs::listing::{self, Columns};
use lvsdr::ipvs::IpvsHandle;

#[derive(Debug, Subcommand)]
pub enum IpvsCommand {
    /// Print the table as `ipvsadm -Ln` does.
    List {
        /// Traffic counters instead of connections (`ipvsadm -Ln --stats`).
        #[arg(long)]
        stats: bool,
        /// JSON instead of text.
        #[arg(long, conflicts_with = "stats")]
        json: bool,
    },
}

pub async fn run(cmd: IpvsCommand) -> anyhow::Result<()> {
    match cmd {
        IpvsCommand::List { stats, json } => {
            let h = IpvsHandle::connect().await?;
            let info = h.info().await?;
            let table = h.table().await.context("dumping the IPVS table")?;
            let text = if json {
                let mut s = serde_json::to_string_pretty(&listing::json(&info, &table))?;
                s.push('\n');
                s
            } else {
                let cols = if stats {
                    Columns::Stats
                } else {
                    Columns::Connections
                };
                listing::ipvsadm_text(&info, &table, cols)
            };
            std::io::stdout().write_all(text.as_bytes())?;
            Ok(())
        }
    }
}
