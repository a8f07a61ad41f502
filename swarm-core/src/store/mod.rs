//! The store: the replicated state machine every manager holds.
//!
//! ```text
//!  writer ──update(|tx| ..)──► Tx (private copy, reads see own writes)
//!                                 │ batch of StoreActions
//!            no proposer ─────────┼──────── proposer (raft) ──► committed entry
//!                                 ▼                                  │
//!                      apply at index+1                  Store::apply(index, batch)
//!                                 └──────────► new Tables ◄──────────┘
//!                                                  │ changes, in commit order
//!                                                  ▼
//!                                          watchers (Filter)
//! ```

mod apply;
mod codec;
mod object;
mod retry;
mod snapshot;
mod table;
mod tx;
mod watch;

use std::ops::Deref;
use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};

pub use codec::{decode_batch, encode_batch};
pub use object::{Kind, Object, StoreAction, StoreObject};
pub use table::{Table, Tables};
pub use tx::Tx;
pub use watch::{Action, Change, Event, Filter, Watch};

use crate::error::{Error, Result};
use crate::time::{Clock, SystemClock};
use watch::Watchers;

/// Replicates batches of store actions: the boundary between the store and
/// consensus (swarm-raft implements it; a store without one commits locally).
///
/// # Contract
/// `propose` resolves `Ok(index)` only once the batch has been committed and
/// applied to *this* member's store through [`Store::apply`] at `index`. If the
/// apply failed (a stale version, a taken name), it resolves with that error and
/// nothing was changed. `Err(NotLeader)` and `Err(Unavailable)` mean the batch may
/// or may not commit later; they must not be returned for a batch known to be
/// applied. It must never hang forever: give up with `Unavailable` after a timeout.
///
/// So whichever way a committed batch resolves, it resolves after its apply on
/// this member's store, when every batch committed before it is applied there
/// too: after a `Conflict`, the store shows the write that caused it (what
/// [`Store::update_retrying`] relies on). Each call resolves with its own
/// batch's outcome, concurrent calls included.
///
/// `swarm_core::testing::proposer_suite` (feature `testing`) checks this on a
/// working proposer: all but the last two sentences of the first paragraph,
/// which need a proposer that cannot commit.
#[async_trait]
pub trait Proposer: Send + Sync + 'static {
    /// Replicates `batch` and waits until it is applied locally.
    async fn propose(&self, batch: Vec<StoreAction>) -> Result<u64>;
}

/// A consistent, immutable snapshot of the store for reading. Cheap to take and to
/// hold: later writes do not change it and are not blocked by it.
#[derive(Clone, Debug)]
pub struct View(Arc<Tables>);

impl Deref for View {
    type Target = Tables;

    fn deref(&self) -> &Tables {
        &self.0
    }
}

/// The in-memory store: indexed tables of every object, versioned atomic
/// transactions, watches, snapshot and restore. Cloning shares the same store.
///
/// ```
/// use swarm_core::{Store, types::{Service, ServiceSpec, Annotations}};
///
/// # futures::executor::block_on(async {
/// let store = Store::new();
/// let svc = store.update(|tx| {
///     tx.create(Service { spec: ServiceSpec { annotations: Annotations::named("web"), ..Default::default() }, ..Default::default() })
/// }).await?;
/// assert_eq!(store.view().resolve::<Service>("web")?.id, svc.id);
/// # Ok::<(), swarm_core::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    current: ArcSwap<Tables>,
    /// Held by every commit, so commits (and their events) are totally ordered.
    commit: Mutex<Watchers>,
    proposer: RwLock<Option<Arc<dyn Proposer>>>,
    clock: Arc<dyn Clock>,
}

/// A [`Store`] that may have been dropped.
#[cfg(any(test, feature = "testing"))]
pub(crate) struct WeakStore(std::sync::Weak<Inner>);

#[cfg(any(test, feature = "testing"))]
impl WeakStore {
    /// The store, unless it was dropped.
    pub(crate) fn upgrade(&self) -> Option<Store> {
        self.0.upgrade().map(|inner| Store { inner })
    }
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("index", &self.index())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// An empty standalone store on the system clock.
    pub fn new() -> Store {
        Store::with_clock(Arc::new(SystemClock))
    }

