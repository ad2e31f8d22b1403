//! The checks the importers need, against servers on loopback: `tcp-expect` (send,
//! then an answer matching a regex), `smtp` (a 220 banner, then QUIT) and HTTP
//! `expect_status` sets such as "200-299".

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lvsdr::health::{CheckKind, CheckSpec, Checker, HttpCheck, Prepared, StatusSet};
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
