//! The Engine API endpoints.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bollard::models as dm;
use serde_json::{Value, json};
use swarm_core::StoreObject;
use swarm_core::types::{NodeRole, Service, ServiceMode, TaskState};

use super::convert::{self, ServiceCounts, strict};
use super::objects::Blob;
use super::{API_VERSION, ApiError, Engine, EngineConfig, MAX_BODY, MIN_API_VERSION};
use super::{containers, logs, objects};
use crate::ManagerConfig;
use crate::manager::control::{NodeFilter, Rotate, ServiceFilter, TaskFilter};
use crate::node::Node;
use crate::state::{DataDir, SavedAddrs};

pub(super) type Shared = State<Arc<Engine>>;
pub(super) type ApiResult = Result<Response, ApiError>;
pub(super) type Params = Query<HashMap<String, String>>;

/// Every route.
pub(super) fn routes() -> axum::Router<Arc<Engine>> {
    axum::Router::new()
        .route("/_ping", get(ping).head(ping))
        .route("/version", get(version))
        .route("/info", get(info))
        .route("/swarm", get(swarm_inspect))
        .route("/swarm/init", post(swarm_init))
        .route("/swarm/join", post(swarm_join))
        .route("/swarm/leave", post(swarm_leave))
        .route("/swarm/update", post(swarm_update))
        .route("/swarm/unlockkey", get(swarm_unlock_key))
        .route("/nodes", get(nodes_list))
        .route("/nodes/{id}", get(node_inspect).delete(node_remove))
        .route("/nodes/{id}/update", post(node_update))
        .route("/services", get(services_list))
        .route("/services/create", post(service_create))
        .route(
            "/services/{id}",
            get(service_inspect).delete(service_remove),
        )
        .route("/services/{id}/update", post(service_update))
        .route("/services/{id}/logs", get(logs::service_logs))
        .route("/tasks/{id}/logs", get(logs::task_logs))
        .route("/tasks", get(tasks_list))
        .route("/tasks/{id}", get(task_inspect))
        .route("/distribution/{*name}", get(distribution))
        .route("/containers/json", get(containers::containers_list))
        .route("/networks", get(objects::networks_list))
        .route("/networks/create", post(objects::network_create))
        .route(
            "/networks/{id}",
            get(objects::network_inspect).delete(objects::network_remove),
        )
        .merge(blob_routes("/secrets", Blob::Secret))
        .merge(blob_routes("/configs", Blob::Config))
        .fallback(|| async { ApiError::not_found("page not found") })
        .layer(DefaultBodyLimit::max(MAX_BODY))
}

/// The five endpoints of secrets or configs under `base`.
fn blob_routes(base: &str, kind: Blob) -> axum::Router<Arc<Engine>> {
    axum::Router::new()
        .route(base, get(move |s, q| objects::blobs_list(kind, s, q)))
        .route(
            &format!("{base}/create"),
            post(move |s, b| objects::blob_create(kind, s, b)),
        )
        .route(
            &format!("{base}/{{id}}"),
            get(move |s, p| objects::blob_inspect(kind, s, p))
                .delete(move |s, p| objects::blob_remove(kind, s, p)),
        )
        .route(
            &format!("{base}/{{id}}/update"),
            post(move |s, p, q, b| objects::blob_update(kind, s, p, q, b)),
        )
}

pub(super) fn ok(v: Value) -> ApiResult {
    Ok(([("API-Version", API_VERSION)], Json(v)).into_response())
}

pub(super) fn empty(status: StatusCode) -> ApiResult {
    Ok((status, [("API-Version", API_VERSION)]).into_response())
}

