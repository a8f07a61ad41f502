//! Errors of the routing mesh.

use std::io;
use std::net::SocketAddr;

use super::Protocol;

/// Why the mesh could not start.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// The peer listener (TCP and UDP on one port) could not be bound.
    #[error(
        "cannot listen on {addr}/{protocol} for the mesh peer listener: {}",
        describe(source)
    )]
    PeerListen {
        /// TCP or UDP.
        protocol: Protocol,
        /// The address asked for.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `Mesh::start` was polled outside a tokio runtime (the mesh spawns tasks on it).
    #[error("the routing mesh must start inside a tokio runtime")]
    NoRuntime,
    /// The config requires the kernel data path ([`KernelPath::Require`](super::KernelPath::Require))
    /// and nftables cannot be programmed here.
    #[error("the routing mesh's kernel data path is unavailable: {0}")]
    Kernel(#[source] NftError),
}

/// Why nftables rules could not be programmed (the mesh then serves every
/// port in user space, unless the kernel path is required).
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// The process lacks CAP_NET_ADMIN (not root).
    #[error("the process lacks CAP_NET_ADMIN")]
    NotPermitted,
    /// The ingress address is IPv6: the kernel path is IPv4 only.
    #[error("the ingress address {0} is IPv6 (the kernel path is IPv4 only)")]
    Ipv6Ingress(std::net::IpAddr),
    /// The configured table name is not an nft identifier.
    #[error(
        "invalid nftables table name {0:?}: letters, digits and '_', starting with a letter, at most 64"
    )]
    BadTable(String),
    /// The `nft` binary could not be run (Debian package `nftables`).
    #[error("cannot run nft (package nftables): {source}")]
    Spawn {
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `nft -f -` refused the rules (the kernel lacks nf_tables or NAT, or a bad rule).
    #[error("nft failed ({status}): {stderr}")]
    Refused {
        /// The exit status.
        status: String,
        /// What nft printed.
        stderr: String,
    },
}

/// Why one published port of an [`IngressView`](super::IngressView) is not
/// served. The other ports of the view still apply; a port that failed to bind
/// is tried again by the next `apply`.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// The listener (TCP) or socket (UDP) could not be bound.
    #[error("cannot listen on {addr}/{protocol}: {}", describe(source))]
    Listen {
        /// TCP or UDP.
        protocol: Protocol,
        /// Ingress address and published port.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The same port and protocol appear twice in the view; the first one applies.
    #[error("port {port}/{protocol} is published twice in the view: the first entry applies")]
    Duplicate {
        /// TCP or UDP.
        protocol: Protocol,
        /// The published port.
        port: u16,
    },
    /// Port 0 cannot be published (the allocator picks a real port first).
    #[error("port 0/{protocol} cannot be published")]
    Zero {
        /// TCP or UDP.
        protocol: Protocol,
    },
}

impl PortError {
    /// The published port at fault.
    pub fn port(&self) -> u16 {
        match self {
            PortError::Listen { addr, .. } => addr.port(),
            PortError::Duplicate { port, .. } => *port,
            PortError::Zero { .. } => 0,
        }
    }

    /// The protocol of the port at fault.
    pub fn protocol(&self) -> Protocol {
        match self {
            PortError::Listen { protocol, .. }
            | PortError::Duplicate { protocol, .. }
            | PortError::Zero { protocol } => *protocol,
        }
    }
}

/// A short lower-case cause ("address in use") for the common bind errors.
fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::AddrInUse => "address in use".into(),
        io::ErrorKind::AddrNotAvailable => "address not available on this host".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}
