//! `/networks`: list, inspect (with the overlay's peers), create (swarm-scoped
//! only) and remove.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::convert::{NetworkCreate, network_json, network_spec, strict};
use super::http::{
    ApiResult, Params, Shared, check_filters, created, empty, filters, matches_filters, ok,
};

pub(super) async fn list(State(e): Shared, Query(q): Params) -> ApiResult {
    let control = e.control().await?;
    let f = filters(&q)?;
    check_filters(
        &f,
        &["id", "name", "label", "driver", "scope", "type", "dangling"],
    )?;
    let drivers = f.get("driver").cloned().unwrap_or_default();
    let v: Vec<Value> = control
        .list_networks()
        .iter()
        .filter(|n| matches_filters(&f, &n.id, &n.spec.annotations))
        .filter(|n| drivers.is_empty() || drivers.contains(&n.spec.driver_config.name))
        .map(|n| network_json(n))
        .collect();
    ok(json!(v))
}

pub(super) async fn inspect(State(e): Shared, Path(id): Path<String>) -> ApiResult {
    let control = e.control().await?;
    let n = control.inspect_network(&id)?;
    let mut v = network_json(&n);
    if n.spec.driver_config.name == "overlay" || n.spec.ingress {
        let peers: Vec<Value> = control
            .network_peers(&n)
            .into_iter()
            .map(|(name, ip)| json!({"Name": name, "IP": ip}))
            .collect();
        v["Peers"] = json!(peers);
    }
    ok(v)
}

pub(super) async fn create(State(e): Shared, body: Bytes) -> ApiResult {
    let control = e.control().await?;
    let r: NetworkCreate = strict(&body)?;
    let spec = network_spec(r)?;
    let n = control.create_network(spec).await?;
    created(json!({"Id": n.id.as_str(), "Warning": ""}))
}

pub(super) async fn remove(State(e): Shared, Path(id): Path<String>) -> ApiResult {
    let control = e.control().await?;
    control.remove_network(&id).await?;
    empty(StatusCode::NO_CONTENT)
}
