//! The dispatcher: the manager side of worker sessions. A node opens a session
//! (authenticated by its certificate), is marked READY, receives the tasks
//! assigned to it — the complete set first, then only what changes — sends
//! heartbeats, and reports task statuses, which the dispatcher writes to the store
//! in batches. A node that misses its heartbeats for three periods is marked DOWN
//! (`heartbeat failure`), and the orchestrator moves its tasks.
//!
//! It may use swarm-core (the store), the facade's `rpc` (session messages,
//! TLS peer checks, the tonic service) and `views` (the ingress and network
//! views it sends), and the control room's store helpers (retried writes,
//! `existing`).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use swarm_core::types::{Node, NodeState, Task, TaskState, TaskStatus};
use swarm_core::{Action, Filter, Id, Kind, Store};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::rpc::dispatch::*;
use crate::rpc::proto::Payload;
use crate::rpc::proto::dispatcher_server::{Dispatcher as DispatcherRpc, DispatcherServer};
use crate::rpc::tls::{PeerInfo, require_node};

/// Heartbeat periods a node may miss before it is marked DOWN.
const GRACE_PERIODS: u32 = 3;
/// How long status updates wait to be written together.
const STATUS_BATCH_WINDOW: Duration = Duration::from_millis(50);
/// Status batches committing at once.
const STATUS_WRITES_IN_FLIGHT: usize = 4;
/// Tries at writing one batch of statuses.
const STATUS_WRITE_ATTEMPTS: u32 = 10;

struct Session {
    id: String,
    last_heartbeat: Instant,
}

struct Inner {
    store: Store,
    /// Whether this manager leads: only the leader's dispatcher holds sessions.
    leading: watch::Receiver<bool>,
    sessions: Mutex<HashMap<Id, Session>>,
    statuses: mpsc::UnboundedSender<(Id, Vec<(Id, TaskStatus)>)>,
    /// The routing mesh's view, sent to every node: computed only while this
    /// manager leads (only the leader holds sessions), from the first session
    /// of its term; the feed stops when leadership is lost and its last
    /// session ends.
    ingress: Mutex<Option<watch::Receiver<Arc<crate::views::ingress::IngressView>>>>,
    /// The overlay networks' view, sent to every node: computed like `ingress`.
    networks: Mutex<Option<watch::Receiver<Arc<crate::views::network::NetworkView>>>>,
}

impl Inner {
    /// The routing mesh's view, its feed started on first use.
    fn ingress(&self) -> watch::Receiver<Arc<crate::views::ingress::IngressView>> {
        self.ingress
            .lock()
            .get_or_insert_with(|| crate::views::ingress::feed(self.store.clone()))
            .clone()
    }

    /// The overlay networks' view, its feed started on first use.
    fn networks(&self) -> watch::Receiver<Arc<crate::views::network::NetworkView>> {
        self.networks
            .lock()
            .get_or_insert_with(|| crate::views::network::feed(self.store.clone()))
            .clone()
    }
}

/// The dispatcher of one manager. Cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("sessions", &self.inner.sessions.lock().len())
            .finish()
    }
}

impl Dispatcher {
    /// A dispatcher over `store` that always serves (a single manager, tests);
    /// starts its status writer and its heartbeat checker (they stop when every
    /// clone of the dispatcher is dropped).
    #[cfg(test)]
    pub fn start(store: Store) -> Dispatcher {
        let (tx, rx) = watch::channel(true);
        std::mem::forget(tx);
        Dispatcher::start_with_leadership(store, rx)
    }

    /// A dispatcher that serves sessions only while `leading` is true, as
    /// SwarmKit's: nodes of a multi-manager swarm keep their session with the
    /// leader and move when it changes. When this manager becomes leader, nodes
    /// that do not open a session within the grace period are marked DOWN.
    pub fn start_with_leadership(store: Store, leading: watch::Receiver<bool>) -> Dispatcher {
        let (statuses, rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            ingress: Mutex::new(None),
            networks: Mutex::new(None),
            store,
            leading,
            sessions: Mutex::new(HashMap::new()),
            statuses,
        });
        tokio::spawn(write_statuses(inner.store.clone(), rx));
        tokio::spawn(expire_sessions(Arc::downgrade(&inner)));
        Dispatcher { inner }
    }

    /// The tonic server for this dispatcher.
    pub fn server(self) -> DispatcherServer<Dispatcher> {
        DispatcherServer::new(self)
    }

    fn heartbeat_period(&self) -> Duration {
        heartbeat_period(&self.inner.store)
    }

    fn check_leading(&self) -> Result<(), Status> {
        if *self.inner.leading.borrow() {
            Ok(())
        } else {
            Err(Status::unavailable(
                "this manager is not the leader: open the session with another manager",
            ))
        }
    }

    fn check_session(&self, node: &Id, session_id: &str) -> Result<(), Status> {
        self.check_leading()?;
        let mut sessions = self.inner.sessions.lock();
        match sessions.get_mut(node) {
            Some(s) if s.id == session_id => {
                s.last_heartbeat = Instant::now();
                Ok(())
            }
            _ => Err(Status::not_found("session expired: open a new session")),
        }
    }
}

