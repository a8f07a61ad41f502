//! Promote and demote running nodes (`docker node promote` / `demote`), over
//! real sockets, each node with its own data directory and process runtime.

use std::sync::Arc;
use std::time::Duration;

use swarm::core::types::*;
use swarm::runtime::Runtime;
use swarm::testing::{
    FAST_TICK, eventually_async, process_runtime, ready_nodes, sleep_spec as spec,
};
use swarm::{Control, TaskFilter};
use swarm::{Error, ManagerConfig, Node};

fn config(dir: &std::path::Path, name: &str) -> (ManagerConfig, Arc<dyn Runtime>) {
    let rt = process_runtime(dir);
    let cfg = ManagerConfig::new(dir, "127.0.0.1:0")
        .hostname(name)
        .runtime(rt.clone())
        .tick_interval(FAST_TICK);
    (cfg, rt)
}

fn running_on(control: &Control, service: &str, node: &swarm::core::Id) -> usize {
    control
        .list_tasks(&TaskFilter {
            services: vec![service.into()],
            ..Default::default()
        })
        .unwrap_or_default()
        .iter()
        .filter(|t| {
            t.node_id == *node
                && t.status.state == TaskState::Running
                && t.desired_state == TaskState::Running
        })
        .count()
}

fn managers(control: &Control) -> Vec<Arc<swarm::core::types::Node>> {
    control
        .list_nodes(&Default::default())
        .into_iter()
        .filter(|n| n.manager_status.is_some())
        .collect()
}

async fn set_role(control: &Control, node: &swarm::core::Id, role: NodeRole) -> swarm::Result<()> {
    let n = control.inspect_node(node)?;
    let mut spec = n.spec.clone();
    spec.desired_role = role;
    control
        .update_node(node, n.meta.version.index, spec)
        .await
        .map(drop)
}

