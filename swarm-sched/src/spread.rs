//! The default scheduler: SwarmKit's spread strategy with placement preferences,
//! at O(log nodes) per placement.

use std::cmp::Reverse;
use std::collections::btree_set;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;

use swarm_core::Id;
use swarm_core::types::Task;

use crate::draft::Draft;
use crate::filter::Requirements;
use crate::scheduler::{Plan, Scheduler};
use crate::view::{FastMap, FastSet, LoadKey, NodeInfo, NodeView};

/// SwarmKit's default strategy: spread each service's tasks evenly over the
/// nodes that pass the filters, following placement preferences.
///
/// Per task it prefers the node with the fewest active tasks of the same
/// service, then the fewest active tasks overall, then the smaller node ID.
/// With placement preferences (`spread=node.labels.X`, nested in order) it first
/// picks the label value with the fewest tasks of the service (nodes without
/// the label form their own group), then the node within it.
///
/// ```text
/// tasks ──group by (service, requirements)──► one group = interchangeable tasks
///   per group: preferences? ──no──► heap of nodes already holding the service
///                           │        (or touched in this pass), merged with a
///                           │        cursor over the view's load index
///                           └─yes─► tree: one level per descriptor, branches
///                                    by fewest service tasks, a heap per leaf
/// ```
///
/// Nodes are filtered once per group, not per task; each placement costs
/// O(log nodes). Explaining a failure scans every node once per failed group.
#[derive(Clone, Copy, Debug, Default)]
pub struct SpreadScheduler;

impl Scheduler for SpreadScheduler {
    fn schedule(&mut self, view: &NodeView, tasks: &[Arc<Task>]) -> Plan {
        let mut plan = Plan::default();
        let mut draft = Draft::new(view);
        for group in group_tasks(tasks) {
            schedule_group(view, &mut draft, &group, &mut plan);
        }
        plan
    }
}

/// Tasks that are interchangeable to the scheduler.
struct Group<'t> {
    service: Id,
    req: Requirements,
    tasks: Vec<&'t Arc<Task>>,
}

/// Groups tasks by (service, requirements), groups in order of first appearance.
fn group_tasks(tasks: &[Arc<Task>]) -> Vec<Group<'_>> {
    let mut index: FastMap<(Id, Requirements), usize> = FastMap::default();
    let mut groups: Vec<Group<'_>> = Vec::new();
    for t in tasks {
        let key = (t.service_id.clone(), Requirements::of(t));
        match index.get(&key) {
            Some(&g) => groups[g].tasks.push(t),
            None => {
                index.insert(key.clone(), groups.len());
                groups.push(Group {
                    service: key.0,
                    req: key.1,
                    tasks: vec![t],
                });
            }
        }
    }
    groups
}

fn schedule_group(view: &NodeView, draft: &mut Draft<'_>, group: &Group<'_>, plan: &mut Plan) {
    let (service, req) = (&group.service, &group.req);
    let mut candidates = if req.preferences.is_empty() {
        Tree::leaf(Leaf::lazy(view, draft, service, req))
    } else {
        Tree::build(view, draft, service, req)
    };
    let mut placed = 0;
    while placed < group.tasks.len() {
        let Some(slot) = candidates.place_one(view, draft, service, req) else {
            break;
        };
        plan.place(&group.tasks[placed].id, view.slot(slot).id());
        placed += 1;
    }
    if placed < group.tasks.len() {
        let reason = draft.explain(service, req).message();
        for t in &group.tasks[placed..] {
            plan.fail(&t.id, reason.clone());
        }
    }
}

/// Heap key of a candidate node: (service tasks, active tasks, node ID, slot).
type Key = (u32, u32, Id, usize);

fn key_of(draft: &Draft<'_>, node: &NodeInfo, service: &str) -> Key {
    (
        draft.service_tasks(node, service),
        draft.active_tasks(node),
        node.id().clone(),
        node.slot,
    )
}

/// The candidate nodes of one group (or one branch of a preference tree).
struct Leaf<'v> {
    /// Nodes with a known key: holding the service, or touched in this pass.
    heap: BinaryHeap<Reverse<Key>>,
    /// The rest, fewest active tasks first: untouched nodes without the service
    /// (service count 0), taken lazily from the view's load index.
    cursor: Option<btree_set::Iter<'v, LoadKey>>,
    /// The next cursor candidate, already filtered.
    next: Option<usize>,
}

