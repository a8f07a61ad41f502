//! Write transactions.

use std::ops::Deref;
use std::sync::Arc;

use super::apply::{BatchVersions, apply_action};
use super::object::{StoreAction, StoreObject};
use super::table::Tables;
use super::watch::Change;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::time::Timestamp;

/// A write transaction: reads see the transaction's own writes; the writes become
/// one batch of [`StoreAction`]s, committed all or nothing when the closure given
/// to [`Store::update`](crate::Store::update) returns `Ok`.
///
/// Objects returned by a transaction carry provisional versions: with a
/// [`Proposer`](crate::Proposer) the final version is the index the batch commits
/// at. Read the object again after the commit for its final version.
///
/// The batch keeps every write in order, so replaying it anywhere does exactly
/// what the transaction did. An object written twice is checked, at commit, against
/// the version it had before the transaction: a concurrent change to it fails the
/// whole batch with `Conflict`.
pub struct Tx {
    tables: Tables,
    index: u64,
    now: Timestamp,
    actions: Vec<StoreAction>,
    changes: Vec<Change>,
    batch: BatchVersions,
}

impl Deref for Tx {
    type Target = Tables;

    fn deref(&self) -> &Tables {
        &self.tables
    }
}

impl Tx {
    pub(crate) fn new(base: &Tables, now: Timestamp) -> Tx {
        Tx {
            tables: base.clone(),
            index: base.index + 1,
            now,
            actions: Vec::new(),
            changes: Vec::new(),
            batch: BatchVersions::default(),
        }
    }

    /// The time stamped on objects this transaction creates or updates.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Creates `obj`. An empty ID is replaced by a fresh one; `created_at` and
    /// `updated_at` are stamped. Fails with `AlreadyExists` or `NameConflict`,
    /// changing nothing.
    pub fn create<T: StoreObject>(&mut self, mut obj: T) -> Result<Arc<T>> {
        if obj.id().is_empty() {
            obj.set_id(Id::generate());
        }
        let meta = obj.meta_mut();
        meta.version.index = 0;
        meta.created_at = self.now;
        meta.updated_at = self.now;
        self.apply(StoreAction::Create(T::wrap(Arc::new(obj))))
    }

    /// Replaces the object with `obj.id()` by `obj`. `obj.meta.version` must be the
    /// version in the store (read it, change it, write it back), else `Conflict`.
    /// `updated_at` is stamped. Task states may only move forward.
    pub fn update<T: StoreObject>(&mut self, mut obj: T) -> Result<Arc<T>> {
        if self.tables.get::<T>(obj.id()).is_none() {
            return Err(Error::NotFound {
                kind: T::KIND,
                id: obj.id().to_string(),
            });
        }
        obj.meta_mut().updated_at = self.now;
        if let Some(before) = self.batch.before(T::KIND, obj.id()) {
            // Written earlier in this transaction: the caller must have read that
            // write; the batch then carries the version from before the transaction.
            let Some(current) = self.tables.get::<T>(obj.id()) else {
                return Err(Error::NotFound {
                    kind: T::KIND,
                    id: obj.id().to_string(),
                });
            };
            let (read, current) = (obj.meta().version.index, current.meta().version.index);
            if read != current {
                return Err(Error::Conflict {
                    kind: T::KIND,
                    id: obj.id().clone(),
                    read,
                    current,
                });
            }
            obj.meta_mut().version.index = before;
        }
        self.apply(StoreAction::Update(T::wrap(Arc::new(obj))))
    }

    /// Deletes the object of kind `T` with ID `id`. Fails with `NotFound`.
    pub fn delete<T: StoreObject>(&mut self, id: &str) -> Result<()> {
        if self.tables.get::<T>(id).is_none() {
            return Err(Error::NotFound {
                kind: T::KIND,
                id: id.to_string(),
            });
        }
        self.apply::<T>(StoreAction::Remove {
            kind: T::KIND,
            id: Id::from(id),
        })
        .map(drop)
    }

    /// The batch so far.
    pub fn actions(&self) -> impl Iterator<Item = &StoreAction> {
        self.actions.iter()
    }

    fn apply<T: StoreObject>(&mut self, action: StoreAction) -> Result<Arc<T>> {
        let change = apply_action(&mut self.tables, self.index, &action, &mut self.batch)?;
        let obj = T::unwrap(&change.object)
            .expect("a change of the action's kind")
            .clone();
        self.actions.push(action);
        self.changes.push(change);
        Ok(obj)
    }

    /// The batch, the state after it and its changes: what
    /// [`apply_batch`](super::apply::apply_batch) gives for the same batch on the
    /// state the transaction started from.
    pub(crate) fn finish(self) -> (Tables, Vec<StoreAction>, Vec<Change>) {
        let mut tables = self.tables;
        tables.index = self.index;
        (tables, self.actions, self.changes)
    }
}
