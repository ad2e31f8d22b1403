//! Plain-HTTP checks as futures: one `GET` written and one answer read on a connection
//! the check keeps, with nothing else kept. The scheduler runs plain-HTTP checks
//! through its epoll prober ([`crate::http_probe`], which shares the head parsing and
//! the request here); this path serves checks through the DR path ([`crate::via`]),
//! [`crate::Checker::run`] and a scheduler without an epoll set.
//!
//! Between runs a kept connection is its socket alone: no task, no buffers (a hyper
//! client connection kept 25 KB and a task each, 274 MB at 10,000 kept checks). A
//! run reads into one buffer that it drops at its end; httparse
//! parses the status line, the headers and the chunk sizes; [`crate::http1_body`]
//! frames the body. HTTPS checks use reqwest (certificates, SNI, CA).
//!
//! With `keepalive` the connection stays open between checks where the server allows
//! it; one run in [`HttpCheck::FRESH_EVERY`] asks the server to close it, so the
//! listener itself is tried that often. Without it, every run asks to close. A kept
//! connection the server closed while idle is noticed before the request, or, if the
//! close crosses the request, by no answer at all: the `GET` (idempotent) is then
//! sent once more on a new connection, as browsers do. Checks through the DR path
//! ([`crate::via`]) use the same exchange on a connection of their own.

use std::net::SocketAddr;

use bytes::BytesMut;
use regex::Regex;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::failure::{io_failure, CheckFailure};
use crate::http1_body::{framing, BodyError, Framing, Sink};
use lvsdr::health::HttpCheck;

/// A check's kept connection (none before its first run, during a run, or after a
/// close).
pub type Kept = std::sync::Mutex<Option<TcpStream>>;

/// The longest status line and headers read (a longer head is the server's fault).
pub(crate) const HEAD_LIMIT: usize = 16 * 1024;
/// Headers parsed at most.
const HEADERS: usize = 64;
/// What a read asks for at least.
const READ_SIZE: usize = 4096;

/// Runs one `GET` against `target`, on the kept connection if it is still good.
pub async fn get(
    kept: &Kept,
    target: SocketAddr,
    h: &HttpCheck,
    body: Option<&Regex>,
    limit: usize,
    close: bool,
) -> Result<(), CheckFailure> {
    let what = || format!("GET http://{target}{}", h.path);
    let host = h.host.clone().unwrap_or_else(|| target.to_string());
    let request = request(&h.path, &host, close).map_err(|e| local(&what(), e))?;
    let answer = Answer { h, body, limit };
    if let Some(stream) = take_open(kept) {
        match answer.exchange(stream, &request, &what).await {
            Ok(reusable) => return keep(kept, reusable, close),
            Err(Failed::Answered(e)) => return Err(e),
            // Closed by the server as the request crossed it: once more, anew.
            Err(Failed::Unanswered(_)) => {}
        }
    }
    let stream = TcpStream::connect(target)
        .await
        .map_err(|e| io_failure(&format!("connect {target}"), &e))?;
    // No TCP_NODELAY (a system call per connection): Nagle holds a segment back only
    // while earlier data is unacknowledged, and a check's earlier request was answered.
    match answer.exchange(stream, &request, &what).await {
        Ok(reusable) => keep(kept, reusable, close),
        Err(Failed::Answered(e) | Failed::Unanswered(e)) => Err(e),
    }
}

/// One `GET` on a connection of its own that is closed after it (checks through the
/// DR path).
pub async fn get_once(
    stream: TcpStream,
    h: &HttpCheck,
    host: &str,
    body: Option<&Regex>,
    limit: usize,
    what: &(dyn Fn() -> String + Sync),
) -> Result<(), CheckFailure> {
    let request = request(&h.path, host, true).map_err(|e| local(&what(), e))?;
    let answer = Answer { h, body, limit };
    match answer.exchange(stream, &request, what).await {
        Ok(_) => Ok(()),
        Err(Failed::Answered(e) | Failed::Unanswered(e)) => Err(e),
    }
}