    /// An empty standalone store whose transactions take their time from `clock`.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Store {
        Store {
            inner: Arc::new(Inner {
                current: ArcSwap::from_pointee(Tables::default()),
                commit: Mutex::new(Watchers::default()),
                proposer: RwLock::new(None),
                clock,
            }),
        }
    }

    /// A handle that does not keep the store alive (for a proposer the store
    /// holds).
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn downgrade(&self) -> WeakStore {
        WeakStore(Arc::downgrade(&self.inner))
    }

    /// Routes every later [`update`](Store::update) through `proposer`.
    pub fn set_proposer(&self, proposer: Arc<dyn Proposer>) {
        *self.inner.proposer.write() = Some(proposer);
    }

    /// Makes the store standalone again.
    pub fn clear_proposer(&self) {
        *self.inner.proposer.write() = None;
    }

    /// The index of the last applied batch.
    pub fn index(&self) -> u64 {
        self.inner.current.load().index
    }

    /// A consistent snapshot to read from.
    pub fn view(&self) -> View {
        View(self.inner.current.load_full())
    }

    /// Runs `f` in a write transaction and commits its batch if `f` returns `Ok`.
    ///
    /// Standalone, the batch commits at once at the next index (transactions are
    /// serialised). With a [`Proposer`], `f` runs on a snapshot and the batch is
    /// proposed; it is checked again when applied, so a concurrent change to an
    /// object `f` updated fails the whole batch with `Conflict`. An empty batch
    /// commits nothing. If `f` fails, nothing is changed and its error returned.
    pub async fn update<T>(&self, f: impl FnOnce(&mut Tx) -> Result<T>) -> Result<T> {
        let proposer = self.inner.proposer.read().clone();
        match proposer {
            None => self.commit_local(f),
            Some(p) => {
                let base = self.inner.current.load_full();
                let mut tx = Tx::new(&base, self.inner.clock.now());
                let value = f(&mut tx)?;
                let (_, batch, _) = tx.finish();
                if !batch.is_empty() {
                    p.propose(batch).await?;
                }
                Ok(value)
            }
        }
    }

    /// [`update`](Store::update) for a standalone store, without `async`. Fails with
    /// `InvalidArgument` if a proposer is set: committing around it would make this
    /// member diverge.
    pub fn update_local<T>(&self, f: impl FnOnce(&mut Tx) -> Result<T>) -> Result<T> {
        if self.inner.proposer.read().is_some() {
            return Err(Error::InvalidArgument(
                "the store is replicated: write through Store::update, not update_local".into(),
            ));
        }
        self.commit_local(f)
    }

    fn commit_local<T>(&self, f: impl FnOnce(&mut Tx) -> Result<T>) -> Result<T> {
        let mut watchers = self.inner.commit.lock();
        let base = self.inner.current.load_full();
        let mut tx = Tx::new(&base, self.inner.clock.now());
        let value = f(&mut tx)?;
        let (tables, batch, changes) = tx.finish();
        if batch.is_empty() {
            return Ok(value);
        }
        let index = tables.index;
        self.inner.current.store(Arc::new(tables));
        watchers.publish(index, &changes);
        drop(watchers);
        // The old state (unless a reader still holds it) is freed here, outside
        // the commit lock.
        drop(base);
        Ok(value)
    }

    /// Applies a committed batch at `index`: the replicated state machine. All or
    /// nothing; deterministic (no clock, no randomness), so every member applying
    /// the same batches in the same order reaches the same state. An index at or
    /// below the last applied one is skipped (a replay after restart). A failed
    /// batch changes nothing but still consumes its index.
    pub fn apply(&self, index: u64, batch: &[StoreAction]) -> Result<()> {
        let mut watchers = self.inner.commit.lock();
        let base = self.inner.current.load_full();
        if index <= base.index {
            return Ok(());
        }
        match apply::apply_batch(&base, index, batch) {
            Ok((tables, changes)) => {
                self.inner.current.store(Arc::new(tables));
                watchers.publish(index, &changes);
                Ok(())
            }
            Err(e) => {
                let mut tables = (*base).clone();
                tables.index = index;
                self.inner.current.store(Arc::new(tables));
                Err(e)
            }
        }
    }

    /// Subscribes to the changes of every later commit that pass `filter`.
    pub fn watch(&self, filter: Filter) -> Watch {
        self.inner.commit.lock().subscribe(filter)
    }

    /// A snapshot and a subscription starting exactly after it: no commit is
    /// missed or seen twice.
    pub fn view_and_watch(&self, filter: Filter) -> (View, Watch) {
        let mut watchers = self.inner.commit.lock();
        let view = self.view();
        (view, watchers.subscribe(filter))
    }

    /// Number of live subscriptions.
    pub fn watcher_count(&self) -> usize {
        self.inner.commit.lock().len()
    }

    /// The whole state as bytes (objects in ID order, so equal states give equal
    /// bytes).
    pub fn snapshot(&self) -> Vec<u8> {
        snapshot::encode(&self.view())
    }

    /// Replaces the whole state by a snapshot. Watchers receive the difference as
    /// changes at the snapshot's index. Malformed bytes are a `Codec` error and
    /// change nothing.
    pub fn restore(&self, bytes: &[u8]) -> Result<()> {
        let tables = snapshot::decode(bytes)?;
        let mut watchers = self.inner.commit.lock();
        let base = self.inner.current.load_full();
        let changes = snapshot::diff(&base, &tables);
        let index = tables.index;
        self.inner.current.store(Arc::new(tables));
        watchers.publish(index, &changes);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
