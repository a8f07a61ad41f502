//! Raft over the cluster RPC: a [`swarm_raft::Transport`] that streams each
//! member's messages to each peer over mutual TLS, and the service that receives
//! them.
//!
//! A manager certificate is not enough to speak raft: it stays valid for up to
//! 90 days after its node was demoted or removed. Every raft RPC is authorised
//! by this member's store at the time of the call ([`sender`]): a removed node
//! is refused, a node that is not a manager now is refused, and each message
//! must come from the raft ID the store gives the sender (a manager joining
//! the group, not given one yet, may use only an ID no other node holds).
//! Forged messages (a huge term, another member's ID) never reach raft.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use parking_lot::Mutex;
use protobuf::Message as _;
use swarm_raft::{InboxSender, Message, MessageType, Transport, snapshot_status, unreachable};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tonic::{Request, Response, Status, Streaming};

use super::proto::raft_client::RaftClient;
use super::proto::raft_server::Raft;
use super::proto::{Empty, JoinRaftRequest, JoinRaftResponse, RaftFrame};
use super::tls::{channel, require_manager};
use crate::pki::MANAGER_OU;
use swarm_core::types::{ManagerStatus, Node, NodeRole, Reachability};

/// Largest frame on the wire; bigger messages are split.
const CHUNK: usize = 1 << 20;
/// Largest message accepted (a whole snapshot).
const MAX_MESSAGE: usize = 1 << 30;
/// Messages queued for one peer before new ones are dropped.
const QUEUE: usize = 4096;

fn frames(m: &Message) -> Vec<RaftFrame> {
    let bytes = m.write_to_bytes().unwrap_or_default();
    let chunks: Vec<&[u8]> = if bytes.is_empty() {
        vec![&[][..]]
    } else {
        bytes.chunks(CHUNK).collect()
    };
    let n = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, c)| RaftFrame {
            chunk: c.to_vec(),
            last: i + 1 == n,
        })
        .collect()
}

/// The member a [`RaftService`] adds new managers to, set once it has started.
pub type MemberSlot = Arc<std::sync::OnceLock<(Arc<swarm_raft::RaftNode>, swarm_core::Store)>>;

/// Receives raft messages from other managers into this member's inbox, and
/// (on the leader) adds joining managers to the group.
#[derive(Clone)]
pub struct RaftService {
    inbox: InboxSender,
    member: MemberSlot,
    store: swarm_core::Store,
}

impl std::fmt::Debug for RaftService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftService")
            .field("started", &self.member.get().is_some())
            .finish()
    }
}

impl RaftService {
    /// Delivers received messages to `inbox`, from the managers `store` says
    /// are raft members; membership requests go to the member in `member` once
    /// it is set.
    pub fn new(inbox: InboxSender, member: MemberSlot, store: swarm_core::Store) -> RaftService {
        RaftService {
            inbox,
            member,
            store,
        }
    }

    /// The tonic server for this service, with limits fit for snapshots.
    pub fn server(self) -> super::proto::raft_server::RaftServer<RaftService> {
        super::proto::raft_server::RaftServer::new(self).max_decoding_message_size(2 * CHUNK)
    }
}

#[tonic::async_trait]
impl Raft for RaftService {
    async fn send(&self, req: Request<Streaming<RaftFrame>>) -> Result<Response<Empty>, Status> {
        let node_id = require_manager(&req)?.node_id.clone();
        // Refused before any frame is read, then checked again per message: a
        // stream outlives a removal.
        sender(&self.store.view(), &node_id)?;
        let mut stream = req.into_inner();
        let mut buf = Vec::new();
        while let Some(frame) = stream.next().await {
            let frame = frame?;
            if buf.len() + frame.chunk.len() > MAX_MESSAGE {
                return Err(Status::resource_exhausted("raft message too large"));
            }
            buf.extend_from_slice(&frame.chunk);
            if frame.last {
                match Message::parse_from_bytes(&buf) {
                    Ok(m) => {
                        sender(&self.store.view(), &node_id)?.check(&node_id, m.from)?;
                        if self.inbox.send(m).is_err() {
                            return Err(Status::unavailable("this raft member is shutting down"));
                        }
                    }
                    Err(e) => {
                        return Err(Status::invalid_argument(format!(
                            "malformed raft message: {e}"
                        )));
                    }
                }
                buf.clear();
            }
        }
        Ok(Response::new(Empty {}))
    }

    async fn members(&self, req: Request<Empty>) -> Result<Response<JoinRaftResponse>, Status> {
        let node_id = require_manager(&req)?.node_id.clone();
        sender(&self.store.view(), &node_id)?;
        let (_, store) = self
            .member
            .get()
            .ok_or_else(|| Status::unavailable("this manager is starting"))?;
        Ok(Response::new(members_of(store)))
    }

