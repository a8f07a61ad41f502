//! What a task needs from a node, and the filters that check it, in SwarmKit's
//! order: ready, resources, plugin, constraint, platform, host port, max replicas.

use std::fmt;

use swarm_core::types::{MountType, Platform, Task};

use crate::constraint::{Constraint, node_matches, parse_constraints};
use crate::view::{NodeInfo, Usage};

/// One node filter. A node is rejected by the first filter it fails, in the
/// order of [`Filter::ALL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Filter {
    /// The node is not READY, or is paused or drained.
    Ready,
    /// Not enough CPU, memory or generic resources left for the reservations.
    Resources,
    /// A network, volume or log plugin the task needs is missing.
    Plugin,
    /// A placement constraint does not hold.
    Constraint,
    /// The node's OS/architecture is not among the image's platforms.
    Platform,
    /// A host-mode published port is taken on the node.
    HostPort,
    /// The node already runs `max_replicas` tasks of the service.
    MaxReplicas,
}

impl Filter {
    /// Every filter, in pipeline order.
    pub const ALL: [Filter; 7] = [
        Filter::Ready,
        Filter::Resources,
        Filter::Plugin,
        Filter::Constraint,
        Filter::Platform,
        Filter::HostPort,
        Filter::MaxReplicas,
    ];

    /// SwarmKit's words for this filter rejecting `nodes` nodes.
    pub fn explain(&self, nodes: usize) -> String {
        let (one, many) = match self {
            Filter::Ready => (
                "1 node not available for new tasks",
                "nodes not available for new tasks",
            ),
            Filter::Resources => (
                "insufficient resources on 1 node",
                "insufficient resources on",
            ),
            Filter::Plugin => ("missing plugin on 1 node", "missing plugin on"),
            Filter::Constraint => (
                "scheduling constraints not satisfied on 1 node",
                "scheduling constraints not satisfied on",
            ),
            Filter::Platform => ("unsupported platform on 1 node", "unsupported platform on"),
            Filter::HostPort => (
                "host-mode port already in use on 1 node",
                "host-mode port already in use on",
            ),
            Filter::MaxReplicas => return "max replicas per node limit exceed".into(),
        };
        match (nodes, self) {
            (1, _) => one.into(),
            (n, Filter::Ready) => format!("{n} {many}"),
            (n, _) => format!("{many} {n} nodes"),
        }
    }
}

/// Why a task fits nowhere: how many nodes each filter rejected.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Explanation {
    counts: [usize; 7],
}

impl Explanation {
    /// Counts one node rejected by `filter`.
    pub fn add(&mut self, filter: Filter) {
        self.counts[filter as usize] += 1;
    }

    /// Nodes rejected by `filter`.
    pub fn count(&self, filter: Filter) -> usize {
        self.counts[filter as usize]
    }

