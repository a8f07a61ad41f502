//! Nodes: list, inspect, update (availability, labels, role), remove.

use std::sync::Arc;

use swarm_core::types::{
    BlacklistedCertificate, Membership, Node, NodeRole, NodeSpec, NodeState, Reachability,
};
use swarm_core::{Kind, Timestamp};

use super::{Control, existing};
use crate::error::{Error, Result};

/// Filters of `docker node ls` (every set field must match).
#[derive(Clone, Debug, Default)]
pub struct NodeFilter {
    /// IDs or ID prefixes.
    pub ids: Vec<String>,
    /// Names (hostnames) or name prefixes.
    pub names: Vec<String>,
    /// Role.
    pub role: Option<NodeRole>,
    /// Membership.
    pub membership: Option<Membership>,
    /// `KEY` or `KEY=VALUE` node labels.
    pub labels: Vec<String>,
}

impl NodeFilter {
    fn matches(&self, n: &Node) -> bool {
        (self.ids.is_empty() || self.ids.iter().any(|p| n.id.starts_with(p.as_str())))
            && (self.names.is_empty()
                || self.names.iter().any(|p| n.name().starts_with(p.as_str())))
            && self.role.is_none_or(|r| n.role == r)
            && self.membership.is_none_or(|m| n.spec.membership == m)
            && self
                .labels
                .iter()
                .all(|l| label_matches(&n.spec.annotations.labels, l))
    }
}

pub(crate) fn label_matches(
    labels: &std::collections::BTreeMap<String, String>,
    filter: &str,
) -> bool {
    match filter.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
        None => labels.contains_key(filter),
    }
}

impl Control {
    /// Nodes matching `filter`, sorted by name then ID.
    pub fn list_nodes(&self, filter: &NodeFilter) -> Vec<Arc<Node>> {
        let view = self.store.view();
        let mut nodes: Vec<Arc<Node>> = view.list::<Node>().filter(|n| filter.matches(n)).collect();
        nodes.sort_by(|a, b| (a.name(), &a.id).cmp(&(b.name(), &b.id)));
        nodes
    }

    /// A node by ID, unique ID prefix or hostname.
    pub fn inspect_node(&self, id_or_name: &str) -> Result<Arc<Node>> {
        Ok(self.store.view().resolve::<Node>(id_or_name)?)
    }

    /// Replaces a node's spec (`docker node update`, `promote`, `demote`).
    /// `version` is the node version the caller read. Demoting the last manager
    /// is refused.
    pub async fn update_node(
        &self,
        id_or_name: &str,
        version: u64,
        spec: NodeSpec,
    ) -> Result<Arc<Node>> {
        let view = self.store.view();
        let node = view.resolve::<Node>(id_or_name)?;
        if node.spec.desired_role == NodeRole::Manager && spec.desired_role == NodeRole::Worker {
            let managers = view
                .list::<Node>()
                .filter(|n| n.spec.desired_role == NodeRole::Manager)
                .count();
            if managers <= 1 {
                return Err(Error::FailedPrecondition(format!(
                    "attempting to demote the last manager of the swarm (node {})",
                    node.id
                )));
            }
            if node.manager_status.is_some() {
                check_quorum_without(&view, &node)?;
            }
        }
        if version < node.spec_version || version > node.meta.version.index {
            // The spec changed since the caller read it (or the caller
            // names a version that never was): its write would lose that.
            return Err(Error::Conflict(format!(
                "update out of sequence: node {} was read at version {version}, its spec changed at version {}",
                node.id, node.spec_version
            )));
        }
        // Read at or after the last spec change: what the swarm wrote into the
        // node since (status, reachability, certificate) is kept, not refused.
        let id = node.id.clone();
        Ok(self
            .store
            .update_retrying(|tx| {
                let current = existing::<Node>(tx, &id)?;
                if current.spec_version > version {
                    return Err(swarm_core::Error::Conflict {
                        kind: Kind::Node,
                        id: id.clone(),
                        read: version,
                        current: current.spec_version,
                    });
                }
                let mut n = (*current).clone();
                n.spec = spec.clone();
                tx.update(n)
            })
            .await?)
    }

    /// Removes a node (`docker node rm`). A manager must be demoted first; a node
    /// that is up needs `force`. Its certificate is refused from then on.
    pub async fn remove_node(&self, id_or_name: &str, force: bool) -> Result<()> {
        let node = self.inspect_node(id_or_name)?;
        if node.role == NodeRole::Manager || node.spec.desired_role == NodeRole::Manager {
            return Err(Error::FailedPrecondition(format!(
                "node {} is a cluster manager and is a member of the raft cluster. It must be demoted to worker before removal",
                node.id
            )));
        }
        if !force && node.status.state == NodeState::Ready {
            return Err(Error::FailedPrecondition(format!(
                "node {} is not down and can't be removed (use force to remove it anyway)",
                node.id
            )));
        }
        let expiry = Timestamp::now().add(std::time::Duration::from_secs(2160 * 3600));
        self.store
            .update_retrying(|tx| {
                existing::<Node>(tx, &node.id)?;
                if let Some(c) = tx.cluster() {
                    let mut c = (*c).clone();
                    c.blacklisted_certificates.push(BlacklistedCertificate {
                        node_id: node.id.clone(),
                        expiry,
                    });
                    tx.update(c)?;
                }
                tx.delete::<Node>(&node.id)
            })
            .await?;
        Ok(())
    }
}

/// Refuses to take manager `node` out of the raft group when the managers left
/// that the leader reaches would be fewer than a quorum of them.
fn check_quorum_without(view: &swarm_core::Tables, node: &Node) -> Result<()> {
    let members: Vec<_> = view
        .list::<Node>()
        .filter_map(|n| n.manager_status.clone().map(|ms| (n.id.clone(), ms)))
        .collect();
    let remaining = members.iter().filter(|(id, _)| *id != node.id).count();
    let reachable = members
        .iter()
        .filter(|(id, ms)| *id != node.id && ms.reachability == Reachability::Reachable)
        .count();
    let needed = remaining / 2 + 1;
    if reachable < needed {
        return Err(Error::FailedPrecondition(format!(
            "can't remove member from the raft: this would result in a loss of quorum \
             ({reachable} of the {remaining} other managers are reachable, {needed} needed; node {})",
            node.id
        )));
    }
    Ok(())
}
