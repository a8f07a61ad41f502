//! The handle of a raft member: start, propose, read, change membership, stop.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use raft::RawNode;
use raft::eraftpb::{ConfChange, ConfChangeType, ConfState, HardState, Snapshot};
use raft_engine::LogBatch;
use swarm_core::{Proposer, Store, StoreAction, encode_batch};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::config::Config;
use crate::driver::{Cmd, Driver};
use crate::error::{RaftError, Result};
use crate::payload::{decode_snapshot, encode_snapshot};
use crate::storage::DiskStorage;
use crate::transport::{Inbox, Transport};

/// How a member starts when its directory holds no raft state yet. A member
/// whose directory holds state restarts from it and ignores this.
#[derive(Clone, Debug)]
pub enum Start {
    /// Found a new group whose voters are these members (ID → address); every
    /// founding member must be started with the same map.
    NewCluster(BTreeMap<u64, String>),
    /// Join an existing group: wait until its leader adds this member
    /// ([`RaftNode::add_member`]) and sends it the state.
    Join,
}

/// Who leads, as this member sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Leadership {
    /// The leader's ID, if one is known.
    pub leader: Option<u64>,
    /// The current term.
    pub term: u64,
}

/// Replication progress of one member, as the leader tracks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerProgress {
    /// Highest log index known to be on that member.
    pub matched: u64,
    /// Whether the leader heard from it within the last election timeout.
    pub recent_active: bool,
}

/// A member's state, for `docker info`, `docker node ls` and tests.
#[derive(Clone, Debug)]
pub struct Status {
    /// This member.
    pub id: u64,
    /// The leader, if known.
    pub leader: Option<u64>,
    /// Current term.
    pub term: u64,
    /// Highest committed raft index known here.
    pub commit: u64,
    /// Highest raft index applied to the store here.
    pub applied: u64,
    /// The store's own index (one per applied batch; not the raft index).
    pub store_index: u64,
    /// Voting members.
    pub voters: Vec<u64>,
    /// Members receiving the log without a vote (being added).
    pub learners: Vec<u64>,
    /// Progress of every member (only on the leader; empty elsewhere).
    pub progress: BTreeMap<u64, PeerProgress>,
    /// Raft index of the newest snapshot on disk.
    pub snapshot_index: u64,
    /// First index still in the log.
    pub first_index: u64,
    /// Last index in the log.
    pub last_index: u64,
    /// Snapshot files on disk.
    pub snapshot_files: usize,
}

struct Shared {
    id: u64,
    cmds: mpsc::UnboundedSender<Cmd>,
    leader: watch::Receiver<Leadership>,
    store: Store,
    timeout: Duration,
    tick: Duration,
    election_timeout: Duration,
    seq: AtomicU64,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        let _ = self.cmds.send(Cmd::Stop);
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

/// A running raft member. Cloning shares it; [`shutdown`](RaftNode::shutdown)
/// stops it.
///
/// It owns the contents of the store it was started with: the store is
/// restored from the newest snapshot, the log is replayed into it, and the node
/// becomes its [`Proposer`], so every `store.update(..)` goes through consensus.
/// Store indexes count applied batches (several batches share one raft entry),
/// so they differ from raft indexes but are equal on every member.
#[derive(Clone)]
pub struct RaftNode {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RaftNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftNode")
            .field("id", &self.shared.id)
            .finish_non_exhaustive()
    }
}

