//! `lvsdr-director`: the LVS-DR director. This binary is a thin shell over the `lvsdr`
//! library: argument parsing, the runtime, and printing.

mod ipvs_cli;

use clap::{Parser, Subcommand};

/// LVS Direct Routing director.
#[derive(Debug, Parser)]
#[command(name = "lvsdr-director", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Read the kernel's IPVS table directly (no daemon needed).
    Ipvs {
        #[command(subcommand)]
        command: ipvs_cli::IpvsCommand,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lvsdr-director: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Ipvs { command } => rt.block_on(ipvs_cli::run(command))?,
    }
    Ok(std::process::ExitCode::SUCCESS)
}
