//! `lvsdr-agent`: the real-server agent. It holds each VIP the director pushes on the
//! VIP device and suppresses ARP for it, keeps that state on disk and re-applies it at
//! start (before the API opens) and whenever it drifts.
//!
//! Layout: `config` (agent.toml), `state` (the state file), `sets` (which push a
//! director's set accepts), `vip` (addresses through rtnetlink), `arp` (nft | sysctl |
//! arptables), `drift` (kernel events that wake the applier), `applier` (the one
//! writer), `api` (the HTTP routes), `server` (mutual TLS, bounded connections),
//! `drain` (the real server's own drain), `control` (its local socket and the
//! `drain | ready | status` commands) and `metrics` (its own `/metrics`).

mod api;
mod applier;
mod arp;
mod config;
mod control;
mod drain;
mod drift;
mod host;
mod metrics;
mod overview;
mod server;
mod sets;
mod state;
mod vip;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// LVS-DR real-server agent. `lvsdr-agent --config FILE` runs it; `drain`, `ready`
/// and `status` talk to a running agent.
#[derive(Debug, Parser)]
#[command(name = "lvsdr-agent", version, about)]
struct Cli {
    /// The config file.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// Print the manual page ("man") or a shell's completions ("bash", "zsh", "fish")
    /// on stdout, for packaging.
    #[arg(long, hide = true, value_name = "WHAT")]
    generate: Option<String>,
    /// Log format (default: journald when stderr is the journal, as under systemd;
    /// text otherwise).
    #[arg(long, value_enum, global = true)]
    log_format: Option<lvsdr_daemon::log::LogFormat>,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Commands to a running agent, over its control socket (root only).
#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Every director that pushes to this agent gives this real server weight 0 in
    /// every service, within a second; kept across restarts until `ready`.
    Drain {
        /// Why (shown on the directors' status).
        #[arg(long, default_value = "")]
        reason: String,
        /// Return once every director reports weight 0 and no active connection to
        /// this server (printing each director's count as it falls), or fail at
        /// --timeout.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits.
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
        /// The control socket (default: the config's control_socket).
        #[arg(long)]
        socket: Option<PathBuf>,
    },
    /// Lifts the drain: the directors put the server back (with its slow start).
    Ready {
        /// The control socket (default: the config's control_socket).
        #[arg(long)]
        socket: Option<PathBuf>,
    },
    /// Whether this server is drained, each director's weight and connections, and what
    /// the agent holds, read from the kernel: each director's VIPs, their suppression,
    /// its last push, and the VIPs put back after they went missing.
    Status {
        /// The control socket (default: the config's control_socket).
        #[arg(long)]
        socket: Option<PathBuf>,
        /// One JSON object, for scripts: `status` (the drain, each director's
        /// weight and connections) and `holds` (what the agent holds, read from the
        /// kernel), as the control socket answers them.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a command against the running agent.
async fn command(cmd: Command, config: Option<&PathBuf>) -> anyhow::Result<ExitCode> {
    use control::Request;
    let mut json = false;
    let (socket, req, wait) = match cmd {
        Command::Drain {
            reason,
            wait,
            timeout,
            socket,
        } => (socket, Request::Drain { reason }, wait.then_some(timeout)),
        Command::Ready { socket } => (socket, Request::Ready, None),
        Command::Status { socket, json: j } => {
            json = j;
            (socket, Request::Status, None)
        }
    };
    let path = control::socket_of(socket.as_ref(), config)?;
    let mut client = control::Client::open(&path).await?;
    let r = client.ask(&req).await?;
    if let Some(e) = &r.error {
        eprintln!("lvsdr-agent: {e}");
        return Ok(ExitCode::FAILURE);
    }
    if let Some(m) = &r.message {
        println!("{m}");
    }
    match (wait, &r.status) {
        (Some(timeout), _) => {
            if control::wait_drained(&mut client, timeout).await? {
                println!("drained: every director reports no active connection");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!(
                    "lvsdr-agent: not drained after {}",
                    humantime::format_duration(timeout)
                );
                Ok(ExitCode::FAILURE)
            }
        }
        (None, Some(s)) if req == Request::Status && json => {
            let v = serde_json::json!({ "status": s, "holds": r.holds });
            println!("{v}");
            Ok(ExitCode::SUCCESS)
        }
        (None, Some(s)) if req == Request::Status => {
            for l in control::describe(s, true) {
                println!("{l}");
            }
            for l in r.holds.iter().flat_map(overview::describe) {
                println!("{l}");
            }
            Ok(ExitCode::SUCCESS)
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// `--generate`: see [`Cli::generate`].
fn generate(what: &str) -> ExitCode {
    let cmd = <Cli as clap::CommandFactory>::command();
    let out = &mut std::io::stdout();
    let written = match what {
        "man" => lvsdr_daemon::docs::man(cmd, out),
        shell => match shell.parse::<clap_complete::Shell>() {
            Ok(shell) => lvsdr_daemon::docs::completions(shell, cmd, "lvsdr-agent", out),
            Err(e) => {
                eprintln!("lvsdr-agent: --generate {what}: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lvsdr-agent: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(what) = &cli.generate {
        return generate(what);
    }
    if let Some(cmd) = cli.command {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        return match rt
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(command(cmd, cli.config.as_ref())))
        {
            Ok(code) => code,
            Err(e) => {
                eprintln!("lvsdr-agent: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    lvsdr_daemon::log::init(lvsdr_daemon::log::LogFormat::choose(cli.log_format));
    // One thread for the agent; a few for the state file's fsyncs (TasksMax in the unit).
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(4)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lvsdr-agent: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lvsdr-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let Some(path) = &cli.config else {
        anyhow::bail!("--config FILE is required to run the agent");
    };
    let cfg = config::Config::load(path)?;
    let tls = cfg.tls.as_ref().map(server::tls_config).transpose()?;
    let net = vip::Net::connect()?;
    let cancel = CancellationToken::new();
    let drift = drift::watch(cfg.arp, cancel.child_token());
    let mut applier = applier::Applier::new(cfg.clone(), host::RealHost::new(net)).await?;
    // A rebooted real server gets its VIPs back before anything is served.
    if let Err(e) = applier.apply().await {
        warn!(error = %format!("{e:#}"), "re-applying the saved state at start failed; the drift timer retries");
    }
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("listening on {}", cfg.listen))?;
    info!(
        listen = %cfg.listen,
        tls = tls.is_some(),
        arp = cfg.arp.name(),
        device = %cfg.vip_device,
        "agent ready"
    );
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let drain = applier.drain_view();
    // Supervised: a task that ends on its own (or panics) ends the agent with an
    // error, so that systemd restarts it; the VIPs stay in place meanwhile.
    let mut tasks = lvsdr_daemon::tasks::Tasks::new();
    if let Some(l) = control::bind(&cfg.control_socket) {
        tasks.spawn_infallible(
            "control socket",
            control::serve(l, tx.clone(), drain.clone(), cancel.child_token()),
        );
    }
    if let Some(l) = match cfg.metrics_listen {
        Some(addr) => metrics::bind(addr).await,
        None => None,
    } {
        tasks.spawn(
            "metrics listener",
            metrics::serve(l, tx.clone(), drain.clone(), cancel.child_token()),
        );
    }
    tasks.spawn_infallible("applier", applier.run(rx, drift, cancel.child_token()));
    tasks.spawn_infallible(
        "push API",
        server::serve(
            listener,
            api::router(api::Api { tx, drain }),
            tls,
            server::Limits::default(),
            cancel.child_token(),
        ),
    );
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    let ended = tokio::select! {
        _ = term.recv() => { info!("SIGTERM: stopping; the VIPs stay in place"); None }
        _ = int.recv() => { info!("SIGINT: stopping; the VIPs stay in place"); None }
        e = tasks.ended() => Some(e),
    };
    cancel.cancel();
    if let Some(why) = ended {
        tracing::error!("{why}; exiting so that the service manager restarts the agent");
        return Err(why.into());
    }
    tasks.join_all().await?;
    Ok(())
}