fn heartbeat_period(store: &Store) -> Duration {
    store.view().cluster().map_or(Duration::from_secs(5), |c| {
        c.spec.dispatcher.heartbeat_period
    })
}

/// Every manager's address, sorted, for nodes to fail over to.
pub(crate) fn manager_addrs(view: &swarm_core::Tables) -> Vec<String> {
    let mut v: Vec<String> = view
        .list::<Node>()
        .filter_map(|n| n.manager_status.as_ref().map(|m| m.addr.clone()))
        .filter(|a| !a.is_empty())
        .collect();
    v.sort();
    v
}

/// Marks a node's status, retrying on conflicts with other writers.
async fn set_node_status(
    store: &Store,
    node: &Id,
    f: impl Fn(&mut Node),
) -> swarm_core::Result<()> {
    store
        .update_retrying(|tx| {
            let mut n = (*crate::manager::control::existing::<Node>(tx, node)?).clone();
            f(&mut n);
            tx.update(n).map(drop)
        })
        .await
}

/// Whether a task belongs in a node's assignment set.
fn assigned_to(t: &Task, node: &Id) -> bool {
    t.node_id == *node && t.status.state >= TaskState::Assigned
}

#[tonic::async_trait]
impl DispatcherRpc for Dispatcher {
    type SessionStream = ReceiverStream<Result<Payload, Status>>;

