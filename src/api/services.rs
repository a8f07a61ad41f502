//! `/services`: list (with task counts when asked), create, inspect, update
//! (or roll back) and remove.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde_json::{Value, json};
use swarm_core::StoreObject;
use swarm_core::types::{Service, ServiceMode, TaskState};

use super::ApiError;
use super::convert::{self, ServiceCounts, strict};
use super::http::Update;
use super::http::{ApiResult, Params, Shared, check_filters, created, empty, filters, flag, ok};
use crate::manager::control::{Control, ServiceFilter};

/// What `GET /services?status=true` shows of `s`: its tasks running, wanted
/// and completed.
fn counts(control: &Control, s: &Service) -> ServiceCounts {
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

pub(super) async fn list(State(e): Shared, Query(q): Params) -> ApiResult {
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

pub(super) async fn create(State(e): Shared, body: Bytes) -> ApiResult {
    let control = e.control().await?;
    let spec = convert::service_spec(strict(&body)?)?;
    let s = control.create_service(spec).await?;
    created(json!({"ID": s.id.as_str(), "Warnings": null}))
}

pub(super) async fn inspect(State(e): Shared, Path(id): Path<String>) -> ApiResult {
    let control = e.control().await?;
    let s = control.inspect_service(&id)?;
    ok(convert::service_json(&s, None))
}

pub(super) async fn update(u: Update) -> ApiResult {
    let Update {
        control,
        id,
        version,
        query: q,
        body,
    } = u;
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

pub(super) async fn remove(State(e): Shared, Path(id): Path<String>) -> ApiResult {
    let control = e.control().await?;
    control.remove_service(&id).await?;
    empty(StatusCode::OK)
}
