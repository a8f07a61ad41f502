//! The scheduler's view of the nodes: each node with the tasks it holds, what they
//! reserve and the host ports they use, kept up to date incrementally.
//!
//! The view is built once from a store snapshot ([`NodeView::from_tables`]); after
//! that every store change is applied as it comes ([`NodeView::upsert_node`],
//! [`NodeView::account_task`], ...), each in O(log nodes): nothing is rescanned.
//! Accounting is idempotent per task: applying the same task twice (once when the
//! scheduler assigns it, once when the store's event comes back) counts it once.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use foldhash::fast::FixedState;
use swarm_core::types::{
    Availability, GenericResource, Node, NodeState, Protocol, PublishMode, Task, TaskState,
};
use swarm_core::{Id, Tables};

pub(crate) type FastMap<K, V> = HashMap<K, V, FixedState>;
pub(crate) type FastSet<K> = HashSet<K, FixedState>;

/// A host-mode published port: only one task may hold it on a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostPort {
    /// Protocol.
    pub protocol: Protocol,
    /// The published port.
    pub port: u32,
}

/// What a task takes from the node it runs on: reservations and host ports.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Usage {
    /// Reserved CPU, in units of 1e-9 CPUs.
    pub nano_cpus: i64,
    /// Reserved memory, bytes.
    pub memory_bytes: i64,
    /// Reserved generic resources: kind and count, sorted by kind.
    pub generic: Vec<(String, i64)>,
    /// Host-mode published ports.
    pub host_ports: Vec<HostPort>,
}

impl Usage {
    /// What `task` reserves (its spec's reservations) and publishes in host mode.
    pub fn of(task: &Task) -> Usage {
        let mut usage = Usage::default();
        if let Some(r) = task
            .spec
            .resources
            .as_ref()
            .and_then(|r| r.reservations.as_ref())
        {
            usage.nano_cpus = r.nano_cpus.max(0);
            usage.memory_bytes = r.memory_bytes.max(0);
            let mut generic: BTreeMap<String, i64> = BTreeMap::new();
            for g in &r.generic {
                *generic.entry(g.kind().to_string()).or_default() += match g {
                    GenericResource::Discrete { value, .. } => (*value).max(0),
                    GenericResource::Named { .. } => 1,
                };
            }
            usage.generic = generic.into_iter().collect();
        }
        if let Some(ep) = &task.endpoint {
            usage.host_ports = ep
                .ports
                .iter()
                .filter(|p| p.publish_mode == PublishMode::Host && p.published_port != 0)
                .map(|p| HostPort {
                    protocol: p.protocol,
                    port: p.published_port,
                })
                .collect();
        }
        usage
    }
}

/// Resource amounts: CPU, memory and generic resources by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Capacity {
    nano_cpus: i64,
    memory_bytes: i64,
    generic: BTreeMap<String, i64>,
}

impl Capacity {
    fn of_node(node: &Node) -> Capacity {
        let mut c = Capacity::default();
        if let Some(d) = &node.description {
            c.nano_cpus = d.resources.nano_cpus;
            c.memory_bytes = d.resources.memory_bytes;
            for g in &d.resources.generic {
                *c.generic.entry(g.kind().to_string()).or_default() += match g {
                    GenericResource::Discrete { value, .. } => *value,
                    GenericResource::Named { .. } => 1,
                };
            }
        }
        c
    }

    fn add(&mut self, u: &Usage, sign: i64) {
        self.nano_cpus += sign * u.nano_cpus;
        self.memory_bytes += sign * u.memory_bytes;
        for (kind, n) in &u.generic {
            *self.generic.entry(kind.clone()).or_default() += sign * n;
        }
    }
}

/// One node as the scheduler sees it.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub(crate) slot: usize,
    node: Arc<Node>,
    schedulable: bool,
    tasks: usize,
    active: u32,
    by_service: FastMap<Id, u32>,
    total: Capacity,
    reserved: Capacity,
    ports: FastMap<HostPort, u32>,
}

impl NodeInfo {
    /// The node object.
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// The node's ID.
    pub fn id(&self) -> &Id {
        &self.node.id
    }

    /// READY and availability active: the node takes new tasks.
    pub fn is_schedulable(&self) -> bool {
        self.schedulable
    }

    /// Tasks holding resources on the node (ASSIGNED up to RUNNING).
    pub fn task_count(&self) -> usize {
        self.tasks
    }

    /// Active tasks (desired state not past COMPLETE): what spreading counts.
    pub fn active_tasks(&self) -> u32 {
        self.active
    }

    /// Active tasks of `service` (the empty ID counts tasks without a service).
    pub fn service_tasks(&self, service: &str) -> u32 {
        self.by_service.get(service).copied().unwrap_or(0)
    }

    /// CPU left after reservations, 1e-9 CPUs.
    pub fn free_nano_cpus(&self) -> i64 {
        self.total.nano_cpus - self.reserved.nano_cpus
    }

    /// Memory left after reservations, bytes.
    pub fn free_memory_bytes(&self) -> i64 {
        self.total.memory_bytes - self.reserved.memory_bytes
    }

