//! The crate error of swarm-net: one type for a caller that uses several modules.

use crate::dns::DnsError;
#[cfg(target_os = "linux")]
use crate::gateway::GatewayError;
use crate::ipam::IpamError;
use crate::mesh::header::HeaderError;
use crate::mesh::{MeshError, NftError, PortError};
use crate::overlay::OverlayError;
#[cfg(target_os = "linux")]
use crate::vip::VipError;

/// Any error of swarm-net.
///
/// Each module returns its own error enum, and callers that handle one module's
/// failures should match on that enum: its variants say what went wrong and
/// whether a retry can help. This type is what a caller that uses several modules
/// can hold: every module error converts into it with `?`, and its message and
/// [`source`](std::error::Error::source) are the module error's own.
///
/// ```
/// use swarm_net::ipam::{IpamError, SubnetPools};
///
/// fn pools(cidr: &str) -> swarm_net::Result<SubnetPools> {
///     Ok(SubnetPools::new(&[cidr.to_string()], 24)?)
/// }
/// let err = pools("10.0.0.0/33").unwrap_err();
/// assert!(matches!(err, swarm_net::Error::Ipam(IpamError::InvalidSubnet { .. })));
/// assert!(err.to_string().starts_with("invalid subnet \"10.0.0.0/33\""));
/// ```
///
/// The set of variants depends on the platform ([`Gateway`](Error::Gateway) and
/// [`Vip`](Error::Vip) are Linux only), hence `#[non_exhaustive]`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An address, subnet or port was refused by [`ipam`](crate::ipam).
    #[error(transparent)]
    Ipam(#[from] IpamError),
    /// The DNS resolver ([`dns`](crate::dns)) could not start or take records.
    #[error(transparent)]
    Dns(#[from] DnsError),
    /// The routing mesh ([`mesh`](crate::mesh)) could not start.
    #[error(transparent)]
    Mesh(#[from] MeshError),
    /// A published port of the routing mesh is not served.
    #[error(transparent)]
    Port(#[from] PortError),
    /// The mesh's nftables rules could not be programmed.
    #[error(transparent)]
    Nft(#[from] NftError),
    /// Bytes are not a valid PROXY v2 or hand-over header
    /// ([`mesh::header`](crate::mesh::header)).
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// An overlay network operation ([`overlay`](crate::overlay)) failed.
    #[error(transparent)]
    Overlay(#[from] OverlayError),
    /// The gateway bridge ([`gateway`](crate::gateway)) could not be set up or a
    /// task attached.
    #[cfg(target_os = "linux")]
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    /// Programming VIPs or binding in a namespace ([`vip`](crate::vip)) failed.
    #[cfg(target_os = "linux")]
    #[error(transparent)]
    Vip(#[from] VipError),
}

/// The result type of a caller that holds swarm-net's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use std::error::Error as _;
    use std::io;

    use super::*;
    use crate::ipam::{AddressPool, SubnetPools};

    #[test]
    fn a_module_error_converts_and_keeps_its_message() {
        let ipam = IpamError::InvalidPort { port: 70000 };
        let message = ipam.to_string();
        let err = Error::from(ipam.clone());
        assert_eq!(err.to_string(), message);
        assert!(matches!(err, Error::Ipam(ref e) if *e == ipam));
    }

    #[test]
    fn question_mark_converts_and_the_source_is_the_module_errors() {
        fn first_address(pool: &str) -> Result<String> {
            let mut pools = SubnetPools::new(&[pool.to_string()], 24)?;
            let mut addrs = AddressPool::new(pools.allocate()?, None, None)?;
            Ok(addrs.allocate()?.to_string())
        }
        assert_eq!(first_address("10.0.0.0/8").unwrap(), "10.0.0.2");
        let err = first_address("not a subnet").unwrap_err();
        assert!(matches!(err, Error::Ipam(IpamError::InvalidSubnet { .. })));
        assert!(err.to_string().contains("not a subnet"), "{err}");

        let overlay = OverlayError::Io {
            op: "open /proc/self/ns/net".into(),
            source: io::Error::from(io::ErrorKind::NotFound),
        };
        let message = overlay.to_string();
        let err = Error::from(overlay);
        assert_eq!(err.to_string(), message);
        let source = err.source().expect("the io error is the source");
        assert_eq!(
            source.to_string(),
            io::Error::from(io::ErrorKind::NotFound).to_string()
        );
    }
}