impl<'v> Leaf<'v> {
    /// Every schedulable node is a candidate; only those the service already
    /// occupies (or the pass touched) are looked at up front.
    fn lazy(view: &'v NodeView, draft: &Draft<'_>, service: &Id, req: &Requirements) -> Leaf<'v> {
        let mut seen: FastSet<usize> = FastSet::default();
        let slots = view
            .nodes_of_service(service)
            .chain(draft.touched())
            .filter(|s| seen.insert(*s))
            .collect::<Vec<_>>();
        let mut leaf = Leaf::with_nodes(view, draft, service, req, slots);
        leaf.cursor = Some(view.load_index().iter());
        leaf
    }

    /// Exactly `slots` are candidates (those passing the static filters).
    fn with_nodes(
        view: &NodeView,
        draft: &Draft<'_>,
        service: &Id,
        req: &Requirements,
        slots: Vec<usize>,
    ) -> Leaf<'v> {
        let keys = slots
            .into_iter()
            .map(|s| view.slot(s))
            .filter(|n| req.check_static(n).is_ok())
            .map(|n| Reverse(key_of(draft, n, service)))
            .collect::<Vec<_>>();
        Leaf {
            heap: BinaryHeap::from(keys),
            cursor: None,
            next: None,
        }
    }

    /// Places one task on the best candidate and returns its slot, or `None`
    /// when no candidate passes the filters any more.
    fn place_one(
        &mut self,
        view: &'v NodeView,
        draft: &mut Draft<'_>,
        service: &Id,
        req: &Requirements,
    ) -> Option<usize> {
        if self.next.is_none() {
            self.next = self.advance(view, draft, service, req);
        }
        // Candidates in the heap only get worse within a group: drop misfits.
        while let Some(Reverse(k)) = self.heap.peek() {
            if draft.check_dynamic(view.slot(k.3), service, req).is_ok() {
                break;
            }
            self.heap.pop();
        }
        let from_cursor = match (self.next, self.heap.peek()) {
            (None, None) => return None,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(slot), Some(Reverse(k))) => {
                let n = view.slot(slot);
                (0, n.active_tasks(), n.id()) < (k.0, k.1, &k.2)
            }
        };
        let slot = match from_cursor {
            true => self.next.take()?,
            false => self.heap.pop()?.0.3,
        };
        let node = view.slot(slot);
        draft.place(node, service, req);
        self.heap.push(Reverse(key_of(draft, node, service)));
        Some(slot)
    }

    /// The next untouched node without the service that passes every filter.
    fn advance(
        &mut self,
        view: &NodeView,
        draft: &Draft<'_>,
        service: &Id,
        req: &Requirements,
    ) -> Option<usize> {
        let cursor = self.cursor.as_mut()?;
        let only_ready = req.only_readiness();
        for &(_, _, slot) in cursor.by_ref() {
            let n = view.slot(slot);
            if n.service_tasks(service) > 0 || draft.is_touched(slot) {
                continue; // in the heap already
            }
            if (!only_ready && req.check_static(n).is_err())
                || draft.check_dynamic(n, service, req).is_err()
            {
                continue;
            }
            return Some(slot);
        }
        self.cursor = None;
        None
    }
}

/// Placement preferences: one tree level per spread descriptor (a single leaf
/// without preferences).
struct Tree<'v> {
    leaf: Option<Leaf<'v>>,
    children: Vec<Tree<'v>>,
    /// Branches by (service tasks in the branch, branch index).
    order: BinaryHeap<Reverse<(u64, usize)>>,
}

#[derive(Default)]
struct Builder {
    tasks: u64,
    children: BTreeMap<String, Builder>,
    slots: Vec<usize>,
}

impl<'v> Tree<'v> {
    /// A tree of one branch: `leaf`.
    fn leaf(leaf: Leaf<'v>) -> Tree<'v> {
        Tree {
            leaf: Some(leaf),
            children: Vec::new(),
            order: BinaryHeap::new(),
        }
    }

    fn build(view: &'v NodeView, draft: &Draft<'_>, service: &Id, req: &Requirements) -> Tree<'v> {
        let mut root = Builder::default();
        for node in view.nodes() {
            let tasks = u64::from(draft.service_tasks(node, service));
            let mut b = &mut root;
            for descriptor in &req.preferences {
                // An unknown descriptor is ignored, as in SwarmKit.
                let Some(value) = label_value(node, descriptor) else {
                    continue;
                };
                b = b.children.entry(value.to_string()).or_default();
                b.tasks += tasks;
            }
            b.slots.push(node.slot);
        }
        Tree::finish(view, draft, service, req, root)
    }

    fn finish(
        view: &NodeView,
        draft: &Draft<'_>,
        service: &Id,
        req: &Requirements,
        b: Builder,
    ) -> Tree<'v> {
        if b.children.is_empty() {
            return Tree::leaf(Leaf::with_nodes(view, draft, service, req, b.slots));
        }
        let mut children = Vec::with_capacity(b.children.len());
        let mut order = BinaryHeap::with_capacity(b.children.len());
        for (i, (_, child)) in b.children.into_iter().enumerate() {
            order.push(Reverse((child.tasks, i)));
            children.push(Tree::finish(view, draft, service, req, child));
        }
        Tree {
            leaf: None,
            children,
            order,
        }
    }

    /// Places one task in the branch with the fewest tasks of the service that
    /// still has room.
    fn place_one(
        &mut self,
        view: &'v NodeView,
        draft: &mut Draft<'_>,
        service: &Id,
        req: &Requirements,
    ) -> Option<usize> {
        if let Some(leaf) = &mut self.leaf {
            return leaf.place_one(view, draft, service, req);
        }
        while let Some(Reverse((tasks, i))) = self.order.pop() {
            if let Some(slot) = self.children[i].place_one(view, draft, service, req) {
                self.order.push(Reverse((tasks + 1, i)));
                return Some(slot);
            }
            // A full branch is not offered again in this pass.
        }
        None
    }
}

/// The value of `node.labels.X` or `engine.labels.X` on the node ("" when the
/// label is missing); `None` for any other descriptor.
fn label_value<'a>(node: &'a NodeInfo, descriptor: &str) -> Option<&'a str> {
    let lower = descriptor.to_ascii_lowercase();
    let n = node.node();
    if let Some(label) = lower.strip_prefix("node.labels.").filter(|l| !l.is_empty()) {
        let label = &descriptor[descriptor.len() - label.len()..];
        return Some(n.spec.annotations.labels.get(label).map_or("", |v| v));
    }
    if let Some(label) = lower
        .strip_prefix("engine.labels.")
        .filter(|l| !l.is_empty())
    {
        let label = &descriptor[descriptor.len() - label.len()..];
        let labels = n.description.as_ref().map(|d| &d.engine.labels);
        return Some(labels.and_then(|l| l.get(label)).map_or("", |v| v));
    }
    None
}

#[cfg(test)]
mod tests;
