//! Durable raft state on tikv's raft-engine: log entries, hard state, conf state,
//! the latest snapshot's metadata (its bytes live in `snap/`) and the address book.
//!
//! Layout: raft group [`META`] holds the key-values; the entries live in their own
//! group whose ID changes whenever a received snapshot replaces the whole log, so
//! a stale tail can never show through.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};
use raft_engine::{Command, Engine, LogBatch, MessageExt, ReadableSize};

use crate::error::{RaftError, Result};
use crate::snapfile::SnapDir;

const META: u64 = 1;
const FIRST_LOG_GROUP: u64 = 2;
const CACHE_MAX: usize = 8192;

#[derive(Clone)]
struct EntryExt;

impl MessageExt for EntryExt {
    type Entry = Entry;

    fn index(e: &Entry) -> u64 {
        e.index
    }
}

/// raft's [`Storage`](raft::Storage) on disk. Writes go through a [`LogBatch`]
/// that the driver commits with one fsync per ready.
pub(crate) struct DiskStorage {
    engine: Arc<Engine>,
    snaps: SnapDir,
    hs: HardState,
    cs: ConfState,
    snap_meta: SnapshotMetadata,
    snap_data: Bytes,
    log: u64,
    first: u64,
    last: u64,
    /// Index and term of the entry just before `first`.
    trunc: (u64, u64),
    cache: VecDeque<Entry>,
    peers: BTreeMap<u64, String>,
}

fn storage_err(e: impl std::fmt::Display) -> raft::Error {
    raft::Error::Store(StorageError::Other(e.to_string().into()))
}

fn u64s(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
        .collect()
}

impl DiskStorage {
    /// Opens (or creates) the storage under `dir`; a torn tail of the log is cut off.
    pub(crate) fn open(dir: &Path) -> Result<DiskStorage> {
        let cfg = raft_engine::Config {
            dir: dir.join("log").to_string_lossy().into_owned(),
            target_file_size: ReadableSize::mb(32),
            purge_threshold: ReadableSize::mb(128),
            ..Default::default()
        };
        let engine = Arc::new(Engine::open(cfg)?);
        let snaps = SnapDir::open(dir.join("snap"))?;
        let hs: HardState = engine.get_message(META, b"hs")?.unwrap_or_default();
        let cs: ConfState = engine.get_message(META, b"cs")?.unwrap_or_default();
        let snap_meta: SnapshotMetadata = engine.get_message(META, b"snap")?.unwrap_or_default();
        let log = engine
            .get(META, b"log")
            .and_then(|b| u64s(&b).first().copied())
            .unwrap_or(FIRST_LOG_GROUP);
        let trunc = match engine.get(META, b"trunc").map(|b| u64s(&b)) {
            Some(v) if v.len() == 2 => (v[0], v[1]),
            _ => (snap_meta.index, snap_meta.term),
        };
        let snap_data = if snap_meta.index > 0 {
            Bytes::from(snaps.read(snap_meta.index, snap_meta.term)?)
        } else {
            Bytes::new()
        };
        let peers = engine
            .get(META, b"peers")
            .map(|b| decode_peers(&b))
            .unwrap_or_default();
        let first = engine.first_index(log).unwrap_or(trunc.0 + 1);
        let last = engine.last_index(log).unwrap_or(trunc.0);
        let mut s = DiskStorage {
            engine,
            snaps,
            hs,
            cs,
            snap_meta,
            snap_data,
            log,
            first,
            last,
            trunc,
            cache: VecDeque::new(),
            peers,
        };
        let from = s.last.saturating_sub(CACHE_MAX as u64 / 2).max(s.first);
        if from <= s.last {
            let mut ents = Vec::new();
            s.engine
                .fetch_entries_to::<EntryExt>(s.log, from, s.last + 1, None, &mut ents)?;
            s.cache.extend(ents);
        }
        Ok(s)
    }

    /// Whether nothing was ever persisted (a new member).
    pub(crate) fn is_empty(&self) -> bool {
        self.hs == HardState::default() && self.cs == ConfState::default() && self.last == 0
    }

    /// Commits `batch` (with an fsync when `sync`).
    pub(crate) fn write(&self, batch: &mut LogBatch, sync: bool) -> Result<()> {
        self.engine.write(batch, sync)?;
        Ok(())
    }

    pub(crate) fn hard_state(&self) -> &HardState {
        &self.hs
    }

    pub(crate) fn conf_state(&self) -> &ConfState {
        &self.cs
    }

    pub(crate) fn snapshot_meta(&self) -> &SnapshotMetadata {
        &self.snap_meta
    }

    pub(crate) fn peers(&self) -> &BTreeMap<u64, String> {
        &self.peers
    }

    pub(crate) fn snapshot_files(&self) -> usize {
        self.snaps.count()
    }