impl RaftNode {
    /// Opens the member's directory (creating it), restores `store` from it and
    /// starts the driver thread. `store` must be fresh (nothing committed).
    ///
    /// Fails with `Storage` if the directory cannot be opened or is corrupt, and
    /// `InvalidArgument` for bad settings or a new cluster without this member.
    pub fn start(
        cfg: Config,
        store: Store,
        transport: Arc<dyn Transport>,
        inbox: Inbox,
        start: Start,
    ) -> Result<RaftNode> {
        cfg.validate()?;
        std::fs::create_dir_all(&cfg.dir)?;
        let mut storage = DiskStorage::open(&cfg.dir)?;
        if storage.is_empty()
            && let Start::NewCluster(voters) = &start
        {
            bootstrap(&mut storage, cfg.id, voters)?;
        }
        for (id, addr) in storage.peers() {
            transport.set_peer(*id, Some(addr));
        }
        let meta = storage.snapshot_meta().clone();
        if meta.index > 0 {
            let snap = raft::Storage::snapshot(&storage, 0, cfg.id)?;
            let (_, bytes) = decode_snapshot(&snap.data)
                .ok_or_else(|| RaftError::Storage("the snapshot on disk is malformed".into()))?;
            store.restore(bytes)?;
        }
        let raw = RawNode::new(
            &cfg.raft_config(meta.index),
            storage,
            &crate::log::logger(cfg.id),
        )?;
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (leader_tx, leader_rx) = watch::channel(Leadership::default());
        let driver = Driver {
            cfg: cfg.clone(),
            raw,
            store: store.clone(),
            transport,
            inbox,
            cmds: cmd_rx,
            leader: leader_tx,
            applied: meta.index,
            last_snapshot: meta.index,
            proposals: HashMap::new(),
            confs: HashMap::new(),
            batch: Vec::new(),
            reads_sent: HashMap::new(),
            ticks: 0,
            reads_ready: Vec::new(),
            next_read: 0,
            snapshot_now: false,
            heard: HashMap::new(),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()?;
        let thread = std::thread::Builder::new()
            .name(format!("raft-{}", cfg.id))
            .spawn(move || rt.block_on(driver.run()))?;
        let node = RaftNode {
            shared: Arc::new(Shared {
                id: cfg.id,
                cmds: cmd_tx,
                leader: leader_rx,
                store: store.clone(),
                timeout: cfg.request_timeout,
                tick: cfg.tick_interval,
                election_timeout: cfg.election_timeout(),
                seq: AtomicU64::new(1),
                thread: Mutex::new(Some(thread)),
            }),
        };
        store.set_proposer(Arc::new(node.clone()));
        Ok(node)
    }

    /// This member's ID.
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// The store this member feeds.
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// Who leads now.
    pub fn leadership(&self) -> Leadership {
        *self.shared.leader.borrow()
    }

    /// Follows leadership changes.
    pub fn watch_leadership(&self) -> watch::Receiver<Leadership> {
        self.shared.leader.clone()
    }

    /// Whether this member leads.
    pub fn is_leader(&self) -> bool {
        self.leadership().leader == Some(self.shared.id)
    }

    /// Waits until some leader is known, up to `timeout`.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<u64> {
        let mut rx = self.shared.leader.clone();
        match tokio::time::timeout(timeout, rx.wait_for(|l| l.leader.is_some())).await {
            Ok(Ok(l)) => Ok(l.leader.unwrap_or_default()),
            Ok(Err(_)) => Err(RaftError::Stopped),
            Err(_) => Err(RaftError::NoQuorum(format!(
                "no leader elected within {timeout:?}"
            ))),
        }
    }

    /// Stops the driver (after its current step). Later calls fail with
    /// `Stopped`, and so do writes to the store: it never commits on its own
    /// again, which would make it diverge from the group. Call it before
    /// dropping the last handle: the store holds the node until then.
    pub fn shutdown(&self) {
        self.shared.store.set_proposer(Arc::new(Stopped));
        let _ = self.shared.cmds.send(Cmd::Stop);
        if let Some(t) = self.shared.thread.lock().take() {
            let _ = t.join();
        }
    }

    fn next_seq(&self) -> u64 {
        self.shared.seq.fetch_add(1, Ordering::Relaxed)
    }

