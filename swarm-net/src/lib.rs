//! Networking for Swarm: IPAM ([`ipam`]), the ingress routing mesh ([`mesh`]),
//! the embedded DNS resolver for service discovery ([`dns`]) and VXLAN overlay
//! networks across hosts through netlink ([`overlay`], Linux, root).
//!
//! [`ipam`] is the address bookkeeping the leader's allocator keeps: subnets
//! cut from the cluster's default address pools (or given by the user),
//! addresses inside a subnet, and published ports. It is pure (no I/O):
//!
//! ```
//! use swarm_net::ipam::{AddressPool, SubnetPools};
//!
//! let mut pools = SubnetPools::new(&["10.0.0.0/8".to_string()], 24)?;
//! let ingress = pools.allocate()?;
//! assert_eq!(ingress.to_string(), "10.0.0.0/24");
//! let mut addrs = AddressPool::new(ingress, None, None)?;
//! assert_eq!(addrs.gateway().to_string(), "10.0.0.1");
//! assert_eq!(addrs.allocate()?.to_string(), "10.0.0.2");
//! # Ok::<(), swarm_net::ipam::IpamError>(())
//! ```
//!
//! The routing mesh ([`mesh`]) makes every node answer every published port
//! and balances the connections over the service's tasks on any node:
//!
//! ```
//! use std::net::SocketAddr;
//! use swarm_net::mesh::{Backend, IngressView, Mesh, MeshConfig, Protocol, PublishedPort, Target};
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let mesh = Mesh::start(MeshConfig::new("127.0.0.1".parse().unwrap(), "127.0.0.1:0".parse().unwrap()))
//!     .await
//!     .expect("peer listener");
//! let task: SocketAddr = "127.0.0.1:9".parse().unwrap();
//! let errors = mesh.apply(IngressView {
//!     ports: vec![PublishedPort {
//!         protocol: Protocol::Tcp,
//!         published_port: 0, // refused: the allocator picks real ports
//!         target_port: 80,
//!         proxy_protocol: false,
//!         backends: vec![Backend { task_id: "t1".into(), target: Target::Local(task), draining_until: None }],
//!     }],
//! });
//! assert_eq!(errors[0].to_string(), "port 0/tcp cannot be published");
//! mesh.shutdown().await;
//! # });
//! ```
//!
//! Each module has its own error enum (match on it to handle that module's
//! failures); a caller that uses several modules can hold the crate's [`Error`],
//! which each of them converts into with `?`, keeping its message.
#![deny(missing_docs)]

pub mod dns;
mod error;
#[cfg(target_os = "linux")]
pub mod gateway;
pub mod ipam;
pub mod mesh;
pub mod overlay;
#[cfg(target_os = "linux")]
pub mod vip;

pub use error::{Error, Result};