/// `filters={"key":{"value":true}}` (or the old `{"key":["value"]}`).
pub(super) fn filters(
    q: &HashMap<String, String>,
) -> Result<HashMap<String, Vec<String>>, ApiError> {
    let Some(raw) = q.get("filters").filter(|f| !f.is_empty()) else {
        return Ok(HashMap::new());
    };
    let v: Value = serde_json::from_str(raw)
        .map_err(|e| ApiError::bad_request(format!("invalid filters {raw:?}: {e}")))?;
    let Value::Object(m) = v else {
        return Err(ApiError::bad_request(format!("invalid filters {raw:?}")));
    };
    let mut out = HashMap::new();
    for (k, v) in m {
        let values: Vec<String> = match v {
            Value::Object(o) => o.into_iter().map(|(k, _)| k).collect(),
            Value::Array(a) => a
                .into_iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            _ => return Err(ApiError::bad_request(format!("invalid filter {k:?}"))),
        };
        out.insert(k, values);
    }
    Ok(out)
}

pub(super) fn check_filters(
    f: &HashMap<String, Vec<String>>,
    allowed: &[&str],
) -> Result<(), ApiError> {
    match f.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(ApiError::bad_request(format!("invalid filter '{k}'"))),
        None => Ok(()),
    }
}

fn flag(q: &HashMap<String, String>, name: &str) -> bool {
    q.get(name)
        .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

pub(super) fn version_param(q: &HashMap<String, String>) -> Result<u64, ApiError> {
    let v = q
        .get("version")
        .ok_or_else(|| ApiError::bad_request("the version parameter is required"))?;
    v.parse()
        .map_err(|_| ApiError::bad_request(format!("invalid version {v:?}")))
}

async fn ping() -> Response {
    (
        [
            ("API-Version", API_VERSION),
            ("Docker-Experimental", "false"),
            ("Swarm", "inactive"),
            ("Cache-Control", "no-cache, no-store, must-revalidate"),
        ],
        "OK",
    )
        .into_response()
}

async fn version() -> ApiResult {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    ok(json!({
        "Platform": {"Name": "Swarm"},
        "Components": [{"Name": "swarmd", "Version": env!("CARGO_PKG_VERSION"), "Details": {}}],
        "Version": format!("swarmd-{}", env!("CARGO_PKG_VERSION")),
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "",
        "Os": std::env::consts::OS,
        "Arch": match std::env::consts::ARCH { "x86_64" => "amd64", "aarch64" => "arm64", a => a },
        "KernelVersion": kernel,
    }))
}

async fn info(State(e): Shared) -> ApiResult {
    let d = crate::state::describe(&e.cfg.hostname);
    let node = e.node.read().await;
    let swarm = match node.as_ref() {
        None => {
            json!({"LocalNodeState": "inactive", "ControlAvailable": false, "NodeID": "", "NodeAddr": "", "Error": "", "RemoteManagers": null})
        }
        Some(n) => match n.info().await {
            Ok(i) => json!({
                "NodeID": i.node_id.as_str(),
                "NodeAddr": i.node_addr.rsplit_once(':').map_or(i.node_addr.as_str(), |(h, _)| h),
                "LocalNodeState": "active",
                "ControlAvailable": true,
                "Error": "",
                "RemoteManagers": i.remote_managers.iter().map(|(id, a)| json!({"NodeID": id.as_str(), "Addr": a})).collect::<Vec<_>>(),
                "Nodes": i.nodes,
                "Managers": i.managers,
                "Cluster": n.control().await.and_then(|c| c.cluster().ok()).map(|c| convert::cluster_json(&c)),
            }),
            Err(_) => {
                let managers = crate::state::DataDir::open(&e.cfg.data_dir)
                    .and_then(|d| d.load())
                    .map(|(f, _, _)| f.managers)
                    .unwrap_or_default();
                json!({
                    "NodeID": n.node_id().as_str(),
                    "NodeAddr": e.cfg.advertise_addr.clone().unwrap_or_default(),
                    "LocalNodeState": "active",
                    "ControlAvailable": false,
                    "Error": "",
                    "RemoteManagers": managers.iter().map(|a| json!({"NodeID": "", "Addr": a})).collect::<Vec<_>>(),
                })
            }
        },
    };
    ok(json!({
        "ID": node.as_ref().map(|n| n.node_id().to_string()).unwrap_or_default(),
        "Name": d.hostname,
        "ServerVersion": format!("swarmd-{}", env!("CARGO_PKG_VERSION")),
        "OperatingSystem": "Swarm (swarmd)",
        "OSType": d.platform.os,
        "Architecture": d.platform.architecture,
        "NCPU": d.resources.nano_cpus / 1_000_000_000,
        "MemTotal": d.resources.memory_bytes,
        "Driver": "swarmd",
        "Containers": 0, "ContainersRunning": 0, "ContainersPaused": 0, "ContainersStopped": 0, "Images": 0,
        "Swarm": swarm,
    }))
}

/// The manager settings for this engine's node, with the request's addresses.
pub(super) fn manager_config(cfg: &EngineConfig, addrs: &SavedAddrs) -> ManagerConfig {
    let (listen, advertise) = (addrs.listen_addr.clone(), addrs.advertise_addr.clone());
    let listen = listen
        .or_else(|| cfg.listen_addr.clone())
        .unwrap_or_else(|| "0.0.0.0:2377".into());
    let mut m = ManagerConfig::new(&cfg.data_dir, listen)
        .hostname(cfg.hostname.clone())
        .runtime(cfg.runtime.clone())
        .tick_interval(cfg.tick_interval)
        .network_key_rotation(cfg.network_key_rotation);
    let advertise = advertise.or_else(|| cfg.advertise_addr.clone());
    if let Some(mesh) = cfg.routing_mesh {
        let peer_ip = addrs
            .data_path_addr
            .as_deref()
            .and_then(crate::state::ip_of)
            .or_else(|| advertise.as_deref().and_then(crate::state::ip_of))
            .or_else(|| crate::state::ip_of(&m.listen_addr))
            .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into());
        m = m.routing_mesh(crate::agent::mesh::RoutingMeshConfig {
            ingress_ip: mesh.ingress_ip,
            peer_addr: std::net::SocketAddr::new(peer_ip, mesh.peer_port),
            advertise_ip: None,
            kernel: mesh.kernel,
        });
    }
    if let Some(a) = advertise {
        m = m.advertise_addr(a);
    }
    m
}

