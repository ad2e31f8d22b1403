//! An HTTP/1 answer's body for a check: how it is framed (length, chunked, or until
//! the server closes), read to its end or to the check's limit, and what of it is kept
//! for `expect_body`. Reading the body to its end is what lets the connection carry
//! the next check. Chunk sizes are parsed by httparse.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// How the body's end is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length` bytes (0 for a `204`, `304` or an interim answer).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Neither: the body ends when the server closes.
    UntilClose,
}

/// The framing of an answer with `status` and `headers` (RFC 9112, 6.3): chunked
/// wins over a length; lengths that differ are an error.
pub fn framing(status: u16, headers: &[httparse::Header<'_>]) -> Result<Framing, String> {
    if (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(Framing::Length(0));
    }
    let values = |name: &'static str| {
        headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .flat_map(|h| h.value.split(|b| *b == b','))
            .map(|v| v.trim_ascii())
    };
    if let Some(last) = values("transfer-encoding").next_back() {
        return Ok(if last.eq_ignore_ascii_case(b"chunked") {
            Framing::Chunked
        } else {
            Framing::UntilClose
        });
    }
    let mut length = None;
    for v in values("content-length") {
        let n = std::str::from_utf8(v)
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| format!("bad Content-Length {:?}", String::from_utf8_lossy(v)))?;
        if length.is_some_and(|l| l != n) {
            return Err("Content-Length given twice, and differently".into());
        }
        length = Some(n);
    }
    Ok(length.map_or(Framing::UntilClose, Framing::Length))
}

/// Where the body goes: counted, and its first `limit` bytes kept if they are to be
/// matched.
pub struct Sink {
    keep: bool,
    got: Vec<u8>,
    read: usize,
    limit: usize,
}

impl Sink {
    pub fn new(keep: bool, limit: usize) -> Sink {
        Sink {
            keep,
            got: Vec::new(),
            read: 0,
            limit,
        }
    }

    /// What was kept.
    pub fn got(&self) -> &[u8] {
        &self.got
    }

    /// Takes `d`; false once `limit` bytes have come (the rest is not read).
    fn feed(&mut self, d: &[u8]) -> bool {
        if self.keep {
            let room = self.limit.saturating_sub(self.got.len());
            self.got.extend_from_slice(&d[..d.len().min(room)]);
        }
        self.read += d.len();
        self.read < self.limit
    }
}

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    Io(std::io::Error),
    /// The server closed before the body's end.
    Closed,
    Malformed(&'static str),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::Io(e) => write!(f, "reading the body: {e}"),
            BodyError::Closed => f.write_str("closed before the body's end"),
            BodyError::Malformed(m) => write!(f, "bad chunked body: {m}"),
        }
    }
}

/// The longest chunk-size line or trailer line.
const LINE_LIMIT: usize = 16 * 1024;
pub const READ_SIZE: usize = 4096;

/// Reads the body that follows the head (its start may be in `buf` already) into
/// `sink`: `Ok(true)` if read to its end, `Ok(false)` if the limit stopped it.
pub async fn read<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
    framing: Framing,
    sink: &mut Sink,
) -> Result<bool, BodyError> {
    let mut body = Decoder::new(framing);
    loop {
        if let Some(whole) = body.feed(buf, sink)? {
            return Ok(whole);
        }
        buf.reserve(READ_SIZE);
        if r.read_buf(buf).await.map_err(BodyError::Io)? == 0 {
            return body.closed();
        }
    }
}

/// Where the reading of a body is, fed bytes as they come (by [`read`] here, and by
/// the epoll prober of [`crate::http_probe`], which has no stream to await).
#[derive(Debug)]
pub struct Decoder(Part);

#[derive(Debug, Clone, Copy)]
enum Part {
    /// This many bytes of body still to come (a length, or the rest of a chunk).
    Length(u64),
    UntilClose,
    ChunkSize,
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    Trailers,
}

impl Decoder {
    pub fn new(framing: Framing) -> Decoder {
        Decoder(match framing {
            Framing::Length(n) => Part::Length(n),
            Framing::Chunked => Part::ChunkSize,
            Framing::UntilClose => Part::UntilClose,
        })
    }

