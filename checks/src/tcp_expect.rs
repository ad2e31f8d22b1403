//! `tcp-expect`: send, then read until the answer matches a regex.

use std::net::SocketAddr;

use regex::Regex;
use tokio::net::TcpStream;

use crate::failure::{io_failure, CheckFailure};

/// On a new connection: sends `send`, and reads until what came matches `re`, the
/// server closes, or `limit` bytes came. Closed with RST, as a tcp check is.
pub async fn tcp_expect(
    mut s: TcpStream,
    target: SocketAddr,
    send: &[u8],
    re: &Regex,
    limit: usize,
) -> Result<(), CheckFailure> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = s.set_zero_linger();
    if !send.is_empty() {
        s.write_all(send)
            .await
            .map_err(|e| io_failure(&format!("send to {target}"), &e))?;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s
            .read(&mut buf)
            .await
            .map_err(|e| io_failure(&format!("read from {target}"), &e))?;
        got.extend_from_slice(&buf[..n.min(limit - got.len())]);
        if re.is_match(&String::from_utf8_lossy(&got)) {
            return Ok(());
        }
        if n == 0 || got.len() >= limit {
            let shown: String = String::from_utf8_lossy(&got).chars().take(80).collect();
            return Err(CheckFailure::Down(format!(
                "{target}: answer {shown:?} does not match {:?}",
                re.as_str()
            )));
        }
    }
}
