//! The tables of the store and their indexes, as persistent (structurally shared)
//! maps: cloning the whole state is O(1), so a transaction works on its own copy
//! and readers hold a consistent snapshot without locks.

use std::borrow::Cow;
use std::hash::Hash;
use std::sync::Arc;

use foldhash::fast::FixedState;
use imbl::shared_ptr::DefaultSharedPtr;

use super::object::{Kind, StoreObject};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::types::{
    Cluster, Config, DEFAULT_CLUSTER_NAME, Network, Node, Secret, Service, Task, TaskState,
};

pub(crate) type Map<K, V> = imbl::GenericHashMap<K, V, FixedState, DefaultSharedPtr>;
pub(crate) type Set<K> = imbl::GenericHashSet<K, FixedState, DefaultSharedPtr>;

/// Names compare case-insensitively, as in SwarmKit.
pub(crate) fn fold_name(name: &str) -> Cow<'_, str> {
    if name.chars().any(char::is_uppercase) {
        Cow::Owned(name.to_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

/// The IDs under one key of a [`MultiIndex`]: most keys (a name, a slot) hold a
/// single ID, kept inline; only keys with several get a set.
#[derive(Clone, Debug)]
pub(crate) enum Members {
    One(Id),
    Many(Set<Id>),
}

/// Iterates the IDs of a [`Members`].
pub(crate) enum MembersIter<'a> {
    One(Option<&'a Id>),
    Many(imbl::hashset::Iter<'a, Id, DefaultSharedPtr>),
}

impl<'a> Iterator for MembersIter<'a> {
    type Item = &'a Id;

    fn next(&mut self) -> Option<&'a Id> {
        match self {
            MembersIter::One(one) => one.take(),
            MembersIter::Many(it) => it.next(),
        }
    }
}

impl Members {
    pub(crate) fn iter(&self) -> MembersIter<'_> {
        match self {
            Members::One(id) => MembersIter::One(Some(id)),
            Members::Many(set) => MembersIter::Many(set.iter()),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Members::One(_) => 1,
            Members::Many(set) => set.len(),
        }
    }
}

/// A non-unique index: key → the IDs under it.
#[derive(Clone, Debug, Default)]
pub(crate) struct MultiIndex<K: Hash + Eq + Clone> {
    map: Map<K, Members>,
}

impl<K: Hash + Eq + Clone> MultiIndex<K> {
    pub(crate) fn insert(&mut self, key: K, id: Id) {
        match self.map.get_mut(&key) {
            None => {
                self.map.insert(key, Members::One(id));
            }
            Some(Members::One(existing)) => {
                if *existing != id {
                    let mut set = Set::default();
                    set.insert(existing.clone());
                    set.insert(id);
                    self.map.insert(key, Members::Many(set));
                }
            }
            Some(Members::Many(set)) => {
                set.insert(id);
            }
        }
    }

    pub(crate) fn remove<Q>(&mut self, key: &Q, id: &Id)
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let emptied = match self.map.get_mut(key) {
            None => false,
            Some(Members::One(existing)) => existing == id,
            Some(Members::Many(set)) => {
                set.remove(id);
                if set.len() == 1 {
                    let last = set.iter().next().cloned().expect("one left");
                    if let Some(m) = self.map.get_mut(key) {
                        *m = Members::One(last);
                    }
                }
                false
            }
        };
        if emptied {
            self.map.remove(key);
        }
    }

    pub(crate) fn get<Q>(&self, key: &Q) -> Option<&Members>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get(key)
    }
}

/// The extra indexes of the task table.
#[derive(Clone, Debug, Default)]
pub(crate) struct TaskIndexes {
    by_service: MultiIndex<Id>,
    by_node: MultiIndex<Id>,
    by_slot: MultiIndex<(Id, u64)>,
    by_desired_state: MultiIndex<TaskState>,
}

