//! `exec`: a command run with `sh -c` (without the director's capabilities), the
//! target in `LVSDR_RS_ADDR`/`LVSDR_RS_PORT`; exit 0 is up, and its whole process
//! group dies with the check.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use crate::failure::{io_failure, CheckFailure};

/// Kills a check command's whole process group when the check ends, however it
/// ends (done, timed out, cancelled): nothing it started outlives it.
struct Group(nix::unistd::Pid);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = nix::sys::signal::killpg(self.0, nix::sys::signal::Signal::SIGKILL);
    }
}

/// How much of an exec check's stderr is kept (its last line names the failure).
const EXEC_OUTPUT_LIMIT: usize = 4096;

/// Reads `r` to its end, keeping only its last `EXEC_OUTPUT_LIMIT` bytes. The whole
/// of it is read: a pipe closed after the first 4 KiB killed a talkative command
/// with SIGPIPE, and its check went down for it.
async fn tail_of(mut r: impl tokio::io::AsyncRead + Unpin) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut kept = Vec::with_capacity(EXEC_OUTPUT_LIMIT);
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = r.read(&mut buf).await {
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > EXEC_OUTPUT_LIMIT {
            kept.drain(..kept.len() - EXEC_OUTPUT_LIMIT);
        }
    }
    kept
}

/// `setpriv`, where it is: it runs the command with no capabilities inherited from
/// the director (CAP_NET_ADMIN must not reach an operator's script).
pub fn setpriv() -> Option<&'static str> {
    ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
}

pub async fn exec_check(
    target: SocketAddr,
    command: &str,
    timeout: Duration,
) -> Result<(), CheckFailure> {
    let mut cmd = match setpriv() {
        Some(sp) => {
            let mut c = tokio::process::Command::new(sp);
            c.args([
                "--inh-caps=-all",
                "--ambient-caps=-all",
                "--",
                "sh",
                "-c",
                command,
            ]);
            c
        }
        None => {
            let mut c = tokio::process::Command::new("sh");
            c.args(["-c", command]);
            c
        }
    };
    // A clean environment: the check gets what it needs and nothing of the director's.
    cmd.env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("LVSDR_RS_ADDR", target.ip().to_string())
        .env("LVSDR_RS_PORT", target.port().to_string())
        .env("LVSDR_CHECK_TIMEOUT", timeout.as_secs_f64().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| io_failure(&format!("exec {command:?}"), &e))?;
    let _group = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(|id| Group(nix::unistd::Pid::from_raw(id)));
    let err = match child.stderr.take() {
        Some(stderr) => tail_of(stderr).await,
        None => Vec::new(),
    };
    let status = child
        .wait()
        .await
        .map_err(|e| io_failure(&format!("exec {command:?}"), &e))?;
    if status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&err);
    let tail = err.lines().last().unwrap_or("").trim();
    Err(CheckFailure::Down(format!(
        "exec {command:?}: {status}{}",
        if tail.is_empty() {
            String::new()
        } else {
            format!(": {tail}")
        }
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_exec_check_runs_clean_and_its_whole_group_dies_with_it() {
        let target: SocketAddr = "192.0.2.7:25".parse().expect("addr");
        std::env::set_var("LVSDR_TEST_SECRET", "x");
        let clean = exec_check(
            target,
            "test -z \"$LVSDR_TEST_SECRET\" && test \"$LVSDR_RS_ADDR\" = 192.0.2.7",
            Duration::from_secs(5),
        )
        .await;
        assert!(clean.is_ok(), "{clean:?}");
        // A command that leaves a child behind and outlives its timeout.
        let marker = format!("sleep 299.{}", std::process::id());
        let cmd = format!("{marker} & {marker}");
        let r = tokio::time::timeout(
            Duration::from_millis(300),
            exec_check(target, &cmd, Duration::from_millis(300)),
        )
        .await;
        assert!(r.is_err(), "the check did not time out");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let left = std::process::Command::new("pgrep")
            .args(["-f", &marker])
            .output()
            .expect("pgrep");
        assert!(
            left.stdout.is_empty(),
            "the command outlived its check: {:?}",
            String::from_utf8_lossy(&left.stdout)
        );
        let err = exec_check(
            target,
            "echo first >&2; echo 'the real reason' >&2; exit 3",
            Duration::from_secs(5),
        )
        .await;
        assert!(err.is_err_and(|e| e.to_string().ends_with("exit status: 3: the real reason")));
    }

    /// More than 4 KiB on stderr: the pipe was closed after 4 KiB, the command died of
    /// SIGPIPE, and a healthy server was marked down.
    #[tokio::test]
    async fn an_exec_check_that_writes_much_to_stderr_still_succeeds() {
        let target: SocketAddr = "192.0.2.7:25".parse().expect("addr");
        let loud = exec_check(
            target,
            "i=0; while [ $i -lt 2000 ]; do echo \"line $i of noise\" >&2; i=$((i+1)); done; exit 0",
            Duration::from_secs(20),
        )
        .await;
        assert!(loud.is_ok(), "{loud:?}");
        let last = exec_check(
            target,
            "i=0; while [ $i -lt 2000 ]; do echo noise >&2; i=$((i+1)); done; echo 'why' >&2; exit 4",
            Duration::from_secs(20),
        )
        .await;
        assert!(last.is_err_and(|e| e.to_string().ends_with("exit status: 4: why")));
    }
}