    async fn call<T>(
        &self,
        deadline: Instant,
        make: impl Fn(oneshot::Sender<Result<T>>) -> Cmd,
    ) -> Result<T> {
        loop {
            let (tx, rx) = oneshot::channel();
            self.shared
                .cmds
                .send(make(tx))
                .map_err(|_| RaftError::Stopped)?;
            match tokio::time::timeout_at(deadline, rx).await {
                Err(_) => return Err(self.timed_out()),
                Ok(Err(_)) => return Err(RaftError::Stopped),
                Ok(Ok(Err(RaftError::NotLeader { leader: None }))) => {
                    // No leader: an election is running, or this member is cut
                    // off. An election ends within two election timeouts, so
                    // waiting longer only delays the NoQuorum answer.
                    let mut rx = self.shared.leader.clone();
                    let wait = rx.wait_for(|l| l.leader.is_some());
                    let give_up = deadline.min(Instant::now() + self.shared.election_timeout * 2);
                    if tokio::time::timeout_at(give_up, wait).await.is_err() {
                        return Err(self.timed_out());
                    }
                    tokio::time::sleep(self.shared.tick).await;
                }
                Ok(Ok(Err(RaftError::ChangeInProgress))) => {
                    // The previous membership change (or a new leader's first
                    // entry) is not applied yet: try again shortly.
                    if Instant::now() + self.shared.tick >= deadline {
                        return Err(RaftError::ChangeInProgress);
                    }
                    tokio::time::sleep(self.shared.tick).await;
                }
                Ok(Ok(r)) => return r,
            }
        }
    }

    fn timed_out(&self) -> RaftError {
        if self.leadership().leader.is_none() {
            RaftError::NoQuorum(format!(
                "member {} has no leader: it cannot reach a quorum of the group",
                self.shared.id
            ))
        } else {
            RaftError::Timeout(self.shared.timeout)
        }
    }

    /// Replicates an encoded batch ([`swarm_core::encode_batch`]) and waits until it
    /// is applied here: its store index, or the error the store gave applying it.
    /// Followers forward to the leader; concurrent calls share raft entries.
    pub async fn propose_encoded(&self, batch: Vec<u8>) -> Result<u64> {
        let deadline = Instant::now() + self.shared.timeout;
        self.call(deadline, |reply| Cmd::Propose {
            seq: self.next_seq(),
            batch: batch.clone(),
            reply,
        })
        .await
    }

    /// Waits until this member's store holds every write committed before the
    /// call (ReadIndex): reading `store().view()` afterwards is linearizable.
    pub async fn read_index(&self) -> Result<()> {
        let deadline = Instant::now() + self.shared.timeout;
        self.call(deadline, |reply| Cmd::Read { reply }).await
    }

    /// This member's state.
    pub async fn status(&self) -> Result<Status> {
        let (tx, rx) = oneshot::channel();
        self.shared
            .cmds
            .send(Cmd::Status { reply: tx })
            .map_err(|_| RaftError::Stopped)?;
        rx.await.map_err(|_| RaftError::Stopped)
    }

    async fn conf(&self, kind: ConfChangeType, id: u64, addr: &str) -> Result<()> {
        let deadline = Instant::now() + self.shared.timeout;
        let mut cc = ConfChange::default();
        cc.set_change_type(kind);
        cc.node_id = id;
        let addr = addr.to_string();
        self.call(deadline, |reply| Cmd::Conf {
            seq: self.next_seq(),
            cc: cc.clone(),
            addr: addr.clone(),
            reply,
        })
        .await
    }

    /// Adds member `id` (reachable at `addr`) as a voter. Run on the leader. The
    /// member is first added without a vote, and promoted once it has caught up
    /// with the log, so a slow newcomer never stalls the quorum. IDs must never
    /// be reused. Already a voter: nothing to do.
    pub async fn add_member(&self, id: u64, addr: &str) -> Result<()> {
        if id == 0 {
            return Err(RaftError::InvalidArgument("member id must not be 0".into()));
        }
        let status = self.status().await?;
        if status.voters.contains(&id) {
            return Ok(());
        }
        if !status.learners.contains(&id) {
            self.conf(ConfChangeType::AddLearnerNode, id, addr).await?;
        }
        let deadline = Instant::now() + self.shared.timeout;
        loop {
            let s = self.status().await?;
            if s.leader != Some(self.shared.id) {
                return Err(RaftError::NotLeader { leader: s.leader });
            }
            if s.progress.get(&id).is_some_and(|p| p.matched >= s.commit) {
                break;
            }
            if Instant::now() >= deadline {
                return Err(RaftError::Timeout(self.shared.timeout));
            }
            tokio::time::sleep(self.shared.tick).await;
        }
        self.conf(ConfChangeType::AddNode, id, addr).await
    }

