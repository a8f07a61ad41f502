//! How a manager comes up: a new swarm, a restart, or joining through other
//! managers (a certificate from the CA service, then a seat in the raft group).

use std::time::Duration;

use swarm_core::types::NodeRole;
use swarm_raft::Transport;
use tokio::net::TcpListener;

use super::{Manager, ManagerConfig};
use crate::error::{Error, Result};
use crate::pki::{NodeIdentity, RootCa, client_config};
use crate::state::{DataDir, NodeFile};

/// A fresh raft member ID: random, non-zero, never reused.
pub(crate) fn new_raft_id() -> u64 {
    loop {
        let r: u64 = rand::random();
        if r != 0 {
            return r;
        }
    }
}

/// Listens on the cluster port.
pub(super) async fn bind(addr: &str) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| Error::InvalidArgument(format!("cannot listen on {addr}: {e}")))
}

/// How a manager comes up.
pub(super) enum Mode {
    /// Founds a new swarm.
    Init,
    /// Restarts from its data directory.
    Restart,
    /// Joins the raft group through these managers.
    Join(Vec<String>),
}

/// Asks the managers, in turn, to add this member; the leader answers with the
/// members of the group and their addresses.
pub(super) async fn ask_to_join(
    managers: &[String],
    raft_id: u64,
    addr: &str,
    ca: &RootCa,
    identity: &NodeIdentity,
    peers: &dyn Transport,
) -> Result<()> {
    use crate::rpc::proto::raft_client::RaftClient;
    use crate::rpc::proto::{Empty, JoinRaftRequest};
    let tls = client_config(ca, identity)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut last = String::from("no manager answered");
    while tokio::time::Instant::now() < deadline {
        for m in managers {
            let ch = crate::rpc::tls::channel(m, tls.clone(), crate::pki::MANAGER_OU)?;
            // Learn the members first, so this member can answer the leader
            // while it catches up.
            match tokio::time::timeout(
                Duration::from_secs(5),
                RaftClient::new(ch.clone()).members(Empty {}),
            )
            .await
            {
                Ok(Ok(r)) => {
                    for m in r.into_inner().members {
                        peers.set_peer(m.raft_id, Some(&m.addr));
                    }
                }
                _ => continue,
            }
            let req = JoinRaftRequest {
                raft_id,
                addr: addr.to_string(),
            };
            match tokio::time::timeout(Duration::from_secs(15), RaftClient::new(ch).join(req)).await
            {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(s))
                    if s.code() == tonic::Code::PermissionDenied
                        || s.code() == tonic::Code::NotFound =>
                {
                    return Err(crate::rpc::tls::from_status(s));
                }
                Ok(Err(s)) => last = format!("{m}: {}", s.message()),
                Err(_) => last = format!("{m}: no answer"),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(Error::Unavailable(format!(
        "could not join the raft group: {last}"
    )))
}

/// What joining a swarm made of this node.
pub(crate) enum JoinedAs {
    /// A running manager.
    Manager(Manager),
    /// A worker, saved in its data directory, not started yet.
    Worker(Box<(NodeFile, NodeIdentity, RootCa)>),
}

/// Joins the swarm of the manager at `remote` with `token`, as the role the
/// token grants; a worker token is refused unless `accept_worker`, and nothing
/// is saved then.
pub(crate) async fn join_swarm(
    cfg: ManagerConfig,
    remote: &str,
    token: &str,
    accept_worker: bool,
) -> Result<JoinedAs> {
    let dir = DataDir::open(&cfg.data_dir)?;
    if dir.has_node() {
        return Err(Error::FailedPrecondition(format!(
            "{} already holds a node of a swarm: start it instead of joining again",
            cfg.data_dir.display()
        )));
    }
    let listener = bind(&cfg.listen_addr).await?;
    let bound = listener
        .local_addr()
        .map_err(|e| Error::Internal(e.to_string()))?
        .to_string();
    let addr = cfg.advertise_addr.clone().unwrap_or(bound);
    let joined = crate::rpc::ca::join(remote, token, &cfg.hostname, &addr).await?;
    let role = joined.identity.peer.role;
    if role != NodeRole::Manager && !accept_worker {
        return Err(Error::InvalidArgument(
            "this is a worker join token: start the node as a worker, or use the manager token"
                .into(),
        ));
    }
    let mut managers = vec![remote.to_string()];
    managers.extend(joined.managers.iter().filter(|m| *m != remote).cloned());
    let node = NodeFile {
        node_id: joined.identity.peer.node_id.clone(),
        cluster_id: joined.identity.peer.cluster_id.clone(),
        role,
        raft_id: if role == NodeRole::Manager {
            new_raft_id()
        } else {
            0
        },
        managers: managers.clone(),
    };
    dir.save(&node, &joined.identity, &joined.ca)?;
    if role != NodeRole::Manager {
        return Ok(JoinedAs::Worker(Box::new((
            node,
            joined.identity,
            joined.ca,
        ))));
    }
    let cfg = ManagerConfig {
        advertise_addr: Some(addr),
        ..cfg
    };
    let saved = (dir, node, joined.identity, joined.ca);
    let m = Manager::run(cfg, saved, Mode::Join(managers), Some(listener)).await?;
    Ok(JoinedAs::Manager(m))
}