    /// The task's error as SwarmKit words it, most frequent reason first:
    /// `no suitable node (2 nodes not available for new tasks; insufficient
    /// resources on 1 node)`, or `no suitable node` when there is no node at all.
    pub fn message(&self) -> String {
        let mut reasons: Vec<(usize, Filter)> = Filter::ALL
            .iter()
            .map(|&f| (self.count(f), f))
            .filter(|&(n, _)| n > 0)
            .collect();
        reasons.sort_by_key(|r| std::cmp::Reverse(r.0));
        if reasons.is_empty() {
            return "no suitable node".into();
        }
        let parts: Vec<String> = reasons.iter().map(|(n, f)| f.explain(*n)).collect();
        format!("no suitable node ({})", parts.join("; "))
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

/// Everything a task asks of a node. Tasks with equal requirements (and the same
/// service) are interchangeable to the scheduler, which filters nodes once for
/// all of them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Requirements {
    /// Reservations and host ports.
    pub usage: Usage,
    /// Placement constraints. An expression that does not parse is left out
    /// (the control API refuses it at service create), as SwarmKit does.
    pub constraints: Vec<Constraint>,
    /// Platforms the image runs on (empty: any).
    pub platforms: Vec<Platform>,
    /// Spread descriptors of the placement preferences, in order.
    pub preferences: Vec<String>,
    /// At most this many active tasks of the service per node (0: no limit).
    pub max_replicas: u64,
    /// Plugins the task needs: (`Network` or `Volume`, name).
    pub plugins: Vec<(&'static str, String)>,
    /// The log driver, needed on nodes that report log plugins.
    pub log_driver: Option<String>,
}

impl Requirements {
    /// What `task` asks of a node.
    pub fn of(task: &Task) -> Requirements {
        let mut req = Requirements {
            usage: Usage::of(task),
            ..Default::default()
        };
        if let Some(p) = &task.spec.placement {
            if !p.constraints.is_empty() {
                match parse_constraints(&p.constraints) {
                    Ok(c) => req.constraints = c,
                    Err(e) => tracing::warn!(task = %task.id, error = %e, "ignoring constraints"),
                }
            }
            req.platforms = p.platforms.clone();
            req.preferences = p
                .preferences
                .iter()
                .map(|p| p.spread_descriptor.clone())
                .collect();
            req.max_replicas = p.max_replicas;
        }
        for m in &task.spec.container.mounts {
            if let (MountType::Volume, Some(d)) = (m.r#type, &m.volume_driver)
                && !d.name.is_empty()
                && d.name != "local"
            {
                req.plugins.push(("Volume", d.name.clone()));
            }
        }
        for a in &task.networks {
            if let Some(d) = &a.network.driver_state
                && !d.name.is_empty()
            {
                req.plugins.push(("Network", d.name.clone()));
            }
        }
        req.log_driver = task
            .spec
            .log_driver
            .as_ref()
            .map(|d| d.name.clone())
            .filter(|n| !n.is_empty() && n != "none");
        req
    }

    /// Checks what does not change while tasks are placed: readiness, plugins,
    /// constraints and platform.
    pub fn check_static(&self, node: &NodeInfo) -> Result<(), Filter> {
        if !node.is_schedulable() {
            return Err(Filter::Ready);
        }
        self.check_node_attributes(node)
    }

    /// Plugins, constraints and platform, in pipeline order.
    pub(crate) fn check_node_attributes(&self, node: &NodeInfo) -> Result<(), Filter> {
        if !self.plugins_present(node) {
            return Err(Filter::Plugin);
        }
        if !node_matches(&self.constraints, node.node()) {
            return Err(Filter::Constraint);
        }
        if !self.platform_supported(node) {
            return Err(Filter::Platform);
        }
        Ok(())
    }

    /// Whether only readiness can reject a node: every schedulable node passes
    /// the static filters.
    pub fn only_readiness(&self) -> bool {
        self.plugins.is_empty()
            && self.constraints.is_empty()
            && self.platforms.is_empty()
            && self.log_driver.is_none()
    }

    fn plugins_present(&self, node: &NodeInfo) -> bool {
        let Some(desc) = &node.node().description else {
            // A node that reported nothing about its engine is not filtered.
            return true;
        };
        let plugins = &desc.engine.plugins;
        let has = |kind: &str, name: &str| {
            plugins.iter().any(|p| {
                p.r#type == kind
                    && (p.name == name || p.name.strip_prefix(name).is_some_and(|r| r == ":latest"))
            })
        };
        if !self.plugins.iter().all(|(kind, name)| has(kind, name)) {
            return false;
        }
        match &self.log_driver {
            // Engines that list no log plugins at all predate reporting them.
            Some(name) => !plugins.iter().any(|p| p.r#type == "Log") || has("Log", name),
            None => true,
        }
    }

    fn platform_supported(&self, node: &NodeInfo) -> bool {
        if self.platforms.is_empty() {
            return true;
        }
        let Some(desc) = &node.node().description else {
            return false;
        };
        let (os, arch) = (
            &desc.platform.os,
            normalize_arch(&desc.platform.architecture),
        );
        self.platforms.iter().any(|p| {
            (p.architecture.is_empty() || normalize_arch(&p.architecture) == arch)
                && (p.os.is_empty() || p.os == *os)
        })
    }
}

fn normalize_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explanations_use_swarmkit_words() {
        assert_eq!(
            Filter::Ready.explain(2),
            "2 nodes not available for new tasks"
        );
        assert_eq!(
            Filter::Resources.explain(1),
            "insufficient resources on 1 node"
        );
        assert_eq!(
            Filter::Resources.explain(3),
            "insufficient resources on 3 nodes"
        );
        assert_eq!(Filter::Plugin.explain(2), "missing plugin on 2 nodes");
        assert_eq!(
            Filter::Constraint.explain(5),
            "scheduling constraints not satisfied on 5 nodes"
        );
        assert_eq!(
            Filter::Platform.explain(1),
            "unsupported platform on 1 node"
        );
        assert_eq!(
            Filter::HostPort.explain(2),
            "host-mode port already in use on 2 nodes"
        );
        assert_eq!(
            Filter::MaxReplicas.explain(4),
            "max replicas per node limit exceed"
        );
    }

    #[test]
    fn message_orders_by_count() {
        let mut e = Explanation::default();
        assert_eq!(e.message(), "no suitable node");
        e.add(Filter::Resources);
        e.add(Filter::Ready);
        e.add(Filter::Ready);
        assert_eq!(
            e.to_string(),
            "no suitable node (2 nodes not available for new tasks; insufficient resources on 1 node)"
        );
    }

    #[test]
    fn arch_aliases_are_equal() {
        assert_eq!(normalize_arch("x86_64"), normalize_arch("amd64"));
        assert_eq!(normalize_arch("aarch64"), normalize_arch("arm64"));
        assert_ne!(normalize_arch("arm64"), normalize_arch("amd64"));
    }
}