    async fn join(
        &self,
        req: Request<JoinRaftRequest>,
    ) -> Result<Response<JoinRaftResponse>, Status> {
        let node_id = require_manager(&req)?.node_id.clone();
        crate::rpc::tls::refuse_removed(&self.store.view(), &node_id)?;
        let JoinRaftRequest { raft_id, addr } = req.into_inner();
        let (raft, store) = self
            .member
            .get()
            .ok_or_else(|| Status::unavailable("this manager is starting"))?;
        if !raft.is_leader() {
            return Err(Status::unavailable("not the leader: ask another manager"));
        }
        let view = store.view();
        crate::rpc::tls::refuse_removed(&view, &node_id)?;
        let Some(node) = view.get::<Node>(&node_id) else {
            return Err(Status::not_found(format!(
                "node {node_id} is not part of this swarm"
            )));
        };
        if node.spec.desired_role != NodeRole::Manager {
            return Err(Status::permission_denied(format!(
                "node {node_id} is not a manager"
            )));
        }
        drop(view);
        if raft_id == 0 || addr.is_empty() {
            return Err(Status::invalid_argument("raft ID and address are required"));
        }
        let already = node
            .manager_status
            .as_ref()
            .is_some_and(|m| m.raft_id == raft_id);
        if !already {
            raft.add_member(raft_id, &addr)
                .await
                .map_err(|e| Status::unavailable(format!("adding the member: {e}")))?;
        }
        let r = store
            .update(|tx| {
                let Some(n) = tx.get::<Node>(&node_id) else {
                    return Ok(());
                };
                let mut n = (*n).clone();
                n.role = NodeRole::Manager;
                n.manager_status = Some(ManagerStatus {
                    raft_id,
                    addr: addr.clone(),
                    leader: false,
                    reachability: Reachability::Reachable,
                });
                tx.update(n).map(drop)
            })
            .await;
        r.map_err(|e| Status::unavailable(e.to_string()))?;
        tracing::info!(node = %node_id, raft_id, addr, "manager joined the raft group");
        Ok(Response::new(members_of(store)))
    }
}

/// Who a manager calling the raft service is, as this member's store says.
#[derive(Debug, PartialEq, Eq)]
enum Sender {
    /// A raft member with this raft ID.
    Member(u64),
    /// A manager not in the raft group yet (joining, or promoted): the raft
    /// IDs other nodes hold are not its to use.
    Joining(Vec<u64>),
    /// This member's store has no swarm yet (it is catching up after joining):
    /// raft alone judges the message.
    NotCaughtUp,
}

impl Sender {
    /// Whether a message from raft ID `from` may come from this sender.
    fn check(&self, node_id: &swarm_core::Id, from: u64) -> Result<(), Status> {
        let ok = match self {
            Sender::Member(id) => *id == from,
            Sender::Joining(taken) => from != 0 && !taken.contains(&from),
            Sender::NotCaughtUp => true,
        };
        if ok {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "permission denied: node {node_id} may not send raft messages as member {from:x}"
            )))
        }
    }
}

/// Who the manager `node_id` is to raft, by `view`: refused when it was removed,
/// is unknown to a store that holds the swarm, or is not a manager now (its
/// certificate may still say it is).
fn sender(view: &swarm_core::Tables, node_id: &swarm_core::Id) -> Result<Sender, Status> {
    crate::rpc::tls::refuse_removed(view, node_id)?;
    let Some(node) = view.get::<Node>(node_id) else {
        if view.cluster().is_none() {
            return Ok(Sender::NotCaughtUp);
        }
        return Err(Status::permission_denied(format!(
            "permission denied: node {node_id} is not part of this swarm"
        )));
    };
    if let Some(ms) = &node.manager_status {
        return Ok(Sender::Member(ms.raft_id));
    }
    if node.role != NodeRole::Manager {
        return Err(Status::permission_denied(format!(
            "permission denied: node {node_id} is not a manager"
        )));
    }
    let taken = view
        .list::<Node>()
        .filter(|n| n.id != *node_id)
        .filter_map(|n| n.manager_status.as_ref().map(|ms| ms.raft_id))
        .collect();
    Ok(Sender::Joining(taken))
}

/// The managers of the swarm in `store`, with their raft IDs and addresses.
fn members_of(store: &swarm_core::Store) -> JoinRaftResponse {
    let statuses: Vec<ManagerStatus> = store
        .view()
        .list::<Node>()
        .filter_map(|n| n.manager_status.clone())
        .collect();
    JoinRaftResponse {
        managers: statuses.iter().map(|m| m.addr.clone()).collect(),
        members: statuses
            .into_iter()
            .map(|m| super::proto::RaftMember {
                raft_id: m.raft_id,
                addr: m.addr,
            })
            .collect(),
    }
}

