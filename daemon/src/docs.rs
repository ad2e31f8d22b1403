//! The manual page and shell completions, made from a binary's own `clap` command so
//! that they never fall behind it (the packages ship what these print).

use std::io::Write;

/// The manual page (roff) of `cmd` on `out`.
pub fn man(cmd: clap::Command, out: &mut impl Write) -> std::io::Result<()> {
    clap_mangen::Man::new(cmd).render(out)
}

/// `shell`'s completions for `bin` on `out`.
pub fn completions(
    shell: clap_complete::Shell,
    mut cmd: clap::Command,
    bin: &str,
    out: &mut impl Write,
) -> std::io::Result<()> {
    // Into a buffer first: clap_complete panics on a write error (a closed pipe).
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, bin, &mut buf);
    out.write_all(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_and_completions_name_the_binary_and_its_commands() {
        let cmd = clap::Command::new("lvsdr-x")
            .about("a test")
            .subcommand(clap::Command::new("drain"));
        let mut page = Vec::new();
        man(cmd.clone(), &mut page).expect("man");
        let page = String::from_utf8(page).expect("utf8");
        assert!(
            page.contains("lvsdr\\-x") && page.contains("drain"),
            "{page}"
        );
        let mut bash = Vec::new();
        completions(clap_complete::Shell::Bash, cmd, "lvsdr-x", &mut bash).expect("bash");
        let bash = String::from_utf8(bash).expect("utf8");
        assert!(bash.contains("lvsdr-x") && bash.contains("drain"), "{bash}");
    }
}
