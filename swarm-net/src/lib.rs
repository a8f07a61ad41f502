//! Networking for Swarm: IPAM, the ingress routing mesh, service VIPs and DNS,
//! overlay networks.
//!
//! Not yet built: lands with the swarm-net issue.
#![deny(missing_docs)]

pub mod dns;
