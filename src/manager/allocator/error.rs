//! What the allocator and its checks can refuse, each naming the network,
//! address or port at fault.

use swarm_core::Id;
use swarm_net::ipam::IpamError;

/// Why a network, service or task could not be allocated, or why the control
/// API's checks refuse a spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AllocError {
    /// A network a service's tasks attach to does not resolve.
    #[error("network {target} not found")]
    NetworkNotFound {
        /// The ID or name the service gave.
        target: String,
    },
    /// A network has no pools here yet (its own allocation has not happened).
    #[error("network {network} is not allocated")]
    NetworkNotAllocated {
        /// The network's ID.
        network: Id,
    },
    /// A network has no IPv4 subnet to take an address from.
    #[error("network {network} has no IPv4 subnet")]
    NoSubnet {
        /// The network's ID.
        network: Id,
    },
    /// A static address lies in none of its network's subnets.
    #[error("address {addr} is in no subnet of network {network}")]
    AddressOutsideNetwork {
        /// The address given.
        addr: String,
        /// The network's ID.
        network: Id,
    },
    /// An ingress port another service publishes (Docker's message).
    #[error(
        "port '{port}' is already in use by service '{service}' ({service_id}) as an ingress port"
    )]
    PortInUse {
        /// The published port.
        port: u16,
        /// The name of the service that holds it.
        service: String,
        /// That service's ID.
        service_id: String,
    },
    /// A task's attachment to a network failed.
    #[error("network {network}: {error}")]
    OnNetwork {
        /// The network's name.
        network: String,
        /// Why (in the message, so not a source as well).
        error: Box<AllocError>,
    },
    /// The pools refused (subnet, address or port exhausted, in use or
    /// unparsable).
    #[error(transparent)]
    Ipam(#[from] IpamError),
}

/// What the control API's checks refuse is the caller's to fix: an
/// `InvalidArgument` with the same message.
impl From<AllocError> for crate::Error {
    fn from(e: AllocError) -> crate::Error {
        crate::Error::InvalidArgument(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_what_is_at_fault() {
        let net = Id::from("n1");
        let cases = [
            (
                AllocError::NetworkNotFound {
                    target: "backend".into(),
                },
                "network backend not found",
            ),
            (
                AllocError::NetworkNotAllocated {
                    network: net.clone(),
                },
                "network n1 is not allocated",
            ),
            (
                AllocError::NoSubnet {
                    network: net.clone(),
                },
                "network n1 has no IPv4 subnet",
            ),
            (
                AllocError::OnNetwork {
                    network: "backend".into(),
                    error: Box::new(AllocError::AddressOutsideNetwork {
                        addr: "10.9.0.2".into(),
                        network: net,
                    }),
                },
                "network backend: address 10.9.0.2 is in no subnet of network n1",
            ),
            (
                AllocError::PortInUse {
                    port: 8080,
                    service: "web".into(),
                    service_id: "s1".into(),
                },
                "port '8080' is already in use by service 'web' (s1) as an ingress port",
            ),
        ];
        for (e, message) in cases {
            assert_eq!(e.to_string(), message);
        }
        let e: crate::Error = AllocError::NoSubnet {
            network: Id::from("n2"),
        }
        .into();
        assert_eq!(
            e,
            crate::Error::InvalidArgument("network n2 has no IPv4 subnet".into())
        );
    }
}
