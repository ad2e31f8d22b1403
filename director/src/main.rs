//! `lvsdr-director`: the LVS-DR director. The binary is the command line ([`cli`]), the
//! daemon's wiring ([`daemon`]) and the director's features, each in its folder.

mod agents;
mod announce;
mod bird;
mod cli;
mod control;
mod daemon;
mod http;
mod notify;
mod status;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    lvsdr_daemon::log::init(lvsdr_daemon::log::LogFormat::choose(cli.log_format));
    match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lvsdr-director: {e:#}");
            ExitCode::FAILURE
        }
    }
}
