//! Consensus for Swarm managers on tikv's `raft` crate.
//!
//! A [`RaftNode`] is one member of a raft group: it keeps the log, hard state and
//! snapshots on disk (tikv's raft-engine, fsync on every write), feeds committed
//! batches to a [`swarm_core::Store`] in order, and becomes that store's
//! [`Proposer`](swarm_core::Proposer), so `store.update(..)` goes through consensus.
//!
//! ```text
//!  store.update ─► RaftNode::propose ─► driver thread ──► RawNode (tikv raft)
//!                        ▲                 │ ready: persist (raft-engine, fsync)
//!                        │                 │        then send (Transport)
//!                 resolved with the        ▼
//!                 store index ◄── apply committed entries ─► Store::apply
//! ```
//!
//! Glossary: *member* = a manager's raft identity (a non-zero u64, never reused);
//! *entry* = one raft log record, holding many store batches; *snapshot* = the
//! store's bytes at a raft index, taken every `snapshot_interval` entries;
//! *ReadIndex* = asking the leader which index a read must wait for.
//!
//! Tests and benches of groups use the harness of `testing` (feature
//! `testing`): groups on temp directories over the in-process network or
//! loopback TCP, and the suite a new [`Transport`] must pass.
//!
//! # Tutorial: a one-member group
//!
//! ```
//! use std::collections::BTreeMap;
//! use std::time::Duration;
//! use swarm_core::{Store, types::{Annotations, RaftConfig, Service, ServiceSpec}};
//! use swarm_raft::{Config, MemNetwork, RaftNode, Start};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! // Settings from the cluster spec; tick faster than the default 100 ms.
//! let mut cfg = Config::new(1, dir.path(), &RaftConfig::default());
//! cfg.tick_interval = Duration::from_millis(10);
//!
//! // Member 1, alone on an in-process network (TcpTransport for real sockets).
//! let net = MemNetwork::new();
//! let (transport, inbox) = net.join(1);
//! let store = Store::new();
//! let voters = BTreeMap::from([(1, "member-1".to_string())]);
//! let node = RaftNode::start(cfg.clone(), store.clone(), transport, inbox, Start::NewCluster(voters))?;
//! node.wait_for_leader(Duration::from_secs(5)).await?;
//!
//! // The store now writes through raft: durable once `update` returns.
//! let spec = ServiceSpec { annotations: Annotations::named("web"), ..Default::default() };
//! store.update(|tx| tx.create(Service { spec, ..Default::default() })).await?;
//! node.read_index().await?; // a linearizable read point
//! assert!(store.view().resolve::<Service>("web").is_ok());
//! node.shutdown();
//!
//! // Restart from the same directory: the write is still there.
//! let store = Store::new();
//! let (transport, inbox) = net.join(1);
//! let node = RaftNode::start(cfg, store.clone(), transport, inbox, swarm_raft::Start::Join)?;
//! node.wait_for_leader(Duration::from_secs(5)).await?;
//! node.read_index().await?;
//! assert!(store.view().resolve::<Service>("web").is_ok());
//! node.shutdown();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
#![deny(missing_docs)]

mod apply;
mod config;
mod driver;
mod error;
mod log;
mod node;
mod payload;
mod snapfile;
mod storage;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod transport;

pub use config::Config;
pub use error::{RaftError, Result};
pub use node::{Leadership, PeerProgress, RaftNode, Start, Status};
pub use raft::eraftpb::{Message, MessageType};
pub use transport::{
    Inbox, InboxSender, MemNetwork, MemTransport, TcpTransport, Transport, snapshot_status,
    unreachable,
};