    pub(crate) fn append(&mut self, batch: &mut LogBatch, ents: &[Entry]) -> Result<()> {
        let Some(head) = ents.first() else {
            return Ok(());
        };
        batch.add_entries::<EntryExt>(self.log, ents)?;
        while self.cache.back().is_some_and(|e| e.index >= head.index) {
            self.cache.pop_back();
        }
        if self.cache.back().is_some_and(|e| e.index + 1 != head.index) {
            self.cache.clear();
        }
        self.cache.extend(ents.iter().cloned());
        while self.cache.len() > CACHE_MAX {
            self.cache.pop_front();
        }
        self.last = ents[ents.len() - 1].index;
        Ok(())
    }

    pub(crate) fn set_hard_state(&mut self, batch: &mut LogBatch, hs: &HardState) -> Result<()> {
        batch.put_message(META, b"hs".to_vec(), hs)?;
        self.hs = hs.clone();
        Ok(())
    }

    pub(crate) fn set_conf_state(&mut self, batch: &mut LogBatch, cs: &ConfState) -> Result<()> {
        batch.put_message(META, b"cs".to_vec(), cs)?;
        self.cs = cs.clone();
        Ok(())
    }

    pub(crate) fn set_peer(
        &mut self,
        batch: &mut LogBatch,
        id: u64,
        addr: Option<&str>,
    ) -> Result<()> {
        match addr {
            Some(a) => self.peers.insert(id, a.to_string()),
            None => self.peers.remove(&id),
        };
        batch.put(META, b"peers".to_vec(), encode_peers(&self.peers))?;
        Ok(())
    }

    /// Replaces the whole log by a snapshot received from the leader.
    pub(crate) fn install_snapshot(&mut self, batch: &mut LogBatch, snap: &Snapshot) -> Result<()> {
        let meta = snap.get_metadata();
        self.snaps.write(meta.index, meta.term, &snap.data)?;
        batch.add_command(self.log, Command::Clean);
        self.log += 1;
        batch.put(META, b"log".to_vec(), self.log.to_le_bytes().to_vec())?;
        batch.put_message(META, b"snap".to_vec(), meta)?;
        batch.put(
            META,
            b"trunc".to_vec(),
            [meta.index.to_le_bytes(), meta.term.to_le_bytes()].concat(),
        )?;
        self.set_conf_state(batch, meta.get_conf_state())?;
        self.snap_meta = meta.clone();
        self.snap_data = snap.data.clone();
        self.trunc = (meta.index, meta.term);
        self.first = meta.index + 1;
        self.last = meta.index;
        self.cache.clear();
        Ok(())
    }

    /// Saves a snapshot of the applied state at `index` and compacts the log behind
    /// it, keeping `keep_entries` entries for slow followers and `keep_old` older
    /// snapshot files.
    pub(crate) fn save_snapshot(
        &mut self,
        index: u64,
        data: Vec<u8>,
        keep_entries: u64,
        keep_old: u64,
    ) -> Result<()> {
        let term = raft::Storage::term(self, index)?;
        self.snaps.write(index, term, &data)?;
        let mut meta = SnapshotMetadata {
            index,
            term,
            ..Default::default()
        };
        meta.set_conf_state(self.cs.clone());
        let mut batch = LogBatch::default();
        batch.put_message(META, b"snap".to_vec(), &meta)?;
        let new_first = (index + 1).saturating_sub(keep_entries).max(self.first);
        if new_first > self.first {
            let t = raft::Storage::term(self, new_first - 1)?;
            batch.add_command(self.log, Command::Compact { index: new_first });
            batch.put(
                META,
                b"trunc".to_vec(),
                [(new_first - 1).to_le_bytes(), t.to_le_bytes()].concat(),
            )?;
            self.trunc = (new_first - 1, t);
            self.first = new_first;
            while self.cache.front().is_some_and(|e| e.index < new_first) {
                self.cache.pop_front();
            }
        }
        self.engine.write(&mut batch, true)?;
        self.snap_meta = meta;
        self.snap_data = Bytes::from(data);
        self.snaps.prune(keep_old)?;
        self.engine.purge_expired_files()?;
        Ok(())
    }

    fn cached(&self, idx: u64) -> Option<&Entry> {
        let front = self.cache.front()?.index;
        if idx < front {
            return None;
        }
        self.cache.get((idx - front) as usize)
    }
}