fn local(what: &str, e: &str) -> CheckFailure {
    CheckFailure::Local(format!("{what}: {e}"))
}

/// The kept connection, if there is one the server has not closed (an idle
/// connection has nothing to read: end of stream or stray bytes mean it is done).
fn take_open(kept: &Kept) -> Option<TcpStream> {
    let stream = kept.lock().ok()?.take()?;
    match stream.try_read(&mut [0u8; 1]) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Some(stream),
        _ => None,
    }
}

fn keep(kept: &Kept, reusable: Option<TcpStream>, close: bool) -> Result<(), CheckFailure> {
    if let (Some(stream), false, Ok(mut slot)) = (reusable, close, kept.lock()) {
        *slot = Some(stream);
    }
    Ok(())
}

/// The request's bytes; a path or host that would break the request line or a header
/// is refused (the config's validation refuses them too).
pub(crate) fn request(path: &str, host: &str, close: bool) -> Result<Vec<u8>, &'static str> {
    if path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err("the path has a space or a control character");
    }
    if host.bytes().any(|b| b.is_ascii_control()) {
        return Err("the host has a control character");
    }
    let connection = if close { "Connection: close\r\n" } else { "" };
    Ok(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{connection}\r\n").into_bytes())
}

/// Why an exchange failed: after some answer, or with none at all (a kept connection
/// the server had closed).
enum Failed {
    Answered(CheckFailure),
    Unanswered(CheckFailure),
}

/// What an answer must be.
struct Answer<'a> {
    h: &'a HttpCheck,
    body: Option<&'a Regex>,
    limit: usize,
}

/// What the head said.
pub(crate) struct Head {
    pub status: u16,
    pub framing: Framing,
    /// The server keeps the connection open after this answer.
    pub keeps: bool,
}

impl Answer<'_> {
    /// Writes `request`, reads the answer: the status must be expected and the body
    /// (up to `limit` bytes) match `body`. The stream back if it can carry the next
    /// request (the body was read to its end and the server keeps it open).
    async fn exchange(
        &self,
        mut stream: TcpStream,
        request: &[u8],
        what: &(dyn Fn() -> String + Sync),
    ) -> Result<Option<TcpStream>, Failed> {
        let down = |e: &std::io::Error| io_failure(&what(), e);
        if let Err(e) = stream.write_all(request).await {
            return Err(Failed::Unanswered(down(&e)));
        }
        // Allocated at the first answer byte: thousands of checks may be waiting on
        // their servers at once.
        let mut buf = BytesMut::new();
        let head = read_head(&mut stream, &mut buf, what).await?;
        let fail = |m: String| Failed::Answered(CheckFailure::Down(format!("{}: {m}", what())));
        if !self.h.expect_status.contains(head.status) {
            let m = format!("status {}, expected {}", head.status, self.h.expect_status);
            return Err(fail(m));
        }
        let mut sink = Sink::new(self.body.is_some(), self.limit);
        let whole = crate::http1_body::read(&mut stream, &mut buf, head.framing, &mut sink)
            .await
            .map_err(|e| match e {
                BodyError::Io(e) => Failed::Answered(io_failure(&what(), &e)),
                other => fail(other.to_string()),
            })?;
        if let Some(re) = self.body {
            if !re.is_match(&String::from_utf8_lossy(sink.got())) {
                return Err(fail(format!("body does not match {:?}", re.as_str())));
            }
        }
        let reusable = whole && head.keeps && head.framing != Framing::UntilClose;
        Ok(reusable.then_some(stream))
    }
}

