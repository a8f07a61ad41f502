//! Swarm's core: the object model and the replicated state machine.
//!
//! Every manager of a swarm holds a [`Store`]: indexed tables of nodes, services,
//! tasks, networks, secrets, configs and the cluster object, changed only by
//! batches of [`StoreAction`]s. A batch applies all or nothing, and applying the
//! same batches in the same order gives the same state on every manager
//! ([`Store::apply`]), which is what consensus (swarm-raft) needs. Writers use
//! transactions with optimistic concurrency; readers take lock-free snapshots
//! ([`View`]); the leader's loops follow changes through watches.
//!
//! This crate does no I/O and depends on no other swarm crate.
//!
//! ```
//! use futures::StreamExt;
//! use swarm_core::{Filter, Kind, Store, types::*};
//!
//! # futures::executor::block_on(async {
//! let store = Store::new();
//! let mut tasks = store.watch(Filter::kinds([Kind::Task]));
//!
//! // One transaction: a service and its first task.
//! let (svc, task) = store.update(|tx| {
//!     let svc = tx.create(Service {
//!         spec: ServiceSpec { annotations: Annotations::named("redis"), ..Default::default() },
//!         ..Default::default()
//!     })?;
//!     let task = tx.create(Task { service_id: svc.id.clone(), slot: 1, ..Default::default() })?;
//!     Ok((svc, task))
//! }).await?;
//!
//! // Watchers see the committed change, with its version.
//! let event = tasks.next().await.unwrap();
//! assert_eq!(event.version, store.index());
//!
//! // Optimistic concurrency: an update carries the version it read.
//! let mut running = (*store.view().get::<Task>(&task.id).unwrap()).clone();
//! running.status.state = TaskState::Running;
//! store.update(|tx| tx.update(running.clone())).await?;
//! let stale = store.update(|tx| tx.update(running)).await;
//! assert!(matches!(stale, Err(swarm_core::Error::Conflict { .. })));
//!
//! assert_eq!(store.view().tasks_by_service(&svc.id).count(), 1);
//! # Ok::<(), swarm_core::Error>(())
//! # }).unwrap();
//! ```
#![deny(missing_docs)]

mod error;
mod id;
mod store;
mod time;
pub mod types;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use error::{Error, Result};
pub use id::{ID_LEN, Id};
pub use store::{
    Action, Change, Event, Filter, Kind, Object, Proposer, Store, StoreAction, StoreObject, Table,
    Tables, Tx, View, Watch, decode_batch, encode_batch,
};
pub use time::{Clock, ManualClock, SystemClock, Timestamp};
