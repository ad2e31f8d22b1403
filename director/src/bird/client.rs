//! Asks BIRD over its control socket (`[announce] bird_socket`) for its BGP sessions
//! and, per VIP, which of them export it. Bounded: 2 s for the whole exchange, 1 MiB of
//! answer at most.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use crate::bird::{exported, parse_reply, sessions, Reply, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

const LIMIT: usize = 1 << 20;

async fn reply(s: &mut UnixStream, buf: &mut String) -> Result<Reply, String> {
    loop {
        if let Some((r, used)) = parse_reply(buf) {
            buf.drain(..used);
            return Ok(r);
        }
        if buf.len() > LIMIT {
            return Err("BIRD's answer is too long".into());
        }
        let mut chunk = [0u8; 8192];
        let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("BIRD closed the connection".into());
        }
        buf.push_str(&String::from_utf8_lossy(&chunk[..n]));
    }
}

/// BIRD's BGP sessions, and per VIP the sessions that export it.
pub async fn ask(
    path: &Path,
    vips: &[IpAddr],
) -> Result<(Vec<Session>, BTreeMap<IpAddr, Vec<String>>), String> {
    let exchange = async {
        let mut s = UnixStream::connect(path)
            .await
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let mut buf = String::new();
        reply(&mut s, &mut buf).await?; // the banner
        s.write_all(b"show protocols\n")
            .await
            .map_err(|e| e.to_string())?;
        let bgp = sessions(&reply(&mut s, &mut buf).await?);
        let mut out: BTreeMap<IpAddr, Vec<String>> = BTreeMap::new();
        for vip in vips {
            let prefix = match vip {
                IpAddr::V4(_) => format!("{vip}/32"),
                IpAddr::V6(_) => format!("{vip}/128"),
            };
            for b in &bgp {
                s.write_all(format!("show route {prefix} export {}\n", b.name).as_bytes())
                    .await
                    .map_err(|e| e.to_string())?;
                if exported(&reply(&mut s, &mut buf).await?, &prefix) {
                    out.entry(*vip).or_default().push(b.name.clone());
                }
            }
        }
        Ok((bgp, out))
    };
    tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .unwrap_or_else(|_| Err("no answer from BIRD within 2 s".into()))
}
