//! Kinds of stored objects, the `Object` union, and the store actions that make up
//! a replicated batch.

use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::table::{Table, Tables};
use crate::id::Id;
use crate::types::{Cluster, Config, Meta, Network, Node, Secret, Service, Task};

/// Kind of a stored object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// [`Node`].
    Node,
    /// [`Service`].
    Service,
    /// [`Task`].
    Task,
    /// [`Network`].
    Network,
    /// [`Cluster`].
    Cluster,
    /// [`Secret`].
    Secret,
    /// [`Config`].
    Config,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 7] = [
        Kind::Node,
        Kind::Service,
        Kind::Task,
        Kind::Network,
        Kind::Cluster,
        Kind::Secret,
        Kind::Config,
    ];

    /// The lowercase name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Node => "node",
            Kind::Service => "service",
            Kind::Task => "task",
            Kind::Network => "network",
            Kind::Cluster => "cluster",
            Kind::Secret => "secret",
            Kind::Config => "config",
        }
    }

    pub(crate) fn bit(&self) -> u8 {
        1 << (*self as u8)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Any stored object, shared. Cloning is a reference-count increment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Object {
    /// A node.
    Node(Arc<Node>),
    /// A service.
    Service(Arc<Service>),
    /// A task.
    Task(Arc<Task>),
    /// A network.
    Network(Arc<Network>),
    /// The cluster.
    Cluster(Arc<Cluster>),
    /// A secret.
    Secret(Arc<Secret>),
    /// A config.
    Config(Arc<Config>),
}

macro_rules! each_object {
    ($obj:expr, $v:ident => $e:expr) => {
        match $obj {
            Object::Node($v) => $e,
            Object::Service($v) => $e,
            Object::Task($v) => $e,
            Object::Network($v) => $e,
            Object::Cluster($v) => $e,
            Object::Secret($v) => $e,
            Object::Config($v) => $e,
        }
    };
}
pub(crate) use each_object;

impl Object {
    /// The object's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Object::Node(_) => Kind::Node,
            Object::Service(_) => Kind::Service,
            Object::Task(_) => Kind::Task,
            Object::Network(_) => Kind::Network,
            Object::Cluster(_) => Kind::Cluster,
            Object::Secret(_) => Kind::Secret,
            Object::Config(_) => Kind::Config,
        }
    }

    /// The object's ID.
    pub fn id(&self) -> &Id {
        each_object!(self, o => o.id())
    }

    /// The object's meta.
    pub fn meta(&self) -> &Meta {
        each_object!(self, o => o.meta())
    }

    /// The object as a `T`, if it is one.
    pub fn downcast<T: StoreObject>(&self) -> Option<&Arc<T>> {
        T::unwrap(self)
    }
}

/// One change in a replicated batch.
///
/// A batch (a `Vec<StoreAction>`) is what a writer proposes and what
/// [`Store::apply`](crate::Store::apply) applies, all or nothing, in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StoreAction {
    /// Create the object. Fails if the ID exists or the name is taken.
    Create(Object),
    /// Replace the object. Its `meta.version` must be the version in the store
    /// (the one the writer read), else the batch fails with `Conflict`.
    Update(Object),
    /// Remove the object.
    Remove {
        /// Kind of object.
        kind: Kind,
        /// Its ID.
        id: Id,
    },
}

impl StoreAction {
    /// Kind of the object the action touches.
    pub fn kind(&self) -> Kind {
        match self {
            StoreAction::Create(o) | StoreAction::Update(o) => o.kind(),
            StoreAction::Remove { kind, .. } => *kind,
        }
    }

    /// ID of the object the action touches.
    pub fn id(&self) -> &Id {
        match self {
            StoreAction::Create(o) | StoreAction::Update(o) => o.id(),
            StoreAction::Remove { id, .. } => id,
        }
    }
}

pub(crate) mod sealed {
    /// Keeps [`StoreObject`](super::StoreObject) implemented only here.
    pub trait Sealed {}
}

