//! A node touches only what it owns on a runtime other nodes share (one Docker
//! Engine under several swarmd, or beside a real Docker swarm): `docker ps`
//! through the node lists only its tasks, and `swarm leave --force` removes only
//! its tasks, never another node's or another swarm's.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use swarm::api::{Engine, EngineConfig};
use swarm::core::Id;
use swarm::core::testing::Patience;
use swarm::core::types::{Task, TaskState};
use swarm::runtime::testing::ScriptedRuntime;
use swarm::runtime::{ContainerState, Runtime};
use tower::ServiceExt;

async fn call(engine: &Arc<Engine>, method: &str, path: &str, body: &str) -> (StatusCode, String) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = engine.clone().router().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// A task of `node`, running on the shared runtime.
async fn running(rt: &ScriptedRuntime, id: &str, node: &str) {
    let task = Task {
        id: Id::from(id),
        node_id: Id::from(node),
        desired_state: TaskState::Running,
        ..Default::default()
    };
    rt.prepare(&task).await.unwrap();
    rt.create(&task).await.unwrap();
    rt.start(id).await.unwrap();
}

/// An engine over `rt`, keeping its node in `dir`.
async fn engine(dir: &std::path::Path, rt: &Arc<ScriptedRuntime>) -> Arc<Engine> {
    Engine::start(EngineConfig {
        data_dir: dir.to_path_buf(),
        listen_addr: Some("127.0.0.1:0".into()),
        advertise_addr: None,
        hostname: "shared".into(),
        runtime: rt.clone(),
        tick_interval: Duration::from_millis(20),
        routing_mesh: None,
        network_key_rotation: swarm::DEFAULT_KEY_ROTATION,
    })
    .await
    .unwrap()
}

/// Whether `task` still runs on `rt`.
async fn runs(rt: &ScriptedRuntime, task: &str) -> bool {
    rt.inspect(task)
        .await
        .is_ok_and(|i| i.state == ContainerState::Running)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_lists_adopts_and_removes_only_its_own_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let rt = Arc::new(ScriptedRuntime::new());
    let first = engine(dir.path(), &rt).await;
    let (st, body) = call(
        &first,
        "POST",
        "/swarm/init",
        r#"{"ListenAddr":"127.0.0.1:0"}"#,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let me: String = serde_json::from_str(&body).unwrap();

    // On the same runtime: a stale task of this node (the swarm no longer has
    // it), one of another node (another swarmd, or a real Docker swarm's), and
    // one labelled with no node at all.
    running(&rt, "stale", &me).await;
    running(&rt, "theirs", "another-node").await;
    running(&rt, "unlabelled", "").await;

    let (st, body) = call(&first, "GET", "/containers/json", "").await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let listed: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    let ids: Vec<&str> = listed
        .iter()
        .map(|c| c["Labels"]["com.docker.swarm.task.id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["stale"], "docker ps shows this node's tasks only");

    // Restarted, the node adopts what the runtime holds of its own and removes
    // what the swarm no longer assigns it; the others' tasks are not its own.
    first.shutdown().await;
    let engine = engine(dir.path(), &rt).await;
    Patience::within(Duration::from_secs(60))
        .until_async("the restarted node to remove its stale task", async || {
            rt.inspect("stale").await.is_err()
        })
        .await;
    assert!(runs(&rt, "theirs").await && runs(&rt, "unlabelled").await);

    running(&rt, "mine", &me).await;
    let (st, body) = call(&engine, "POST", "/swarm/leave?force=1", "").await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert!(
        rt.inspect("mine").await.is_err(),
        "the node's own task goes with it"
    );
    for other in ["theirs", "unlabelled"] {
        assert!(runs(&rt, other).await, "{other} is not this node's");
    }
    engine.shutdown().await;
}
