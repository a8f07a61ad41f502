//! The driver: one thread per member that owns the `RawNode`, ticks it, steps
//! incoming messages, batches proposals, persists every ready (one fsync) before
//! sending what depends on it, and hands committed entries to `apply.rs`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use raft::eraftpb::{ConfChange, ConfChangeType, Message, MessageType};
use raft::{RawNode, SnapshotStatus};
use raft_engine::LogBatch;
use swarm_core::Store;
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::Config;
use crate::error::{RaftError, Result};
use crate::node::{Leadership, PeerProgress, Status};
use crate::payload::{decode_snapshot, encode_conf_context, encode_entry};
use crate::storage::DiskStorage;
use crate::transport::{Inbox, Transport};

pub(crate) type Reply<T> = oneshot::Sender<Result<T>>;

/// A request from a handle to the driver.
pub(crate) enum Cmd {
    Propose {
        seq: u64,
        batch: Vec<u8>,
        reply: Reply<u64>,
    },
    Read {
        reply: Reply<()>,
    },
    Conf {
        seq: u64,
        cc: ConfChange,
        addr: String,
        reply: Reply<()>,
    },
    Transfer {
        to: u64,
    },
    Status {
        reply: oneshot::Sender<Status>,
    },
    Stop,
}

pub(crate) struct Driver {
    pub cfg: Config,
    pub raw: RawNode<DiskStorage>,
    pub store: Store,
    pub transport: Arc<dyn Transport>,
    pub inbox: Inbox,
    pub cmds: mpsc::UnboundedReceiver<Cmd>,
    pub leader: watch::Sender<Leadership>,
    pub applied: u64,
    pub last_snapshot: u64,
    pub proposals: HashMap<u64, Reply<u64>>,
    pub confs: HashMap<u64, Reply<()>>,
    pub batch: Vec<(u64, Vec<u8>)>,
    /// Reads sent to the leader, by context, with the tick they were last sent.
    pub reads_sent: HashMap<u64, (Reply<()>, u64)>,
    pub ticks: u64,
    pub reads_ready: Vec<(u64, Reply<()>)>,
    pub next_read: u64,
    /// Set when a member was added: it needs a snapshot holding itself.
    pub snapshot_now: bool,
    /// When each member was last heard from (any message).
    pub heard: HashMap<u64, std::time::Instant>,
}

fn no_leader() -> RaftError {
    RaftError::NotLeader { leader: None }
}