/// `--data-path-addr` of an init or join: an IP address (docker also takes an
/// interface name, which this swarm does not resolve).
fn data_path_addr(addr: Option<String>) -> Result<Option<String>, ApiError> {
    match addr.filter(|a| !a.is_empty()) {
        None => Ok(None),
        Some(a) => match crate::state::ip_of(&a) {
            Some(ip) => Ok(Some(ip.to_string())),
            None => Err(ApiError::bad_request(format!(
                "invalid data path address {a:?}: give an IP address"
            ))),
        },
    }
}

/// The cluster addresses of an init or join: the request's listen address
/// unless it is docker's default and swarmd was given one; the advertised
/// address gets the cluster port when it names only a host.
fn addresses(
    cfg: &EngineConfig,
    listen: Option<String>,
    advertise: Option<String>,
) -> Result<(Option<String>, Option<String>), ApiError> {
    let listen = match listen.filter(|l| !l.is_empty()) {
        Some(l) if l == "0.0.0.0:2377" && cfg.listen_addr.is_some() => cfg.listen_addr.clone(),
        Some(l) if l == "0.0.0.0:2377" => advertise
            .as_ref()
            .filter(|a| !a.is_empty())
            .map(|a| format!("{}:2377", a.rsplit_once(':').map_or(a.as_str(), |(h, _)| h))),
        other => other,
    };
    let port = listen
        .as_ref()
        .and_then(|l| l.rsplit_once(':').map(|(_, p)| p.to_string()))
        .unwrap_or_else(|| "2377".into());
    let advertise = match advertise.filter(|a| !a.is_empty()) {
        None => None,
        Some(a) if a.parse::<std::net::SocketAddr>().is_ok() => Some(a),
        Some(a) if a.parse::<std::net::IpAddr>().is_ok() => Some(format!("{a}:{port}")),
        Some(a) => {
            return Err(ApiError::bad_request(format!(
                "advertise address must be an IP address, optionally with a port (got {a:?})"
            )));
        }
    };
    Ok((listen, advertise))
}

