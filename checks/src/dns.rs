//! `udp-dns`: one query over UDP; an answer to it with the expected rcode is up.

use std::net::SocketAddr;

use tokio::net::UdpSocket;

use crate::failure::{io_failure, CheckFailure};

/// A minimal DNS query (header + one question, type A, class IN): the check needs any
/// well-formed answer to its id, nothing a resolver library adds.
pub fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(32);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD; 1 question
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        let bytes = &label.as_bytes()[..label.len().min(63)];
        q.push(bytes.len() as u8);
        q.extend_from_slice(bytes);
    }
    q.push(0);
    q.extend_from_slice(&[0, 1, 0, 1]); // A, IN
    q
}

/// What an answer to query `id` says: `None` if it is not one (someone else's, or
/// malformed), else whether its rcode is the one expected.
pub fn dns_answer(buf: &[u8], id: u16, expect: u8) -> Option<Result<(), String>> {
    // A full header, our id, the QR (response) bit.
    if buf.len() < 12 || buf[..2] != id.to_be_bytes() || buf[2] & 0x80 == 0 {
        return None;
    }
    let rcode = buf[3] & 0x0f;
    Some(if rcode == expect {
        Ok(())
    } else {
        Err(format!("answered with rcode {rcode}, expected {expect}"))
    })
}

pub async fn dns_check(target: SocketAddr, name: &str, rcode: u8) -> Result<(), CheckFailure> {
    let bind: SocketAddr = if target.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(bind)
        .await
        .map_err(|e| io_failure("udp bind", &e))?;
    sock.connect(target)
        .await
        .map_err(|e| io_failure(&format!("udp connect {target}"), &e))?;
    // Unpredictable, so that nobody off-path answers for the server.
    let id = {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u16(target.port());
        h.finish() as u16
    };
    let query = dns_query(id, name);
    sock.send(&query)
        .await
        .map_err(|e| io_failure(&format!("dns query to {target}"), &e))?;
    let mut buf = [0u8; 1500];
    loop {
        let n = sock
            .recv(&mut buf)
            .await
            .map_err(|e| io_failure(&format!("dns answer from {target}"), &e))?;
        if let Some(r) = dns_answer(&buf[..n], id, rcode) {
            return r.map_err(|e| CheckFailure::Down(format!("dns {target}: {e}")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dns_answer_counts_only_with_our_id_and_the_expected_rcode() {
        let mut a = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        assert_eq!(dns_answer(&a, 0x1234, 0), Some(Ok(())));
        assert_eq!(dns_answer(&a, 0x9999, 0), None, "someone else's id");
        a[3] = 0x83; // NXDOMAIN
        assert!(dns_answer(&a, 0x1234, 0).is_some_and(|r| r.is_err()));
        assert_eq!(dns_answer(&a, 0x1234, 3), Some(Ok(())));
        a[2] = 0x01; // a query, not an answer
        assert_eq!(dns_answer(&a, 0x1234, 3), None);
        assert_eq!(dns_answer(&a[..5], 0x1234, 3), None);
    }

    #[test]
    fn dns_query_encodes_the_name_as_labels() {
        let q = dns_query(0x1234, "example.com.");
        assert_eq!(&q[..4], &[0x12, 0x34, 0x01, 0x00]);
        assert_eq!(&q[12..], b"\x07example\x03com\x00\x00\x01\x00\x01");
        assert_eq!(&dns_query(1, ".")[12..], b"\x00\x00\x01\x00\x01");
    }
}