    async fn session(
        &self,
        req: Request<Payload>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        self.check_leading()?;
        let node_id = require_node(&req)?.node_id.clone();
        let addr: Option<SocketAddr> = req.extensions().get::<PeerInfo>().and_then(|p| p.addr);
        let open: SessionRequest = crate::rpc::dispatch::decode(&req.get_ref().data)
            .map_err(crate::rpc::tls::to_status)?;
        let store = self.inner.store.clone();
        let view = store.view();
        crate::rpc::tls::refuse_removed(&view, &node_id)?;
        if !view.contains::<Node>(&node_id) {
            return Err(Status::not_found(format!(
                "node {node_id} is not part of this swarm"
            )));
        }
        drop(view);
        let description = open.description;
        let advertised = open.addr.parse::<std::net::IpAddr>().ok();
        set_node_status(&store, &node_id, |n| {
            n.description = Some(description.clone());
            n.status.state = NodeState::Ready;
            n.status.message = String::new();
            if let Some(ip) = advertised.or(addr.map(|a| a.ip())) {
                n.status.addr = ip.to_string();
            }
        })
        .await
        .map_err(|e| crate::rpc::tls::to_status(e.into()))?;

        let session_id = Id::generate().to_string();
        self.inner.sessions.lock().insert(
            node_id.clone(),
            Session {
                id: session_id.clone(),
                last_heartbeat: Instant::now(),
            },
        );
        tracing::info!(node = %node_id, session = %session_id, "session opened");

        let (tx, rx) = mpsc::channel(64);
        let me = self.clone();
        tokio::spawn(async move {
            let Err(ended) = stream_assignments(&me, &node_id, &session_id, tx).await;
            tracing::debug!(node = %node_id, session = %session_id, reason = %ended, "session stream ended");
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn heartbeat(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        let node = require_node(&req)?.node_id.clone();
        let hb: Heartbeat = crate::rpc::dispatch::decode(&req.get_ref().data)
            .map_err(crate::rpc::tls::to_status)?;
        self.check_session(&node, &hb.session_id)?;
        let ack = HeartbeatAck {
            period: self.heartbeat_period(),
        };
        Ok(Response::new(Payload {
            data: crate::rpc::dispatch::encode(&ack),
        }))
    }

    async fn update_task_status(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        let node = require_node(&req)?.node_id.clone();
        let batch: StatusBatch = crate::rpc::dispatch::decode(&req.get_ref().data)
            .map_err(crate::rpc::tls::to_status)?;
        self.check_session(&node, &batch.session_id)?;
        if self.inner.statuses.send((node, batch.updates)).is_err() {
            return Err(Status::unavailable("the dispatcher is shutting down"));
        }
        Ok(Response::new(Payload { data: Vec::new() }))
    }
}

/// Why a session's stream of messages ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
enum SessionEnd {
    /// The node closed its end (or the connection went).
    #[error("node went away")]
    NodeGone,
    /// The store stopped sending events.
    #[error("store closed")]
    StoreClosed,
    /// The dispatcher's views stopped (leadership lost, the manager stopping).
    #[error("dispatcher stopped")]
    DispatcherStopped,
    /// The node opened a newer session, or this one expired.
    #[error("session replaced or expired")]
    Replaced,
}

/// Streams the session's messages until the node goes away or the session is
/// replaced; it only ever returns why it ended.
async fn stream_assignments(
    d: &Dispatcher,
    node: &Id,
    session_id: &str,
    tx: mpsc::Sender<Result<Payload, Status>>,
) -> Result<std::convert::Infallible, SessionEnd> {
    let store = &d.inner.store;
    let watched = node.clone();
    let filter = Filter::kinds([Kind::Task, Kind::Node]).matching(move |c| {
        match c.object.downcast::<Task>() {
            Some(t) => {
                t.node_id == watched
                    || c.old
                        .as_ref()
                        .and_then(|o| o.downcast::<Task>())
                        .is_some_and(|o| o.node_id == watched)
            }
            None => true,
        }
    });
    let (view, mut watch) = store.view_and_watch(filter);
    let send = |m: SessionMessage| {
        let tx = tx.clone();
        async move {
            let payload = Payload {
                data: crate::rpc::dispatch::encode(&m),
            };
            tx.send(Ok(payload)).await.map_err(|_| SessionEnd::NodeGone)
        }
    };
    let mut managers = manager_addrs(&store.view());
    send(SessionMessage::Started {
        session_id: session_id.to_string(),
        heartbeat_period: d.heartbeat_period(),
        managers: managers.clone(),
    })
    .await?;
    let mut sent: HashSet<Id> = HashSet::new();
    let full: Vec<Task> = view
        .tasks_by_node(node)
        .filter(|t| assigned_to(t, node))
        .map(|t| (*t).clone())
        .collect();
    sent.extend(full.iter().map(|t| t.id.clone()));
    drop(view);
    send(SessionMessage::Assignments {
        full: true,
        updated: full,
        removed: Vec::new(),
    })
    .await?;
    let mut ingress = d.inner.ingress();
    let current = ingress.borrow_and_update().clone();
    send(SessionMessage::Ingress(current)).await?;
    let mut networks = d.inner.networks();
    let current = networks.borrow_and_update().clone();
    send(SessionMessage::Networks(current)).await?;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        let event = tokio::select! {
            e = futures::StreamExt::next(&mut watch) => e.ok_or(SessionEnd::StoreClosed)?,
            r = ingress.changed() => {
                r.map_err(|_| SessionEnd::DispatcherStopped)?;
                let current = ingress.borrow_and_update().clone();
                send(SessionMessage::Ingress(current)).await?;
                continue;
            }
            r = networks.changed() => {
                r.map_err(|_| SessionEnd::DispatcherStopped)?;
                let current = networks.borrow_and_update().clone();
                send(SessionMessage::Networks(current)).await?;
                continue;
            }
            _ = tick.tick() => {
                let current = d.inner.sessions.lock().get(node).is_some_and(|s| s.id == session_id);
                if !current {
                    return Err(SessionEnd::Replaced);
                }
                if tx.is_closed() {
                    return Err(SessionEnd::NodeGone);
                }
                continue;
            }
        };
        let mut updated: Vec<Task> = Vec::new();
        let mut removed: Vec<Id> = Vec::new();
        let mut managers_changed = false;
        for c in &event.changes {
            let Some(t) = c.object.downcast::<Task>() else {
                managers_changed = true;
                continue;
            };
            let now_assigned = c.action != Action::Remove && assigned_to(t, node);
            if now_assigned {
                let old = c.old.as_ref().and_then(|o| o.downcast::<Task>());
                let unchanged = sent.contains(&t.id)
                    && old.is_some_and(|o| {
                        o.desired_state == t.desired_state
                            && o.spec == t.spec
                            && o.node_id == t.node_id
                    });
                if !unchanged {
                    sent.insert(t.id.clone());
                    updated.retain(|u| u.id != t.id);
                    updated.push((**t).clone());
                }
            } else if sent.remove(&t.id) {
                updated.retain(|u| u.id != t.id);
                removed.push(t.id.clone());
            }
        }
        if !updated.is_empty() || !removed.is_empty() {
            send(SessionMessage::Assignments {
                full: false,
                updated,
                removed,
            })
            .await?;
        }
        if managers_changed {
            let now = manager_addrs(&store.view());
            if now != managers {
                managers = now;
                send(SessionMessage::Managers(managers.clone())).await?;
            }
        }
    }
}

/// Writes reported task statuses in batched transactions: a status is applied
/// only to a task assigned to the reporting node, and only if it moves forward.
/// Up to [`STATUS_WRITES_IN_FLIGHT`] batches are committing at once (raft packs
/// them into one entry), so one slow commit does not hold every report back;
/// two batches that touch the same task conflict, and the loser is retried
/// (its status then applies only if it is still ahead).
async fn write_statuses(
    store: Store,
    mut rx: mpsc::UnboundedReceiver<(Id, Vec<(Id, TaskStatus)>)>,
) {
    let in_flight = Arc::new(tokio::sync::Semaphore::new(STATUS_WRITES_IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        let mut pending = vec![first];
        let deadline = tokio::time::sleep(STATUS_BATCH_WINDOW);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                more = rx.recv() => match more {
                    Some(m) => pending.push(m),
                    None => break,
                },
            }
        }
        // Wait for a free slot, taking in what arrives meanwhile.
        let permit = loop {
            tokio::select! {
                p = in_flight.clone().acquire_owned() => break p,
                more = rx.recv() => match more {
                    Some(m) => pending.push(m),
                    None => return,
                },
            }
        };
        let Ok(permit) = permit else { return };
        // The newest status per task wins.
        let mut latest: HashMap<Id, (Id, TaskStatus)> = HashMap::new();
        for (node, updates) in pending {
            for (task, status) in updates {
                match latest.get(&task) {
                    Some((_, s)) if s.state > status.state => {}
                    _ => {
                        latest.insert(task, (node.clone(), status));
                    }
                }
            }
        }
        let store = store.clone();
        tokio::spawn(async move {
            write_status_batch(&store, &latest).await;
            drop(permit);
        });
    }
}

/// Writes one batch of statuses, retrying on conflicts and brief losses of
/// quorum.
async fn write_status_batch(store: &Store, latest: &HashMap<Id, (Id, TaskStatus)>) {
    for attempt in 0..STATUS_WRITE_ATTEMPTS {
        let r = store
            .update(|tx| {
                for (task_id, (node, status)) in latest {
                    let Some(t) = tx.get::<Task>(task_id) else {
                        continue;
                    };
                    if t.node_id != *node || status.state < t.status.state {
                        continue;
                    }
                    let mut t = (*t).clone();
                    t.status = status.clone();
                    t.status.applied_by = node.clone();
                    tx.update(t)?;
                }
                Ok(())
            })
            .await;
        let last = attempt + 1 == STATUS_WRITE_ATTEMPTS;
        match r {
            Ok(()) => return,
            Err(swarm_core::Error::Conflict { .. }) if !last => continue,
            // No quorum for a moment (an election): try again while this
            // manager may still lead; if it does not, its nodes open new
            // sessions and report again (Agent::report_behind).
            Err(swarm_core::Error::Unavailable(_) | swarm_core::Error::NotLeader { .. })
                if !last =>
            {
                tokio::time::sleep(STATUS_BATCH_WINDOW * 2).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, updates = latest.len(), "could not write task statuses");
                return;
            }
        }
    }
}

