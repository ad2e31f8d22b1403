//! `lvsdr-director`: the LVS-DR director. This binary is a thin shell over the `lvsdr`
//! library: argument parsing, the runtime, logging and printing.

mod agents;
mod announce;
mod bird;
mod control;
mod daemon;
mod http;
mod ipvs_cli;
mod notify;
mod status;
mod status_cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lvsdr::reconcile::{plan, Drains, Gate, IpvsBackend, Kernel, Observed};

/// LVS Direct Routing director.
#[derive(Debug, Parser)]
#[command(name = "lvsdr-director", version, about)]
struct Cli {
    /// Log format (default: journald when stderr is the journal, as under systemd;
    /// text otherwise).
    #[arg(long, value_enum, global = true)]
    log_format: Option<lvsdr_daemon::log::LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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
    Ctl(control::client::CtlArgs),
    /// Read the kernel's IPVS table directly (no daemon needed).
    Ipvs {
        #[command(subcommand)]
        command: ipvs_cli::IpvsCommand,
    },
}

#[derive(Debug, Subcommand)]
enum PkiCommand {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    lvsdr_daemon::log::init(lvsdr_daemon::log::LogFormat::choose(cli.log_format));
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lvsdr-director: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // TLS for https checks: ring, installed once, before any client is built.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // One thread for all but the health checks (which get a thread of their own, see
    // lvsdr_checks::supervisor): the director's work is many small waits (netlink
    // answers, pushes), and cross-thread wake-ups would cost more than they give.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Run { config } => rt.block_on(daemon::run(config))?,
        Command::CheckConfig { file } => match lvsdr::config::load(&file) {
            Ok(d) => {
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
                // The TLS files load, as a reload would require (under systemd: the
                // credentials, whose fallback text names a file that is missing).
                if let Some(a) = &d.agents {
                    if let Err(e) = crate::agents::client(a) {
                        let why = lvsdr_daemon::creds::first_not_pem([
                            a.ca.as_path(),
                            a.cert.as_path(),
                            a.key.as_path(),
                        ])
                        .unwrap_or(e);
                        eprintln!("{}: [agents]: {why}", file.display());
                        return Ok(ExitCode::FAILURE);
                    }
                }
            }
            Err(e) => {
                eprintln!("{e}");
                return Ok(ExitCode::FAILURE);
            }
        },
        Command::Plan { config } => rt.block_on(dry_run(config))?,
        Command::Prepare { config } => {
            let desired = lvsdr::config::load(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
            for (path, value) in lvsdr::sysctl::wanted(&desired) {
                std::fs::write(path, value)
                    .map_err(|e| anyhow::anyhow!("setting {path} = {value}: {e}"))?;
                println!("{path} = {value}");
            }
        }
        Command::Status { url } => rt.block_on(status_cli::run(&url))?,
        Command::Ipvs { command } => rt.block_on(ipvs_cli::run(command))?,
        Command::Ctl(args) => return rt.block_on(control::client::run(args)),
        Command::Import { format, file } => return Ok(import(format, &file)),
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            lvsdr_daemon::docs::man(cmd, &mut std::io::stdout())?;
        }
        Command::Completions { shell } => {
            let cmd = <Cli as clap::CommandFactory>::command();
            let out = &mut std::io::stdout();
            lvsdr_daemon::docs::completions(shell, cmd, "lvsdr-director", out)?;
        }
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

/// `import`: see [`Command::Import`].
fn import(format: lvsdr_import::Format, file: &std::path::Path) -> ExitCode {
    let draft = match lvsdr_import::import(format, file) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("lvsdr-director import: {e}");
            return ExitCode::FAILURE;
        }
    };
    let text = lvsdr_import::emit::toml(&draft);
    print!("{text}");
    for line in draft.report() {
        eprintln!("{line}");
    }
    // What was written must be a config lvsdr accepts; if not, a person must look.
    let valid = match lvsdr::config::parse(&text, "<imported>") {
        Ok(_) => true,
        Err(e) => {
            eprintln!("the imported config does not validate:\n{e}");
            false
        }
    };
    let review = draft
        .notes
        .iter()
        .filter(|n| n.level == lvsdr_import::Level::Review)
        .count();
    eprintln!(
        "{}: {}",
        file.display(),
        import_summary(draft.services.len(), review, draft.notes.len() - review)
    );
    if review > 0 || !valid {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

/// The import's last report line: "3 services imported; 1 note needs review, 2 ignored".
fn import_summary(services: usize, review: usize, ignored: usize) -> String {
    let n = |k: usize, one: &str, many: &str| format!("{k} {}", if k == 1 { one } else { many });
    format!(
        "{} imported; {} review, {} ignored",
        n(services, "service", "services"),
        n(review, "note needs", "notes need"),
        ignored
    )
}

/// Plans against the live kernel with health unknown, as a starting director would:
/// servers the kernel has keep their weight, new ones would start at 0.
async fn dry_run(config: PathBuf) -> anyhow::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_import_summary_counts_in_words() {
        assert_eq!(
            import_summary(1, 1, 0),
            "1 service imported; 1 note needs review, 0 ignored"
        );
        assert_eq!(
            import_summary(3, 0, 2),
            "3 services imported; 0 notes need review, 2 ignored"
        );
    }
}
