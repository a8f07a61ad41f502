//! `/swarm`: init, join and leave, which start or stop this engine's node
//! (with the cluster addresses the request settles on, saved for restarts);
//! inspect and update, which go to the cluster.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use bollard::models as dm;
use serde_json::json;
use swarm_core::types::NodeRole;

use super::convert::{self, InitRequest, JoinRequest, strict};
use super::http::{ApiResult, Params, Shared, empty, flag, ok, version_param};
use super::{ApiError, EngineConfig};
use crate::manager::control::Rotate;
use crate::node::Node;
use crate::state::SavedAddrs;
use crate::{ManagerConfig, NetworkConfig, RootCa};

/// 503: an init or join on a node that is in a swarm already.
fn already_in_swarm() -> ApiError {
    ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: "This node is already part of a swarm. Use \"docker swarm leave\" to leave this swarm and join another one.".into(),
    }
}

pub(super) async fn init(State(e): Shared, body: Bytes) -> ApiResult {
    let req: InitRequest = strict(&body)?;
    convert::refuse_unsupported_init(&req)?;
    let mut node = e.node.write().await;
    if node.is_some() {
        return Err(already_in_swarm());
    }
    let (addrs, cfg) = init_config(&e.cfg, req)?;
    let n = Node::start(cfg).await?;
    e.data.save_addrs(&SavedAddrs {
        listen_addr: addrs.listen_addr.or(n.manager_addr().await),
        ..addrs
    })?;
    let id = n.node_id().to_string();
    *node = Some(n);
    ok(json!(id))
}

/// The node an init starts: a new swarm with the request's spec and overlay
/// address pools, at the request's cluster addresses (returned, to be saved).
fn init_config(
    cfg: &EngineConfig,
    req: InitRequest,
) -> Result<(SavedAddrs, ManagerConfig), ApiError> {
    let spec = convert::swarm_spec(req.spec.unwrap_or_default(), &Default::default())?;
    let (listen, advertise) = addresses(cfg, req.listen_addr, req.advertise_addr)?;
    let network = NetworkConfig {
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
    let m = cfg
        .manager_config(&addrs)
        .cluster_spec(spec)
        .network(network);
    Ok((addrs, m))
}

pub(super) async fn join(State(e): Shared, body: Bytes) -> ApiResult {
    let req: JoinRequest = strict(&body)?;
    let mut node = e.node.write().await;
    if node.is_some() {
        return Err(already_in_swarm());
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
        let cfg = e.cfg.manager_config(&addrs);
        match Node::join(cfg, &remote, &token).await {
            Ok(n) => {
                *node = Some(n);
                e.data.save_addrs(&addrs)?;
                return empty(StatusCode::OK);
            }
            Err(err) => last = err.into(),
        }
    }
    Err(last)
}

pub(super) async fn leave(State(e): Shared, Query(q): Params) -> ApiResult {
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
    let Some(n) = node.take() else {
        return Err(ApiError::not_in_swarm());
    };
    let me = n.node_id().clone();
    n.shutdown().await;
    // The node's tasks go with it, like docker's; nothing else on the runtime
    // (an engine may be shared with other nodes and other swarms) is touched.
    if let Ok(tasks) = e.cfg.runtime.list().await {
        for t in tasks.iter().filter(|t| t.labels.node_id == me) {
            let _ = e.cfg.runtime.remove(&t.labels.task_id).await;
        }
    }
    e.data.forget_swarm();
    empty(StatusCode::OK)
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

pub(super) async fn inspect(State(e): Shared) -> ApiResult {
    let control = e.control().await?;
    let cluster = control.cluster()?;
    let mut v = convert::cluster_json(&cluster);
    v["JoinTokens"] = json!({
        "Worker": cluster.root_ca.join_tokens.worker,
        "Manager": cluster.root_ca.join_tokens.manager,
    });
    ok(v)
}

pub(super) async fn update(State(e): Shared, Query(q): Params, body: Bytes) -> ApiResult {
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
        let ca = RootCa::from_pem(&pem, None).map_err(crate::Error::from)?;
        control.rotate_join_tokens(rotate, &ca).await?;
    }
    empty(StatusCode::OK)
}

pub(super) async fn unlock_key(State(e): Shared) -> ApiResult {
    e.control().await?;
    Err(ApiError::not_found("no unlock key is set"))
}
