//! The node side of a dispatcher session: keeps one session open with some
//! manager (moving to another when it dies), applies assignments to the
//! [`Agent`], sends heartbeats, and reports task statuses in batches.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use swarm_core::Id;
use swarm_core::types::{NodeDescription, Task, TaskStatus};
use tokio::sync::{mpsc, watch};

use super::{Agent, StatusUpdate};
use crate::pki::MANAGER_OU;
use crate::rpc::dispatch::{
    self, Heartbeat, HeartbeatAck, SessionMessage, SessionRequest, StatusBatch,
};
use crate::rpc::proto::Payload;
use crate::rpc::proto::dispatcher_client::DispatcherClient;
use crate::rpc::tls::channel;

/// Largest number of status updates sent in one call.
const MAX_BATCH: usize = 1000;

/// The managers a node knows, shared: the session refreshes it from what the
/// swarm sends (promotions, demotions, replaced managers) and others read it —
/// the log publisher subscribes at each of them. Clones share one list.
#[derive(Clone, Debug, Default)]
pub struct ManagerList(Arc<parking_lot::Mutex<Vec<String>>>);

impl ManagerList {
    /// A list holding `managers`.
    pub fn new(managers: Vec<String>) -> ManagerList {
        ManagerList(Arc::new(parking_lot::Mutex::new(managers)))
    }

    /// The managers now, in the order to try them.
    pub fn get(&self) -> Vec<String> {
        self.0.lock().clone()
    }

    /// Replaces the list; an empty list is ignored (a node always keeps somewhere
    /// to reconnect to).
    pub fn set(&self, managers: Vec<String>) {
        if !managers.is_empty() {
            *self.0.lock() = managers;
        }
    }
}

impl From<Vec<String>> for ManagerList {
    fn from(managers: Vec<String>) -> ManagerList {
        ManagerList::new(managers)
    }
}

/// Where and how a node keeps its session.
#[derive(Clone)]
pub struct SessionConfig {
    /// Managers to try, in order (the list is refreshed from the session; share
    /// it to follow the swarm's manager set).
    pub managers: ManagerList,
    /// The node's client TLS settings (its certificate).
    pub tls: Arc<rustls::ClientConfig>,
    /// What the node reports about itself.
    pub description: NodeDescription,
    /// The IP address the node advertises; empty: its connection's.
    pub addr: String,
    /// Where the routing mesh's views go (a node without a mesh drops them).
    pub ingress: Option<watch::Sender<Arc<crate::views::ingress::IngressView>>>,
}

impl std::fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionConfig")
            .field("managers", &self.managers)
            .finish_non_exhaustive()
    }
}

/// Runs the node's session until `stop` turns true: the agent keeps the tasks
/// the swarm assigns running; statuses that could not be sent are kept and sent
/// on the next session.
pub async fn run(
    mut cfg: SessionConfig,
    mut agent: Agent,
    mut updates: mpsc::UnboundedReceiver<StatusUpdate>,
    mut stop: watch::Receiver<bool>,
) -> Agent {
    let mut pending: Vec<(Id, TaskStatus)> = Vec::new();
    let mut next = 0usize;
    let mut backoff = Duration::from_millis(100);
    loop {
        if *stop.borrow() {
            return agent;
        }
        let managers = cfg.managers.get();
        if managers.is_empty() {
            tracing::error!("no manager to connect to");
            return agent;
        }
        let addr = managers[next % managers.len()].clone();
        next += 1;
        let outcome = one_session(
            &addr,
            &mut cfg,
            &mut agent,
            &mut updates,
            &mut pending,
            &mut stop,
        )
        .await;
        match outcome {
            Ok(()) => return agent,
            Err(reason) => {
                tracing::warn!(manager = %addr, reason, "session lost; trying another manager");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => {}
                }
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
        }
    }
}