impl TaskIndexes {
    fn insert(&mut self, t: &Task) {
        self.insert_service_keys(&t.id, &t.service_id, t.slot);
        if !t.node_id.is_empty() {
            self.by_node.insert(t.node_id.clone(), t.id.clone());
        }
        self.by_desired_state.insert(t.desired_state, t.id.clone());
    }

    fn remove(&mut self, t: &Task) {
        self.remove_service_keys(&t.id, &t.service_id, t.slot);
        if !t.node_id.is_empty() {
            self.by_node.remove(&t.node_id, &t.id);
        }
        self.by_desired_state.remove(&t.desired_state, &t.id);
    }

    /// Moves only the index entries whose keys changed.
    fn replace(&mut self, old: &Task, new: &Task) {
        if old.service_id != new.service_id || old.slot != new.slot {
            // Service and slot keys go together.
            self.remove_service_keys(&old.id, &old.service_id, old.slot);
            self.insert_service_keys(&new.id, &new.service_id, new.slot);
        }
        if old.node_id != new.node_id {
            if !old.node_id.is_empty() {
                self.by_node.remove(&old.node_id, &old.id);
            }
            if !new.node_id.is_empty() {
                self.by_node.insert(new.node_id.clone(), new.id.clone());
            }
        }
        if old.desired_state != new.desired_state {
            self.by_desired_state.remove(&old.desired_state, &old.id);
            self.by_desired_state
                .insert(new.desired_state, new.id.clone());
        }
    }

    fn remove_service_keys(&mut self, id: &Id, service: &Id, slot: u64) {
        if !service.is_empty() {
            self.by_service.remove(service, id);
            if slot != 0 {
                self.by_slot.remove(&(service.clone(), slot), id);
            }
        }
    }

    fn insert_service_keys(&mut self, id: &Id, service: &Id, slot: u64) {
        if !service.is_empty() {
            self.by_service.insert(service.clone(), id.clone());
            if slot != 0 {
                self.by_slot.insert((service.clone(), slot), id.clone());
            }
        }
    }
}

/// The table of one kind of object: objects by ID, IDs in order (for prefix
/// lookups) and the name index.
#[derive(Debug)]
pub struct Table<T: StoreObject> {
    by_id: Map<Id, Arc<T>>,
    ids: imbl::GenericOrdSet<Id, DefaultSharedPtr>,
    names: MultiIndex<Arc<str>>,
}

impl<T: StoreObject> Clone for Table<T> {
    fn clone(&self) -> Self {
        Table {
            by_id: self.by_id.clone(),
            ids: self.ids.clone(),
            names: self.names.clone(),
        }
    }
}

impl<T: StoreObject> Default for Table<T> {
    fn default() -> Self {
        Table {
            by_id: Map::default(),
            ids: Default::default(),
            names: MultiIndex::default(),
        }
    }
}

impl<T: StoreObject> Table<T> {
    pub(crate) fn get(&self, id: &str) -> Option<&Arc<T>> {
        self.by_id.get(id)
    }

    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// The ID of another object holding `name`, if names are unique and it is taken.
    pub(crate) fn name_holder(&self, name: &str, except: &Id) -> Option<&Id> {
        if !T::UNIQUE_NAMES || name.is_empty() {
            return None;
        }
        self.names
            .get(&*fold_name(name))
            .and_then(|ids| ids.iter().find(|id| *id != except))
    }

    pub(crate) fn insert(&mut self, obj: Arc<T>) {
        let id = obj.id().clone();
        let name = obj.index_name();
        if !name.is_empty() {
            self.names.insert(Arc::from(&*fold_name(name)), id.clone());
        }
        self.ids.insert(id.clone());
        self.by_id.insert(id, obj);
    }

    /// Replaces an object whose ID is present; returns the old one.
    pub(crate) fn replace(&mut self, obj: Arc<T>) -> Option<Arc<T>> {
        let id = obj.id().clone();
        let old = self.by_id.insert(id.clone(), obj.clone())?;
        let (old_name, new_name) = (old.index_name(), obj.index_name());
        if old_name != new_name {
            if !old_name.is_empty() {
                self.names.remove(&*fold_name(old_name), &id);
            }
            if !new_name.is_empty() {
                self.names.insert(Arc::from(&*fold_name(new_name)), id);
            }
        }
        Some(old)
    }

