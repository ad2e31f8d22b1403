//! `lvsdr-director`'s command line: the commands ([`Command`]) and one file per
//! command that does more than call a library (`ctl` is the control socket's client,
//! in `crate::control::client`; `run` is [`crate::daemon`]).

mod check_config;
mod docs;
mod import;
mod ipvs;
mod plan;
mod prepare;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// LVS Direct Routing director.
#[derive(Debug, Parser)]
#[command(name = "lvsdr-director", version, about)]
pub struct Cli {
    /// Log format (default: journald when stderr is the journal, as under systemd;
    /// text otherwise).
    #[arg(long, value_enum, global = true)]
    pub log_format: Option<lvsdr_daemon::log::LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the director: keep the kernel's IPVS table equal to the config.
    Run {
        /// The config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config file and print the result (exit 1 on errors).
    CheckConfig {
        /// The config file.
        file: PathBuf,
    },
    /// Set the kernel settings the config needs (as root, before `run`; the systemd unit
    /// does it): `net.ipv4.vs.sloppy_tcp = 1` with `[announce]` or `[sync]` (a flow
    /// moved to another director is picked up mid-stream), and
    /// `net.ipv4.conf.all.accept_local = 1` with checks through the DR path.
    Prepare {
        /// The config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print what `run` would change in the kernel now, without changing it.
    Plan {
        /// The config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print a running director's status as a table.
    Status {
        /// The director's status endpoint.
        #[arg(long, default_value = "http://127.0.0.1:9180")]
        url: String,
    },
    /// Certificates for the director and its agents.
    Pki {
        #[command(subcommand)]
        command: PkiCommand,
    },
    /// Translate another tool's config into an lvsdr config: TOML on stdout, a report
    /// of what was not translated (or changed meaning) on stderr. Exit 0 when all was
    /// translated, 2 when something needs a person, 1 when the input cannot be read.
    Import {
        /// keepalived, ldirectord, piranha or ipvsadm (`ipvsadm -Sn` output).
        format: lvsdr_import::Format,
        /// The file (keepalived's `include`s are followed).
        file: PathBuf,
    },
    /// Print the manual page (roff) on stdout.
    Man,
    /// Print shell completions on stdout.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Drain, disable, enable or weigh real servers of the running director, over its
    /// control socket (root or `control_group` only). Overrides survive reloads and
    /// restarts; `list` shows them.
    Ctl(crate::control::client::CtlArgs),
    /// Read the kernel's IPVS table directly (no daemon needed).
    Ipvs {
        #[command(subcommand)]
        command: ipvs::IpvsCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Make a CA, a director certificate and one certificate per agent in DIR.
    Init {
        /// Where the files go (ca.pem, director.pem/.key, agent-NAME.pem/.key).
        dir: PathBuf,
        /// An agent: its IP address (as the director reaches it) or host name.
        #[arg(long = "agent", required = true)]
        agents: Vec<String>,
        /// One more director certificate, `director-NAME.pem` (each director of an HA
        /// pair needs its own: agents keep one VIP set per director).
        #[arg(long = "director")]
        directors: Vec<String>,
    },
}

/// Runs a command; its exit code.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // TLS for https checks: ring, installed once, before any client is built.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // One thread for all but the health checks (which get a thread of their own, see
    // lvsdr_checks::supervisor): the director's work is many small waits (netlink
    // answers, pushes), and cross-thread wake-ups would cost more than they give.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Run { config } => rt.block_on(crate::daemon::run(config))?,
        Command::CheckConfig { file } => return Ok(check_config::run(&file)),
        Command::Plan { config } => rt.block_on(plan::run(config))?,
        Command::Prepare { config } => prepare::run(&config)?,
        Command::Status { url } => rt.block_on(status::run(&url))?,
        Command::Ipvs { command } => rt.block_on(ipvs::run(command))?,
        Command::Ctl(args) => return rt.block_on(crate::control::client::run(args)),
        Command::Import { format, file } => return Ok(import::run(format, &file)),
        Command::Man => docs::man()?,
        Command::Completions { shell } => docs::completions(shell)?,
        Command::Pki {
            command:
                PkiCommand::Init {
                    dir,
                    agents,
                    directors,
                },
        } => {
            for f in lvsdr_pki::init_with(&dir, &agents, &directors)? {
                println!("{}", f.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
