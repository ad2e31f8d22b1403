//! Checks through the DR path (`via = "vip"`): the check's socket carries the real
//! server's firewall mark (`SO_MARK`, which needs CAP_NET_ADMIN) and connects from the
//! director's own address to the VIP; IPVS's fwmark service for that mark holds only
//! this real server and sends the SYN there as it would a client's (DR: only the
//! destination MAC changes). The real server answers from the VIP to the director's
//! address, so the director must accept packets from one of its own addresses
//! (`net.ipv4.conf.all.accept_local = 1` and on the interface, or the IPv6 equivalent).

use std::net::SocketAddr;

use regex::Regex;
use tokio::net::TcpStream;

use crate::failure::{io_failure, CheckFailure};
use lvsdr::health::{HttpCheck, Via};

/// The director's own address on the way to `rs`: the route's source (a UDP "connect"
/// only looks the route up; nothing is sent).
fn source_towards(rs: SocketAddr) -> std::io::Result<std::net::IpAddr> {
    let any: SocketAddr = if rs.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let probe = std::net::UdpSocket::bind(any)?;
    probe.connect(rs)?;
    Ok(probe.local_addr()?.ip())
}

/// A TCP connection to `via.vip` that IPVS sends to the real server `rs`.
pub async fn connect(rs: SocketAddr, via: &Via) -> Result<TcpStream, CheckFailure> {
    let local = |what: &str, e: std::io::Error| CheckFailure::Local(format!("{what}: {e}"));
    let src = source_towards(rs).map_err(|e| local("no route to the real server", e))?;
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(via.vip),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .map_err(|e| local("socket", e))?;
    sock.set_mark(via.mark)
        .map_err(|e| local("SO_MARK (needs CAP_NET_ADMIN)", e))?;
    sock.bind(&SocketAddr::new(src, 0).into())
        .map_err(|e| local("bind", e))?;
    sock.set_nonblocking(true)
        .map_err(|e| local("nonblocking", e))?;
    let std: std::net::TcpStream = sock.into();
    tokio::net::TcpSocket::from_std_stream(std)
        .connect(via.vip)
        .await
        .map_err(|e| {
            io_failure(
                &format!("connect {} (via mark {:#x})", via.vip, via.mark),
                &e,
            )
        })
}

/// An HTTP GET on a connection through the DR path: the status must be expected and
/// the body (up to `limit` bytes) match `body`.
pub async fn http(
    stream: TcpStream,
    h: &HttpCheck,
    via: &Via,
    body: Option<&Regex>,
    limit: usize,
) -> Result<(), CheckFailure> {
    let what = || {
        format!(
            "GET http://{}{} (via mark {:#x})",
            via.vip, h.path, via.mark
        )
    };
    let host = h.host.clone().unwrap_or_else(|| via.vip.to_string());
    crate::http1::get_once(stream, h, &host, body, limit, &what).await
}
