//! The part of an accept loop both HTTP servers share (the director's status endpoint,
//! the agent's API): the next connection, with a failed accept backed off rather
//! than spun on, and refused connections counted for a log line now and then. Each
//! server keeps its own admission (a bound on connections, handshakes per address).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

/// The next connection on `listener` (`what` names the server in logs). Cancel-safe:
/// dropping the future loses no connection.
pub async fn next(listener: &TcpListener, what: &str) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(x) => return x,
            // Out of file descriptors: the connection stays in the backlog and accept
            // fails again at once; wait for some to close.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                warn!(error = %e, "{what}: out of file descriptors; backing off");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                debug!(error = %e, "{what}: accept");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}

/// Connections refused by admission, counted; a flood logs a line at each power of
/// two rather than one per connection.
#[derive(Debug, Default)]
pub struct Refusals(u64);

impl Refusals {
    /// Counts one refusal; the count so far when a line is due.
    pub fn count(&mut self) -> Option<u64> {
        self.0 += 1;
        self.0.is_power_of_two().then_some(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_refusals_logs_at_powers_of_two() {
        let mut r = Refusals::default();
        let due: Vec<u64> = (0..20).filter_map(|_| r.count()).collect();
        assert_eq!(due, [1, 2, 4, 8, 16]);
    }

    #[tokio::test]
    async fn the_next_connection_is_returned() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = tokio::spawn(TcpStream::connect(addr));
        let (_, peer) = next(&listener, "test").await;
        let c = client.await.expect("join").expect("connect");
        assert_eq!(peer, c.local_addr().expect("local"));
    }
}