    /// Generic resources of `kind` left after reservations.
    pub fn free_generic(&self, kind: &str) -> i64 {
        self.total.generic.get(kind).copied().unwrap_or(0)
            - self.reserved.generic.get(kind).copied().unwrap_or(0)
    }

    /// Whether a task on the node publishes `port` in host mode.
    pub fn port_in_use(&self, port: HostPort) -> bool {
        self.ports.contains_key(&port)
    }

    fn load_key(&self) -> LoadKey {
        (self.active, self.node.id.clone(), self.slot)
    }
}

/// Key of the load index: (active tasks, node ID, slot).
pub(crate) type LoadKey = (u32, Id, usize);

/// What the view counted for one task.
#[derive(Clone, Debug, PartialEq)]
struct Accounted {
    node: Id,
    service: Id,
    active: bool,
    usage: Usage,
}

impl Accounted {
    fn of(task: &Task, node: &Id, state: TaskState) -> Option<Accounted> {
        // A PENDING task with a node set (a global service's) is not counted
        // until the driver has checked that it fits there.
        let on_node =
            !node.is_empty() && state >= TaskState::Assigned && state <= TaskState::Running;
        on_node.then(|| Accounted {
            node: node.clone(),
            service: task.service_id.clone(),
            active: task.desired_state <= TaskState::Complete,
            usage: Usage::of(task),
        })
    }
}

/// The nodes with their tasks, reservations and ports. Read-only to a
/// [`Scheduler`](crate::Scheduler); the [`Driver`](crate::Driver) keeps it current.
///
/// It is built once from a store snapshot ([`from_tables`](NodeView::from_tables)),
/// then follows the store's events: a node created, updated or removed
/// ([`upsert_node`](NodeView::upsert_node), [`remove_node`](NodeView::remove_node)),
/// a task changed or removed ([`account_task`](NodeView::account_task),
/// [`forget_task`](NodeView::forget_task)). Each costs O(log nodes); nothing is
/// rescanned. Accounting is idempotent per task: the view remembers what it
/// counted for each task and replaces it, so seeing the same task twice counts
/// it once. A task counts on its node from ASSIGNED to RUNNING (resources and
/// host ports); it counts as *active* for spreading while its desired state is
/// not past COMPLETE.
#[derive(Clone, Debug, Default)]
pub struct NodeView {
    slots: Vec<Option<NodeInfo>>,
    free_slots: Vec<usize>,
    by_id: FastMap<Id, usize>,
    load: BTreeSet<LoadKey>,
    service_nodes: FastMap<Id, FastSet<usize>>,
    tasks: FastMap<Id, Accounted>,
    orphans: FastMap<Id, Vec<Id>>,
}

impl NodeView {
    /// An empty view.
    pub fn new() -> NodeView {
        NodeView::default()
    }

    /// The view of a store snapshot: every node, every task holding resources.
    pub fn from_tables(tables: &Tables) -> NodeView {
        let mut view = NodeView::new();
        let mut nodes: Vec<Arc<Node>> = tables.list::<Node>().collect();
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        for n in nodes {
            view.upsert_node(n);
        }
        for t in tables.list::<Task>() {
            view.account_task(&t);
        }
        view
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether there is no node.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Number of nodes that take new tasks.
    pub fn schedulable_count(&self) -> usize {
        self.load.len()
    }

    /// The node with ID `id`.
    pub fn node(&self, id: &str) -> Option<&NodeInfo> {
        self.by_id.get(id).map(|&s| self.slot(s))
    }

    /// Every node, in no particular order.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.slots.iter().flatten()
    }

    /// Nodes that take new tasks, fewest active tasks first (ties by node ID).
    pub fn schedulable_by_load(&self) -> impl Iterator<Item = &NodeInfo> {
        self.load.iter().map(|k| self.slot(k.2))
    }

    pub(crate) fn slot(&self, slot: usize) -> &NodeInfo {
        self.slots[slot].as_ref().expect("live slot")
    }

    pub(crate) fn load_index(&self) -> &BTreeSet<LoadKey> {
        &self.load
    }

