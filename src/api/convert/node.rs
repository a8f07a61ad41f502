//! Nodes: a node spec of the Engine API applied over the current one, and a
//! node as `GET /nodes` shows it.

use bollard::models as dm;
use serde_json::{Value, json};
use swarm_core::types::*;

use super::values::{enum_str, map, time};
use crate::api::ApiError;

/// A node spec of the Engine API, applied over `current`.
pub fn node_spec(d: dm::NodeSpec, current: &NodeSpec) -> Result<NodeSpec, ApiError> {
    let mut s = current.clone();
    s.annotations.name = d.name.unwrap_or_default();
    s.annotations.labels = map(d.labels);
    if let Some(r) = d.role {
        s.desired_role = match enum_str(&r).as_str() {
            "manager" => NodeRole::Manager,
            "worker" => NodeRole::Worker,
            other => return Err(ApiError::bad_request(format!("invalid role {other:?}"))),
        };
    }
    if let Some(a) = d.availability {
        s.availability = match enum_str(&a).as_str() {
            "active" => Availability::Active,
            "pause" => Availability::Pause,
            "drain" => Availability::Drain,
            other => {
                return Err(ApiError::bad_request(format!(
                    "invalid availability {other:?}"
                )));
            }
        };
    }
    Ok(s)
}

fn role_str(r: NodeRole) -> &'static str {
    match r {
        NodeRole::Manager => "manager",
        NodeRole::Worker => "worker",
    }
}

fn availability_str(a: Availability) -> &'static str {
    match a {
        Availability::Active => "active",
        Availability::Pause => "pause",
        Availability::Drain => "drain",
    }
}

/// A node as `GET /nodes` shows it.
pub fn node_json(n: &Node) -> Value {
    let d = n.description.clone().unwrap_or_default();
    let mut v = json!({
        "ID": n.id.as_str(),
        "Version": {"Index": n.meta.version.index},
        "CreatedAt": time(n.meta.created_at),
        "UpdatedAt": time(n.meta.updated_at),
        "Spec": {
            "Labels": n.spec.annotations.labels,
            "Role": role_str(n.spec.desired_role),
            "Availability": availability_str(n.spec.availability),
        },
        "Description": {
            "Hostname": d.hostname,
            "Platform": {"Architecture": d.platform.architecture, "OS": d.platform.os},
            "Resources": {"NanoCPUs": d.resources.nano_cpus, "MemoryBytes": d.resources.memory_bytes},
            "Engine": {
                "EngineVersion": d.engine.engine_version,
                "Labels": d.engine.labels,
                "Plugins": d.engine.plugins.iter().map(|p| json!({"Type": p.r#type, "Name": p.name})).collect::<Vec<_>>(),
            },
            "TLSInfo": {},
        },
        "Status": {
            "State": match n.status.state {
                NodeState::Unknown => "unknown",
                NodeState::Down => "down",
                NodeState::Ready => "ready",
                NodeState::Disconnected => "disconnected",
            },
            "Message": n.status.message,
            "Addr": n.status.addr,
        },
    });
    if !n.spec.annotations.name.is_empty() {
        v["Spec"]["Name"] = json!(n.spec.annotations.name);
    }
    if let Some(ms) = &n.manager_status {
        v["ManagerStatus"] = json!({
            "Leader": ms.leader,
            "Reachability": match ms.reachability {
                Reachability::Unknown => "unknown",
                Reachability::Unreachable => "unreachable",
                Reachability::Reachable => "reachable",
            },
            "Addr": ms.addr,
        });
    }
    v
}