impl Driver {
    pub(crate) async fn run(mut self) {
        let mut ticker = tokio::time::interval(self.cfg.tick_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut inbox_open = true;
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    self.raw.tick();
                    self.proposals.retain(|_, r| !r.is_closed());
                    self.confs.retain(|_, r| !r.is_closed());
                    self.reads_sent.retain(|_, (r, _)| !r.is_closed());
                    self.ticks += 1;
                    self.resend_reads();
                }
                m = self.inbox.recv(), if inbox_open => match m {
                    Some(m) => self.step(m),
                    None => inbox_open = false,
                },
                c = self.cmds.recv() => match c {
                    Some(Cmd::Stop) | None => break,
                    Some(c) => self.command(c),
                },
            }
            for _ in 0..4096 {
                match self.inbox.try_recv() {
                    Ok(m) => self.step(m),
                    Err(_) => break,
                }
            }
            let mut stop = false;
            for _ in 0..4096 {
                match self.cmds.try_recv() {
                    Ok(Cmd::Stop) => {
                        stop = true;
                        break;
                    }
                    Ok(c) => self.command(c),
                    Err(_) => break,
                }
            }
            self.flush_batch();
            if self.raw.has_ready()
                && let Err(e) = self.on_ready()
            {
                tracing::error!(id = self.cfg.id, error = %e, "raft member stops: storage failed");
                break;
            }
            self.publish_leader();
            if stop {
                break;
            }
        }
        tracing::debug!(id = self.cfg.id, "raft driver stopped");
    }

    fn step(&mut self, m: Message) {
        match m.get_msg_type() {
            MessageType::MsgUnreachable => self.raw.report_unreachable(m.from),
            MessageType::MsgSnapStatus => {
                let status = if m.reject {
                    SnapshotStatus::Failure
                } else {
                    SnapshotStatus::Finish
                };
                self.raw.report_snapshot(m.from, status);
            }
            _ => {
                self.heard.insert(m.from, std::time::Instant::now());
                if let Err(e) = self.raw.step(m) {
                    tracing::debug!(id = self.cfg.id, error = %e, "raft: message not stepped");
                }
            }
        }
    }

    /// A leader drops a read that arrives before it committed an entry of its
    /// term: ask again for reads unanswered for a few heartbeats.
    fn resend_reads(&mut self) {
        let every = (self.cfg.heartbeat_tick as u64 * 3).max(3);
        let now = self.ticks;
        let mut again = Vec::new();
        for (ctx, (_, sent)) in self.reads_sent.iter_mut() {
            if now >= *sent + every {
                *sent = now;
                again.push(*ctx);
            }
        }
        for ctx in again {
            self.raw.read_index(ctx.to_le_bytes().to_vec());
        }
    }

    fn leader_id(&self) -> Option<u64> {
        Some(self.raw.raft.leader_id).filter(|l| *l != raft::INVALID_ID)
    }

    fn is_leader(&self) -> bool {
        self.raw.raft.state == raft::StateRole::Leader
    }

    fn command(&mut self, c: Cmd) {
        match c {
            Cmd::Propose { seq, batch, reply } => {
                self.proposals.insert(seq, reply);
                self.batch.push((seq, batch));
                if self.batch.len() >= self.cfg.max_batches_per_entry {
                    self.flush_batch();
                }
            }
            Cmd::Read { reply } => {
                if self.leader_id().is_none() {
                    let _ = reply.send(Err(no_leader()));
                    return;
                }
                self.next_read += 1;
                self.raw.read_index(self.next_read.to_le_bytes().to_vec());
                self.reads_sent.insert(self.next_read, (reply, self.ticks));
            }
            Cmd::Conf {
                seq,
                cc,
                addr,
                reply,
            } => match self.check_conf(&cc) {
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
                Ok(()) => {
                    let mut cc = cc;
                    cc.context = encode_conf_context(self.cfg.id, seq, &addr);
                    match self.raw.propose_conf_change(vec![], cc) {
                        Ok(()) => {
                            self.confs.insert(seq, reply);
                        }
                        Err(e) => {
                            let _ = reply.send(Err(e.into()));
                        }
                    }
                }
            },
            Cmd::Transfer { to } => self.raw.transfer_leader(to),
            Cmd::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Cmd::Stop => {}
        }
    }

    /// Refuses a change that would lose quorum or the last voter.
    fn check_conf(&self, cc: &ConfChange) -> Result<()> {
        if !self.is_leader() {
            return Err(RaftError::NotLeader {
                leader: self.leader_id(),
            });
        }
        if self.raw.raft.has_pending_conf() {
            return Err(RaftError::ChangeInProgress);
        }
        if cc.get_change_type() != ConfChangeType::RemoveNode {
            return Ok(());
        }
        let cs = self.raw.store().conf_state();
        let target = cc.node_id;
        if cs.learners.contains(&target) {
            return Ok(());
        }
        if !cs.voters.contains(&target) {
            return Err(RaftError::NotMember(target));
        }
        let remaining: Vec<u64> = cs.voters.iter().copied().filter(|v| *v != target).collect();
        if remaining.is_empty() {
            return Err(RaftError::LastMember(target));
        }
        let reachable = remaining
            .iter()
            .filter(|v| **v == self.cfg.id || self.recently_heard(**v))
            .count();
        let needed = remaining.len() / 2 + 1;
        if reachable < needed {
            return Err(RaftError::WouldLoseQuorum {
                reachable,
                remaining: remaining.len(),
                needed,
            });
        }
        Ok(())
    }

    /// Heard from `id` within the election timeout.
    fn recently_heard(&self, id: u64) -> bool {
        self.heard
            .get(&id)
            .is_some_and(|t| t.elapsed() < self.cfg.election_timeout())
    }

    fn status(&self) -> Status {
        let cs = self.raw.store().conf_state();
        let mut voters = cs.voters.clone();
        voters.sort_unstable();
        let mut learners = cs.learners.clone();
        learners.sort_unstable();
        let progress = if self.is_leader() {
            self.raw
                .raft
                .prs()
                .iter()
                .map(|(id, p)| {
                    (
                        *id,
                        PeerProgress {
                            matched: p.matched,
                            recent_active: *id == self.cfg.id || self.recently_heard(*id),
                        },
                    )
                })
                .collect()
        } else {
            BTreeMap::new()
        };
        Status {
            id: self.cfg.id,
            leader: self.leader_id(),
            term: self.raw.raft.term,
            commit: self.raw.raft.raft_log.committed,
            applied: self.applied,
            store_index: self.store.index(),
            voters,
            learners,
            progress,
            snapshot_index: self.raw.store().snapshot_meta().index,
            first_index: raft::Storage::first_index(self.raw.store()).unwrap_or(0),
            last_index: raft::Storage::last_index(self.raw.store()).unwrap_or(0),
            snapshot_files: self.raw.store().snapshot_files(),
        }
    }

    /// Packs the queued proposals into one raft entry.
    fn flush_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        let dropped = if self.leader_id().is_none() {
            true
        } else {
            let data = encode_entry(self.cfg.id, &batch);
            self.raw.propose(vec![], data.to_vec()).is_err()
        };
        if dropped {
            for (seq, _) in batch {
                if let Some(r) = self.proposals.remove(&seq) {
                    let _ = r.send(Err(no_leader()));
                }
            }
        }
    }

    fn publish_leader(&mut self) {
        let now = Leadership {
            leader: self.leader_id(),
            term: self.raw.raft.term,
        };
        self.leader.send_if_modified(|l| {
            let changed = *l != now;
            *l = now;
            changed
        });
        if now.leader.is_none() {
            // Reads waiting for a leader will not be answered by this term.
            for (_, (r, _)) in self.reads_sent.drain() {
                let _ = r.send(Err(no_leader()));
            }
        }
    }

    fn send(&self, msgs: Vec<Message>) {
        for m in msgs {
            self.transport.send(m);
        }
    }

    fn on_ready(&mut self) -> Result<()> {
        let mut rd = self.raw.ready();
        self.send(rd.take_messages());
        let mut batch = LogBatch::default();
        let mut sync = rd.must_sync();
        if !rd.snapshot().is_empty() {
            let snap = rd.snapshot().clone();
            let (peers, store_bytes) = decode_snapshot(&snap.data)
                .ok_or_else(|| RaftError::Storage("received a malformed snapshot".into()))?;
            self.raw.mut_store().install_snapshot(&mut batch, &snap)?;
            self.set_peers(&mut batch, &peers)?;
            self.store.restore(store_bytes)?;
            self.applied = snap.get_metadata().index;
            self.last_snapshot = self.applied;
            sync = true;
        }
        let committed = rd.take_committed_entries();
        self.apply(&mut batch, committed)?;
        self.raw.mut_store().append(&mut batch, rd.entries())?;
        if let Some(hs) = rd.hs() {
            self.raw.mut_store().set_hard_state(&mut batch, hs)?;
        }
        if !batch.is_empty() {
            self.raw.store().write(&mut batch, sync)?;
        }
        self.send(rd.take_persisted_messages());
        for rs in rd.take_read_states() {
            let ctx = rs
                .request_ctx
                .as_slice()
                .try_into()
                .map(u64::from_le_bytes)
                .unwrap_or(0);
            if let Some((r, _)) = self.reads_sent.remove(&ctx) {
                self.reads_ready.push((rs.index, r));
            }
        }
        let mut light = self.raw.advance(rd);
        let mut batch = LogBatch::default();
        if let Some(commit) = light.commit_index() {
            let mut hs = self.raw.store().hard_state().clone();
            hs.commit = commit;
            self.raw.mut_store().set_hard_state(&mut batch, &hs)?;
        }
        self.send(light.take_messages());
        let committed = light.take_committed_entries();
        self.apply(&mut batch, committed)?;
        if !batch.is_empty() {
            self.raw.store().write(&mut batch, false)?;
        }
        self.raw.advance_apply();
        let applied = self.applied;
        let (done, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut self.reads_ready)
            .into_iter()
            .partition(|(index, _)| *index <= applied);
        self.reads_ready = wait;
        for (_, r) in done {
            let _ = r.send(Ok(()));
        }
        self.maybe_snapshot()
    }
}
