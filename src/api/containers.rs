//! `GET /containers/json`: what `docker ps` shows on a node — the tasks its
//! runtime holds, as containers.

use std::time::Duration;

use axum::extract::{Query, State};
use serde_json::{Value, json};
use swarm_core::Timestamp;
use swarm_runtime::{ContainerState, Inspection};

use super::ApiError;
use super::http::{ApiResult, Params, Shared, flag, ok};

/// "Up 5 minutes", "Exited (0) 2 seconds ago", docker's way.
fn status(i: &Inspection, now: Timestamp) -> String {
    let ago = |t: Option<Timestamp>| t.map_or(Duration::ZERO, |t| now.since(t));
    match i.state {
        ContainerState::Created => "Created".into(),
        ContainerState::Running => format!("Up {}", human(ago(i.started_at))),
        ContainerState::Exited => format!(
            "Exited ({}) {} ago",
            i.exit_code.unwrap_or(0),
            human(ago(i.finished_at))
        ),
    }
}

/// docker's rough durations: seconds, minutes, hours, days.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".into(),
        120..=3599 => format!("{} minutes", s / 60),
        3600..=7199 => "About an hour".into(),
        7200..=172_799 => format!("{} hours", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

fn container_json(i: &Inspection, now: Timestamp) -> Value {
    let l = &i.labels;
    let name = format!("/{}.{}", l.task_name, l.task_id);
    json!({
        "Id": i.container.container_id,
        "Names": [name],
        "Image": i.image,
        "ImageID": "",
        "Command": "",
        "Created": i.started_at.map_or(0, |t| t.seconds),
        "State": match i.state {
            ContainerState::Created => "created",
            ContainerState::Running => "running",
            ContainerState::Exited => "exited",
        },
        "Status": status(i, now),
        "Ports": [],
        "Labels": {
            "com.docker.swarm.task.id": l.task_id.as_str(),
            "com.docker.swarm.task.name": l.task_name,
            "com.docker.swarm.service.id": l.service_id.as_str(),
            "com.docker.swarm.service.name": l.service_name,
            "com.docker.swarm.node.id": l.node_id.as_str(),
        },
        "SizeRw": 0,
        "SizeRootFs": 0,
        "HostConfig": {"NetworkMode": "default"},
        "NetworkSettings": {"Networks": {}},
        "Mounts": [],
    })
}

pub(super) async fn list(State(e): Shared, Query(q): Params) -> ApiResult {
    let all = flag(&q, "all");
    let mut list = e.cfg.runtime.list().await.map_err(|err| ApiError {
        status: axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        message: format!("listing the node's tasks: {err}"),
    })?;
    // This node's tasks only: the engine may run other nodes' and swarms'.
    let me = e.node.read().await.as_ref().map(|n| n.node_id().clone());
    list.retain(|i| Some(&i.labels.node_id) == me.as_ref());
    if !all {
        list.retain(|i| i.state == ContainerState::Running);
    }
    list.sort_by_key(|i| std::cmp::Reverse(i.started_at));
    let now = Timestamp::now();
    ok(json!(
        list.iter()
            .map(|i| container_json(i, now))
            .collect::<Vec<_>>()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_docker() {
        assert_eq!(human(Duration::from_secs(0)), "Less than a second");
        assert_eq!(human(Duration::from_secs(5)), "5 seconds");
        assert_eq!(human(Duration::from_secs(90)), "About a minute");
        assert_eq!(human(Duration::from_secs(600)), "10 minutes");
        assert_eq!(human(Duration::from_secs(3 * 3600)), "3 hours");
        assert_eq!(human(Duration::from_secs(3 * 86_400)), "3 days");
    }
}
