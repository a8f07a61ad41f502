//! The clients of the CA service ([`crate::manager::ca`]): join, certificate
//! renewal, and the role watch a node follows to learn of its promotion.
//!
//! Join, as SwarmKit does it: the node fetches the root CA over an unverified TLS
//! connection, checks its digest against the join token (so a man in the middle
//! is caught), then — now trusting that CA — sends the token and a CSR and gets
//! its certificate: CN = a new node ID, OU = the role the token grants, O = the
//! cluster ID. The manager records the node in the store.

use std::time::Duration;

use swarm_core::types::NodeRole;

use crate::Error;
use crate::pki::{
    JoinToken, MANAGER_OU, NodeIdentity, RootCa, anonymous_client_config, new_key_and_csr,
    unverified_client_config,
};
use crate::rpc::proto::ca_client::CaClient;
use crate::rpc::proto::{Empty, IssueRequest, RenewRequest, RoleUpdate};
use crate::rpc::tls::{channel, from_status};

/// What a node gets for joining.
#[derive(Clone, Debug)]
pub struct Joined {
    /// The swarm's root CA (certificate only).
    pub ca: RootCa,
    /// The node's key and certificate.
    pub identity: NodeIdentity,
    /// The managers the node may talk to.
    pub managers: Vec<String>,
}

/// Joins the swarm a manager at `remote` (`host:port`) belongs to, with `token`.
/// A malformed token fails before any connection; a token for another CA, a
/// wrong or rotated token is refused with a message saying so.
pub async fn join(
    remote: &str,
    token: &str,
    hostname: &str,
    advertise_addr: &str,
) -> Result<Joined, Error> {
    let parsed = JoinToken::parse(token)?;
    let timeout = Duration::from_secs(20);
    let insecure = channel(remote, unverified_client_config()?, MANAGER_OU)?;
    let root = tokio::time::timeout(timeout, CaClient::new(insecure).get_root_ca(Empty {}))
        .await
        .map_err(|_| Error::Unavailable(format!("no answer from {remote}")))?
        .map_err(from_status)?
        .into_inner();
    let ca = RootCa::from_pem(&root.cert_pem, None)?;
    parsed.check_ca(ca.cert_der())?;
    let (key_pem, csr_pem) = new_key_and_csr()?;
    let trusted = channel(remote, anonymous_client_config(&ca)?, MANAGER_OU)?;
    let request = IssueRequest {
        token: token.trim().to_string(),
        csr_pem,
        hostname: hostname.to_string(),
        advertise_addr: advertise_addr.to_string(),
    };
    let issued = tokio::time::timeout(
        timeout,
        CaClient::new(trusted).issue_node_certificate(request),
    )
    .await
    .map_err(|_| Error::Unavailable(format!("no answer from {remote}")))?
    .map_err(from_status)?
    .into_inner();
    let identity = NodeIdentity::from_pem(&key_pem, &issued.cert_pem)?;
    let expected = if issued.role == MANAGER_OU {
        NodeRole::Manager
    } else {
        NodeRole::Worker
    };
    if identity.peer.role != expected || identity.peer.node_id != issued.node_id.as_str() {
        return Err(Error::Internal(
            "the issued certificate does not match the answer".into(),
        ));
    }
    Ok(Joined {
        ca,
        identity,
        managers: issued.managers,
    })
}

/// Asks the manager at `remote` for a new certificate for this node (known by
/// `identity`), with the role the swarm gives it now, for a new key. Answers
/// the new identity and the managers' addresses.
pub async fn renew(
    remote: &str,
    ca: &RootCa,
    identity: &NodeIdentity,
) -> Result<(NodeIdentity, Vec<String>), Error> {
    let (key_pem, csr_pem) = new_key_and_csr()?;
    let ch = channel(remote, crate::pki::client_config(ca, identity)?, MANAGER_OU)?;
    let issued = tokio::time::timeout(
        Duration::from_secs(20),
        CaClient::new(ch).renew_node_certificate(RenewRequest { csr_pem }),
    )
    .await
    .map_err(|_| Error::Unavailable(format!("no answer from {remote}")))?
    .map_err(from_status)?
    .into_inner();
    let renewed = NodeIdentity::from_pem(&key_pem, &issued.cert_pem)?;
    if renewed.peer.node_id != identity.peer.node_id
        || renewed.peer.cluster_id != identity.peer.cluster_id
    {
        return Err(Error::Internal(
            "the renewed certificate names another node or swarm".into(),
        ));
    }
    Ok((renewed, issued.managers))
}

/// The role a [`RoleUpdate`] names.
pub fn role_of(ou: &str) -> NodeRole {
    if ou == MANAGER_OU {
        NodeRole::Manager
    } else {
        NodeRole::Worker
    }
}

/// Opens the role watch of this node at the manager at `remote`.
pub async fn watch_role(
    remote: &str,
    ca: &RootCa,
    identity: &NodeIdentity,
) -> Result<tonic::Streaming<RoleUpdate>, Error> {
    let ch = channel(remote, crate::pki::client_config(ca, identity)?, MANAGER_OU)?;
    let stream = tokio::time::timeout(
        Duration::from_secs(10),
        CaClient::new(ch).watch_role(Empty {}),
    )
    .await
    .map_err(|_| Error::Unavailable(format!("no answer from {remote}")))?
    .map_err(from_status)?
    .into_inner();
    Ok(stream)
}