    /// Removes (demotes) member `id`. Run on the leader. Refused with
    /// `LastMember` for the last voter, and `WouldLoseQuorum` when the voters
    /// left that the leader can reach are fewer than their quorum. Removing the
    /// leader itself first hands leadership to the most up-to-date voter and
    /// returns `NotLeader` naming it: ask the new leader to remove this member.
    /// Like [`add_member`](RaftNode::add_member), it waits (up to the request
    /// timeout) for an earlier membership change to be applied first.
    pub async fn remove_member(&self, id: u64) -> Result<()> {
        let status = self.status().await?;
        if status.leader != Some(self.shared.id) {
            return Err(RaftError::NotLeader {
                leader: status.leader,
            });
        }
        if id != self.shared.id {
            return self.conf(ConfChangeType::RemoveNode, id, "").await;
        }
        let others: Vec<u64> = status.voters.iter().copied().filter(|v| *v != id).collect();
        if others.is_empty() {
            return Err(RaftError::LastMember(id));
        }
        let best = others
            .iter()
            .filter_map(|v| {
                status
                    .progress
                    .get(v)
                    .filter(|p| p.recent_active)
                    .map(|p| (p.matched, *v))
            })
            .max()
            .map(|(_, v)| v);
        let Some(to) = best else {
            return Err(RaftError::WouldLoseQuorum {
                reachable: 1,
                remaining: others.len(),
                needed: others.len() / 2 + 1,
            });
        };
        let leader = self.transfer_leadership(to).await?;
        Err(RaftError::NotLeader {
            leader: Some(leader),
        })
    }

    /// Hands leadership to member `to` and waits until some other member leads
    /// (up to the request timeout): the new leader.
    pub async fn transfer_leadership(&self, to: u64) -> Result<u64> {
        let deadline = Instant::now() + self.shared.timeout;
        let me = self.shared.id;
        let mut rx = self.shared.leader.clone();
        loop {
            self.shared
                .cmds
                .send(Cmd::Transfer { to })
                .map_err(|_| RaftError::Stopped)?;
            let step = (deadline - Instant::now()).min(self.shared.tick * 20);
            let wait = rx.wait_for(|l| l.leader.is_some_and(|l| l != me));
            if let Ok(Ok(l)) = tokio::time::timeout(step, wait).await {
                return Ok(l.leader.unwrap_or_default());
            }
            if Instant::now() >= deadline {
                return Err(RaftError::Timeout(self.shared.timeout));
            }
        }
    }
}

/// The proposer of a store whose member has stopped.
struct Stopped;

#[async_trait]
impl Proposer for Stopped {
    async fn propose(&self, _batch: Vec<StoreAction>) -> swarm_core::Result<u64> {
        Err(RaftError::Stopped.into())
    }
}

#[async_trait]
impl Proposer for RaftNode {
    async fn propose(&self, batch: Vec<StoreAction>) -> swarm_core::Result<u64> {
        Ok(self.propose_encoded(encode_batch(&batch)).await?)
    }
}

/// Writes the founding state: a snapshot at index 1 holding the voters and an
/// empty store, so members added later receive the configuration with it.
fn bootstrap(storage: &mut DiskStorage, me: u64, voters: &BTreeMap<u64, String>) -> Result<()> {
    if !voters.contains_key(&me) {
        return Err(RaftError::InvalidArgument(format!(
            "a new cluster must list this member ({me}) among its voters"
        )));
    }
    let mut snap = Snapshot::default();
    let meta = snap.mut_metadata();
    meta.index = 1;
    meta.term = 1;
    meta.set_conf_state(ConfState::from((
        voters.keys().copied().collect::<Vec<_>>(),
        vec![],
    )));
    snap.data = encode_snapshot(voters, &Store::new().snapshot()).into();
    let mut batch = LogBatch::default();
    storage.install_snapshot(&mut batch, &snap)?;
    for (id, addr) in voters {
        storage.set_peer(&mut batch, *id, Some(addr))?;
    }
    let hs = HardState {
        term: 1,
        commit: 1,
        ..Default::default()
    };
    storage.set_hard_state(&mut batch, &hs)?;
    storage.write(&mut batch, true)
}
