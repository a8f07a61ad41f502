//! A plan being drawn up: the view plus the placements made so far in a pass.

use swarm_core::Id;

use crate::filter::{Explanation, Filter, Requirements};
use crate::view::{FastMap, HostPort, NodeInfo, NodeView};

/// What the placements of a draft add to one node.
#[derive(Clone, Debug, Default)]
struct Delta {
    active: u32,
    services: Vec<(Id, u32)>,
    nano_cpus: i64,
    memory_bytes: i64,
    generic: Vec<(String, i64)>,
    ports: Vec<HostPort>,
}

/// The [`NodeView`] overlaid with the placements a scheduler has decided in the
/// current pass, so that later tasks of the batch see earlier ones: resources
/// running out, ports taken, replicas per node. The view itself is not changed.
///
/// Schedulers use it to check nodes ([`Draft::check`]) and record decisions
/// ([`Draft::place`]); the driver uses one to validate a returned plan.
#[derive(Clone, Debug)]
pub struct Draft<'v> {
    view: &'v NodeView,
    deltas: FastMap<usize, Delta>,
}

impl<'v> Draft<'v> {
    /// A draft with no placement yet.
    pub fn new(view: &'v NodeView) -> Draft<'v> {
        Draft {
            view,
            deltas: FastMap::default(),
        }
    }

    /// The view under the draft.
    pub fn view(&self) -> &'v NodeView {
        self.view
    }

    /// Active tasks on `node`, with this draft's placements.
    pub fn active_tasks(&self, node: &NodeInfo) -> u32 {
        node.active_tasks() + self.delta(node).map_or(0, |d| d.active)
    }

    /// Active tasks of `service` on `node`, with this draft's placements.
    pub fn service_tasks(&self, node: &NodeInfo, service: &str) -> u32 {
        let extra = self.delta(node).map_or(0, |d| {
            d.services
                .iter()
                .find(|(s, _)| s.as_str() == service)
                .map_or(0, |(_, n)| *n)
        });
        node.service_tasks(service) + extra
    }

    /// CPU left on `node` after reservations and this draft's placements.
    pub fn free_nano_cpus(&self, node: &NodeInfo) -> i64 {
        node.free_nano_cpus() - self.delta(node).map_or(0, |d| d.nano_cpus)
    }

    /// Memory left on `node` after reservations and this draft's placements.
    pub fn free_memory_bytes(&self, node: &NodeInfo) -> i64 {
        node.free_memory_bytes() - self.delta(node).map_or(0, |d| d.memory_bytes)
    }

    /// Generic resources of `kind` left on `node`.
    pub fn free_generic(&self, node: &NodeInfo, kind: &str) -> i64 {
        let extra = self.delta(node).map_or(0, |d| {
            d.generic
                .iter()
                .find(|(k, _)| k == kind)
                .map_or(0, |(_, n)| *n)
        });
        node.free_generic(kind) - extra
    }

    /// Runs every filter, in pipeline order: `Err` names the first that rejects
    /// `node` for a task of `service` with requirements `req`.
    pub fn check(&self, node: &NodeInfo, service: &str, req: &Requirements) -> Result<(), Filter> {
        if !node.is_schedulable() {
            return Err(Filter::Ready);
        }
        if !self.resources_fit(node, req) {
            return Err(Filter::Resources);
        }
        req.check_node_attributes(node)?;
        self.check_counted(node, service, req)
    }

    /// The filters whose answer changes as tasks are placed (resources, host
    /// ports, max replicas).
    pub(crate) fn check_dynamic(
        &self,
        node: &NodeInfo,
        service: &str,
        req: &Requirements,
    ) -> Result<(), Filter> {
        if !self.resources_fit(node, req) {
            return Err(Filter::Resources);
        }
        self.check_counted(node, service, req)
    }

    fn check_counted(
        &self,
        node: &NodeInfo,
        service: &str,
        req: &Requirements,
    ) -> Result<(), Filter> {
        if !req.usage.host_ports.is_empty() {
            let taken = self.delta(node).map_or(&[][..], |d| &d.ports[..]);
            if req
                .usage
                .host_ports
                .iter()
                .any(|p| node.port_in_use(*p) || taken.contains(p))
            {
                return Err(Filter::HostPort);
            }
        }
        if req.max_replicas > 0 && u64::from(self.service_tasks(node, service)) >= req.max_replicas
        {
            return Err(Filter::MaxReplicas);
        }
        Ok(())
    }

    fn resources_fit(&self, node: &NodeInfo, req: &Requirements) -> bool {
        let u = &req.usage;
        (u.nano_cpus == 0 || u.nano_cpus <= self.free_nano_cpus(node))
            && (u.memory_bytes == 0 || u.memory_bytes <= self.free_memory_bytes(node))
            && u.generic
                .iter()
                .all(|(k, n)| *n <= self.free_generic(node, k))
    }

    /// Records a task of `service` with requirements `req` as placed on `node`.
    /// Does not check: call [`check`](Draft::check) first.
    pub fn place(&mut self, node: &NodeInfo, service: &Id, req: &Requirements) {
        let d = self.deltas.entry(node.slot).or_default();
        d.active += 1;
        match d.services.iter_mut().find(|(s, _)| s == service) {
            Some((_, n)) => *n += 1,
            None => d.services.push((service.clone(), 1)),
        }
        d.nano_cpus += req.usage.nano_cpus;
        d.memory_bytes += req.usage.memory_bytes;
        for (kind, n) in &req.usage.generic {
            match d.generic.iter_mut().find(|(k, _)| k == kind) {
                Some((_, m)) => *m += n,
                None => d.generic.push((kind.clone(), *n)),
            }
        }
        d.ports.extend_from_slice(&req.usage.host_ports);
    }

    /// Why no node takes a task of `service` with requirements `req`: every node
    /// is counted against the first filter that rejects it. Scans every node.
    pub fn explain(&self, service: &str, req: &Requirements) -> Explanation {
        let mut e = Explanation::default();
        for node in self.view.nodes() {
            if let Err(f) = self.check(node, service, req) {
                e.add(f);
            }
        }
        e
    }

    /// Whether this draft placed anything on the node in `slot`.
    pub(crate) fn is_touched(&self, slot: usize) -> bool {
        self.deltas.contains_key(&slot)
    }

    /// Slots this draft placed tasks on.
    pub(crate) fn touched(&self) -> impl Iterator<Item = usize> + '_ {
        self.deltas.keys().copied()
    }

    fn delta(&self, node: &NodeInfo) -> Option<&Delta> {
        if self.deltas.is_empty() {
            return None;
        }
        self.deltas.get(&node.slot)
    }
}
