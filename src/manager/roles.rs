//! Node roles, as the leader keeps them: it carries out `node promote` and
//! `node demote` (the node's `spec.desired_role`) and records which managers the
//! raft leader can reach, and which one leads.
//!
//! ```text
//!   promote: desired Manager ──► role = Manager ──► the node renews its
//!            certificate (manager OU) and joins the raft group itself
//!   demote:  desired Worker  ──► raft member removed (refused while it would
//!            lose quorum) ──► role = Worker, no manager status ──► the node
//!            renews its certificate (worker OU) and runs as a worker
//! ```
//!
//! The raft member goes first on demotion: a member that stopped before its
//! removal committed could leave a two-manager swarm without a quorum.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use swarm_core::types::{Node, NodeRole, Reachability};
use swarm_core::{Filter, Kind, Store};
use swarm_raft::{RaftError, RaftNode};
use tokio::sync::watch;

/// How often reachability is refreshed and refused changes are tried again.
const PERIOD: Duration = Duration::from_secs(1);

/// What the leader must do to one node.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    /// Record the promotion; the node joins the raft group on its own.
    Promote,
    /// Remove raft member `raft_id`, then record the demotion.
    RemoveMember(u64),
    /// Record the demotion (no raft member left).
    Demote,
}

/// The step `node` needs, given the raft group's members.
fn step(node: &Node, members: &[u64]) -> Option<Step> {
    match (node.spec.desired_role, node.role) {
        (NodeRole::Manager, NodeRole::Worker) => Some(Step::Promote),
        (NodeRole::Worker, NodeRole::Manager) => match &node.manager_status {
            Some(ms) if members.contains(&ms.raft_id) => Some(Step::RemoveMember(ms.raft_id)),
            _ => Some(Step::Demote),
        },
        _ => None,
    }
}

/// One of the leader's loops ([`crate::manager::leader`]): a pass at once, on
/// every node change and every [`PERIOD`], until `stop`.
pub(crate) async fn run(raft: Arc<RaftNode>, store: Store, mut stop: watch::Receiver<bool>) {
    let mut nodes = store.watch(Filter::kinds([Kind::Node]));
    loop {
        if *stop.borrow() {
            return;
        }
        pass(&raft, &store).await;
        tokio::select! {
            _ = tokio::time::sleep(PERIOD) => {}
            e = nodes.next() => {
                if e.is_none() { return }
                while nodes.try_next().is_some() {}
            }
            _ = stop.changed() => {}
        }
    }
}

/// One pass: reachability, then every pending role change.
async fn pass(raft: &RaftNode, store: &Store) {
    let Ok(status) = raft.status().await else {
        return;
    };
    if status.leader != Some(raft.id()) {
        return;
    }
    let reachable = |raft_id: u64| {
        raft_id == raft.id()
            || status
                .progress
                .get(&raft_id)
                .is_some_and(|p| p.recent_active)
    };
    let stale: Vec<_> = store
        .view()
        .list::<Node>()
        .filter(|n| {
            n.manager_status.as_ref().is_some_and(|ms| {
                (ms.reachability == Reachability::Reachable) != reachable(ms.raft_id)
                    || ms.leader != (ms.raft_id == raft.id())
            })
        })
        .map(|n| n.id.clone())
        .collect();
    if !stale.is_empty() {
        let r = store
            .update_retrying(|tx| {
                for id in &stale {
                    let Some(n) = tx.get::<Node>(id) else {
                        continue;
                    };
                    let mut n = (*n).clone();
                    if let Some(ms) = n.manager_status.as_mut() {
                        ms.leader = ms.raft_id == raft.id();
                        ms.reachability = if reachable(ms.raft_id) {
                            Reachability::Reachable
                        } else {
                            Reachability::Unreachable
                        };
                    }
                    tx.update(n)?;
                }
                Ok(())
            })
            .await;
        if let Err(e) = r {
            tracing::debug!(error = %e, "could not record manager reachability");
        }
    }

    let members: Vec<u64> = status
        .voters
        .iter()
        .chain(status.learners.iter())
        .copied()
        .collect();
    let pending: Vec<(Arc<Node>, Step)> = store
        .view()
        .list::<Node>()
        .filter_map(|n| step(&n, &members).map(|s| (n, s)))
        .collect();
    for (node, step) in pending {
        if let Step::RemoveMember(raft_id) = step {
            match raft.remove_member(raft_id).await {
                Ok(()) => {
                    tracing::info!(node = %node.id, raft_id, "demoted manager left the raft group")
                }
                Err(RaftError::NotLeader { leader }) => {
                    // Demoting this very manager: leadership was handed over;
                    // the new leader finishes the demotion.
                    tracing::info!(node = %node.id, ?leader, "leadership handed over to demote this manager");
                    return;
                }
                Err(e) => {
                    tracing::warn!(node = %node.id, error = %e, "demotion waits: the raft member cannot be removed yet");
                    continue;
                }
            }
        }
        let id = node.id.clone();
        let r = store
            .update_retrying(|tx| {
                let Some(n) = tx.get::<Node>(&id) else {
                    return Ok(());
                };
                if n.spec.desired_role == n.role {
                    return Ok(());
                }
                let mut n = (*n).clone();
                n.role = n.spec.desired_role;
                if n.role == NodeRole::Worker {
                    n.manager_status = None;
                }
                tx.update(n).map(drop)
            })
            .await;
        match r {
            Ok(()) => {
                tracing::info!(node = %node.id, role = ?node.spec.desired_role, "node role changed")
            }
            Err(e) => {
                tracing::warn!(node = %node.id, error = %e, "could not record the role change")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_core::types::{ManagerStatus, NodeSpec};

    fn node(desired: NodeRole, role: NodeRole, raft_id: Option<u64>) -> Node {
        Node {
            id: "n1".into(),
            spec: NodeSpec {
                desired_role: desired,
                ..Default::default()
            },
            role,
            manager_status: raft_id.map(|raft_id| ManagerStatus {
                raft_id,
                addr: "127.0.0.1:1".into(),
                leader: false,
                reachability: Reachability::Reachable,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn steady_nodes_need_nothing() {
        assert_eq!(
            step(&node(NodeRole::Worker, NodeRole::Worker, None), &[1]),
            None
        );
        assert_eq!(
            step(&node(NodeRole::Manager, NodeRole::Manager, Some(1)), &[1]),
            None
        );
    }

    #[test]
    fn a_promotion_is_recorded_and_the_node_joins_on_its_own() {
        assert_eq!(
            step(&node(NodeRole::Manager, NodeRole::Worker, None), &[1]),
            Some(Step::Promote)
        );
    }

    #[test]
    fn a_demotion_removes_the_raft_member_first() {
        assert_eq!(
            step(&node(NodeRole::Worker, NodeRole::Manager, Some(7)), &[1, 7]),
            Some(Step::RemoveMember(7))
        );
        // Already out of the group (or never joined): only the record is left.
        assert_eq!(
            step(&node(NodeRole::Worker, NodeRole::Manager, Some(7)), &[1]),
            Some(Step::Demote)
        );
        assert_eq!(
            step(&node(NodeRole::Worker, NodeRole::Manager, None), &[1]),
            Some(Step::Demote)
        );
    }
}