/// A type the store keeps: [`Node`], [`Service`], [`Task`], [`Network`],
/// [`Cluster`], [`Secret`] and [`Config`]. The generic read and write methods
/// (`get::<Node>`, `tx.update(task)`) take any of them. Sealed: it cannot be
/// implemented outside this crate.
pub trait StoreObject:
    sealed::Sealed
    + Clone
    + fmt::Debug
    + PartialEq
    + Send
    + Sync
    + Serialize
    + DeserializeOwned
    + 'static
{
    /// The kind.
    const KIND: Kind;
    /// Whether names are unique (case-insensitively) among objects of this kind.
    const UNIQUE_NAMES: bool;
    /// The object's ID.
    fn id(&self) -> &Id;
    /// Sets the ID.
    fn set_id(&mut self, id: Id);
    /// The object's meta.
    fn meta(&self) -> &Meta;
    /// The object's meta, mutable.
    fn meta_mut(&mut self) -> &mut Meta;
    /// The name the name index uses (empty: not indexed).
    fn index_name(&self) -> &str;
    /// Wraps a shared object into an [`Object`].
    fn wrap(this: Arc<Self>) -> Object;
    /// The shared object inside an [`Object`] of this kind.
    fn unwrap(obj: &Object) -> Option<&Arc<Self>>;
    #[doc(hidden)]
    fn table(tables: &Tables) -> &Table<Self>;
    #[doc(hidden)]
    fn table_mut(tables: &mut Tables) -> &mut Table<Self>;
    /// Called when a write of this object is applied at store version
    /// `index`, with the object it replaces (`None` for a creation): the
    /// place for fields the store itself keeps (nodes: the version of the last
    /// spec change).
    #[doc(hidden)]
    fn stamp(&mut self, _old: Option<&Self>, _index: u64) {}

    /// The store version at which the object's spec last changed, for kinds
    /// whose spec the store tracks apart from what the swarm writes into them
    /// (nodes, services, the cluster); `None` for the others.
    fn spec_index(&self) -> Option<u64> {
        None
    }

    /// Whether a spec change its caller based on a read at store version
    /// `read` may apply to this (current) object: the spec has not changed
    /// since the read, and the read is not from the future. Writes that left
    /// the spec alone (statuses, allocations) do not matter; for kinds without
    /// a tracked spec, `read` must be the object's current version.
    ///
    /// # Errors
    /// [`Error::Conflict`](crate::Error::Conflict) (`update out of sequence`)
    /// naming the version the spec is at.
    fn check_spec_read(&self, read: u64) -> crate::Result<()> {
        let current = self.meta().version.index;
        let since = self.spec_index().unwrap_or(current);
        if read < since || read > current {
            return Err(crate::Error::Conflict {
                kind: Self::KIND,
                id: self.id().clone(),
                read,
                current: since,
            });
        }
        Ok(())
    }
}

macro_rules! store_object {
    ($ty:ident, $field:ident, $unique:expr, |$s:ident| $name:expr $(, $extra:item)*) => {
        impl sealed::Sealed for $ty {}
        impl StoreObject for $ty {
            const KIND: Kind = Kind::$ty;
            const UNIQUE_NAMES: bool = $unique;
            fn id(&self) -> &Id {
                &self.id
            }
            fn set_id(&mut self, id: Id) {
                self.id = id;
            }
            fn meta(&self) -> &Meta {
                &self.meta
            }
            fn meta_mut(&mut self) -> &mut Meta {
                &mut self.meta
            }
            fn index_name(&self) -> &str {
                let $s = self;
                $name
            }
            fn wrap(this: Arc<Self>) -> Object {
                Object::$ty(this)
            }
            fn unwrap(obj: &Object) -> Option<&Arc<Self>> {
                match obj {
                    Object::$ty(o) => Some(o),
                    _ => None,
                }
            }
            fn table(tables: &Tables) -> &Table<Self> {
                &tables.$field
            }
            fn table_mut(tables: &mut Tables) -> &mut Table<Self> {
                &mut tables.$field
            }
            $($extra)*
        }
    };
}

store_object!(
    Node,
    nodes,
    false,
    |n| n.name(),
    fn stamp(&mut self, old: Option<&Self>, index: u64) {
        if old.is_none_or(|o| o.spec != self.spec) {
            self.spec_version = index;
        }
    },
    fn spec_index(&self) -> Option<u64> {
        Some(self.spec_version)
    }
);
store_object!(
    Service,
    services,
    true,
    |s| &s.spec.annotations.name,
    fn stamp(&mut self, old: Option<&Self>, index: u64) {
        if old.is_none_or(|o| o.spec != self.spec || o.pending_delete != self.pending_delete) {
            self.spec_index = index;
        }
    },
    fn spec_index(&self) -> Option<u64> {
        Some(self.spec_index)
    }
);
store_object!(Task, tasks, false, |_t| "");
store_object!(Network, networks, true, |n| &n.spec.annotations.name);
store_object!(
    Cluster,
    clusters,
    true,
    |c| &c.spec.annotations.name,
    fn stamp(&mut self, old: Option<&Self>, index: u64) {
        if old.is_none_or(|o| o.spec != self.spec) {
            self.spec_index = index;
        }
    },
    fn spec_index(&self) -> Option<u64> {
        Some(self.spec_index)
    }
);
store_object!(Secret, secrets, true, |s| &s.spec.annotations.name);
store_object!(Config, configs, true, |c| &c.spec.annotations.name);