async fn container_count(rt: &Arc<dyn Runtime>) -> usize {
    rt.list().await.unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_is_promoted_to_manager_and_demoted_back_keeping_its_tasks() {
    let d1 = tempfile::tempdir().unwrap();
    let (cfg1, rt1) = config(d1.path(), "manager1");
    let m1 = Node::start(cfg1).await.unwrap();
    assert_eq!(m1.role(), NodeRole::Manager);
    let control = m1.control().await.unwrap();
    let addr = m1.manager_addr().await.unwrap();
    let token = control.join_tokens().unwrap().worker;

    let d2 = tempfile::tempdir().unwrap();
    let (cfg2, rt2) = config(d2.path(), "worker1");
    let w = Node::join(cfg2, &addr, &token).await.unwrap();
    assert_eq!(w.role(), NodeRole::Worker);
    assert!(w.control().await.is_none(), "a worker has no control API");
    let wid = w.node_id().clone();

    eventually_async("two ready nodes", async || ready_nodes(&control) == 2).await;
    control.create_service(spec("web", 4)).await.unwrap();
    eventually_async("two tasks on each node", async || {
        running_on(&control, "web", &wid) == 2 && running_on(&control, "web", m1.node_id()) == 2
    })
    .await;

    // Promote: the node gets a manager certificate and joins the raft group.
    set_role(&control, &wid, NodeRole::Manager).await.unwrap();
    let mut role = w.watch_role();
    tokio::time::timeout(
        Duration::from_secs(60),
        role.wait_for(|r| *r == NodeRole::Manager),
    )
    .await
    .expect("the worker becomes a manager")
    .unwrap();
    eventually_async("two reachable managers", async || {
        let ms = managers(&control);
        ms.len() == 2
            && ms.iter().all(|n| {
                n.role == NodeRole::Manager
                    && n.manager_status.as_ref().unwrap().reachability == Reachability::Reachable
            })
    })
    .await;
    let promoted = w.control().await.expect("a manager has a control API");
    eventually_async("the promoted manager follows the swarm", async || {
        promoted.inspect_service("web").is_ok() && running_on(&promoted, "web", &wid) == 2
    })
    .await;
    // Its tasks were adopted, not started again.
    assert_eq!(container_count(&rt2).await, 2);
    assert_eq!(running_on(&control, "web", &wid), 2);
    let info = m1.info().await.unwrap();
    assert_eq!((info.managers, info.nodes), (2, 2));

    // Demote it again: it leaves the raft group and runs as a worker.
    set_role(&control, &wid, NodeRole::Worker).await.unwrap();
    tokio::time::timeout(
        Duration::from_secs(60),
        role.wait_for(|r| *r == NodeRole::Worker),
    )
    .await
    .expect("the manager becomes a worker")
    .unwrap();
    eventually_async("one manager left", async || {
        managers(&control).len() == 1
            && control.inspect_node(&wid).unwrap().role == NodeRole::Worker
    })
    .await;
    assert!(w.control().await.is_none());
    assert!(
        !d2.path().join("certificates/ca.key").exists(),
        "a worker does not keep the CA key"
    );
    eventually_async("the demoted node reports its tasks again", async || {
        running_on(&control, "web", &wid) == 2
            && control.inspect_node(&wid).unwrap().status.state == NodeState::Ready
    })
    .await;
    assert_eq!(container_count(&rt2).await, 2, "no duplicate containers");

    // The last manager cannot be demoted.
    let e = set_role(&control, m1.node_id(), NodeRole::Worker)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::FailedPrecondition(m) if m.contains("last manager")),
        "{e}"
    );

    control.remove_service("web").await.unwrap();
    eventually_async("every task gone", async || {
        container_count(&rt1).await + container_count(&rt2).await == 0
    })
    .await;
    w.shutdown().await;
    m1.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demotion_that_would_lose_quorum_is_refused() {
    let d1 = tempfile::tempdir().unwrap();
    let (cfg1, _) = config(d1.path(), "manager1");
    let m1 = Node::start(cfg1).await.unwrap();
    let control = m1.control().await.unwrap();
    let addr = m1.manager_addr().await.unwrap();
    let token = control.join_tokens().unwrap().manager;
    let mut dirs = Vec::new();
    let mut others = Vec::new();
    for i in 2..=3 {
        let d = tempfile::tempdir().unwrap();
        let (cfg, _) = config(d.path(), &format!("manager{i}"));
        others.push(Node::join(cfg, &addr, &token).await.unwrap());
        dirs.push(d);
    }
    eventually_async("three reachable managers", async || {
        let ms = managers(&control);
        ms.len() == 3
            && ms
                .iter()
                .all(|n| n.manager_status.as_ref().unwrap().reachability == Reachability::Reachable)
    })
    .await;

    // A manager that joined (and so holds no CA key on disk) signs joins too.
    let dw = tempfile::tempdir().unwrap();
    let (cfgw, _) = config(dw.path(), "worker1");
    let via = others[0].manager_addr().await.unwrap();
    let worker_token = control.join_tokens().unwrap().worker;
    let worker = Node::join(cfgw, &via, &worker_token).await.unwrap();
    assert_eq!(worker.role(), NodeRole::Worker);
    assert!(!dirs[0].path().join("certificates/ca.key").exists());

    // One manager goes away: the two left are a bare quorum of three.
    let gone = others.pop().unwrap();
    let gone_id = gone.node_id().clone();
    gone.shutdown().await;
    eventually_async("the stopped manager is unreachable", async || {
        control
            .inspect_node(&gone_id)
            .unwrap()
            .manager_status
            .as_ref()
            .is_some_and(|m| m.reachability == Reachability::Unreachable)
    })
    .await;
    let healthy = others[0].node_id().clone();
    let e = set_role(&control, &healthy, NodeRole::Worker)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::FailedPrecondition(m) if m.contains("loss of quorum")),
        "{e}"
    );
    assert_eq!(
        control.inspect_node(&healthy).unwrap().spec.desired_role,
        NodeRole::Manager,
        "nothing changed"
    );
    // The unreachable one can be demoted: the two healthy managers stay a quorum.
    set_role(&control, &gone_id, NodeRole::Worker)
        .await
        .unwrap();
    eventually_async("two managers left", async || managers(&control).len() == 2).await;

    worker.shutdown().await;
    for n in others {
        n.shutdown().await;
    }
    m1.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_renewed_without_losing_the_node_or_its_tasks() {
    let d1 = tempfile::tempdir().unwrap();
    let (cfg1, _) = config(d1.path(), "manager1");
    let m1 = Node::start(cfg1).await.unwrap();
    let control = m1.control().await.unwrap();
    let addr = m1.manager_addr().await.unwrap();
    let token = control.join_tokens().unwrap().worker;
    let d2 = tempfile::tempdir().unwrap();
    let (cfg2, rt2) = config(d2.path(), "worker1");
    let w = Node::join(cfg2, &addr, &token).await.unwrap();
    let wid = w.node_id().clone();
    eventually_async("two ready nodes", async || ready_nodes(&control) == 2).await;
    control.create_service(spec("web", 2)).await.unwrap();
    eventually_async("a task on the worker", async || {
        running_on(&control, "web", &wid) == 1
    })
    .await;

    let cert =
        |d: &std::path::Path| std::fs::read_to_string(d.join("certificates/node.crt")).unwrap();
    let before = cert(d2.path());
    w.renew_certificate().await.unwrap();
    let after = cert(d2.path());
    assert_ne!(before, after, "a new certificate");
    assert_eq!(w.node_id(), &wid, "the same node");
    assert_eq!(w.role(), NodeRole::Worker);
    assert_eq!(
        control.inspect_node(&wid).unwrap().certificate.certificate,
        after.as_bytes(),
        "the swarm records the certificate it issued"
    );

    let before = cert(d1.path());
    m1.renew_certificate().await.unwrap();
    assert_ne!(before, cert(d1.path()));
    assert_eq!(
        m1.manager_addr().await.unwrap(),
        addr,
        "same cluster address"
    );
    let control = m1.control().await.unwrap();
    control.scale_service("web", 4).await.unwrap();
    eventually_async("4 running, 2 on the worker", async || {
        running_on(&control, "web", &wid) == 2 && running_on(&control, "web", m1.node_id()) == 2
    })
    .await;
    assert_eq!(container_count(&rt2).await, 2, "no duplicate containers");

    control.remove_service("web").await.unwrap();
    eventually_async("the worker's tasks gone", async || {
        container_count(&rt2).await == 0
    })
    .await;
    w.shutdown().await;
    m1.shutdown().await;
}