impl raft::Storage for DiskStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(self.hs.clone(), self.cs.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let max_size = max_size.into();
        let mut ents = Vec::with_capacity((high - low) as usize);
        if self.cached(low).is_some() {
            ents.extend((low..high).filter_map(|i| self.cached(i).cloned()));
        } else {
            self.engine
                .fetch_entries_to::<EntryExt>(self.log, low, high, None, &mut ents)
                .map_err(storage_err)?;
        }
        if ents.len() as u64 != high - low {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        raft::util::limit_size(&mut ents, max_size);
        Ok(ents)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.trunc.0 {
            return Ok(self.trunc.1);
        }
        if idx == self.snap_meta.index {
            return Ok(self.snap_meta.term);
        }
        if idx < self.first {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.last {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        if let Some(e) = self.cached(idx) {
            return Ok(e.term);
        }
        match self
            .engine
            .get_entry::<EntryExt>(self.log, idx)
            .map_err(storage_err)?
        {
            Some(e) => Ok(e.term),
            None => Err(raft::Error::Store(StorageError::Unavailable)),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last)
    }

    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let mut snap = Snapshot {
            data: self.snap_data.clone(),
            ..Default::default()
        };
        snap.set_metadata(self.snap_meta.clone());
        Ok(snap)
    }
}

fn encode_peers(peers: &BTreeMap<u64, String>) -> Vec<u8> {
    let mut out = Vec::new();
    for (id, addr) in peers {
        out.extend_from_slice(format!("{id} {addr}\n").as_bytes());
    }
    out
}

fn decode_peers(bytes: &[u8]) -> BTreeMap<u64, String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter_map(|l| {
            let (id, addr) = l.split_once(' ')?;
            Some((id.parse().ok()?, addr.to_string()))
        })
        .collect()
}

impl From<RaftError> for raft::Error {
    fn from(e: RaftError) -> Self {
        storage_err(e)
    }
}

#[cfg(test)]
mod tests {
    use raft::Storage;

    use super::*;

    fn entries(from: u64, to: u64, term: u64) -> Vec<Entry> {
        (from..=to)
            .map(|index| Entry {
                index,
                term,
                data: Bytes::from(index.to_le_bytes().to_vec()),
                ..Default::default()
            })
            .collect()
    }

    fn append(s: &mut DiskStorage, ents: &[Entry]) {
        let mut b = LogBatch::default();
        s.append(&mut b, ents).unwrap();
        s.write(&mut b, true).unwrap();
    }

    fn ctx() -> GetEntriesContext {
        GetEntriesContext::empty(false)
    }

    #[test]
    fn entries_survive_reopen_compaction_and_snapshot_install() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = DiskStorage::open(tmp.path()).unwrap();
        assert!(s.is_empty());
        append(&mut s, &entries(1, 100, 1));
        // A conflicting suffix from a new leader replaces the tail.
        append(&mut s, &entries(90, 95, 2));
        assert_eq!(s.last_index().unwrap(), 95);
        drop(s);

        let mut s = DiskStorage::open(tmp.path()).unwrap();
        assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (1, 95));
        assert_eq!(s.term(89).unwrap(), 1);
        assert_eq!(s.term(90).unwrap(), 2);
        let got = s.entries(10, 20, None, ctx()).unwrap();
        assert_eq!(got, entries(10, 19, 1));

        s.save_snapshot(80, b"state".to_vec(), 10, 0).unwrap();
        assert_eq!(s.first_index().unwrap(), 71);
        assert_eq!(s.term(70).unwrap(), 1);
        assert!(matches!(
            s.entries(60, 70, None, ctx()),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        drop(s);

        let mut s = DiskStorage::open(tmp.path()).unwrap();
        assert_eq!(
            (s.first_index().unwrap(), s.last_index().unwrap()),
            (71, 95)
        );
        let snap = s.snapshot(0, 2).unwrap();
        assert_eq!(
            (snap.get_metadata().index, &snap.data[..]),
            (80, &b"state"[..])
        );

        // A snapshot from the leader beyond the log replaces the whole log.
        let mut leader_snap = Snapshot::default();
        leader_snap.mut_metadata().index = 500;
        leader_snap.mut_metadata().term = 3;
        leader_snap.data = Bytes::from_static(b"newer");
        let mut b = LogBatch::default();
        s.install_snapshot(&mut b, &leader_snap).unwrap();
        s.write(&mut b, true).unwrap();
        assert_eq!(
            (s.first_index().unwrap(), s.last_index().unwrap()),
            (501, 500)
        );
        assert_eq!(s.term(500).unwrap(), 3);
        append(&mut s, &entries(501, 510, 3));
        drop(s);

        let s = DiskStorage::open(tmp.path()).unwrap();
        assert_eq!(
            (s.first_index().unwrap(), s.last_index().unwrap()),
            (501, 510)
        );
        assert_eq!(
            s.entries(501, 511, None, ctx()).unwrap(),
            entries(501, 510, 3)
        );
        assert_eq!(&s.snapshot(0, 2).unwrap().data[..], b"newer");
    }

    #[test]
    fn entries_beyond_the_cache_come_from_disk() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = DiskStorage::open(tmp.path()).unwrap();
        let total = CACHE_MAX as u64 + 100;
        append(&mut s, &entries(1, total, 1));
        assert_eq!(s.entries(1, 51, None, ctx()).unwrap(), entries(1, 50, 1));
        assert_eq!(s.term(3).unwrap(), 1);
        // max_size keeps at least one entry.
        assert_eq!(s.entries(1, 51, Some(1), ctx()).unwrap().len(), 1);
    }
}
