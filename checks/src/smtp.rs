//! `smtp`: the server's 220 greeting, then QUIT.

use std::net::SocketAddr;

use tokio::net::TcpStream;

use crate::failure::{io_failure, CheckFailure};

/// On a new connection: an SMTP greeting, the server's 220 banner (one line, or
/// several `220-` lines ending with `220 `), then QUIT.
pub async fn smtp_check(s: TcpStream, target: SocketAddr) -> Result<(), CheckFailure> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    // Lines of at most 1 KiB; a banner that never ends is a timeout.
    let mut s = BufReader::new(s);
    let mut line = String::new();
    loop {
        line.clear();
        let n = AsyncReadExt::take(&mut s, 1024)
            .read_line(&mut line)
            .await
            .map_err(|e| io_failure(&format!("read from {target}"), &e))?;
        if n == 0 {
            return Err(CheckFailure::Down(format!(
                "{target}: closed before a banner"
            )));
        }
        if !line.starts_with("220") {
            return Err(CheckFailure::Down(format!(
                "{target}: greeting {:?}, expected 220",
                line.trim_end()
            )));
        }
        if !line.starts_with("220-") {
            break;
        }
    }
    let s = s.get_mut();
    let _ = s.write_all(b"QUIT\r\n").await;
    let _ = s.set_zero_linger();
    Ok(())
}
