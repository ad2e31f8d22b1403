//! `lvsdr-director man` and `completions SHELL`: made from the command line itself.

/// The manual page (roff) on stdout.
pub fn man() -> std::io::Result<()> {
    let cmd = <super::Cli as clap::CommandFactory>::command();
    lvsdr_daemon::docs::man(cmd, &mut std::io::stdout())
}

/// Completions for `shell` on stdout.
pub fn completions(shell: clap_complete::Shell) -> std::io::Result<()> {
    let cmd = <super::Cli as clap::CommandFactory>::command();
    lvsdr_daemon::docs::completions(shell, cmd, "lvsdr-director", &mut std::io::stdout())
}
