//! The CA service (the one a node without a certificate may call) and the join
//! flow that uses it.
//!
//! Join, as SwarmKit does it: the node fetches the root CA over an unverified TLS
//! connection, checks its digest against the join token (so a man in the middle
//! is caught), then — now trusting that CA — sends the token and a CSR and gets
//! its certificate: CN = a new node ID, OU = the role the token grants, O = the
//! cluster ID. The manager records the node in the store.

use std::time::Duration;

use swarm_core::types::{
    IssuanceState, Node, NodeCertificate, NodeDescription, NodeRole, NodeSpec, NodeState,
    NodeStatus,
};
use swarm_core::{Id, Store};
use tonic::{Request, Response, Status};

use super::proto::ca_client::CaClient;
use super::proto::ca_server::Ca;
use super::proto::{Empty, IssueRequest, IssueResponse, RootCaResponse};
use super::tls::{channel, from_status, to_status};
use crate::Error;
use crate::ca::{
    JoinToken, MANAGER_OU, NodeIdentity, RootCa, anonymous_client_config, new_key_and_csr, role_ou,
    unverified_client_config,
};

/// The CA service of a manager.
#[derive(Clone, Debug)]
pub struct CaService {
    ca: RootCa,
    store: Store,
}

impl CaService {
    /// Serves `ca` (which must hold its key) over the swarm in `store`.
    pub fn new(ca: RootCa, store: Store) -> CaService {
        CaService { ca, store }
    }

    /// Checks `token`, registers a new node and signs its certificate.
    pub async fn issue(&self, req: IssueRequest) -> Result<IssueResponse, Error> {
        let token = JoinToken::parse(&req.token)?;
        token.check_ca(self.ca.cert_der())?;
        let cluster = self
            .store
            .view()
            .cluster()
            .ok_or_else(|| Error::Unavailable("the swarm is not initialised".into()))?;
        let tokens = &cluster.root_ca.join_tokens;
        let role = token.role_in(&tokens.worker, &tokens.manager)?;
        let node_id = Id::generate();
        let expiry = cluster
            .spec
            .ca_config
            .node_cert_expiry
            .max(Duration::from_secs(3600));
        let cert_pem = self
            .ca
            .issue(&req.csr_pem, &node_id, role, &cluster.id, expiry)?;
        let node = Node {
            id: node_id.clone(),
            spec: NodeSpec {
                desired_role: role,
                ..Default::default()
            },
            role,
            description: Some(NodeDescription {
                hostname: req.hostname.clone(),
                ..Default::default()
            }),
            status: NodeStatus {
                state: NodeState::Unknown,
                addr: req.advertise_addr.clone(),
                ..Default::default()
            },
            certificate: NodeCertificate {
                role,
                csr: req.csr_pem.into_bytes(),
                status: IssuanceState::Issued,
                certificate: cert_pem.clone().into_bytes(),
                cn: node_id.to_string(),
                ..Default::default()
            },
            ..Default::default()
        };
        self.store.update(|tx| tx.create(node)).await?;
        let managers = crate::dispatcher::manager_addrs(&self.store.view());
        tracing::info!(node = %node_id, role = role_ou(role), "node joined");
        Ok(IssueResponse {
            node_id: node_id.to_string(),
            cert_pem,
            role: role_ou(role).into(),
            cluster_id: cluster.id.to_string(),
            managers,
        })
    }
}

#[tonic::async_trait]
impl Ca for CaService {
    async fn get_root_ca(&self, _: Request<Empty>) -> Result<Response<RootCaResponse>, Status> {
        Ok(Response::new(RootCaResponse {
            cert_pem: self.ca.cert_pem().to_string(),
        }))
    }

    async fn issue_node_certificate(
        &self,
        req: Request<IssueRequest>,
    ) -> Result<Response<IssueResponse>, Status> {
        self.issue(req.into_inner())
            .await
            .map(Response::new)
            .map_err(to_status)
    }
}

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
