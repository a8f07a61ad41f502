//! The CA service of a manager (the one service a node without a certificate
//! may call): root CA, node certificates for join tokens, renewals, role watch.
//! Its clients (join, renew) are in [`crate::rpc::ca`].
//!
//! Join, as SwarmKit does it: the node fetches the root CA over an unverified TLS
//! connection, checks its digest against the join token (so a man in the middle
//! is caught), then — now trusting that CA — sends the token and a CSR and gets
//! its certificate: CN = a new node ID, OU = the role the token grants, O = the
//! cluster ID. The manager records the node in the store.

use std::time::Duration;

use futures::StreamExt;
use swarm_core::types::{
    IssuanceState, Node, NodeCertificate, NodeDescription, NodeSpec, NodeState, NodeStatus,
};
use swarm_core::{Filter, Id, Kind, Store};
use tonic::{Request, Response, Status};

use crate::Error;
use crate::pki::{JoinToken, RootCa, role_ou};
use crate::rpc::proto::ca_server::Ca;
use crate::rpc::proto::{
    Empty, IssueRequest, IssueResponse, RenewRequest, RoleUpdate, RootCaResponse,
};
use crate::rpc::tls::{refuse_removed, require_node, to_status};

/// How long the certificates issued now last: the swarm's setting, never under
/// an hour.
fn node_cert_expiry(cluster: &swarm_core::types::Cluster) -> Duration {
    cluster
        .spec
        .ca_config
        .node_cert_expiry
        .max(Duration::from_secs(3600))
}

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

    /// The CA that signs: this manager's own when it holds the key (the first
    /// manager), else the one in the cluster object (managers that joined).
    fn signer(&self) -> Result<RootCa, Error> {
        if self.ca.key_pem().is_some() {
            return Ok(self.ca.clone());
        }
        let cluster = self
            .store
            .view()
            .cluster()
            .ok_or_else(|| Error::Unavailable("the swarm is not initialised".into()))?;
        let key = std::str::from_utf8(&cluster.root_ca.ca_key)
            .ok()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                Error::FailedPrecondition("the swarm's root CA key is not held by the swarm".into())
            })?;
        Ok(RootCa::from_pem(self.ca.cert_pem(), Some(key))?)
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
        let expiry = node_cert_expiry(&cluster);
        let cert_pem = self
            .signer()?
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
        let managers = crate::manager::dispatcher::manager_addrs(&self.store.view());
        tracing::info!(node = %node_id, role = role_ou(role), "node joined");
        Ok(IssueResponse {
            node_id: node_id.to_string(),
            cert_pem,
            role: role_ou(role).into(),
            cluster_id: cluster.id.to_string(),
            managers,
        })
    }

    /// Signs a new certificate for `node_id` (known by its current certificate)
    /// with the role the store gives it now, and records it on the node.
    pub async fn renew(&self, node_id: &Id, csr_pem: &str) -> Result<IssueResponse, Error> {
        let view = self.store.view();
        let cluster = view
            .cluster()
            .ok_or_else(|| Error::Unavailable("the swarm is not initialised".into()))?;
        if cluster
            .blacklisted_certificates
            .iter()
            .any(|b| b.node_id == *node_id)
        {
            return Err(Error::InvalidArgument(format!(
                "node {node_id} was removed from the swarm"
            )));
        }
        let node = view.get::<Node>(node_id).ok_or_else(|| {
            Error::InvalidArgument(format!("node {node_id} is not part of this swarm"))
        })?;
        drop(view);
        let role = node.role;
        let expiry = node_cert_expiry(&cluster);
        let cert_pem = self
            .signer()?
            .issue(csr_pem, node_id, role, &cluster.id, expiry)?;
        let (csr, cert) = (csr_pem.to_string(), cert_pem.clone());
        self.store
            .update_retrying(|tx| {
                let Some(n) = tx.get::<Node>(node_id) else {
                    return Ok(());
                };
                let mut n = (*n).clone();
                n.certificate.role = role;
                n.certificate.csr = csr.clone().into_bytes();
                n.certificate.certificate = cert.clone().into_bytes();
                n.certificate.status = IssuanceState::Issued;
                tx.update(n).map(drop)
            })
            .await?;
        tracing::info!(node = %node_id, role = role_ou(role), "node certificate renewed");
        Ok(IssueResponse {
            node_id: node_id.to_string(),
            cert_pem,
            role: role_ou(role).into(),
            cluster_id: cluster.id.to_string(),
            managers: crate::manager::dispatcher::manager_addrs(&self.store.view()),
        })
    }

    /// The role update for `node_id` in `view`, `None` when the node is gone.
    fn role_update(view: &swarm_core::Tables, node_id: &Id) -> Option<RoleUpdate> {
        let n = view.get::<Node>(node_id)?;
        Some(RoleUpdate {
            role: role_ou(n.role).into(),
            desired_role: role_ou(n.spec.desired_role).into(),
            managers: crate::manager::dispatcher::manager_addrs(view),
        })
    }
}

/// The stream [`CaService`] answers `WatchRole` with.
pub type RoleStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<RoleUpdate, Status>> + Send>>;

#[tonic::async_trait]
impl Ca for CaService {
    type WatchRoleStream = RoleStream;

    async fn renew_node_certificate(
        &self,
        req: Request<RenewRequest>,
    ) -> Result<Response<IssueResponse>, Status> {
        let node_id = require_node(&req)?.node_id.clone();
        self.renew(&node_id, &req.into_inner().csr_pem)
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn watch_role(
        &self,
        req: Request<Empty>,
    ) -> Result<Response<Self::WatchRoleStream>, Status> {
        let node_id = require_node(&req)?.node_id.clone();
        let (view, mut watch) = self
            .store
            .view_and_watch(Filter::kinds([Kind::Node, Kind::Cluster]));
        refuse_removed(&view, &node_id)?;
        let first = CaService::role_update(&view, &node_id).ok_or_else(|| {
            Status::not_found(format!("node {node_id} is not part of this swarm"))
        })?;
        drop(view);
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let store = self.store.clone();
        tokio::spawn(async move {
            let mut last = first.clone();
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
            while watch.next().await.is_some() {
                while watch.try_next().is_some() {}
                let view = store.view();
                if let Err(s) = refuse_removed(&view, &node_id) {
                    let _ = tx.send(Err(s)).await;
                    return;
                }
                let Some(now) = CaService::role_update(&view, &node_id) else {
                    let _ = tx
                        .send(Err(Status::not_found(format!(
                            "node {node_id} is not part of this swarm"
                        ))))
                        .await;
                    return;
                };
                if now != last {
                    last = now.clone();
                    if tx.send(Ok(now)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

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
