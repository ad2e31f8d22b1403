//! The checks the importers need, against servers on loopback: `tcp-expect` (send,
//! then an answer matching a regex), `smtp` (a 220 banner, then QUIT) and HTTP
//! `expect_status` sets such as "200-299".

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lvsdr_checks::{CheckKind, CheckSpec, Checker, HttpCheck, Prepared, StatusSet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Accepts connections; each gets `greeting` at once, then `reply(what it read)`,
/// and is closed. What each connection sent is kept.
async fn server(
    greeting: &'static str,
    reply: fn(&str) -> String,
) -> (SocketAddr, Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let seen = seen2.clone();
            tokio::spawn(async move {
                let _ = s.write_all(greeting.as_bytes()).await;
                let mut buf = [0u8; 1024];
                let n = tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or(0);
                let got = String::from_utf8_lossy(&buf[..n]).into_owned();
                let _ = s.write_all(reply(&got).as_bytes()).await;
                seen.lock().expect("lock").push(got);
            });
        }
    });
    (addr, seen)
}

fn prepared(target: SocketAddr, kind: CheckKind) -> Prepared {
    Prepared::new(Arc::new(CheckSpec {
        via: None,
        target,
        kind,
        interval: Duration::from_secs(2),
        timeout: Duration::from_secs(1),
        rise: 1,
        fall: 1,
    }))
    .expect("prepared")
}

fn checker() -> Checker {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Checker::new(tokio_util::sync::CancellationToken::new()).expect("checker")
}

#[tokio::test]
async fn tcp_expect_sends_and_matches_the_answer() {
    let (addr, seen) = server("", |got| {
        if got == "PING\r\n" {
            "+PONG\r\n".into()
        } else {
            "-ERR\r\n".into()
        }
    })
    .await;
    let c = checker();
    let up = CheckKind::TcpExpect {
        send: "PING\r\n".into(),
        expect: r"^\+PONG".into(),
    };
    assert!(c.run(&prepared(addr, up)).await.is_ok());
    let wrong = CheckKind::TcpExpect {
        send: "HELLO\r\n".into(),
        expect: r"^\+PONG".into(),
    };
    let e = c.run(&prepared(addr, wrong)).await.expect_err("matched");
    assert!(e.to_string().contains("does not match"), "{e}");
    assert_eq!(seen.lock().expect("lock")[0], "PING\r\n");
}

#[tokio::test]
async fn tcp_expect_with_nothing_to_send_reads_the_banner() {
    let (addr, _) = server("SSH-2.0-test\r\n", |_| String::new()).await;
    let c = checker();
    let kind = |re: &str| CheckKind::TcpExpect {
        send: String::new(),
        expect: re.into(),
    };
    assert!(c.run(&prepared(addr, kind("^SSH-2"))).await.is_ok());
    assert!(c.run(&prepared(addr, kind("^SSH-1"))).await.is_err());
}

#[tokio::test]
async fn smtp_wants_a_220_banner_and_says_quit() {
    let (good, seen) = server("220-mail.test ESMTP\r\n220 ready\r\n", |_| {
        "221 bye\r\n".into()
    })
    .await;
    let (busy, _) = server("554 no service\r\n", |_| String::new()).await;
    let c = checker();
    assert!(c.run(&prepared(good, CheckKind::Smtp)).await.is_ok());
    // The server saw the QUIT (give its task a moment to record it).
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        seen.lock().expect("lock").first().map(String::as_str),
        Some("QUIT\r\n")
    );
    let e = c
        .run(&prepared(busy, CheckKind::Smtp))
        .await
        .expect_err("554 passed");
    assert!(e.to_string().contains("554"), "{e}");
}

fn http(expect: &str) -> CheckKind {
    CheckKind::Http(HttpCheck {
        tls: false,
        insecure: false,
        path: "/".into(),
        host: None,
        expect_status: StatusSet::parse(expect).expect("status set"),
        expect_body: None,
        sni: None,
        ca: None,
        keepalive: true,
    })
}

#[tokio::test]
async fn expect_status_takes_ranges() {
    let (no_content, _) = server("", |_| {
        "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n".into()
    })
    .await;
    let (moved, _) = server("", |_| {
        "HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            .into()
    })
    .await;
    let c = checker();
    assert!(c.run(&prepared(no_content, http("200-299"))).await.is_ok());
    assert!(c.run(&prepared(no_content, http("200"))).await.is_err());
    assert!(c.run(&prepared(moved, http("200-299"))).await.is_err());
    assert!(c.run(&prepared(moved, http("200,301-302"))).await.is_ok());
}

#[test]
fn status_sets_parse_and_print() {
    let s = StatusSet::parse("200, 301-302").expect("set");
    assert_eq!(s.to_string(), "200,301-302");
    assert!(s.contains(301) && !s.contains(303));
    for bad in ["", "99", "600", "300-200", "2xx", "200-"] {
        assert!(StatusSet::parse(bad).is_none(), "{bad:?} parsed");
    }
}

