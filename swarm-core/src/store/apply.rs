//! The deterministic state machine: applying store actions to the tables.
//!
//! Everything here is a pure function of (tables, index, action): no clock, no
//! randomness, no I/O. Every manager applying the same committed batches in the same
//! order reaches the same state.

use std::collections::HashMap;
use std::sync::Arc;

use foldhash::fast::FixedState;

use super::object::{Kind, Object, StoreAction, StoreObject, each_object};
use super::table::Tables;
use super::watch::{Action, Change};
use crate::error::{Error, Result};
use crate::types::{Cluster, Config, Network, Node, Secret, Service, Task};

/// The versions objects had before the batch began, recorded when the batch first
/// touches them (0 for an object that did not exist). An update of an object the
/// batch already changed is checked against this version, not the one the batch
/// itself gave it, so a transaction that writes an object twice replays the same
/// way at any index.
#[derive(Default)]
pub(crate) struct BatchVersions {
    before: HashMap<(Kind, crate::id::Id), u64, FixedState>,
}

impl BatchVersions {
    /// The version `id` had before the batch, if the batch touched it.
    pub(crate) fn before(&self, kind: Kind, id: &crate::id::Id) -> Option<u64> {
        self.before.get(&(kind, id.clone())).copied()
    }

    fn touch(&mut self, kind: Kind, id: &crate::id::Id, version: u64) {
        self.before.entry((kind, id.clone())).or_insert(version);
    }
}

/// Applies one action at `index`, returning the change it made. Checks come before
/// any mutation, so on error `tables` is unchanged.
pub(crate) fn apply_action(
    tables: &mut Tables,
    index: u64,
    action: &StoreAction,
    batch: &mut BatchVersions,
) -> Result<Change> {
    match action {
        StoreAction::Create(obj) => each_object!(obj, o => create(tables, index, o, batch)),
        StoreAction::Update(obj) => each_object!(obj, o => update(tables, index, o, batch)),
        StoreAction::Remove { kind, id } => {
            let version = current_version(tables, *kind, id);
            let change = match kind {
                Kind::Node => remove::<Node>(tables, id),
                Kind::Service => remove::<Service>(tables, id),
                Kind::Task => remove::<Task>(tables, id),
                Kind::Network => remove::<Network>(tables, id),
                Kind::Cluster => remove::<Cluster>(tables, id),
                Kind::Secret => remove::<Secret>(tables, id),
                Kind::Config => remove::<Config>(tables, id),
            }?;
            batch.touch(*kind, id, version);
            Ok(change)
        }
    }
}

fn current_version(tables: &Tables, kind: Kind, id: &str) -> u64 {
    fn v<T: StoreObject>(t: &Tables, id: &str) -> u64 {
        t.get::<T>(id).map_or(0, |o| o.meta().version.index)
    }
    match kind {
        Kind::Node => v::<Node>(tables, id),
        Kind::Service => v::<Service>(tables, id),
        Kind::Task => v::<Task>(tables, id),
        Kind::Network => v::<Network>(tables, id),
        Kind::Cluster => v::<Cluster>(tables, id),
        Kind::Secret => v::<Secret>(tables, id),
        Kind::Config => v::<Config>(tables, id),
    }
}

/// Applies a whole batch at `index` to `tables`, all or nothing.
pub(crate) fn apply_batch(
    tables: &Tables,
    index: u64,
    actions: &[StoreAction],
) -> Result<(Tables, Vec<Change>)> {
    let mut next = tables.clone();
    let mut changes = Vec::with_capacity(actions.len());
    let mut batch = BatchVersions::default();
    for action in actions {
        changes.push(apply_action(&mut next, index, action, &mut batch)?);
    }
    next.index = index;
    Ok((next, changes))
}

fn create<T: StoreObject>(
    tables: &mut Tables,
    index: u64,
    obj: &Arc<T>,
    batch: &mut BatchVersions,
) -> Result<Change> {
    let id = obj.id();
    if id.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{} ID must not be empty",
            T::KIND
        )));
    }
    if tables.contains::<T>(id) {
        return Err(Error::AlreadyExists {
            kind: T::KIND,
            id: id.clone(),
        });
    }
    check_name_free(tables, obj)?;
    let mut new = (**obj).clone();
    new.meta_mut().version.index = index;
    new.stamp(None, index);
    let new = Arc::new(new);
    tables.insert(new.clone());
    batch.touch(T::KIND, id, 0);
    Ok(Change {
        action: Action::Create,
        object: T::wrap(new),
        old: None,
    })
}

/// Fails with `NameConflict` when another object of `obj`'s kind holds its name.
fn check_name_free<T: StoreObject>(tables: &Tables, obj: &Arc<T>) -> Result<()> {
    match T::table(tables).name_holder(obj.index_name(), obj.id()) {
        Some(holder) => Err(Error::NameConflict {
            kind: T::KIND,
            name: obj.index_name().to_string(),
            id: holder.clone(),
        }),
        None => Ok(()),
    }
}

fn update<T: StoreObject>(
    tables: &mut Tables,
    index: u64,
    obj: &Arc<T>,
    batch: &mut BatchVersions,
) -> Result<Change> {
    let id = obj.id();
    let read = obj.meta().version.index;
    let Some(old) = tables.get::<T>(id) else {
        // The writer read a version of it: it was removed since, a change
        // concurrent with this one (retrying sees it gone).
        if read > 0 {
            return Err(Error::Conflict {
                kind: T::KIND,
                id: id.clone(),
                read,
                current: 0,
            });
        }
        return Err(Error::NotFound {
            kind: T::KIND,
            id: id.to_string(),
        });
    };
    let current = batch
        .before(T::KIND, id)
        .unwrap_or(old.meta().version.index);
    if read != current {
        return Err(Error::Conflict {
            kind: T::KIND,
            id: id.clone(),
            read,
            current,
        });
    }
    check_transition(&T::wrap(old.clone()), &T::wrap(obj.clone()))?;
    check_name_free(tables, obj)?;
    let mut new = (**obj).clone();
    let meta = new.meta_mut();
    meta.version.index = index;
    meta.created_at = old.meta().created_at;
    new.stamp(Some(&old), index);
    let new = Arc::new(new);
    tables.replace(new.clone());
    batch.touch(T::KIND, id, current);
    Ok(Change {
        action: Action::Update,
        object: T::wrap(new),
        old: Some(T::wrap(old)),
    })
}

fn remove<T: StoreObject>(tables: &mut Tables, id: &str) -> Result<Change> {
    match tables.remove::<T>(id) {
        Some(old) => Ok(Change {
            action: Action::Remove,
            object: T::wrap(old),
            old: None,
        }),
        // The writer saw it (a transaction checks that): it was removed since,
        // by a concurrent change; retrying sees it gone.
        None => Err(Error::Conflict {
            kind: T::KIND,
            id: id.into(),
            read: 0,
            current: 0,
        }),
    }
}

/// Task states only move forward, observed and desired alike.
fn check_transition(old: &Object, new: &Object) -> Result<()> {
    if let (Object::Task(old), Object::Task(new)) = (old, new) {
        if new.status.state < old.status.state {
            return Err(Error::InvalidTransition {
                id: new.id.clone(),
                field: "status.state",
                from: old.status.state,
                to: new.status.state,
            });
        }
        if new.desired_state < old.desired_state {
            return Err(Error::InvalidTransition {
                id: new.id.clone(),
                field: "desired_state",
                from: old.desired_state,
                to: new.desired_state,
            });
        }
    }
    Ok(())
}