/// Marks DOWN the nodes whose sessions missed their heartbeats and, once per
/// leadership term after the grace period, the nodes that never opened a
/// session with this (new) leader. Drops every session when leadership is lost.
async fn expire_sessions(inner: std::sync::Weak<Inner>) {
    let mut leader_since: Option<Instant> = None;
    let mut swept = false;
    loop {
        let Some(inner) = inner.upgrade() else { return };
        let period = heartbeat_period(&inner.store);
        let limit = period * GRACE_PERIODS;
        let leading = *inner.leading.borrow();
        let mut down: Vec<Id> = Vec::new();
        if !leading {
            leader_since = None;
            swept = false;
            inner.sessions.lock().clear();
            // The feed ends with the sessions that still hold it.
            inner.ingress.lock().take();
            inner.networks.lock().take();
        } else {
            let since = *leader_since.get_or_insert_with(Instant::now);
            let mut sessions = inner.sessions.lock();
            let dead: Vec<Id> = sessions
                .iter()
                .filter(|(_, s)| s.last_heartbeat.elapsed() > limit)
                .map(|(n, _)| n.clone())
                .collect();
            for n in &dead {
                sessions.remove(n);
            }
            down.extend(dead);
            if !swept && since.elapsed() > limit {
                swept = true;
                let view = inner.store.view();
                down.extend(
                    view.list::<Node>()
                        .filter(|n| {
                            n.status.state != NodeState::Down && !sessions.contains_key(&n.id)
                        })
                        .map(|n| n.id.clone()),
                );
            }
        }
        for node in down {
            tracing::warn!(node = %node, "node missed its heartbeats: marking it down");
            let r = set_node_status(&inner.store, &node, |n| {
                n.status.state = NodeState::Down;
                n.status.message = "heartbeat failure".into();
            })
            .await;
            if let Err(e) = r {
                tracing::warn!(node = %node, error = %e, "could not mark the node down");
            }
        }
        let store = inner.store.clone();
        drop(inner);
        tokio::time::sleep((period / 4).clamp(Duration::from_millis(20), Duration::from_secs(1)))
            .await;
        drop(store);
    }
}

#[cfg(test)]
mod tests;