    /// Takes what it can of `buf` into `sink`, leaving in `buf` what follows the body:
    /// `Some(true)` at the body's end, `Some(false)` once the limit stopped it, `None`
    /// while more is to come.
    pub fn feed(&mut self, buf: &mut BytesMut, sink: &mut Sink) -> Result<Option<bool>, BodyError> {
        loop {
            match self.0 {
                Part::Length(0) => return Ok(Some(true)),
                Part::Length(n) | Part::ChunkData(n) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let k = usize::try_from(n).unwrap_or(usize::MAX).min(buf.len());
                    let part = buf.split_to(k);
                    let left = n - k as u64;
                    self.0 = match self.0 {
                        Part::ChunkData(_) if left == 0 => Part::ChunkEnd,
                        Part::ChunkData(_) => Part::ChunkData(left),
                        _ => Part::Length(left),
                    };
                    if !sink.feed(&part) {
                        return Ok(Some(false));
                    }
                }
                Part::UntilClose => {
                    if !buf.is_empty() && !sink.feed(&buf.split()) {
                        return Ok(Some(false));
                    }
                    return Ok(None);
                }
                Part::ChunkSize => match httparse::parse_chunk_size(buf) {
                    Ok(httparse::Status::Complete((len, size))) => {
                        buf.advance(len);
                        self.0 = if size == 0 {
                            Part::Trailers
                        } else {
                            Part::ChunkData(size)
                        };
                    }
                    Ok(httparse::Status::Partial) if buf.len() < LINE_LIMIT => return Ok(None),
                    Ok(httparse::Status::Partial) => {
                        return Err(BodyError::Malformed("chunk line too long"))
                    }
                    Err(_) => return Err(BodyError::Malformed("not a chunk size")),
                },
                Part::ChunkEnd => {
                    if buf.len() < 2 {
                        return Ok(None);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(BodyError::Malformed("no CRLF after a chunk"));
                    }
                    buf.advance(2);
                    self.0 = Part::ChunkSize;
                }
                Part::Trailers => match buf.windows(2).position(|w| w == b"\r\n") {
                    Some(0) => {
                        buf.advance(2);
                        return Ok(Some(true));
                    }
                    Some(i) => buf.advance(i + 2),
                    None if buf.len() < LINE_LIMIT => return Ok(None),
                    None => return Err(BodyError::Malformed("trailer line too long")),
                },
            }
        }
    }

    /// The server closed: the end of a body that runs until then, too early for any
    /// other.
    pub fn closed(&self) -> Result<bool, BodyError> {
        match self.0 {
            Part::UntilClose => Ok(true),
            Part::Length(0) => Ok(true),
            _ => Err(BodyError::Closed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// Gives its bytes a few at a time, as a network does.
    struct Trickle(Vec<u8>, usize);

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            out: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            let (at, step) = (self.1, 3.min(out.remaining()));
            let end = (at + step).min(self.0.len());
            out.put_slice(&self.0[at..end]);
            self.1 = end;
            Poll::Ready(Ok(()))
        }
    }

    /// Reads `wire` as a body framed by `framing`: (read to its end, what was kept,
    /// what is left after it).
    fn body(framing: Framing, wire: &str, limit: usize) -> Result<(bool, String, String), String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("rt");
        rt.block_on(async {
            let mut r = Trickle(wire.as_bytes().to_vec(), 0);
            let mut buf = BytesMut::new();
            let mut sink = Sink::new(true, limit);
            let whole = read(&mut r, &mut buf, framing, &mut sink)
                .await
                .map_err(|e| e.to_string())?;
            let rest =
                String::from_utf8_lossy(&buf).into_owned() + &String::from_utf8_lossy(&r.0[r.1..]);
            Ok((
                whole,
                String::from_utf8_lossy(sink.got()).into_owned(),
                rest,
            ))
        })
    }

    fn ok(whole: bool, got: &str, rest: &str) -> Result<(bool, String, String), String> {
        Ok((whole, got.into(), rest.into()))
    }

    #[test]
    fn a_length_is_read_to_its_end_and_no_further() {
        assert_eq!(
            body(Framing::Length(5), "hello NEXT", 100),
            ok(true, "hello", " NEXT")
        );
        assert_eq!(body(Framing::Length(0), "NEXT", 100), ok(true, "", "NEXT"));
        let e = body(Framing::Length(10), "short", 100).expect_err("closed early");
        assert!(e.contains("closed before the body's end"), "{e}");
    }

    #[test]
    fn chunks_are_joined_and_trailers_skipped() {
        let wire = "5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        assert_eq!(
            body(Framing::Chunked, wire, 100),
            ok(true, "hello, world", "NEXT")
        );
        assert_eq!(body(Framing::Chunked, "0\r\n\r\n", 100), ok(true, "", ""));
        let e = body(Framing::Chunked, "zz\r\n", 100).expect_err("bad size");
        assert!(e.contains("not a chunk size"), "{e}");
        let e = body(Framing::Chunked, "2\r\nabXY", 100).expect_err("no CRLF");
        assert!(e.contains("no CRLF"), "{e}");
        assert!(body(Framing::Chunked, "5\r\nhel", 100).is_err());
    }

    #[test]
    fn until_close_reads_everything() {
        assert_eq!(
            body(Framing::UntilClose, "all of it", 100),
            ok(true, "all of it", "")
        );
    }

    #[test]
    fn the_limit_stops_the_read_and_the_connection_is_not_reused() {
        let (whole, got, _) = body(Framing::Length(10), "0123456789", 4).expect("read");
        assert!(!whole);
        assert_eq!(got, "0123");
        let (whole, got, _) =
            body(Framing::Chunked, "a\r\n0123456789\r\n0\r\n\r\n", 4).expect("read");
        assert_eq!((whole, got.as_str()), (false, "0123"));
    }

    fn headers(list: &[(&'static str, &'static str)]) -> Vec<httparse::Header<'static>> {
        list.iter()
            .map(|(n, v)| httparse::Header {
                name: n,
                value: v.as_bytes(),
            })
            .collect()
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let f = |status, list: &[(&'static str, &'static str)]| framing(status, &headers(list));
        assert_eq!(f(200, &[("content-length", "12")]), Ok(Framing::Length(12)));
        assert_eq!(
            f(200, &[("Content-Length", "3, 3")]),
            Ok(Framing::Length(3))
        );
        assert!(f(200, &[("Content-Length", "3"), ("content-length", "4")]).is_err());
        assert!(f(200, &[("Content-Length", "-1")]).is_err());
        assert!(f(200, &[("Content-Length", "+1")]).is_err());
        let both = [("Content-Length", "3"), ("Transfer-Encoding", "chunked")];
        assert_eq!(f(200, &both), Ok(Framing::Chunked));
        assert_eq!(
            f(200, &[("Transfer-Encoding", "gzip")]),
            Ok(Framing::UntilClose)
        );
        assert_eq!(f(200, &[]), Ok(Framing::UntilClose));
        assert_eq!(f(304, &[("Content-Length", "100")]), Ok(Framing::Length(0)));
        assert_eq!(f(204, &[]), Ok(Framing::Length(0)));
    }
}
