//! The node itself: `/_ping`, `/version` and `/info`, and the registry
//! lookup the CLI makes before it creates a service (`/distribution`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::http::{ApiResult, Shared, ok};
use super::{API_VERSION, ApiError, MIN_API_VERSION, convert};

pub(super) async fn ping() -> Response {
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

pub(super) async fn version() -> ApiResult {
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

pub(super) async fn info(State(e): Shared) -> ApiResult {
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
                let managers = e
                    .data
                    .load()
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

pub(super) async fn distribution(Path(name): Path<String>) -> ApiResult {
    let name = name.trim_end_matches("/json");
    Err(ApiError {
        status: StatusCode::UNAUTHORIZED,
        message: format!(
            "no registry is reachable from this swarm: cannot resolve {name} (nodes use the image as they find it)"
        ),
    })
}