async fn swarm_init(State(e): Shared, body: Bytes) -> ApiResult {
    let req: convert::InitRequest = strict(&body)?;
    convert::refuse_unsupported_init(&req)?;
    let mut node = e.node.write().await;
    if node.is_some() {
        return Err(ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "This node is already part of a swarm. Use \"docker swarm leave\" to leave this swarm and join another one.".into(),
        });
    }
    let spec = convert::swarm_spec(req.spec.unwrap_or_default(), &Default::default())?;
    let (listen, advertise) = addresses(&e.cfg, req.listen_addr, req.advertise_addr)?;
    let network = crate::NetworkConfig {
        default_addr_pool: req.default_addr_pool.unwrap_or_default(),
        subnet_size: req.subnet_size.unwrap_or_default(),
        data_path_port: req.data_path_port.unwrap_or_default(),
    }
    .checked()?;
    let addrs = SavedAddrs {
        listen_addr: listen,
        advertise_addr: advertise,
        data_path_addr: data_path_addr(req.data_path_addr)?,
    };
    let cfg = manager_config(&e.cfg, &addrs)
        .cluster_spec(spec)
        .network(network);
    let n = Node::start(cfg).await?;
    DataDir::open(&e.cfg.data_dir)?.save_addrs(&SavedAddrs {
        listen_addr: addrs.listen_addr.or(n.manager_addr().await),
        ..addrs
    })?;
    let id = n.node_id().to_string();
    *node = Some(n);
    ok(json!(id))
}

async fn swarm_join(State(e): Shared, body: Bytes) -> ApiResult {
    let req: convert::JoinRequest = strict(&body)?;
    let mut node = e.node.write().await;
    if node.is_some() {
        return Err(ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "This node is already part of a swarm. Use \"docker swarm leave\" to leave this swarm and join another one.".into(),
        });
    }
    let token = req.join_token.unwrap_or_default();
    let remotes = req.remote_addrs.unwrap_or_default();
    if remotes.is_empty() {
        return Err(ApiError::bad_request("no remote address to join through"));
    }
    let (listen, advertise) = addresses(&e.cfg, req.listen_addr, req.advertise_addr)?;
    let addrs = SavedAddrs {
        listen_addr: listen,
        advertise_addr: advertise,
        data_path_addr: data_path_addr(req.data_path_addr)?,
    };
    let mut last = ApiError::bad_request("no remote address to join through");
    for remote in remotes {
        let remote = if remote.contains(':') {
            remote
        } else {
            format!("{remote}:2377")
        };
        let cfg = manager_config(&e.cfg, &addrs);
        match Node::join(cfg, &remote, &token).await {
            Ok(n) => {
                *node = Some(n);
                DataDir::open(&e.cfg.data_dir)?.save_addrs(&addrs)?;
                return empty(StatusCode::OK);
            }
            Err(err) => last = err.into(),
        }
    }
    Err(last)
}

async fn swarm_leave(State(e): Shared, Query(q): Params) -> ApiResult {
    let mut node = e.node.write().await;
    let Some(n) = node.as_ref() else {
        return Err(ApiError::not_in_swarm());
    };
    if n.role() == NodeRole::Manager && !flag(&q, "force") {
        return Err(ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "You are attempting to leave the swarm on a node that is participating as a manager. Removing this node leaves the remaining managers without this one; use `--force` to ignore this message.".into(),
        });
    }
    if let Some(n) = node.take() {
        n.shutdown().await;
    }
    // The node's tasks go with it, like docker's.
    if let Ok(tasks) = e.cfg.runtime.list().await {
        for t in tasks {
            let _ = e.cfg.runtime.remove(&t.labels.task_id).await;
        }
    }
    if let Ok(dir) = DataDir::open(&e.cfg.data_dir) {
        dir.forget_swarm();
    }
    empty(StatusCode::OK)
}

async fn swarm_inspect(State(e): Shared) -> ApiResult {
    let control = e.control().await?;
    let cluster = control.cluster()?;
    let mut v = convert::cluster_json(&cluster);
    v["JoinTokens"] = json!({
        "Worker": cluster.root_ca.join_tokens.worker,
        "Manager": cluster.root_ca.join_tokens.manager,
    });
    ok(v)
}