/// Reads and parses the status line and headers (skipping interim `1xx` answers),
/// leaving what follows them in `buf`.
async fn read_head(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    what: &(dyn Fn() -> String + Sync),
) -> Result<Head, Failed> {
    let mut answered = false;
    loop {
        match parse_head(buf) {
            Ok(Some((len, head))) => {
                let _ = buf.split_to(len);
                answered = true;
                if (100..200).contains(&head.status) {
                    continue;
                }
                return Ok(head);
            }
            Ok(None) if buf.len() < HEAD_LIMIT => {}
            Ok(None) => {
                let m = format!("{}: the answer's head is over {HEAD_LIMIT} bytes", what());
                return Err(Failed::Answered(CheckFailure::Down(m)));
            }
            Err(e) => {
                let m = format!("{}: not an HTTP answer: {e}", what());
                return Err(Failed::Answered(CheckFailure::Down(m)));
            }
        }
        let got = read_some(stream, buf).await;
        let failure = match got {
            Ok(0) => CheckFailure::Down(format!("{}: closed before an answer", what())),
            Ok(_) => continue,
            Err(e) => io_failure(&what(), &e),
        };
        return Err(if answered || !buf.is_empty() {
            Failed::Answered(failure)
        } else {
            Failed::Unanswered(failure)
        });
    }
}

/// Waits for the stream to be readable, then reads into `buf` (room made only now).
async fn read_some(stream: &mut TcpStream, buf: &mut BytesMut) -> std::io::Result<usize> {
    loop {
        stream.readable().await?;
        buf.reserve(READ_SIZE);
        match stream.try_read_buf(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            got => return got,
        }
    }
}

/// The head at the start of `buf` and its length, or `None` if it is not all there.
pub(crate) fn parse_head(buf: &[u8]) -> Result<Option<(usize, Head)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; HEADERS];
    let mut r = httparse::Response::new(&mut headers);
    let len = match r.parse(buf).map_err(|e| e.to_string())? {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => return Ok(None),
    };
    let status = r.code.unwrap_or(0);
    let version = r.version.unwrap_or(0);
    let framing = framing(status, r.headers)?;
    let connection = |token: &str| {
        r.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("connection"))
            .flat_map(|h| h.value.split(|b| *b == b','))
            .any(|v| v.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    };
    // HTTP/1.1 keeps by default, 1.0 only when it says so.
    let keeps = if version >= 1 {
        !connection("close")
    } else {
        connection("keep-alive")
    };
    Ok(Some((
        len,
        Head {
            status,
            framing,
            keeps,
        },
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Head {
        match parse_head(text.as_bytes()) {
            Ok(Some((len, h))) => {
                assert_eq!(len, text.len());
                h
            }
            other => panic!("{text:?}: {:?}", other.map(|o| o.map(|(l, _)| l))),
        }
    }

    #[test]
    fn the_head_says_status_framing_and_whether_the_server_keeps_the_connection() {
        let h = head("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n");
        assert_eq!(
            (h.status, h.framing, h.keeps),
            (200, Framing::Length(2), true)
        );
        let h =
            head("HTTP/1.1 200 OK\r\nConnection: Keep-Alive, close\r\ncontent-length: 0\r\n\r\n");
        assert_eq!((h.framing, h.keeps), (Framing::Length(0), false));
        let h = head("HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n");
        assert!(!h.keeps, "1.0 closes unless it says keep-alive");
        let h = head("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\n");
        assert!(h.keeps);
        let h = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        assert_eq!(h.framing, Framing::Chunked);
        let h = head("HTTP/1.0 200 OK\r\n\r\n");
        assert_eq!(h.framing, Framing::UntilClose);
        let h = head("HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
        assert_eq!((h.status, h.framing), (204, Framing::Length(0)));
        assert!(matches!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Le"),
            Ok(None)
        ));
        assert!(parse_head(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        let e = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n");
        assert!(e.is_err(), "two lengths that differ");
    }

    #[test]
    fn a_path_or_host_that_would_break_the_request_is_refused() {
        assert_eq!(
            request("/health?x=1", "[::1]:80", false).as_deref(),
            Ok(&b"GET /health?x=1 HTTP/1.1\r\nHost: [::1]:80\r\n\r\n"[..])
        );
        assert_eq!(
            request("/", "a", true).as_deref(),
            Ok(&b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"[..])
        );
        assert!(request("/a b", "a", false).is_err());
        assert!(request("/a\r\nX: y", "a", false).is_err());
        assert!(request("/", "a\r\nX: y", false).is_err());
    }
}
