//! VIP addresses on the VIP device (the [`lvsdr_netdev::Net`] connection), and a
//! stream of address and link events (drift is repaired when it happens, not at the
//! next timer tick).

use anyhow::Context;

pub use lvsdr_netdev::Net;

/// Address and link changes in this namespace, as they happen: one `()` per netlink
/// notification (the applier re-reads the kernel; it needs no detail).
pub fn events() -> anyhow::Result<tokio::sync::mpsc::UnboundedReceiver<()>> {
    const RTMGRP_LINK: u32 = 0x1;
    const RTMGRP_IPV4_IFADDR: u32 = 0x10;
    const RTMGRP_IPV6_IFADDR: u32 = 0x100;
    let (mut conn, handle, mut messages) =
        rtnetlink::new_connection().context("route netlink socket for events")?;
    let groups =
        netlink_sys::SocketAddr::new(0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR);
    netlink_sys::AsyncSocket::socket_mut(conn.socket_mut())
        .bind(&groups)
        .context("joining the address and link notification groups")?;
    tokio::spawn(conn);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let _handle = handle; // the connection lives while a handle does
        while futures_util::StreamExt::next(&mut messages).await.is_some() {
            if tx.send(()).is_err() {
                return;
            }
        }
    });
    Ok(rx)
}
