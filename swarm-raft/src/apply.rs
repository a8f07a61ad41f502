//! Applying committed entries: store batches to the store (answering their
//! proposers), membership changes to raft and the address book, and the
//! periodic snapshot that lets the log be compacted.

use std::collections::BTreeMap;

use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeSingle, ConfChangeType, ConfChangeV2, Entry, EntryType};
use raft_engine::LogBatch;
use swarm_core::decode_batch;

use crate::driver::Driver;
use crate::error::{RaftError, Result};
use crate::payload::{decode_conf_context, decode_entry, encode_snapshot};

impl Driver {
    pub(crate) fn set_peers(
        &mut self,
        batch: &mut LogBatch,
        peers: &BTreeMap<u64, String>,
    ) -> Result<()> {
        let old: Vec<u64> = self.raw.store().peers().keys().copied().collect();
        for id in old.into_iter().filter(|id| !peers.contains_key(id)) {
            self.raw.mut_store().set_peer(batch, id, None)?;
            self.transport.set_peer(id, None);
        }
        for (id, addr) in peers {
            self.raw.mut_store().set_peer(batch, *id, Some(addr))?;
            self.transport.set_peer(*id, Some(addr));
        }
        Ok(())
    }

    pub(crate) fn apply(&mut self, batch: &mut LogBatch, entries: Vec<Entry>) -> Result<()> {
        for e in entries {
            if e.index <= self.applied {
                continue;
            }
            match e.get_entry_type() {
                EntryType::EntryNormal => self.apply_normal(&e),
                EntryType::EntryConfChange => {
                    let cc = ConfChange::parse_from_bytes(&e.data).map_err(|err| {
                        RaftError::Storage(format!("conf change at {}: {err}", e.index))
                    })?;
                    let mut single = ConfChangeSingle::default();
                    single.set_change_type(cc.get_change_type());
                    single.node_id = cc.node_id;
                    let mut v2 = ConfChangeV2::default();
                    v2.mut_changes().push(single);
                    self.apply_conf(batch, &v2, &cc.context)?;
                }
                EntryType::EntryConfChangeV2 => {
                    let cc = ConfChangeV2::parse_from_bytes(&e.data).map_err(|err| {
                        RaftError::Storage(format!("conf change at {}: {err}", e.index))
                    })?;
                    self.apply_conf(batch, &cc, &cc.context)?;
                }
            }
            self.applied = e.index;
        }
        Ok(())
    }

    fn apply_normal(&mut self, e: &Entry) {
        if e.data.is_empty() {
            return;
        }
        let Some((origin, batches)) = decode_entry(&e.data) else {
            tracing::warn!(index = e.index, "raft: skipping an undecodable entry");
            return;
        };
        for t in batches {
            let index = self.store.index() + 1;
            let result = decode_batch(t.batch).and_then(|b| self.store.apply(index, &b));
            if origin == self.cfg.id
                && let Some(r) = self.proposals.remove(&t.seq)
            {
                let _ = r.send(result.map(|()| index).map_err(RaftError::Apply));
            }
        }
    }

    fn apply_conf(
        &mut self,
        batch: &mut LogBatch,
        cc: &ConfChangeV2,
        context: &[u8],
    ) -> Result<()> {
        let cs = self.raw.apply_conf_change(cc)?;
        self.raw.mut_store().set_conf_state(batch, &cs)?;
        let (origin, seq, addr) = decode_conf_context(context).unwrap_or_default();
        for change in cc.get_changes() {
            match change.get_change_type() {
                ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                    // raft only installs a snapshot whose configuration holds
                    // the receiver: take one that includes the newcomer.
                    self.snapshot_now = true;
                    if !addr.is_empty() {
                        self.raw
                            .mut_store()
                            .set_peer(batch, change.node_id, Some(&addr))?;
                        self.transport.set_peer(change.node_id, Some(&addr));
                    }
                }
                ConfChangeType::RemoveNode if change.node_id != self.cfg.id => {
                    self.raw.mut_store().set_peer(batch, change.node_id, None)?;
                    self.transport.set_peer(change.node_id, None);
                }
                _ => {}
            }
        }
        if origin == self.cfg.id
            && let Some(r) = self.confs.remove(&seq)
        {
            let _ = r.send(Ok(()));
        }
        Ok(())
    }

    pub(crate) fn maybe_snapshot(&mut self) -> Result<()> {
        let due = self.applied >= self.last_snapshot + self.cfg.snapshot_interval;
        if !(due || self.snapshot_now && self.applied > self.last_snapshot) {
            return Ok(());
        }
        self.snapshot_now = false;
        let data = encode_snapshot(self.raw.store().peers(), &self.store.snapshot());
        self.raw.mut_store().save_snapshot(
            self.applied,
            data,
            self.cfg.log_entries_for_slow_followers,
            self.cfg.keep_old_snapshots,
        )?;
        tracing::debug!(
            id = self.cfg.id,
            index = self.applied,
            "raft: snapshot saved, log compacted"
        );
        self.last_snapshot = self.applied;
        Ok(())
    }
}