struct Link {
    addr: String,
    tx: mpsc::Sender<Message>,
    task: JoinHandle<()>,
}

/// Sends this member's raft messages to the other managers over mutual TLS: one
/// stream per peer, re-established with backoff; while a peer cannot be reached
/// its messages are dropped and reported unreachable to the local member.
pub struct RpcTransport {
    me: u64,
    inbox: InboxSender,
    tls: Arc<rustls::ClientConfig>,
    links: Mutex<HashMap<u64, Link>>,
    /// The runtime the links run on: raft may call `set_peer` from its own
    /// thread, whose runtime has no I/O.
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for RpcTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcTransport")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

impl RpcTransport {
    /// A transport for member `me`, whose own inbox is `inbox` (for unreachable
    /// reports), dialling with `tls` (a manager's client settings). Must be
    /// called inside the tokio runtime the links should run on.
    pub fn new(me: u64, inbox: InboxSender, tls: Arc<rustls::ClientConfig>) -> Arc<RpcTransport> {
        Arc::new(RpcTransport {
            me,
            inbox,
            tls,
            links: Mutex::new(HashMap::new()),
            runtime: tokio::runtime::Handle::current(),
        })
    }

    fn report(&self, m: &Message) {
        let report = if m.get_msg_type() == MessageType::MsgSnapshot {
            snapshot_status(self.me, m.to, false)
        } else {
            unreachable(self.me, m.to)
        };
        let _ = self.inbox.send(report);
    }

    fn link(&self, peer: u64, addr: String) -> Link {
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = self.runtime.spawn(run_link(
            self.me,
            peer,
            addr.clone(),
            self.tls.clone(),
            self.inbox.clone(),
            rx,
        ));
        Link { addr, tx, task }
    }
}

impl Transport for RpcTransport {
    fn send(&self, msg: Message) {
        let links = self.links.lock();
        match links.get(&msg.to) {
            Some(link) => {
                if let Err(e) = link.tx.try_send(msg) {
                    let m = match e {
                        mpsc::error::TrySendError::Full(m)
                        | mpsc::error::TrySendError::Closed(m) => m,
                    };
                    drop(links);
                    self.report(&m);
                }
            }
            None => {
                drop(links);
                self.report(&msg);
            }
        }
    }

    fn set_peer(&self, id: u64, addr: Option<&str>) {
        if id == self.me {
            return;
        }
        let mut links = self.links.lock();
        match addr {
            None => {
                if let Some(l) = links.remove(&id) {
                    l.task.abort();
                }
            }
            Some(a) if links.get(&id).is_some_and(|l| l.addr == a) => {}
            Some(a) => {
                let new = self.link(id, a.to_string());
                if let Some(old) = links.insert(id, new) {
                    old.task.abort();
                }
            }
        }
    }
}

impl Drop for RpcTransport {
    fn drop(&mut self) {
        for (_, l) in self.links.lock().drain() {
            l.task.abort();
        }
    }
}

async fn run_link(
    me: u64,
    peer: u64,
    addr: String,
    tls: Arc<rustls::ClientConfig>,
    inbox: InboxSender,
    mut rx: mpsc::Receiver<Message>,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let channel = match channel(&addr, tls.clone(), MANAGER_OU) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(peer, addr, error = %e, "bad raft peer address");
                return;
            }
        };
        let mut client = RaftClient::new(channel).max_encoding_message_size(2 * CHUNK);
        let (ftx, frx) = mpsc::channel::<RaftFrame>(64);
        let call = client.send(tokio_stream::wrappers::ReceiverStream::new(frx));
        tokio::pin!(call);
        let mut sent_any = false;
        loop {
            tokio::select! {
                res = &mut call => {
                    if let Err(e) = res {
                        tracing::debug!(me, peer, addr, error = %e, "raft stream ended");
                    }
                    break;
                }
                msg = rx.recv() => {
                    let Some(m) = msg else { return };
                    let snapshot = m.get_msg_type() == MessageType::MsgSnapshot;
                    let mut ok = true;
                    for f in frames(&m) {
                        if ftx.send(f).await.is_err() {
                            ok = false;
                            break;
                        }
                    }
                    if !ok {
                        let report = if snapshot { snapshot_status(me, peer, false) } else { unreachable(me, peer) };
                        let _ = inbox.send(report);
                        break;
                    }
                    sent_any = true;
                    backoff = Duration::from_millis(50);
                    if snapshot {
                        let _ = inbox.send(snapshot_status(me, peer, true));
                    }
                }
            }
        }
        let _ = inbox.send(unreachable(me, peer));
        // Drop what queued while the link was down: raft resends what matters.
        while rx.try_recv().is_ok() {}
        tokio::time::sleep(if sent_any {
            Duration::from_millis(50)
        } else {
            backoff
        })
        .await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}
