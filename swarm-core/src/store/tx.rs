//! Write transactions.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::Arc;

use foldhash::fast::FixedState;

use super::apply::apply_action;
use super::object::{Kind, StoreAction, StoreObject};
use super::table::Tables;
use super::watch::{Action, Change};
use crate::error::Result;
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
/// The batch holds at most one action per object: updating an object twice keeps
/// the version first read (so the optimistic check still covers the whole
/// transaction), creating then deleting leaves nothing.
pub struct Tx {
    tables: Tables,
    index: u64,
    now: Timestamp,
    actions: Vec<Option<StoreAction>>,
    touched: HashMap<(Kind, Id), usize, FixedState>,
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
            touched: HashMap::default(),
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
        let obj = Arc::new(obj);
        let action = StoreAction::Create(T::wrap(obj.clone()));
        let stored = self.apply::<T>(&action)?;
        self.record(T::KIND, obj.id().clone(), action, |_prev, new| new);
        Ok(stored)
    }

    /// Replaces the object with `obj.id()` by `obj`. `obj.meta.version` must be the
    /// version in the store (read it, change it, write it back), else `Conflict`.
    /// `updated_at` is stamped. Task states may only move forward.
    pub fn update<T: StoreObject>(&mut self, mut obj: T) -> Result<Arc<T>> {
        obj.meta_mut().updated_at = self.now;
        let obj = Arc::new(obj);
        let action = StoreAction::Update(T::wrap(obj.clone()));
        let stored = self.apply::<T>(&action)?;
        self.record(T::KIND, obj.id().clone(), action, |prev, new| {
            match (prev, new) {
                // Created in this transaction: still a creation, with the new content.
                (StoreAction::Create(_), StoreAction::Update(o)) => StoreAction::Create(o),
                // Updated twice: keep the version first read.
                (StoreAction::Update(first), StoreAction::Update(o)) => {
                    let mut o = (*T::unwrap(&o).expect("same kind")).as_ref().clone();
                    o.meta_mut().version = T::unwrap(first).expect("same kind").meta().version;
                    StoreAction::Update(T::wrap(Arc::new(o)))
                }
                (_, new) => new,
            }
        });
        Ok(stored)
    }

    /// Deletes the object of kind `T` with ID `id`. Fails with `NotFound`.
    pub fn delete<T: StoreObject>(&mut self, id: &str) -> Result<()> {
        let id = Id::from(id);
        let action = StoreAction::Remove {
            kind: T::KIND,
            id: id.clone(),
        };
        apply_action(&mut self.tables, self.index, &action)?;
        let key = (T::KIND, id);
        match self.touched.get(&key).copied() {
            Some(slot) if matches!(self.actions[slot], Some(StoreAction::Create(_))) => {
                self.actions[slot] = None;
                self.touched.remove(&key);
            }
            Some(slot) => self.actions[slot] = Some(action),
            None => {
                self.touched.insert(key, self.actions.len());
                self.actions.push(Some(action));
            }
        }
        Ok(())
    }

    /// The batch so far.
    pub fn actions(&self) -> impl Iterator<Item = &StoreAction> {
        self.actions.iter().flatten()
    }

    fn apply<T: StoreObject>(&mut self, action: &StoreAction) -> Result<Arc<T>> {
        let change = apply_action(&mut self.tables, self.index, action)?;
        Ok(T::unwrap(&change.object)
            .expect("change of the action's kind")
            .clone())
    }

    fn record(
        &mut self,
        kind: Kind,
        id: Id,
        action: StoreAction,
        merge: impl FnOnce(&StoreAction, StoreAction) -> StoreAction,
    ) {
        let key = (kind, id);
        match self.touched.get(&key).copied() {
            Some(slot) => match self.actions[slot].take() {
                Some(StoreAction::Remove { kind, id }) => {
                    // Removed then re-created: both stay, in order.
                    self.actions[slot] = Some(StoreAction::Remove { kind, id });
                    self.touched.insert(key, self.actions.len());
                    self.actions.push(Some(action));
                }
                Some(prev) => self.actions[slot] = Some(merge(&prev, action)),
                None => self.actions[slot] = Some(action),
            },
            None => {
                self.touched.insert(key, self.actions.len());
                self.actions.push(Some(action));
            }
        }
    }

    /// The batch and the state after it, with the changes it makes relative to
    /// `base` (the state the transaction started from): the same changes
    /// [`apply_batch`](super::apply::apply_batch) would report for the batch.
    pub(crate) fn finish(self, base: &Tables) -> (Tables, Vec<StoreAction>, Vec<Change>) {
        let actions: Vec<StoreAction> = self.actions.into_iter().flatten().collect();
        let changes = actions
            .iter()
            .map(|a| {
                let (kind, id) = (a.kind(), a.id());
                match a {
                    StoreAction::Create(_) => Change {
                        action: Action::Create,
                        object: current(&self.tables, kind, id).expect("created object present"),
                        old: None,
                    },
                    StoreAction::Update(_) => Change {
                        action: Action::Update,
                        object: current(&self.tables, kind, id).expect("updated object present"),
                        old: current(base, kind, id),
                    },
                    StoreAction::Remove { .. } => Change {
                        action: Action::Remove,
                        object: current(base, kind, id).expect("removed object existed"),
                        old: None,
                    },
                }
            })
            .collect();
        let mut tables = self.tables;
        tables.index = self.index;
        (tables, actions, changes)
    }
}

fn current(tables: &Tables, kind: Kind, id: &str) -> Option<super::object::Object> {
    use super::object::Object;
    use crate::types::*;
    Some(match kind {
        Kind::Node => Object::Node(tables.get::<Node>(id)?),
        Kind::Service => Object::Service(tables.get::<Service>(id)?),
        Kind::Task => Object::Task(tables.get::<Task>(id)?),
        Kind::Network => Object::Network(tables.get::<Network>(id)?),
        Kind::Cluster => Object::Cluster(tables.get::<Cluster>(id)?),
        Kind::Secret => Object::Secret(tables.get::<Secret>(id)?),
        Kind::Config => Object::Config(tables.get::<Config>(id)?),
    })
}
