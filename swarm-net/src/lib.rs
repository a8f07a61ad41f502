//! Networking for Swarm: IPAM, the ingress routing mesh, service VIPs and DNS,
//! overlay networks.
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
#![deny(missing_docs)]

pub mod ipam;