    pub(crate) fn remove(&mut self, id: &str) -> Option<Arc<T>> {
        let old = self.by_id.remove(id)?;
        self.ids.remove(id);
        let name = old.index_name();
        if !name.is_empty() {
            self.names.remove(&*fold_name(name), old.id());
        }
        Some(old)
    }
}

/// The whole state of the store: one table per kind, the task indexes, and the
/// index of the last applied batch. Reads go through [`View`](crate::View) (a
/// snapshot) or a transaction, both of which dereference to `Tables`.
#[derive(Clone, Debug, Default)]
pub struct Tables {
    pub(crate) nodes: Table<Node>,
    pub(crate) services: Table<Service>,
    pub(crate) tasks: Table<Task>,
    pub(crate) networks: Table<Network>,
    pub(crate) clusters: Table<Cluster>,
    pub(crate) secrets: Table<Secret>,
    pub(crate) configs: Table<Config>,
    pub(crate) task_idx: TaskIndexes,
    pub(crate) index: u64,
}

impl Tables {
    /// The index of the last batch applied (0 for an empty store).
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The object of kind `T` with ID `id`.
    pub fn get<T: StoreObject>(&self, id: &str) -> Option<Arc<T>> {
        T::table(self).get(id).cloned()
    }

    /// Whether an object of kind `T` with ID `id` exists.
    pub fn contains<T: StoreObject>(&self, id: &str) -> bool {
        T::table(self).get(id).is_some()
    }

    /// Number of objects of kind `T`.
    pub fn count<T: StoreObject>(&self) -> usize {
        T::table(self).len()
    }

