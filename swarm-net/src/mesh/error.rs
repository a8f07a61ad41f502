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