/// An HTTP/1.1 server that keeps connections open unless asked to close; counts the
/// connections it accepted and the requests it answered.
async fn keepalive_server() -> (
    SocketAddr,
    Arc<std::sync::atomic::AtomicUsize>,
    Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (conns, reqs) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (c2, r2) = (conns.clone(), reqs.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            c2.fetch_add(1, Relaxed);
            let reqs = r2.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                loop {
                    let Ok(n) = s.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        buf.drain(..end + 4);
                        reqs.fetch_add(1, Relaxed);
                        let close = head.contains("connection: close");
                        let answer = if close {
                            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                        } else {
                            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                        };
                        if s.write_all(answer.as_bytes()).await.is_err() || close {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, conns, reqs)
}

#[tokio::test]
async fn http_keepalive_reuses_the_connection_and_opens_a_new_one_every_tenth_check() {
    use std::sync::atomic::Ordering::Relaxed;
    let c = checker();
    let (addr, conns, reqs) = keepalive_server().await;
    let p = prepared(addr, CheckKind::Http(HttpCheck::get("/")));
    for _ in 0..30 {
        assert_eq!(c.run(&p).await, Ok(()));
    }
    assert_eq!(reqs.load(Relaxed), 30);
    assert_eq!(
        conns.load(Relaxed),
        3,
        "30 checks: one connection per {} checks",
        HttpCheck::FRESH_EVERY
    );

    let (addr, conns, reqs) = keepalive_server().await;
    let mut h = HttpCheck::get("/");
    h.keepalive = false;
    let p = prepared(addr, CheckKind::Http(h));
    for _ in 0..10 {
        assert_eq!(c.run(&p).await, Ok(()));
    }
    assert_eq!((reqs.load(Relaxed), conns.load(Relaxed)), (10, 10));
}

#[test]
fn keepalive_is_an_http_setting() {
    let cfg = |check: &str| {
        format!(
            "[[service]]\nname = \"web\"\nvip = \"192.0.2.10\"\nport = 80\n[service.check]\n{check}\n[[service.real_server]]\naddress = \"10.0.0.11\"\n"
        )
    };
    let d =
        lvsdr::config::parse(&cfg("type = \"http\"\nkeepalive = false"), "t.toml").expect("valid");
    let kind = &d.services[0].real_servers[0]
        .check
        .as_ref()
        .expect("check")
        .kind;
    assert!(matches!(kind, CheckKind::Http(h) if !h.keepalive));
    let d = lvsdr::config::parse(&cfg("type = \"http\""), "t.toml").expect("valid");
    let kind = &d.services[0].real_servers[0]
        .check
        .as_ref()
        .expect("check")
        .kind;
    assert!(
        matches!(kind, CheckKind::Http(h) if h.keepalive),
        "default on"
    );
    let e = lvsdr::config::parse(&cfg("type = \"tcp\"\nkeepalive = true"), "t.toml")
        .expect_err("keepalive on a tcp check");
    assert!(e.to_string().contains("keepalive does not apply"), "{e}");
}

/// A server whose connections each answer one request (keep-alive, chunked) and then
/// end: at once (`idle`), or only when the next request comes, unanswered. Counts the
/// connections.
async fn one_answer_server(idle: bool) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let conns = Arc::new(AtomicUsize::new(0));
    let c2 = conns.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            c2.fetch_add(1, Relaxed);
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                if !matches!(s.read(&mut buf).await, Ok(n) if n > 0) {
                    return;
                }
                let answer =
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
                let _ = s.write_all(answer.as_bytes()).await;
                if !idle {
                    // The next request crosses the close: read it, answer nothing.
                    let _ = s.read(&mut buf).await;
                }
            });
        }
    });
    (addr, conns)
}

#[tokio::test]
async fn a_kept_connection_the_server_ended_is_replaced_without_a_failed_check() {
    use std::sync::atomic::Ordering::Relaxed;
    let c = checker();
    for idle in [true, false] {
        let (addr, conns) = one_answer_server(idle).await;
        let mut h = HttpCheck::get("/");
        h.expect_body = Some("^ok$".into());
        let p = prepared(addr, CheckKind::Http(h));
        // An idle close is seen before the request, or (still on its way) by no
        // answer: either way the run goes on a new connection.
        for i in 0..5 {
            assert_eq!(c.run(&p).await, Ok(()), "idle close {idle}, run {i}");
        }
        assert_eq!(conns.load(Relaxed), 5, "a new connection for each run");
    }
}

#[tokio::test]
async fn an_http_server_that_never_answers_on_a_new_connection_is_down() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
        }
    });
    let e = checker()
        .run(&prepared(addr, http("200")))
        .await
        .expect_err("no answer passed");
    assert!(e.to_string().contains("closed before an answer"), "{e}");
}
