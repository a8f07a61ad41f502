//! Malformed and random bodies thrown at every endpoint of the Engine API:
//! each gets a Docker-style answer (a status below 500 with a JSON message),
//! never a crash, and a body that is not JSON changes nothing.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use proptest::prelude::*;
use swarm::api::{Engine, EngineConfig};
use swarm::runtime::ProcessRuntime;
use tower::ServiceExt;

const ENDPOINTS: &[(&str, &str)] = &[
    ("POST", "/swarm/init"),
    ("POST", "/swarm/join"),
    ("POST", "/swarm/update?version=1"),
    ("POST", "/swarm/update"),
    ("POST", "/nodes/NODE/update?version=1"),
    ("POST", "/nodes/nosuch/update?version=1"),
    ("POST", "/services/create"),
    ("POST", "/services/web/update?version=1"),
    ("POST", "/services/web/update?version=x"),
    ("POST", "/networks/create"),
    ("POST", "/secrets/create"),
    ("POST", "/configs/create"),
    ("GET", "/tasks?filters=BODY"),
    ("GET", "/services?filters=BODY"),
    ("GET", "/nodes?filters=BODY"),
    ("DELETE", "/nodes/nosuch"),
    ("GET", "/tasks/nosuch"),
];

struct Setup {
    rt: tokio::runtime::Runtime,
    engine: Arc<Engine>,
    node: String,
    _dir: tempfile::TempDir,
}

fn call(s: &Setup, method: &str, path: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
    let router = s.engine.clone().router();
    let path = path.replace("NODE", &s.node);
    let path = if path.contains("BODY") {
        let enc: String = body.iter().map(|b| format!("%{b:02X}")).collect();
        path.replace("BODY", &enc)
    } else {
        path
    };
    s.rt.block_on(async move {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap();
        let resp = router.oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20)
            .await
            .unwrap()
            .to_vec();
        (status, bytes)
    })
}

fn setup() -> Setup {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = rt.block_on(async {
        Engine::start(EngineConfig {
            data_dir: dir.path().to_path_buf(),
            listen_addr: Some("127.0.0.1:0".into()),
            advertise_addr: None,
            hostname: "fuzz".into(),
            runtime: Arc::new(ProcessRuntime::new(dir.path().join("runtime")).unwrap()),
            tick_interval: Duration::from_millis(20),
            routing_mesh: None,
            network_key_rotation: swarm::DEFAULT_KEY_ROTATION,
        })
        .await
        .unwrap()
    });
    let mut s = Setup {
        rt,
        engine,
        node: String::new(),
        _dir: dir,
    };
    let (st, body) = call(
        &s,
        "POST",
        "/swarm/init",
        br#"{"ListenAddr":"127.0.0.1:0"}"#.to_vec(),
    );
    assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    s.node = serde_json::from_slice::<String>(&body).unwrap();
    let (st, _) = call(
        &s,
        "POST",
        "/services/create",
        br#"{"Name":"web","TaskTemplate":{"ContainerSpec":{"Image":"busybox"}},"Mode":{"Replicated":{"Replicas":0}}}"#.to_vec(),
    );
    assert_eq!(st, StatusCode::CREATED);
    s
}

/// What a request could change: the services whole (the allocator writes
/// nothing for a service with no ports and no networks, so any write shows in
/// its version), and the nodes' specs (the swarm writes a node's status by
/// itself).
fn state(s: &Setup) -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
    let list = |path: &str, fields: &[&str]| -> Vec<serde_json::Value> {
        let all: Vec<serde_json::Value> =
            serde_json::from_slice(&call(s, "GET", path, Vec::new()).1).unwrap();
        all.iter()
            .map(|o| fields.iter().map(|f| o[*f].clone()).collect())
            .collect()
    };
    (
        list("/services", &["ID", "Version", "Spec", "Endpoint"]),
        list("/nodes", &["ID", "Spec"]),
    )
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        "[A-Za-z0-9:./=-]{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        let keys = prop_oneof![
            Just("Name".to_string()),
            Just("TaskTemplate".to_string()),
            Just("ContainerSpec".to_string()),
            Just("Image".to_string()),
            Just("Mode".to_string()),
            Just("Replicated".to_string()),
            Just("Replicas".to_string()),
            Just("Role".to_string()),
            Just("Availability".to_string()),
            Just("Labels".to_string()),
            Just("ListenAddr".to_string()),
            Just("RemoteAddrs".to_string()),
            Just("JoinToken".to_string()),
            Just("Data".to_string()),
            Just("EndpointSpec".to_string()),
            Just("Ports".to_string()),
            "[A-Za-z]{1,8}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(keys, inner, 0..5)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn check(s: &Setup, method: &str, path: &str, body: Vec<u8>) -> StatusCode {
    let (status, bytes) = call(s, method, path, body);
    assert!(
        status.as_u16() < 500 || status == StatusCode::SERVICE_UNAVAILABLE,
        "{method} {path}: {status} {}",
        String::from_utf8_lossy(&bytes)
    );
    if !status.is_success() && status != StatusCode::PAYLOAD_TOO_LARGE {
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{method} {path}: not a JSON error body ({e})"));
        assert!(v["message"].is_string(), "{method} {path}: {v}");
    }
    status
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn bytes_that_are_not_json_are_refused_and_change_nothing(
        which in 0..ENDPOINTS.len(),
        body in prop::collection::vec(any::<u8>(), 1..256)
            .prop_filter("not JSON", |b| serde_json::from_slice::<serde_json::Value>(b).is_err()),
    ) {
        let s = SETUP.with(|s| s.clone());
        let before = state(&s);
        let (method, path) = ENDPOINTS[which];
        let status = check(&s, method, path, body);
        if method == "POST" {
            prop_assert!(status.is_client_error() || status == StatusCode::SERVICE_UNAVAILABLE, "{status}");
        }
        prop_assert_eq!(state(&s), before);
    }

    #[test]
    fn random_json_gets_a_docker_style_answer(
        which in 0..ENDPOINTS.len(),
        body in json_value(),
    ) {
        let s = SETUP.with(|s| s.clone());
        let (method, path) = ENDPOINTS[which];
        check(&s, method, path, serde_json::to_vec(&body).unwrap());
        // The API still answers.
        prop_assert_eq!(call(&s, "GET", "/_ping", Vec::new()).0, StatusCode::OK);
    }
}

thread_local! {
    static SETUP: Arc<Setup> = Arc::new(setup());
}
