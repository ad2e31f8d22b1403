//! `lvsdr-director ctl`: a thin client of the control socket. Each command is one
//! request line and its answer; `drain --wait` then asks for the server's connection
//! counts every second until they reach 0.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use lvsdr::admin::protocol::{Request, Response};
use lvsdr::admin::{Target, WeightSpec};

/// `ctl`'s arguments.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// The control socket (default: the config's `control_socket`, else
    /// /run/lvsdr-director/control.sock).
    #[arg(long, conflicts_with = "config")]
    socket: Option<PathBuf>,
    /// The director's config, to find its control socket.
    #[arg(long, short)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: CtlCommand,
}

/// Which servers, where, and why: what drain and disable take.
#[derive(Debug, Args)]
struct Servers {
    /// ADDR (every port) or ADDR:PORT.
    #[arg(required = true)]
    servers: Vec<Target>,
    /// Only in this service (by name); default: every service holding the server.
    #[arg(long)]
    service: Option<String>,
    /// Why (kept, and shown in the status).
    #[arg(long, default_value = "")]
    reason: String,
}

#[derive(Debug, Subcommand)]
enum CtlCommand {
    /// Weight 0: existing connections go on, no new ones (persistent clients included).
    Drain {
        #[command(flatten)]
        on: Servers,
        /// Return once the servers' active connections reach 0 (printing them as they
        /// fall), or fail at --timeout.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits.
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Out of the table: the servers' connections move, as with a failure under
    /// on_failure = "remove".
    Disable {
        #[command(flatten)]
        on: Servers,
    },
    /// Back under their health checks: the overrides within this scope are lifted.
    Enable {
        /// ADDR or ADDR:PORT.
        #[arg(required = true)]
        servers: Vec<Target>,
        /// Only in this service (by name).
        #[arg(long)]
        service: Option<String>,
    },
    /// A runtime weight: N, or P% of the configured weight.
    Weight {
        /// ADDR or ADDR:PORT.
        server: Target,
        /// N (0 to 65535) or P%.
        weight: WeightSpec,
        /// Only in this service (by name).
        #[arg(long)]
        service: Option<String>,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Every override: what, on which server, by whom, since when, why.
    List,
}

/// Runs one `ctl` command.
pub async fn run(args: CtlArgs) -> anyhow::Result<ExitCode> {
    let socket = socket_path(&args)?;
    let mut conn = Conn::open(&socket).await?;
    let (request, wait) = match args.command {
        CtlCommand::Drain { on, wait, timeout } => {
            let wait = wait.then(|| (on.servers.clone(), on.service.clone(), timeout));
            let Servers {
                servers,
                service,
                reason,
            } = on;
            (
                Request::Drain {
                    servers,
                    service,
                    reason,
                },
                wait,
            )
        }
        CtlCommand::Disable {
            on:
                Servers {
                    servers,
                    service,
                    reason,
                },
        } => (
            Request::Disable {
                servers,
                service,
                reason,
            },
            None,
        ),
        CtlCommand::Enable { servers, service } => (Request::Enable { servers, service }, None),
        CtlCommand::Weight {
            server,
            weight,
            service,
            reason,
        } => {
            let servers = vec![server];
            (
                Request::Weight {
                    servers,
                    service,
                    weight,
                    reason,
                },
                None,
            )
        }
        CtlCommand::List => (Request::List, None),
    };
    let list = matches!(request, Request::List);
    let r = conn.ask(&request).await?;
    if let Some(e) = &r.error {
        eprintln!("lvsdr-director ctl: {e}");
        return Ok(ExitCode::FAILURE);
    }
    if list {
        print_list(&r);
    } else if let Some(m) = &r.message {
        println!("{m}");
    }
    match wait {
        Some((servers, service, timeout)) => conn.wait_drained(servers, service, timeout).await,
        None => Ok(ExitCode::SUCCESS),
    }
}

fn socket_path(args: &CtlArgs) -> anyhow::Result<PathBuf> {
    if let Some(s) = &args.socket {
        return Ok(s.clone());
    }
    match &args.config {
        Some(c) => Ok(lvsdr::config::load(c)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .director
            .control_socket),
        None => Ok(lvsdr::admin::DEFAULT_SOCKET.into()),
    }
}

fn print_list(r: &Response) {
    if r.overrides.is_empty() {
        println!("no overrides: every real server is under its health checks");
        return;
    }
    println!(
        "{:<24} {:<12} {:<9} {:>6} {:>6}  {:<20} reason",
        "server", "service", "state", "weight", "uid", "since"
    );
    for o in &r.overrides {
        let since =
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(o.since));
        println!(
            "{:<24} {:<12} {:<9} {:>6} {:>6}  {:<20} {}",
            o.server.to_string(),
            o.service.as_deref().unwrap_or("(every)"),
            o.state.to_string(),
            o.weight
                .map(|w| w.to_string())
                .unwrap_or_else(|| "-".into()),
            o.by,
            since.to_string(),
            o.reason
        );
    }
}

/// A connection to the control socket.
struct Conn(lvsdr_daemon::lines::Client);

impl Conn {
    async fn open(socket: &std::path::Path) -> anyhow::Result<Conn> {
        Ok(Conn(
            lvsdr_daemon::lines::Client::open(socket, "the director").await?,
        ))
    }

    async fn ask(&mut self, request: &Request) -> anyhow::Result<Response> {
        Ok(self.0.ask(request).await?)
    }

    /// Prints the servers' active connections as they change, until none is left or
    /// `timeout`. The counts are the director's last read of the table (every second
    /// while a drained server has connections).
    async fn wait_drained(
        &mut self,
        servers: Vec<Target>,
        service: Option<String>,
        timeout: Duration,
    ) -> anyhow::Result<ExitCode> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = None;
        loop {
            let r = self
                .ask(&Request::Conns {
                    servers: servers.clone(),
                    service: service.clone(),
                })
                .await?;
            if let Some(e) = r.error {
                anyhow::bail!("{e}");
            }
            let active: u64 = r.conns.iter().map(|c| u64::from(c.active)).sum();
            if last != Some(active) {
                let each: Vec<String> = r
                    .conns
                    .iter()
                    .filter(|c| c.active > 0)
                    .map(|c| format!("{} {}: {}", c.service, c.server, c.active))
                    .collect();
                println!(
                    "{active} active connection{}{}",
                    if active == 1 { "" } else { "s" },
                    if each.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", each.join(", "))
                    }
                );
                last = Some(active);
            }
            // Counts from a read of the table that already shows the drain: one from
            // before it may predate the connections it must wait for.
            let shown = r.conns.iter().all(|c| c.weight == Some(0));
            if active == 0 && shown {
                println!("drained");
                return Ok(ExitCode::SUCCESS);
            }
            if tokio::time::Instant::now() >= deadline {
                eprintln!(
                    "lvsdr-director ctl: {active} active connections left after {}",
                    humantime::format_duration(timeout)
                );
                return Ok(ExitCode::FAILURE);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}
