use std::sync::Arc;
use std::time::Duration;

use swarm_core::testing::Patience;
use swarm_core::types::*;
use swarm_core::{Id, Store, SystemClock};
use swarm_runtime::{ProcessRuntime, Runtime};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::Dispatcher;
use crate::agent::Agent;
use crate::agent::session::{SessionConfig, run};
use crate::manager::ca::CaService;
use crate::manager::control::Control;
use crate::pki::{RootCa, client_config, cluster_server_config, test_identity};
use crate::rpc::ca::join;
use crate::rpc::tls::incoming;

struct Harness {
    addr: String,
    control: Control,
    _server: tokio::task::JoinHandle<()>,
}

async fn manager(heartbeat: Duration) -> Harness {
    let ca = RootCa::generate().unwrap();
    let control = Control::new(Store::new());
    let mut spec = ClusterSpec::default();
    spec.dispatcher.heartbeat_period = heartbeat;
    let cluster = control.init_cluster(spec, &ca).await.unwrap();
    let identity = test_identity(&ca, "manager-1", NodeRole::Manager, &cluster.id);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let tls = cluster_server_config(&ca, &identity).unwrap();
    let router = tonic::transport::Server::builder()
        .add_service(crate::rpc::proto::ca_server::CaServer::new(CaService::new(
            ca,
            control.store().clone(),
        )))
        .add_service(Dispatcher::start(control.store().clone()).server());
    let _server = tokio::spawn(async move {
        let _ = router.serve_with_incoming(incoming(listener, tls)).await;
    });
    Harness {
        addr,
        control,
        _server,
    }
}

/// Waits (bounded) until `f` holds on the store.
async fn eventually(store: &Store, what: &str, f: impl Fn(&swarm_core::View) -> bool) {
    Patience::within(Duration::from_secs(30))
        .until_view(store, what, f)
        .await;
}

#[tokio::test]
async fn a_worker_session_runs_assigned_tasks_and_reports_back() {
    let m = manager(Duration::from_millis(200)).await;
    let store = m.control.store().clone();
    let tokens = m.control.join_tokens().unwrap();
    let joined = join(&m.addr, &tokens.worker, "worker-1", "").await.unwrap();
    let node_id = joined.identity.peer.node_id.clone();

    let dir = tempfile::tempdir().unwrap();
    let runtime: Arc<dyn Runtime> = Arc::new(ProcessRuntime::new(dir.path()).unwrap());
    let (agent, updates) = Agent::new(node_id.clone(), runtime.clone(), Arc::new(SystemClock))
        .await
        .unwrap();
    let cfg = SessionConfig {
        managers: vec![m.addr.clone()].into(),
        tls: client_config(&joined.ca, &joined.identity).unwrap(),
        description: NodeDescription {
            hostname: "worker-1".into(),
            ..Default::default()
        },
        addr: String::new(),
        ingress: None,
    };
    let (stop_tx, stop) = watch::channel(false);
    let session = tokio::spawn(run(cfg, agent, updates, stop));

    let n = node_id.clone();
    eventually(&store, "the node to be READY", move |v| {
        v.get::<Node>(&n)
            .is_some_and(|n| n.status.state == NodeState::Ready && n.status.addr == "127.0.0.1")
    })
    .await;

    // The scheduler's part, by hand: a task assigned to the node.
    let mut task = Task {
        id: Id::from("t1"),
        slot: 1,
        node_id: node_id.clone(),
        service_annotations: Annotations::named("svc"),
        desired_state: TaskState::Running,
        ..Default::default()
    };
    task.status.state = TaskState::Assigned;
    task.spec.container.command = vec!["/bin/sh".into(), "-c".into(), "sleep 60".into()];
    store.update(|tx| tx.create(task).map(drop)).await.unwrap();
    eventually(&store, "the task to run", |v| {
        v.get::<Task>("t1")
            .is_some_and(|t| t.status.state == TaskState::Running)
    })
    .await;
    let t = store.view().get::<Task>("t1").unwrap();
    assert!(t.status.container_status.as_ref().unwrap().pid > 0);
    assert_eq!(t.status.applied_by, node_id);

    // Shut it down through the desired state.
    let mut t = (*t).clone();
    t.desired_state = TaskState::Shutdown;
    store.update(|tx| tx.update(t).map(drop)).await.unwrap();
    eventually(&store, "the task to shut down", |v| {
        v.get::<Task>("t1")
            .is_some_and(|t| t.status.state == TaskState::Shutdown)
    })
    .await;
    // Removed from the store: the runtime forgets it.
    store.update(|tx| tx.delete::<Task>("t1")).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), async {
        while !runtime.list().await.unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the task is removed from the node");

    // The node stops heartbeating: DOWN after the grace period.
    stop_tx.send(true).unwrap();
    session.await.unwrap();
    let n = node_id.clone();
    eventually(&store, "the node to be DOWN", move |v| {
        v.get::<Node>(&n).is_some_and(|n| {
            n.status.state == NodeState::Down && n.status.message == "heartbeat failure"
        })
    })
    .await;
}

#[tokio::test]
async fn a_removed_node_cannot_open_a_session() {
    let m = manager(Duration::from_secs(5)).await;
    let tokens = m.control.join_tokens().unwrap();
    let joined = join(&m.addr, &tokens.worker, "worker-1", "").await.unwrap();
    m.control
        .remove_node(&joined.identity.peer.node_id, true)
        .await
        .unwrap();
    let ch = crate::rpc::tls::channel(
        &m.addr,
        client_config(&joined.ca, &joined.identity).unwrap(),
        crate::pki::MANAGER_OU,
    )
    .unwrap();
    let open = crate::rpc::dispatch::SessionRequest {
        description: NodeDescription::default(),
        addr: String::new(),
    };
    let err = crate::rpc::proto::dispatcher_client::DispatcherClient::new(ch)
        .session(crate::rpc::proto::Payload {
            data: crate::rpc::dispatch::encode(&open),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
    assert!(err.message().contains("removed"));
}

#[tokio::test]
async fn the_ingress_view_is_computed_only_while_leading() {
    let store = Store::new();
    let (leading, rx) = watch::channel(false);
    let d = Dispatcher::start_with_leadership(store, rx);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        d.inner.ingress.lock().is_none(),
        "a follower holds no session, so it computes no view"
    );
    leading.send_replace(true);
    // What a session of the leader does first.
    let view = d.inner.ingress();
    assert!(view.borrow().services.is_empty());
    assert!(d.inner.ingress.lock().is_some());
    let again = d.inner.ingress();
    assert!(
        Arc::ptr_eq(&view.borrow(), &again.borrow()),
        "sessions share one feed"
    );
    leading.send_replace(false);
    tokio::time::timeout(Duration::from_secs(10), async {
        while d.inner.ingress.lock().is_some() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the feed is dropped when leadership is lost");
}

#[test]
fn session_ends_say_why_as_the_logs_always_did() {
    use super::SessionEnd;
    for (end, reason) in [
        (SessionEnd::NodeGone, "node went away"),
        (SessionEnd::StoreClosed, "store closed"),
        (SessionEnd::DispatcherStopped, "dispatcher stopped"),
        (SessionEnd::Replaced, "session replaced or expired"),
    ] {
        assert_eq!(end.to_string(), reason);
    }
}
