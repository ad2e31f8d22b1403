//! VIP addresses on the VIP device, through rtnetlink: list, add, remove, and which
//! interface holds an address (for sysctl mode).

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

    /// The host addresses (/32, /128) on interface `index`.
    pub async fn host_addresses(&self, index: u32) -> anyhow::Result<Vec<IpAddr>> {
        Ok(self
            .messages(Some(index))
            .await?
            .iter()
            .filter_map(|m| addr_of(m).filter(|ip| m.header.prefix_len == host_prefix(ip)))
            .collect())
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
