//! `/tasks`: list (written through the engine's task JSON cache) and inspect.

use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use swarm_core::types::{Task, TaskState};

use super::convert;
use super::http::{ApiResult, Params, Shared, check_filters, filters, ok};
use super::{API_VERSION, ApiError};
use crate::manager::control::TaskFilter;

pub(super) async fn list(State(e): Shared, Query(q): Params) -> ApiResult {
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
        e.tasks_json
            .list(&tasks, control.store().view().count::<Task>()),
    )
        .into_response())
}

pub(super) async fn inspect(State(e): Shared, Path(id): Path<String>) -> ApiResult {
    let control = e.control().await?;
    let t = control.inspect_task(&id)?;
    ok(convert::task_json(&t))
}
