//! How the Engine API runs its node: [`EngineConfig`], [`MeshSettings`], and
//! the [`ManagerConfig`] they give a node at given cluster addresses.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use swarm_runtime::Runtime;

use crate::ManagerConfig;
use crate::agent::mesh::RoutingMeshConfig;
use crate::state::{SavedAddrs, ip_of};

/// How the Engine API runs its node.
#[derive(Clone)]
pub struct EngineConfig {
    /// The node's data directory.
    pub data_dir: PathBuf,
    /// The cluster port to listen on when the request does not say
    /// (`docker swarm init` sends `0.0.0.0:2377`).
    pub listen_addr: Option<String>,
    /// The address to advertise when the request does not say.
    pub advertise_addr: Option<String>,
    /// The host name the node reports.
    pub hostname: String,
    /// The runtime the node runs tasks with.
    pub runtime: Arc<dyn Runtime>,
    /// Raft tick interval.
    pub tick_interval: Duration,
    /// The node's routing mesh: published ports listen on `ingress_ip`, other
    /// nodes hand connections over on `peer_port` of the advertised address.
    /// `None`: published ports are not answered on this node.
    pub routing_mesh: Option<MeshSettings>,
    /// How often the node, while it leads, rotates the keys of encrypted overlay
    /// networks ([`DEFAULT_KEY_ROTATION`](crate::manager::keymanager::DEFAULT_KEY_ROTATION)
    /// as Docker).
    pub network_key_rotation: Duration,
}

/// Where swarmd's routing mesh listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MeshSettings {
    /// The address published ports bind on (docker: every address).
    pub ingress_ip: IpAddr,
    /// The port of the mesh's peer listener (TCP and UDP) on the node's
    /// advertised address; 0 picks one.
    pub peer_port: u16,
    /// Whether published ports may use the kernel data path (nftables).
    pub kernel: swarm_net::mesh::KernelPath,
}

impl Default for MeshSettings {
    /// Published ports on every address; peers on port 7946, the port docker
    /// swarm already needs open between nodes.
    fn default() -> MeshSettings {
        MeshSettings {
            ingress_ip: Ipv4Addr::UNSPECIFIED.into(),
            peer_port: 7946,
            kernel: swarm_net::mesh::KernelPath::Auto,
        }
    }
}

impl std::fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineConfig")
            .field("data_dir", &self.data_dir)
            .field("listen_addr", &self.listen_addr)
            .field("advertise_addr", &self.advertise_addr)
            .field("hostname", &self.hostname)
            .finish_non_exhaustive()
    }
}

impl EngineConfig {
    /// The manager settings for this engine's node at `addrs` (an init's or
    /// join's, or those saved by one); what they leave out comes from this
    /// configuration, then from Docker's defaults.
    pub(super) fn manager_config(&self, addrs: &SavedAddrs) -> ManagerConfig {
        let listen = addrs
            .listen_addr
            .clone()
            .or_else(|| self.listen_addr.clone())
            .unwrap_or_else(|| "0.0.0.0:2377".into());
        let mut m = ManagerConfig::new(&self.data_dir, listen)
            .hostname(self.hostname.clone())
            .runtime(self.runtime.clone())
            .tick_interval(self.tick_interval)
            .network_key_rotation(self.network_key_rotation);
        let advertise = addrs
            .advertise_addr
            .clone()
            .or_else(|| self.advertise_addr.clone());
        if let Some(mesh) = self.routing_mesh {
            let peer_ip = addrs
                .data_path_addr
                .as_deref()
                .and_then(ip_of)
                .or_else(|| advertise.as_deref().and_then(ip_of))
                .or_else(|| ip_of(&m.listen_addr))
                .unwrap_or(Ipv4Addr::UNSPECIFIED.into());
            m = m.routing_mesh(RoutingMeshConfig {
                ingress_ip: mesh.ingress_ip,
                peer_addr: SocketAddr::new(peer_ip, mesh.peer_port),
                advertise_ip: None,
                kernel: mesh.kernel,
            });
        }
        if let Some(a) = advertise {
            m = m.advertise_addr(a);
        }
        m
    }
}