    /// Every object of kind `T`, in no particular order.
    pub fn list<T: StoreObject>(&self) -> impl Iterator<Item = Arc<T>> + '_ {
        T::table(self).by_id.values().cloned()
    }

    /// Objects of kind `T` whose name is `name` (case-insensitively). For unique
    /// kinds this is at most one; nodes are indexed by spec name or else hostname,
    /// which need not be unique.
    pub fn find_by_name<T: StoreObject>(&self, name: &str) -> impl Iterator<Item = Arc<T>> + '_ {
        let table = T::table(self);
        table
            .names
            .get(&*fold_name(name))
            .into_iter()
            .flat_map(|ids| ids.iter())
            .filter_map(move |id| table.by_id.get(id).cloned())
    }

    /// The one object of kind `T` named `name`, if exactly one has that name.
    pub fn get_by_name<T: StoreObject>(&self, name: &str) -> Option<Arc<T>> {
        let table = T::table(self);
        let ids = table.names.get(&*fold_name(name))?;
        if ids.len() != 1 {
            return None;
        }
        ids.iter()
            .next()
            .and_then(|id| table.by_id.get(id).cloned())
    }

    /// Objects of kind `T` whose ID starts with `prefix`, in ID order.
    pub fn find_by_id_prefix<'a, T: StoreObject>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = Arc<T>> + 'a {
        let table = T::table(self);
        table
            .ids
            .range(Id::from(prefix)..)
            .take_while(move |id| id.as_str().starts_with(prefix))
            .filter_map(move |id| table.by_id.get(id).cloned())
    }

    /// Resolves what a docker user types: an exact ID, else an exact name, else a
    /// unique ID prefix. An ambiguous name or prefix is an `InvalidArgument` that
    /// says so; nothing matching is `NotFound`.
    pub fn resolve<T: StoreObject>(&self, id_or_name: &str) -> Result<Arc<T>> {
        if id_or_name.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "{} ID or name must not be empty",
                T::KIND
            )));
        }
        if let Some(obj) = self.get::<T>(id_or_name) {
            return Ok(obj);
        }
        let mut named = self.find_by_name::<T>(id_or_name);
        if let Some(first) = named.next() {
            if named.next().is_some() {
                return Err(Error::InvalidArgument(format!(
                    "{} name {id_or_name:?} is ambiguous: more than one {} has it",
                    T::KIND,
                    T::KIND
                )));
            }
            return Ok(first);
        }
        let mut prefixed = self.find_by_id_prefix::<T>(id_or_name);
        match (prefixed.next(), prefixed.next()) {
            (Some(obj), None) => Ok(obj),
            (Some(_), Some(_)) => Err(Error::InvalidArgument(format!(
                "{} {id_or_name} is ambiguous: more than one {} ID starts with it",
                T::KIND,
                T::KIND
            ))),
            _ => Err(Error::NotFound {
                kind: T::KIND,
                id: id_or_name.to_string(),
            }),
        }
    }

    fn task_set<'a>(&'a self, ids: Option<&'a Members>) -> impl Iterator<Item = Arc<Task>> + 'a {
        ids.into_iter()
            .flat_map(|s| s.iter())
            .filter_map(move |id| self.tasks.by_id.get(id).cloned())
    }

    /// Tasks of a service.
    pub fn tasks_by_service<'a>(
        &'a self,
        service_id: &str,
    ) -> impl Iterator<Item = Arc<Task>> + 'a {
        self.task_set(self.task_idx.by_service.get(service_id))
    }

    /// Number of tasks of a service.
    pub fn count_tasks_by_service(&self, service_id: &str) -> usize {
        self.task_idx
            .by_service
            .get(service_id)
            .map_or(0, |s| s.len())
    }

    /// Tasks assigned to a node.
    pub fn tasks_by_node<'a>(&'a self, node_id: &str) -> impl Iterator<Item = Arc<Task>> + 'a {
        self.task_idx
            .by_node
            .get(node_id)
            .into_iter()
            .flat_map(|s| s.iter())
            .filter_map(move |id| self.tasks.by_id.get(id).cloned())
    }

    /// Tasks of one slot of a replicated service (the current one and its history).
    pub fn tasks_by_slot<'a>(
        &'a self,
        service_id: &Id,
        slot: u64,
    ) -> impl Iterator<Item = Arc<Task>> + 'a {
        self.task_set(self.task_idx.by_slot.get(&(service_id.clone(), slot)))
    }

    /// Tasks whose desired state is `state`.
    pub fn tasks_by_desired_state(&self, state: TaskState) -> impl Iterator<Item = Arc<Task>> + '_ {
        self.task_set(self.task_idx.by_desired_state.get(&state))
    }

    /// The cluster object (named `default`), once the swarm is initialised.
    pub fn cluster(&self) -> Option<Arc<Cluster>> {
        self.get_by_name::<Cluster>(DEFAULT_CLUSTER_NAME)
    }

    pub(crate) fn insert<T: StoreObject>(&mut self, obj: Arc<T>) {
        if T::KIND == Kind::Task
            && let Some(t) = (&*obj as &dyn std::any::Any).downcast_ref::<Task>()
        {
            self.task_idx.insert(t);
        }
        T::table_mut(self).insert(obj);
    }

    pub(crate) fn replace<T: StoreObject>(&mut self, obj: Arc<T>) -> Option<Arc<T>> {
        let old = T::table_mut(self).replace(obj.clone())?;
        if T::KIND == Kind::Task
            && let (Some(o), Some(n)) = (
                (&*old as &dyn std::any::Any).downcast_ref::<Task>(),
                (&*obj as &dyn std::any::Any).downcast_ref::<Task>(),
            )
        {
            self.task_idx.replace(o, n);
        }
        Some(old)
    }

    pub(crate) fn remove<T: StoreObject>(&mut self, id: &str) -> Option<Arc<T>> {
        let old = T::table_mut(self).remove(id)?;
        if T::KIND == Kind::Task
            && let Some(t) = (&*old as &dyn std::any::Any).downcast_ref::<Task>()
        {
            self.task_idx.remove(t);
        }
        Some(old)
    }
}
