//! VIP addresses on the VIP device, through rtnetlink: list, add, remove, which
//! interface holds an address (for sysctl mode), and a stream of address and link
//! events (drift is repaired when it happens, not at the next timer tick).

use std::net::IpAddr;

use anyhow::{anyhow, Context};
use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::Handle;

/// A route-netlink connection in this process's namespace.
pub struct Net {
    handle: Handle,
}

fn host_prefix(ip: &IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

fn addr_of(m: &AddressMessage) -> Option<IpAddr> {
    // IFA_LOCAL is the address itself where both are present (point-to-point).
    let mut addr = None;
    for a in &m.attributes {
        match a {
            AddressAttribute::Local(ip) => return Some(*ip),
            AddressAttribute::Address(ip) => addr = Some(*ip),
            _ => {}
        }
    }
    addr
}

impl Net {
    pub fn connect() -> anyhow::Result<Net> {
        let (conn, handle, _) = rtnetlink::new_connection().context("route netlink socket")?;
        tokio::spawn(conn);
        Ok(Net { handle })
    }

    /// The index of interface `name`; a missing interface other than `lo` is created
    /// as a dummy (and brought up).
    pub async fn ensure_device(&self, name: &str) -> anyhow::Result<u32> {
        if let Ok(i) = self.link_index(name).await {
            return Ok(i);
        }
        if name == "lo" {
            return Err(anyhow!("no interface lo"));
        }
        let msg = rtnetlink::LinkDummy::new(name).up().build();
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .with_context(|| format!("creating the dummy interface {name}"))?;
        self.link_index(name).await
    }

    /// The index of interface `name`.
    pub async fn link_index(&self, name: &str) -> anyhow::Result<u32> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match links.try_next().await {
            Ok(Some(l)) => Ok(l.header.index),
            Ok(None) => Err(anyhow!("no interface {name:?}")),
            Err(e) => Err(anyhow!("no interface {name:?}: {e}")),
        }
    }

    async fn messages(&self, index: Option<u32>) -> anyhow::Result<Vec<AddressMessage>> {
        let mut req = self.handle.address().get();
        if let Some(i) = index {
            req = req.set_link_index_filter(i);
        }
        req.execute()
            .try_collect()
            .await
            .context("listing addresses")
    }

    /// Adds `ip` as a host address on interface `index`.
    pub async fn add(&self, index: u32, ip: IpAddr) -> anyhow::Result<()> {
        self.handle
            .address()
            .add(index, ip, host_prefix(&ip))
            .execute()
            .await
            .with_context(|| format!("adding {ip}/{}", host_prefix(&ip)))
    }

    /// Removes host address `ip` from interface `index`, if it is there.
    pub async fn remove(&self, index: u32, ip: IpAddr) -> anyhow::Result<()> {
        for m in self.messages(Some(index)).await? {
            if addr_of(&m) == Some(ip) && m.header.prefix_len == host_prefix(&ip) {
                self.handle
                    .address()
                    .del(m)
                    .execute()
                    .await
                    .with_context(|| format!("removing {ip}"))?;
            }
        }
        Ok(())
    }

    /// Every address on the host, with its interface index and prefix length.
    pub async fn all_addresses(&self) -> anyhow::Result<Vec<(u32, IpAddr, u8)>> {
        Ok(self
            .messages(None)
            .await?
            .iter()
            .filter_map(|m| Some((m.header.index, addr_of(m)?, m.header.prefix_len)))
            .collect())
    }

    /// The name of the interface holding `ip`, if any does.
    pub async fn interface_of(&self, ip: IpAddr) -> anyhow::Result<Option<String>> {
        let Some(m) = self
            .messages(None)
            .await?
            .into_iter()
            .find(|m| addr_of(m) == Some(ip))
        else {
            return Ok(None);
        };
        let mut links = self
            .handle
            .link()
            .get()
            .match_index(m.header.index)
            .execute();
        let link = links.try_next().await.context("reading the link")?;
        Ok(link.and_then(|l| {
            l.attributes.into_iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n),
                _ => None,
            })
        }))
    }
}

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
