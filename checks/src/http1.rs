//! Plain-HTTP checks on a connection each check keeps: hyper's HTTP/1 connection API,
//! not reqwest's pooled client. Per check run that is one request written and one
//! answer read; the pool, the URL parsing and the middleware layers a general client
//! has were most of an HTTP check's user CPU (measured in the VM beside keepalived's
//! `HTTP_GET`). HTTPS checks keep using reqwest (certificates, SNI, CA).
//!
//! With `keepalive` the connection stays open between checks where the server allows
//! it; one run in [`HttpCheck::FRESH_EVERY`] asks the server to close it, so the
//! listener itself is tried that often. Without it, every run asks to close.
//! Checks through the DR path ([`crate::via`]) use the same exchange on a connection
//! of their own.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use regex::Regex;
use tokio::net::TcpStream;

use crate::failure::{io_failure, CheckFailure};
use lvsdr::health::HttpCheck;

/// A check's kept connection (none before its first run, or after a close).
pub type Kept = tokio::sync::Mutex<Option<SendRequest<Empty<Bytes>>>>;

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
    let mut slot = kept.lock().await;
    if slot.as_ref().is_none_or(|s| s.is_closed() || !s.is_ready()) {
        *slot = None;
        let stream = TcpStream::connect(target)
            .await
            .map_err(|e| io_failure(&format!("connect {target}"), &e))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = handshake(stream, &what).await?;
        // Drives the connection; it ends when the connection closes or the sender is
        // dropped.
        tokio::spawn(conn);
        *slot = Some(sender);
    }
    let Some(sender) = slot.as_mut() else {
        return Err(CheckFailure::Local("no connection".into()));
    };
    let host = h.host.clone().unwrap_or_else(|| target.to_string());
    match exchange(sender, h, host, close, body, limit, &what).await {
        Ok(true) if !close => Ok(()),
        Ok(_) => {
            *slot = None;
            Ok(())
        }
        Err(e) => {
            *slot = None;
            Err(e)
        }
    }
}

/// The connection a check's requests go on, and the future that drives it.
pub async fn handshake(
    stream: TcpStream,
    what: &(dyn Fn() -> String + Sync),
) -> Result<
    (
        SendRequest<Empty<Bytes>>,
        hyper::client::conn::http1::Connection<hyper_util::rt::TokioIo<TcpStream>, Empty<Bytes>>,
    ),
    CheckFailure,
> {
    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .map_err(|e| CheckFailure::Down(format!("{}: {e}", what())))
}

/// One `GET` on `sender` (asking the server to close after it if `close`): the status
/// must be expected and the body (up to `limit` bytes) match `body`. The body is read
/// to its end so that the connection can carry the next check: `Ok(true)` if it was,
/// `Ok(false)` if it was longer than `limit` (the connection is then of no more use).
pub async fn exchange(
    sender: &mut SendRequest<Empty<Bytes>>,
    h: &HttpCheck,
    host: String,
    close: bool,
    body: Option<&Regex>,
    limit: usize,
    what: &(dyn Fn() -> String + Sync),
) -> Result<bool, CheckFailure> {
    let down = |e: &dyn std::fmt::Display| CheckFailure::Down(format!("{}: {e}", what()));
    let mut req = hyper::Request::get(h.path.as_str()).header(hyper::header::HOST, host);
    if close {
        req = req.header(hyper::header::CONNECTION, "close");
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| CheckFailure::Local(format!("{}: {e}", what())))?;
    let resp = sender.send_request(req).await.map_err(|e| down(&e))?;
    let status = resp.status().as_u16();
    if !h.expect_status.contains(status) {
        return Err(down(&format!(
            "status {status}, expected {}",
            h.expect_status
        )));
    }
    let mut b = resp.into_body();
    let (mut got, mut read, mut whole) = (Vec::new(), 0usize, false);
    loop {
        match b.frame().await {
            Some(Ok(f)) => {
                if let Some(d) = f.data_ref() {
                    if body.is_some() {
                        let room = limit.saturating_sub(got.len());
                        got.extend_from_slice(&d[..d.len().min(room)]);
                    }
                    read += d.len();
                    if read >= limit {
                        break;
                    }
                }
            }
            Some(Err(e)) => return Err(down(&e)),
            None => {
                whole = true;
                break;
            }
        }
    }
    if let Some(re) = body {
        if !re.is_match(&String::from_utf8_lossy(&got)) {
            return Err(down(&format!("body does not match {:?}", re.as_str())));
        }
    }
    Ok(whole)
}