async fn swarm_update(State(e): Shared, Query(q): Params, body: Bytes) -> ApiResult {
    let control = e.control().await?;
    let version = version_param(&q)?;
    let d: dm::SwarmSpec = strict(&body)?;
    let cluster = control.cluster()?;
    let spec = convert::swarm_spec(d, &cluster.spec)?;
    // Checks the version even when the settings are unchanged (then nothing
    // is written).
    control.update_cluster(version, spec).await?;
    let rotate = Rotate {
        worker: flag(&q, "rotateWorkerToken"),
        manager: flag(&q, "rotateManagerToken"),
    };
    if rotate.worker || rotate.manager {
        let pem = String::from_utf8_lossy(&cluster.root_ca.ca_cert).to_string();
        let ca = crate::pki::RootCa::from_pem(&pem, None).map_err(crate::Error::from)?;
        control.rotate_join_tokens(rotate, &ca).await?;
    }
    empty(StatusCode::OK)
}

async fn swarm_unlock_key(State(e): Shared) -> ApiResult {
    e.control().await?;
    Err(ApiError::not_found("no unlock key is set"))
}

async fn nodes_list(State(e): Shared, Query(q): Params) -> ApiResult {
    let control = e.control().await?;
    let f = filters(&q)?;
    check_filters(
        &f,
        &["id", "name", "role", "membership", "label", "node.label"],
    )?;
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    let role = match get("role").first().map(String::as_str) {
        None => None,
        Some("manager") => Some(NodeRole::Manager),
        Some("worker") => Some(NodeRole::Worker),
        Some(r) => return Err(ApiError::bad_request(format!("invalid role filter {r:?}"))),
    };
    let filter = NodeFilter {
        ids: get("id"),
        names: get("name"),
        role,
        labels: get("node.label").into_iter().chain(get("label")).collect(),
        ..Default::default()
    };
    let nodes: Vec<Value> = control
        .list_nodes(&filter)
        .iter()
        .map(|n| convert::node_json(n))
        .collect();
    ok(json!(nodes))
}

async fn node_inspect(State(e): Shared, Path(id): Path<String>) -> ApiResult {
    let control = e.control().await?;
    let n = control.inspect_node(&id)?;
    ok(convert::node_json(&n))
}

async fn node_update(
    State(e): Shared,
    Path(id): Path<String>,
    Query(q): Params,
    body: Bytes,
) -> ApiResult {
    let control = e.control().await?;
    let version = version_param(&q)?;
    let d: dm::NodeSpec = strict(&body)?;
    let current = control.inspect_node(&id)?;
    let spec = convert::node_spec(d, &current.spec)?;
    control.update_node(&id, version, spec).await?;
    empty(StatusCode::OK)
}

async fn node_remove(State(e): Shared, Path(id): Path<String>, Query(q): Params) -> ApiResult {
    let control = e.control().await?;
    control.remove_node(&id, flag(&q, "force")).await?;
    empty(StatusCode::OK)
}

fn counts(control: &crate::manager::control::Control, s: &Service) -> ServiceCounts {
    let view = control.store().view();
    let tasks: Vec<_> = view.tasks_by_service(&s.id).collect();
    let running = tasks
        .iter()
        .filter(|t| t.status.state == TaskState::Running && t.desired_state <= TaskState::Running)
        .count() as u64;
    let completed = tasks
        .iter()
        .filter(|t| t.status.state == TaskState::Complete)
        .count() as u64;
    let desired = match &s.spec.mode {
        ServiceMode::Replicated { replicas } => *replicas,
        ServiceMode::ReplicatedJob { max_concurrent, .. } => *max_concurrent,
        _ => tasks
            .iter()
            .filter(|t| t.desired_state <= TaskState::Running)
            .count() as u64,
    };
    ServiceCounts {
        running,
        desired,
        completed,
    }
}

