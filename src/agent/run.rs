//! Everything a node runs to take tasks, started the same way on a worker and
//! on a manager: the [`Agent`] over the node's runtime, its routing mesh, its
//! dispatcher session, and the log relay.

use std::net::IpAddr;
use std::sync::Arc;

use swarm_core::{Clock, Id};
use swarm_runtime::Runtime;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Agent;
use super::mesh::{NodeMesh, RoutingMeshConfig};
use super::netplane::{NetPlane, OverlayFactory};
use super::session::{ManagerList, SessionConfig, run as run_session};
use crate::error::{Error, Result};
use crate::pki::{NodeIdentity, RootCa, client_config};
use crate::state::describe;

/// What a node's agent needs to start.
pub(crate) struct AgentSetup<'a> {
    /// The node.
    pub node_id: &'a Id,
    /// Its host name, reported in its description.
    pub hostname: &'a str,
    /// The address it advertises, when known.
    pub addr: Option<IpAddr>,
    /// The runtime tasks run on.
    pub runtime: Arc<dyn Runtime>,
    /// The clock of task status times.
    pub clock: Arc<dyn Clock>,
    /// What starts the node's overlay networks.
    pub overlay: Arc<dyn OverlayFactory>,
    /// Its routing mesh, if it has one.
    pub routing_mesh: Option<&'a RoutingMeshConfig>,
    /// The managers its session tries, in order.
    pub managers: ManagerList,
    /// The managers the log relay subscribes at (read each round).
    pub log_managers: Box<dyn Fn() -> Vec<String> + Send>,
    /// The swarm's root CA and the node's identity.
    pub ca: &'a RootCa,
    /// The node's certificate and key.
    pub identity: &'a NodeIdentity,
}

/// A running agent: what must be stopped with the node.
pub(crate) struct RunningAgent {
    /// The routing mesh (closed at shutdown).
    pub mesh: Option<NodeMesh>,
    /// The dispatcher session.
    pub session: JoinHandle<()>,
    /// The log relay.
    pub logs: JoinHandle<()>,
}

/// Starts the agent of `setup` until `stop` turns true.
pub(crate) async fn start(
    setup: AgentSetup<'_>,
    stop: &watch::Receiver<bool>,
) -> Result<RunningAgent> {
    let overlay = setup.overlay;
    let (agent, updates) = Agent::with_plane(
        setup.node_id.clone(),
        setup.runtime.clone(),
        setup.clock.clone(),
        |id| NetPlane::with_overlay(id, overlay),
    )
    .await
    .map_err(|e| Error::Unavailable(format!("runtime: {e}")))?;
    let mut description = describe(setup.hostname);
    let mesh = NodeMesh::start_if(
        setup.routing_mesh,
        setup.addr,
        setup.node_id,
        &agent.runtime(),
        stop,
    )
    .await?;
    if let Some(m) = &mesh {
        description.mesh_addr = m.addr.clone();
    }
    let session = SessionConfig {
        managers: setup.managers,
        tls: client_config(setup.ca, setup.identity)?,
        description,
        addr: setup.addr.map(|ip| ip.to_string()).unwrap_or_default(),
        ingress: mesh.as_ref().map(|m| m.views.clone()),
    };
    let logs = tokio::spawn(crate::agent::logs::serve_node(
        setup.log_managers,
        setup.ca.clone(),
        setup.identity.clone(),
        setup.runtime,
        stop.clone(),
    ));
    let stop = stop.clone();
    let session = tokio::spawn(async move {
        run_session(session, agent, updates, stop).await.detach();
    });
    Ok(RunningAgent {
        mesh,
        session,
        logs,
    })
}
