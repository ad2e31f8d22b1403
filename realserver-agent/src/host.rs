//! The agent's privileged surface: every change it makes to the host goes through
//! [`Host`], a short fixed list of operations. [`RealHost`] does them (rtnetlink,
//! nft/sysctl/arptables); the tests' fake records them, so the applier's order of
//! operations is tested without a kernel.

use std::net::{IpAddr, Ipv4Addr};

use crate::arp;
use crate::config::ArpMode;
use crate::state::State;
use crate::vip::Net;

/// Addresses and ARP suppression on this host.
#[allow(async_fn_in_trait)] // private to the binary; the real one is spawned as is
pub trait Host {
    /// The index of the VIP device, creating it (a dummy) if it is missing.
    async fn ensure_device(&self, name: &str) -> anyhow::Result<u32>;
    /// The index of an existing interface.
    async fn link_index(&self, name: &str) -> anyhow::Result<u32>;
    /// Every address: (interface index, address, prefix length).
    async fn all_addresses(&self) -> anyhow::Result<Vec<(u32, IpAddr, u8)>>;
    /// Adds a host address (/32, /128).
    async fn add(&self, index: u32, ip: IpAddr) -> anyhow::Result<()>;
    /// Removes a host address, if it is there.
    async fn remove(&self, index: u32, ip: IpAddr) -> anyhow::Result<()>;
    /// The name of the interface holding `ip`.
    async fn interface_of(&self, ip: IpAddr) -> anyhow::Result<Option<String>>;
    /// Makes ARP suppression cover exactly `vips`.
    async fn arp_apply(
        &self,
        mode: ArpMode,
        vips: &[IpAddr],
        real_ip: Option<IpAddr>,
        iface: Option<&str>,
        state: &mut State,
    ) -> anyhow::Result<()>;
    /// Which of `vips` are suppressed now.
    async fn arp_in_place(
        &self,
        mode: ArpMode,
        vips: &[IpAddr],
        real_ip: Option<IpAddr>,
        iface: Option<&str>,
    ) -> anyhow::Result<Vec<bool>>;
    /// What the agent's own nft table suppresses, and the real IP its output rule
    /// names: what a previous run left, for an agent that lost its state file.
    async fn arp_left_over(&self) -> anyhow::Result<(Vec<Ipv4Addr>, Option<IpAddr>)>;
}

/// The host itself.
pub struct RealHost {
    net: Net,
}

impl RealHost {
    pub fn new(net: Net) -> RealHost {
        RealHost { net }
    }
}

impl Host for RealHost {
    async fn ensure_device(&self, name: &str) -> anyhow::Result<u32> {
        Ok(self.net.ensure_device(name).await?)
    }
    async fn link_index(&self, name: &str) -> anyhow::Result<u32> {
        Ok(self.net.link_index(name).await?)
    }
    async fn all_addresses(&self) -> anyhow::Result<Vec<(u32, IpAddr, u8)>> {
        Ok(self.net.all_addresses().await?)
    }
    async fn add(&self, index: u32, ip: IpAddr) -> anyhow::Result<()> {
        Ok(self.net.add(index, ip).await?)
    }
    async fn remove(&self, index: u32, ip: IpAddr) -> anyhow::Result<()> {
        Ok(self.net.remove(index, ip).await?)
    }
    async fn interface_of(&self, ip: IpAddr) -> anyhow::Result<Option<String>> {
        Ok(self.net.interface_of(ip).await?)
    }
    async fn arp_apply(
        &self,
        mode: ArpMode,
        vips: &[IpAddr],
        real_ip: Option<IpAddr>,
        iface: Option<&str>,
        state: &mut State,
    ) -> anyhow::Result<()> {
        arp::apply(mode, vips, real_ip, iface, state).await
    }
    async fn arp_in_place(
        &self,
        mode: ArpMode,
        vips: &[IpAddr],
        real_ip: Option<IpAddr>,
        iface: Option<&str>,
    ) -> anyhow::Result<Vec<bool>> {
        arp::in_place(mode, vips, real_ip, iface).await
    }
    async fn arp_left_over(&self) -> anyhow::Result<(Vec<Ipv4Addr>, Option<IpAddr>)> {
        arp::nft_left_over().await
    }
}
