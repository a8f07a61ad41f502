//! Overlay networks outside Linux: [`Overlay::new`] says they are unsupported.

use std::convert::Infallible;
use std::path::{Path, PathBuf};

use super::{Cidr, CryptStats, MacAddr, NetworkDef, OverlayConfig, OverlayError, Peer};

/// One node's overlay networks; they need Linux, so this one cannot be created.
#[derive(Debug)]
pub struct Overlay {
    never: Infallible,
}

impl Overlay {
    /// Always [`OverlayError::Unsupported`]: overlay networks need Linux.
    pub async fn new(_cfg: OverlayConfig) -> Result<Overlay, OverlayError> {
        Err(OverlayError::Unsupported(
            "overlay networks need Linux (network namespaces, VXLAN, rtnetlink)".into(),
        ))
    }
    /// See the Linux implementation.
    pub fn config(&self) -> &OverlayConfig {
        match self.never {}
    }
    /// See the Linux implementation.
    pub fn sandbox_netns(&self, _network_id: &str) -> PathBuf {
        match self.never {}
    }
    /// See the Linux implementation.
    pub async fn ensure_network(&self, _net: &NetworkDef) -> Result<(), OverlayError> {
        match self.never {}
    }
    /// See the Linux implementation.
    pub async fn remove_network(&self, _network_id: &str) -> Result<(), OverlayError> {
        match self.never {}
    }
    /// See the Linux implementation.
    pub async fn set_peers(&self, _network_id: &str, _peers: &[Peer]) -> Result<(), OverlayError> {
        match self.never {}
    }
    /// See the Linux implementation.
    pub async fn set_keys(&self, _network_id: &str, _keys: &[Vec<u8>]) -> Result<(), OverlayError> {
        match self.never {}
    }
    /// See the Linux implementation.
    pub async fn crypt_stats(&self, _network_id: &str) -> Result<CryptStats, OverlayError> {
        match self.never {}
    }
    /// See the Linux implementation.
    pub async fn peers(&self, _network_id: &str) -> Result<Vec<Peer>, OverlayError> {
        match self.never {}
    }
    /// See the Linux implementation.
    pub async fn attach(
        &self,
        _network_id: &str,
        _task_netns: &Path,
        _ifname: &str,
        _addr: Cidr,
        _default_route: bool,
    ) -> Result<MacAddr, OverlayError> {
        match self.never {}
    }
    /// See the Linux implementation.
    pub async fn detach(
        &self,
        _network_id: &str,
        _task_netns: &Path,
        _ifname: &str,
    ) -> Result<(), OverlayError> {
        match self.never {}
    }
    /// See the Linux implementation.
    pub fn create_task_netns(&self, _name: &str) -> Result<PathBuf, OverlayError> {
        match self.never {}
    }
    /// See the Linux implementation.
    pub fn remove_task_netns(&self, _name: &str) -> Result<(), OverlayError> {
        match self.never {}
    }
}
