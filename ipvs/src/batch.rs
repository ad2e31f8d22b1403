//! Changes to the table, many per `sendmsg`: the kernel's generic-netlink receive path
//! runs every message of one buffer in turn, in the sender's context, and goes on after
//! a message fails. So a run of changes is encoded into one buffer, each without
//! `NLM_F_ACK` but the last: a change that succeeds says nothing, one that fails
//! answers with its errno (matched by sequence number), and the last one's ack says
//! that the kernel is through the whole buffer. One `sendmsg` and, when nothing
//! fails, one `recv` per [`BATCH`] changes, instead of one round trip each.
//!
//! The socket is this module's own (the router's socket serves requests answered with
//! data), unbound and unconnected: netlink sends it to the kernel and binds it to a
//! port id at the first send. An error echoes its request: [`BATCH`] of them fit in
//! the receive queue.

use std::io::Cursor;
use std::time::Duration;

use neli::consts::nl::NlmF;
use neli::nl::{NlPayload, NlmsghdrBuilder};
use neli::ToBytes;
use socket2::{Domain, Protocol, Socket, Type};

use super::error::kernel_error;
use super::error::IpvsError;
use super::progress::Progress;
use super::wire::{GenlMsg, Request};

/// At most this many changes go in one buffer: even if each of them fails, their
/// answers fit in the receive queue.
pub const BATCH: usize = 128;

/// The writer's socket and its sequence numbers.
pub struct Writer {
    // A datagram socket to tokio (it only polls readiness and calls send/recv): what
    // the health checks' raw socket does too, so no unsafe fd handling is needed.
    sock: tokio::net::UdpSocket,
    seq: u32,
    recv_buf: Vec<u8>,
    progress: Progress,
}

fn socket_err(context: &str, e: impl std::fmt::Display) -> IpvsError {
    IpvsError::Socket {
        context: context.to_string(),
        detail: e.to_string(),
    }
}

impl Writer {
    /// A generic-netlink socket of its own; every datagram of answers counts in
    /// `progress`.
    pub fn connect(progress: Progress) -> Result<Writer, IpvsError> {
        let open = || -> std::io::Result<tokio::net::UdpSocket> {
            let s = Socket::new(
                Domain::from(libc::AF_NETLINK),
                Type::RAW,
                Some(Protocol::from(libc::NETLINK_GENERIC)),
            )?;
            // Room for a buffer's worth of error answers (capped by rmem_max).
            let _ = s.set_recv_buffer_size(1 << 20);
            s.set_nonblocking(true)?;
            tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(s))
        };
        let sock = open().map_err(|e| socket_err("open the writer's socket", e))?;
        Ok(Writer {
            sock,
            seq: 0,
            recv_buf: vec![0; 64 * 1024],
            progress,
        })
    }

    /// Sends `reqs` (none a dump or a request answered with data) in buffers of up to
    /// [`BATCH`]; each one's outcome, in order. `Err` of the whole call: the socket
    /// failed or an answer missed `deadline` (the caller replaces the handle); the
    /// changes of the buffer in flight may or may not have been made.
    pub async fn write(
        &mut self,
        family: u16,
        reqs: &[Request],
        deadline: Duration,
    ) -> Result<Vec<Result<(), IpvsError>>, IpvsError> {
        let mut out = Vec::with_capacity(reqs.len());
        for chunk in reqs.chunks(BATCH) {
            out.extend(self.one_buffer(family, chunk, deadline).await?);
        }
        Ok(out)
    }

    async fn one_buffer(
        &mut self,
        family: u16,
        reqs: &[Request],
        deadline: Duration,
    ) -> Result<Vec<Result<(), IpvsError>>, IpvsError> {
        let first = self.seq.wrapping_add(1);
        self.seq = first.wrapping_add(reqs.len() as u32);
        let mut out: Vec<Result<(), IpvsError>> = Vec::with_capacity(reqs.len());
        let mut encoded = Vec::with_capacity(reqs.len());
        for req in reqs {
            match req.encode() {
                Ok(genl) => {
                    out.push(Ok(()));
                    encoded.push(Some(genl));
                }
                // Not sent: it has its error, the others go.
                Err(e) => {
                    out.push(Err(e.into()));
                    encoded.push(None);
                }
            }
        }
        // The last message that goes carries the ack.
        let Some(barrier) = encoded.iter().rposition(Option::is_some) else {
            return Ok(out);
        };
        let mut buf = Cursor::new(Vec::with_capacity(reqs.len() * 128));
        for (i, genl) in encoded.into_iter().enumerate() {
            let Some(genl) = genl else { continue };
            let flags = if i == barrier {
                NlmF::REQUEST | NlmF::ACK
            } else {
                NlmF::REQUEST
            };
            NlmsghdrBuilder::<u16, GenlMsg>::default()
                .nl_type(family)
                .nl_flags(flags)
                .nl_seq(first.wrapping_add(i as u32))
                .nl_payload(NlPayload::Payload(genl))
                .build()
                .map_err(|e| socket_err("build a message", e))?
                .to_bytes(&mut buf)
                .map_err(|e| socket_err("serialize a message", e))?;
        }
        self.send(buf.get_ref()).await?;
        let barrier = first.wrapping_add(barrier as u32);
        tokio::time::timeout(deadline, self.answers(first, barrier, reqs, &mut out))
            .await
            .map_err(|_| IpvsError::Timeout {
                op: "apply".into(),
                object: format!("{} changes sent in one buffer", reqs.len()),
                after: deadline,
            })??;
        Ok(out)
    }

    async fn send(&self, bytes: &[u8]) -> Result<(), IpvsError> {
        self.sock
            .send(bytes)
            .await
            .map(|_| ())
            .map_err(|e| socket_err("send", e))
    }

    /// Reads answers until the barrier's ack; errors land on their request.
    async fn answers(
        &mut self,
        first: u32,
        barrier: u32,
        reqs: &[Request],
        out: &mut [Result<(), IpvsError>],
    ) -> Result<(), IpvsError> {
        loop {
            let n = self.recv().await?;
            self.progress.tick(1);
            for (seq, errno) in acks(&self.recv_buf[..n]) {
                // Answers to an earlier buffer (one that timed out) are not ours.
                let Some(i) = index(first, seq, reqs.len()) else {
                    continue;
                };
                if errno != 0 {
                    out[i] = Err(kernel_error(&reqs[i], errno));
                }
                if seq == barrier {
                    return Ok(());
                }
            }
        }
    }

    async fn recv(&mut self) -> Result<usize, IpvsError> {
        self.sock
            .recv(&mut self.recv_buf)
            .await
            .map_err(|e| socket_err("receive", e))
    }
}

