//! `/nodes`: list, inspect, update (role, availability, labels) and remove.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use bollard::models as dm;
use serde_json::{Value, json};
use swarm_core::types::NodeRole;

use super::ApiError;
use super::convert::{self, strict};
use super::http::Update;
use super::http::{ApiResult, Params, Shared, check_filters, empty, filters, flag, ok};
use crate::manager::control::NodeFilter;

pub(super) async fn list(State(e): Shared, Query(q): Params) -> ApiResult {
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

pub(super) async fn inspect(State(e): Shared, Path(id): Path<String>) -> ApiResult {
    let control = e.control().await?;
    let n = control.inspect_node(&id)?;
    ok(convert::node_json(&n))
}

pub(super) async fn update(u: Update) -> ApiResult {
    let Update {
        control,
        id,
        version,
        body,
        ..
    } = u;
    let d: dm::NodeSpec = strict(&body)?;
    let current = control.inspect_node(&id)?;
    let spec = convert::node_spec(d, &current.spec)?;
    control.update_node(&id, version, spec).await?;
    empty(StatusCode::OK)
}

pub(super) async fn remove(
    State(e): Shared,
    Path(id): Path<String>,
    Query(q): Params,
) -> ApiResult {
    let control = e.control().await?;
    control.remove_node(&id, flag(&q, "force")).await?;
    empty(StatusCode::OK)
}