async fn services_list(State(e): Shared, Query(q): Params) -> ApiResult {
    let control = e.control().await?;
    let f = filters(&q)?;
    check_filters(&f, &["id", "name", "label", "mode"])?;
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    let global = match get("mode").first().map(String::as_str) {
        None => None,
        Some("global") => Some(true),
        Some("replicated") => Some(false),
        Some(m) => return Err(ApiError::bad_request(format!("invalid filter 'mode={m}'"))),
    };
    let filter = ServiceFilter {
        ids: get("id"),
        names: get("name"),
        labels: get("label"),
        global,
    };
    let status = flag(&q, "status");
    let services: Vec<Value> = control
        .list_services(&filter)
        .iter()
        .map(|s| convert::service_json(s, status.then(|| counts(&control, s))))
        .collect();
    ok(json!(services))
}

async fn service_create(State(e): Shared, body: Bytes) -> ApiResult {
    let control = e.control().await?;
    let spec = convert::service_spec(strict(&body)?)?;
    let s = control.create_service(spec).await?;
    Ok((
        StatusCode::CREATED,
        [("API-Version", API_VERSION)],
        Json(json!({"ID": s.id.as_str(), "Warnings": null})),
    )
        .into_response())
}

async fn service_inspect(State(e): Shared, Path(id): Path<String>) -> ApiResult {
    let control = e.control().await?;
    let s = control.inspect_service(&id)?;
    ok(convert::service_json(&s, None))
}

async fn service_update(
    State(e): Shared,
    Path(id): Path<String>,
    Query(q): Params,
    body: Bytes,
) -> ApiResult {
    let control = e.control().await?;
    let version = version_param(&q)?;
    if q.get("rollback").map(String::as_str) == Some("previous") {
        // The CLI sends the current spec along; the rollback uses the
        // previous one and the rollback config.
        let current = control.inspect_service(&id)?;
        if current.check_spec_read(version).is_err() {
            return Err(ApiError {
                status: StatusCode::CONFLICT,
                message: "update out of sequence".into(),
            });
        }
        control.rollback_service(&id).await?;
    } else {
        let spec = convert::service_spec(strict(&body)?)?;
        control.update_service(&id, version, spec).await?;
    }
    ok(json!({"Warnings": null}))
}

async fn service_remove(State(e): Shared, Path(id): Path<String>) -> ApiResult {
    let control = e.control().await?;
    control.remove_service(&id).await?;
    empty(StatusCode::OK)
}

async fn tasks_list(State(e): Shared, Query(q): Params) -> ApiResult {
    let control = e.control().await?;
    let f = filters(&q)?;
    check_filters(
        &f,
        &[
            "id",
            "name",
            "service",
            "node",
            "label",
            "desired-state",
            "_up-to-date",
        ],
    )?;
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    let mut desired_states = Vec::new();
    for s in get("desired-state") {
        match s.as_str() {
            "running" => desired_states.push(TaskState::Running),
            "shutdown" => desired_states.push(TaskState::Shutdown),
            "accepted" => desired_states.push(TaskState::Accepted),
            other => {
                return Err(ApiError::bad_request(format!(
                    "Invalid desired-state filter value {other:?}: must be running, shutdown or accepted"
                )));
            }
        }
    }
    let filter = TaskFilter {
        services: get("service"),
        nodes: get("node"),
        desired_states,
    };
    let ids = get("id");
    let mut tasks = control.list_tasks(&filter)?;
    if !ids.is_empty() {
        tasks.retain(|t| ids.iter().any(|i| t.id.starts_with(i.as_str())));
    }
    Ok((
        [
            ("API-Version", API_VERSION),
            ("Content-Type", "application/json"),
        ],
        e.tasks_json.list(
            &tasks,
            control.store().view().count::<swarm_core::types::Task>(),
        ),
    )
        .into_response())
}

async fn task_inspect(State(e): Shared, Path(id): Path<String>) -> ApiResult {
    let control = e.control().await?;
    let t = control.inspect_task(&id)?;
    ok(convert::task_json(&t))
}

async fn distribution(Path(name): Path<String>) -> ApiResult {
    let name = name.trim_end_matches("/json");
    Err(ApiError {
        status: StatusCode::UNAUTHORIZED,
        message: format!(
            "no registry is reachable from this swarm: cannot resolve {name} (nodes use the image as they find it)"
        ),
    })
}