/// The position in a buffer of `len` requests starting at `first` of the answer to
/// `seq`, if it is one of them.
fn index(first: u32, seq: u32, len: usize) -> Option<usize> {
    let i = seq.wrapping_sub(first) as usize;
    (i < len).then_some(i)
}

/// The acks and errors in a datagram: (sequence number, errno; 0 for an ack). Read by
/// hand: only the header and the errno matter here, and the socket is not neli's.
/// Layout (`netlink.h`): `nlmsghdr` { len u32, type u16, flags u16, seq u32, pid u32 }
/// in host order, then for `NLMSG_ERROR` an `int error` (negative errno).
fn acks(buf: &[u8]) -> Vec<(u32, i32)> {
    const HDR: usize = 16;
    let u32_at = |b: &[u8], at: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
    };
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(len) = u32_at(buf, at) {
        let len = len as usize;
        if len < HDR || at + len > buf.len() {
            break;
        }
        let msg = &buf[at..at + len];
        let ty = u16::from_ne_bytes([msg[4], msg[5]]);
        if ty == NLMSG_ERROR {
            if let (Some(seq), Some(code)) = (u32_at(msg, 8), u32_at(msg, HDR)) {
                out.push((seq, (code as i32).abs()));
            }
        }
        at += (len + 3) & !3;
    }
    out
}

const NLMSG_ERROR: u16 = libc::NLMSG_ERROR as u16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_matched_to_their_request_across_wrapping_sequence_numbers() {
        assert_eq!(index(10, 10, 3), Some(0));
        assert_eq!(index(10, 12, 3), Some(2));
        assert_eq!(index(10, 13, 3), None);
        assert_eq!(index(10, 9, 3), None);
        assert_eq!(index(u32::MAX, 1, 3), Some(2));
    }

    /// An ack and an error (type 2, the errno, then the request's header: an ack is
    /// capped to it, an error would echo the request, left out here), in one buffer.
    #[test]
    fn kernel_answers_parse_into_sequence_and_errno() {
        let ack: [u8; 36] = [
            36, 0, 0, 0, 2, 0, 0, 1, 7, 0, 0, 0, 0x39, 0x30, 0, 0, // header, seq 7
            0, 0, 0, 0, // error 0
            52, 0, 0, 0, 0x1a, 0, 5, 3, 7, 0, 0, 0, 0, 0, 0, 0, // the request's header
        ];
        let err: [u8; 36] = [
            36, 0, 0, 0, 2, 0, 0, 1, 8, 0, 0, 0, 0x39, 0x30, 0, 0, // seq 8
            0xef, 0xff, 0xff, 0xff, // -17 (EEXIST)
            52, 0, 0, 0, 0x1a, 0, 1, 0, 8, 0, 0, 0, 0, 0, 0, 0,
        ];
        let mut both = ack.to_vec();
        both.extend_from_slice(&err);
        assert_eq!(acks(&both), vec![(7, 0), (8, libc::EEXIST)]);
        // Truncated or garbage input yields what is whole, never a panic.
        assert_eq!(acks(&both[..40]), vec![(7, 0)]);
        assert_eq!(acks(&[0xff; 7]), vec![]);
        assert_eq!(acks(&[0; 64]), vec![]);
    }
}