/// One session with the manager at `addr`. `Ok` when told to stop; `Err` with
/// the reason when the session is lost.
async fn one_session(
    addr: &str,
    cfg: &mut SessionConfig,
    agent: &mut Agent,
    updates: &mut mpsc::UnboundedReceiver<StatusUpdate>,
    pending: &mut Vec<(Id, TaskStatus)>,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    let ch = channel(addr, cfg.tls.clone(), MANAGER_OU).map_err(|e| e.to_string())?;
    let mut client = DispatcherClient::new(ch);
    let open = SessionRequest {
        description: cfg.description.clone(),
        addr: cfg.addr.clone(),
    };
    let mut stream = tokio::time::timeout(
        Duration::from_secs(10),
        client.session(Payload {
            data: dispatch::encode(&open),
        }),
    )
    .await
    .map_err(|_| "no answer".to_string())?
    .map_err(|s| s.to_string())?
    .into_inner();
    let first = stream
        .message()
        .await
        .map_err(|s| s.to_string())?
        .ok_or("the session closed at once")?;
    let SessionMessage::Started {
        session_id,
        heartbeat_period,
        managers,
    } = dispatch::decode(&first.data).map_err(|e| e.to_string())?
    else {
        return Err("the session did not start with Started".into());
    };
    cfg.managers.set(managers);
    tracing::info!(manager = %addr, session = %session_id, "session open");
    let mut assigned: HashMap<Id, Task> = HashMap::new();
    let mut heartbeat = tokio::time::interval(heartbeat_period.max(Duration::from_millis(10)));
    heartbeat.tick().await;
    loop {
        if !pending.is_empty() {
            let batch: Vec<(Id, TaskStatus)> =
                pending.drain(..pending.len().min(MAX_BATCH)).collect();
            let msg = StatusBatch {
                session_id: session_id.clone(),
                updates: batch.clone(),
            };
            if let Err(s) = client
                .update_task_status(Payload {
                    data: dispatch::encode(&msg),
                })
                .await
            {
                pending.splice(0..0, batch);
                return Err(format!("status update failed: {s}"));
            }
            continue;
        }
        tokio::select! {
            msg = stream.message() => {
                let msg = msg.map_err(|s| s.to_string())?.ok_or("the manager closed the session")?;
                match dispatch::decode::<SessionMessage>(&msg.data).map_err(|e| e.to_string())? {
                    SessionMessage::Assignments { full, updated, removed } => {
                        if full {
                            assigned.clear();
                        }
                        for id in removed {
                            assigned.remove(&id);
                        }
                        for t in updated {
                            assigned.insert(t.id.clone(), t);
                        }
                        let tasks: Vec<Task> = assigned.values().cloned().collect();
                        agent.assign(&tasks);
                        if full {
                            agent.report_behind(&tasks);
                        }
                    }
                    SessionMessage::Managers(list) => cfg.managers.set(list),
                    SessionMessage::Ingress(view) => {
                        if let Some(tx) = &cfg.ingress {
                            tx.send_replace(view);
                        }
                    }
                    SessionMessage::Networks(view) => agent.set_networks(view),
                    SessionMessage::Started { .. } => return Err("unexpected second Started".into()),
                }
            }
            _ = heartbeat.tick() => {
                let hb = Heartbeat { session_id: session_id.clone() };
                let ack = client.heartbeat(Payload { data: dispatch::encode(&hb) }).await.map_err(|s| format!("heartbeat failed: {s}"))?;
                if let Ok(HeartbeatAck { period }) = dispatch::decode(&ack.get_ref().data)
                    && period != heartbeat.period()
                {
                    heartbeat = tokio::time::interval(period.max(Duration::from_millis(10)));
                    heartbeat.tick().await;
                }
            }
            u = updates.recv() => {
                let Some(u) = u else { return Err("the agent stopped".into()) };
                pending.push((u.task_id, u.status));
                while pending.len() < MAX_BATCH {
                    match updates.try_recv() {
                        Ok(u) => pending.push((u.task_id, u.status)),
                        Err(_) => break,
                    }
                }
            }
            _ = stop.changed() => {
                if *stop.borrow() {
                    return Ok(());
                }
            }
        }
    }
}
