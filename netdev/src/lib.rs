//! Host addresses on an interface, through rtnetlink: a dummy interface created when
//! missing, host addresses (/32, /128) listed, added and removed. The lvsdr agent puts
//! VIPs on `lo` with it; the director its announced VIPs on its own dummy device.

use std::net::IpAddr;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags};
use rtnetlink::Handle;

/// A route-netlink request that failed: what was asked, and the kernel's or the
/// socket's answer.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {detail}")]
pub struct NetError {
    /// What was asked, e.g. `adding 192.0.2.10/32`.
    pub what: String,
    /// Why it failed.
    pub detail: String,
}

impl NetError {
    fn new(what: impl Into<String>, detail: impl std::fmt::Display) -> NetError {
        NetError {
            what: what.into(),
            detail: detail.to_string(),
        }
    }
}

/// What [`Net::keep_device`] had to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repair {
    /// The device was there and up.
    Nothing,
    /// No interface had the name: a dummy was created (and set up).
    Created,
    /// It was down: set up.
    SetUp,
}

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
    /// Connects in this process's network namespace (the connection task is spawned on
    /// the current runtime).
    pub fn connect() -> Result<Net, NetError> {
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(|e| NetError::new("route netlink socket", e))?;
        tokio::spawn(conn);
        Ok(Net { handle })
    }

    /// The index of interface `name`; a missing interface other than `lo` is created
    /// as a dummy (and brought up).
    pub async fn ensure_device(&self, name: &str) -> Result<u32, NetError> {
        if let Ok(i) = self.link_index(name).await {
            return Ok(i);
        }
        if name == "lo" {
            return Err(NetError::new("no interface lo", "missing"));
        }
        let msg = rtnetlink::LinkDummy::new(name).up().build();
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(|e| NetError::new(format!("creating the dummy interface {name}"), e))?;
        self.link_index(name).await
    }

    /// Keeps interface `name` there and up, for a caller that looks every second: a
    /// dummy is created when no interface has the name (deleted, or renamed away),
    /// and a device that is down is set up (BIRD's `direct` protocol ignores a down
    /// device, so its VIPs would be withdrawn). Its index (new after a recreation),
    /// and what was repaired.
    pub async fn keep_device(&self, name: &str) -> Result<(u32, Repair), NetError> {
        let Ok((index, up)) = self.link_state(name).await else {
            return Ok((self.ensure_device(name).await?, Repair::Created));
        };
        if up {
            return Ok((index, Repair::Nothing));
        }
        let msg = rtnetlink::LinkUnspec::new_with_index(index).up().build();
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|e| NetError::new(format!("setting {name} up"), e))?;
        Ok((index, Repair::SetUp))
    }

    /// The index of interface `name`, and whether it is up.
    pub async fn link_state(&self, name: &str) -> Result<(u32, bool), NetError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match links.try_next().await {
            Ok(Some(l)) => Ok((l.header.index, l.header.flags.contains(LinkFlags::Up))),
            Ok(None) => Err(NetError::new(format!("no interface {name:?}"), "not found")),
            Err(e) => Err(NetError::new(format!("no interface {name:?}"), e)),
        }
    }

    /// The index of interface `name`.
    pub async fn link_index(&self, name: &str) -> Result<u32, NetError> {
        Ok(self.link_state(name).await?.0)
    }

    async fn messages(&self, index: Option<u32>) -> Result<Vec<AddressMessage>, NetError> {
        let mut req = self.handle.address().get();
        if let Some(i) = index {
            req = req.set_link_index_filter(i);
        }
        req.execute()
            .try_collect()
            .await
            .map_err(|e| NetError::new("listing addresses", e))
    }

    /// Adds `ip` as a host address on interface `index`.
    pub async fn add(&self, index: u32, ip: IpAddr) -> Result<(), NetError> {
        self.handle
            .address()
            .add(index, ip, host_prefix(&ip))
            .execute()
            .await
            .map_err(|e| NetError::new(format!("adding {ip}/{}", host_prefix(&ip)), e))
    }

    /// Removes host address `ip` from interface `index`, if it is there.
    pub async fn remove(&self, index: u32, ip: IpAddr) -> Result<(), NetError> {
        for m in self.messages(Some(index)).await? {
            if addr_of(&m) == Some(ip) && m.header.prefix_len == host_prefix(&ip) {
                self.handle
                    .address()
                    .del(m)
                    .execute()
                    .await
                    .map_err(|e| NetError::new(format!("removing {ip}"), e))?;
            }
        }
        Ok(())
    }

    /// Every address on the host, with its interface index and prefix length.
    pub async fn all_addresses(&self) -> Result<Vec<(u32, IpAddr, u8)>, NetError> {
        Ok(self
            .messages(None)
            .await?
            .iter()
            .filter_map(|m| Some((m.header.index, addr_of(m)?, m.header.prefix_len)))
            .collect())
    }

    /// The name of the interface holding `ip`, if any does.
    pub async fn interface_of(&self, ip: IpAddr) -> Result<Option<String>, NetError> {
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
        let link = links
            .try_next()
            .await
            .map_err(|e| NetError::new("reading the link", e))?;
        Ok(link.and_then(|l| {
            l.attributes.into_iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n),
                _ => None,
            })
        }))
    }

    /// The addresses on interface `index`.
    pub async fn addresses_on(&self, index: u32) -> Result<Vec<IpAddr>, NetError> {
        Ok(self
            .messages(Some(index))
            .await?
            .iter()
            .filter_map(addr_of)
            .collect())
    }
}