    /// Slots of the nodes holding active tasks of `service`.
    pub(crate) fn nodes_of_service(&self, service: &str) -> impl Iterator<Item = usize> + '_ {
        self.service_nodes
            .get(service)
            .into_iter()
            .flatten()
            .copied()
    }

    /// Adds or replaces a node (a store create or update).
    pub fn upsert_node(&mut self, node: Arc<Node>) {
        let schedulable =
            node.status.state == NodeState::Ready && node.spec.availability == Availability::Active;
        if let Some(&slot) = self.by_id.get(&node.id) {
            let info = self.slots[slot].as_mut().expect("live slot");
            if info.schedulable {
                self.load.remove(&info.load_key());
            }
            info.total = Capacity::of_node(&node);
            info.node = node;
            info.schedulable = schedulable;
            if schedulable {
                self.load.insert(info.load_key());
            }
            return;
        }
        let slot = self.free_slots.pop().unwrap_or(self.slots.len());
        let info = NodeInfo {
            slot,
            total: Capacity::of_node(&node),
            node,
            schedulable,
            tasks: 0,
            active: 0,
            by_service: FastMap::default(),
            reserved: Capacity::default(),
            ports: FastMap::default(),
        };
        if schedulable {
            self.load.insert(info.load_key());
        }
        self.by_id.insert(info.node.id.clone(), slot);
        let id = info.node.id.clone();
        if slot == self.slots.len() {
            self.slots.push(Some(info));
        } else {
            self.slots[slot] = Some(info);
        }
        // Tasks seen before their node now count on it.
        for task in self.orphans.remove(&id).unwrap_or_default() {
            if let Some(acc) = self.tasks.get(&task).cloned() {
                self.apply(&task, &acc, 1);
            }
        }
    }

    /// Removes a node (a store removal). Its tasks stay accounted and count again
    /// if a node with the same ID comes back.
    pub fn remove_node(&mut self, id: &str) {
        let Some(slot) = self.by_id.remove(id) else {
            return;
        };
        let info = self.slots[slot].take().expect("live slot");
        if info.schedulable {
            self.load.remove(&info.load_key());
        }
        for service in info.by_service.keys() {
            self.unlink_service(service, slot);
        }
        if info.tasks > 0 {
            // Rare: find the node's tasks among all accounted ones.
            let on_node = self
                .tasks
                .iter()
                .filter(|(_, acc)| acc.node == info.node.id)
                .map(|(id, _)| id.clone());
            self.orphans
                .entry(info.node.id.clone())
                .or_default()
                .extend(on_node);
        }
        self.free_slots.push(slot);
    }

    /// Counts `task` as the store has it: on its node if it is assigned and not
    /// past RUNNING, else nowhere. Returns whether this freed capacity on a node.
    pub fn account_task(&mut self, task: &Task) -> bool {
        let acc = Accounted::of(task, &task.node_id, task.status.state);
        self.set(&task.id, acc)
    }

    /// Makes room for `additional` more accounted tasks.
    pub(crate) fn reserve_tasks(&mut self, additional: usize) {
        self.tasks.reserve(additional);
    }

    /// Counts `task` as assigned to `node` (before the store says so).
    pub fn account_placement(&mut self, task: &Task, node: &Id) {
        let acc = Accounted::of(task, node, TaskState::Assigned);
        self.set(&task.id, acc);
    }

    /// Forgets a removed task. Returns whether this freed capacity on a node.
    pub fn forget_task(&mut self, id: &str) -> bool {
        self.set(&Id::from(id), None)
    }

    fn set(&mut self, id: &Id, acc: Option<Accounted>) -> bool {
        let old = match acc {
            Some(acc) => {
                if self.tasks.get(id) == Some(&acc) {
                    return false;
                }
                let old = self.tasks.insert(id.clone(), acc.clone());
                if let Some(old) = &old {
                    self.apply(id, old, -1);
                }
                self.apply(id, &acc, 1);
                old.filter(|o| o.node != acc.node || o.active && !acc.active)
            }
            None => {
                let old = self.tasks.remove(id);
                if let Some(old) = &old {
                    self.apply(id, old, -1);
                }
                old
            }
        };
        old.is_some()
    }

    /// Adds (`sign` 1) or removes (-1) a task's counts on its node.
    fn apply(&mut self, task: &Id, acc: &Accounted, sign: i64) {
        let Some(&slot) = self.by_id.get(&acc.node) else {
            let orphans = self.orphans.entry(acc.node.clone()).or_default();
            if sign > 0 {
                orphans.push(task.clone());
            } else {
                orphans.retain(|t| t != task);
            }
            return;
        };
        let info = self.slots[slot].as_mut().expect("live slot");
        if info.schedulable {
            self.load.remove(&info.load_key());
        }
        info.reserved.add(&acc.usage, sign);
        for p in &acc.usage.host_ports {
            let n = info.ports.entry(*p).or_default();
            if sign > 0 {
                *n += 1;
            } else {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    info.ports.remove(p);
                }
            }
        }
        let (mut linked, mut unlinked) = (false, false);
        if sign > 0 {
            info.tasks += 1;
        } else {
            info.tasks = info.tasks.saturating_sub(1);
        }
        if acc.active {
            if sign > 0 {
                info.active += 1;
                let n = info.by_service.entry(acc.service.clone()).or_default();
                *n += 1;
                linked = *n == 1;
            } else {
                info.active = info.active.saturating_sub(1);
                if let Some(n) = info.by_service.get_mut(&acc.service) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        info.by_service.remove(&acc.service);
                        unlinked = true;
                    }
                }
            }
        }
        if info.schedulable {
            self.load.insert(info.load_key());
        }
        if linked {
            self.service_nodes
                .entry(acc.service.clone())
                .or_default()
                .insert(slot);
        }
        if unlinked {
            self.unlink_service(&acc.service, slot);
        }
    }

    fn unlink_service(&mut self, service: &Id, slot: usize) {
        if let Some(set) = self.service_nodes.get_mut(service) {
            set.remove(&slot);
            if set.is_empty() {
                self.service_nodes.remove(service);
            }
        }
    }
}
