//! The deterministic state machine: applying store actions to the tables.
//!
//! Everything here is a pure function of (tables, index, action): no clock, no
//! randomness, no I/O. Every manager applying the same committed batches in the same
//! order reaches the same state.

use std::sync::Arc;

use super::object::{Object, StoreAction, StoreObject, each_object};
use super::table::Tables;
use super::watch::{Action, Change};
use crate::error::{Error, Result};
use crate::types::{Cluster, Config, Network, Node, Secret, Service, Task};

/// Applies one action at `index`, returning the change it made. On error the tables
/// may hold a partial change: callers apply batches to a copy and drop it on error.
pub(crate) fn apply_action(
    tables: &mut Tables,
    index: u64,
    action: &StoreAction,
) -> Result<Change> {
    match action {
        StoreAction::Create(obj) => each_object!(obj, o => create(tables, index, o)),
        StoreAction::Update(obj) => each_object!(obj, o => update(tables, index, o)),
        StoreAction::Remove { kind, id } => {
            use super::object::Kind;
            match kind {
                Kind::Node => remove::<Node>(tables, id),
                Kind::Service => remove::<Service>(tables, id),
                Kind::Task => remove::<Task>(tables, id),
                Kind::Network => remove::<Network>(tables, id),
                Kind::Cluster => remove::<Cluster>(tables, id),
                Kind::Secret => remove::<Secret>(tables, id),
                Kind::Config => remove::<Config>(tables, id),
            }
        }
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
    for action in actions {
        changes.push(apply_action(&mut next, index, action)?);
    }
    next.index = index;
    Ok((next, changes))
}

fn create<T: StoreObject>(tables: &mut Tables, index: u64, obj: &Arc<T>) -> Result<Change> {
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
    if let Some(holder) = T::table(tables).name_holder(obj.index_name(), id) {
        return Err(Error::NameConflict {
            kind: T::KIND,
            name: obj.index_name().to_string(),
            id: holder.clone(),
        });
    }
    let mut new = (**obj).clone();
    new.meta_mut().version.index = index;
    let new = Arc::new(new);
    tables.insert(new.clone());
    Ok(Change {
        action: Action::Create,
        object: T::wrap(new),
        old: None,
    })
}

fn update<T: StoreObject>(tables: &mut Tables, index: u64, obj: &Arc<T>) -> Result<Change> {
    let id = obj.id();
    let Some(old) = tables.get::<T>(id) else {
        return Err(Error::NotFound {
            kind: T::KIND,
            id: id.to_string(),
        });
    };
    let (read, current) = (obj.meta().version.index, old.meta().version.index);
    if read != current {
        return Err(Error::Conflict {
            kind: T::KIND,
            id: id.clone(),
            read,
            current,
        });
    }
    check_transition(&T::wrap(old.clone()), &T::wrap(obj.clone()))?;
    if let Some(holder) = T::table(tables).name_holder(obj.index_name(), id) {
        return Err(Error::NameConflict {
            kind: T::KIND,
            name: obj.index_name().to_string(),
            id: holder.clone(),
        });
    }
    let mut new = (**obj).clone();
    let meta = new.meta_mut();
    meta.version.index = index;
    meta.created_at = old.meta().created_at;
    let new = Arc::new(new);
    tables.replace(new.clone());
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
        None => Err(Error::NotFound {
            kind: T::KIND,
            id: id.to_string(),
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
