//! Services both ways: a service spec of the Engine API (mode, update and
//! rollback configs, endpoint; the task template is [`task_spec`](super::task_spec)'s)
//! into a [`ServiceSpec`], and a service as `GET /services` shows it.

use bollard::models as dm;
use serde_json::{Value, json};
use swarm_core::types::*;

use super::task_spec::{task_spec, task_spec_json};
use super::values::{duration, enum_str, map, nanos, time, unsigned};
use crate::api::ApiError;

/// A service spec of the Engine API.
pub fn service_spec(d: dm::ServiceSpec) -> Result<ServiceSpec, ApiError> {
    let task = task_spec(d.task_template.unwrap_or_default(), d.networks)?;
    Ok(ServiceSpec {
        annotations: Annotations {
            name: d.name.unwrap_or_default(),
            labels: map(d.labels),
        },
        task,
        mode: match d.mode {
            None => ServiceMode::Replicated { replicas: 1 },
            Some(m) => mode(m)?,
        },
        update: d
            .update_config
            .map(|u| update_config(u.into(), "UpdateConfig"))
            .transpose()?,
        rollback: d
            .rollback_config
            .map(|u| update_config(u.into(), "RollbackConfig"))
            .transpose()?,
        endpoint: d.endpoint_spec.map(endpoint_spec).transpose()?,
    })
}

fn mode(m: dm::ServiceSpecMode) -> Result<ServiceMode, ApiError> {
    Ok(if let Some(r) = m.replicated {
        ServiceMode::Replicated {
            replicas: unsigned("Mode.Replicated.Replicas", r.replicas)?.unwrap_or(1),
        }
    } else if m.global.is_some() {
        ServiceMode::Global
    } else if let Some(j) = m.replicated_job {
        ServiceMode::ReplicatedJob {
            max_concurrent: unsigned("Mode.ReplicatedJob.MaxConcurrent", j.max_concurrent)?
                .unwrap_or(1),
            total_completions: unsigned(
                "Mode.ReplicatedJob.TotalCompletions",
                j.total_completions,
            )?
            .unwrap_or(1),
        }
    } else if m.global_job.is_some() {
        ServiceMode::GlobalJob
    } else {
        ServiceMode::Replicated { replicas: 1 }
    })
}

/// An update or rollback config of the Engine API: bollard has one type for
/// each, with the same fields (its enums as their strings here).
struct UpdateFields {
    parallelism: Option<i64>,
    delay: Option<i64>,
    failure_action: Option<String>,
    monitor: Option<i64>,
    max_failure_ratio: Option<f64>,
    order: Option<String>,
}

/// `From` each of bollard's two config types.
macro_rules! update_fields_from {
    ($($t:ty),*) => {$(
        impl From<$t> for UpdateFields {
            fn from(u: $t) -> UpdateFields {
                UpdateFields {
                    parallelism: u.parallelism,
                    delay: u.delay,
                    failure_action: u.failure_action.map(|a| enum_str(&a)),
                    monitor: u.monitor,
                    max_failure_ratio: u.max_failure_ratio,
                    order: u.order.map(|o| enum_str(&o)),
                }
            }
        }
    )*};
}

update_fields_from!(dm::ServiceSpecUpdateConfig, dm::ServiceSpecRollbackConfig);

/// An update or rollback config; `what` names it in errors.
fn update_config(u: UpdateFields, what: &str) -> Result<UpdateConfig, ApiError> {
    let dflt = UpdateConfig::default();
    Ok(UpdateConfig {
        parallelism: unsigned(&format!("{what}.Parallelism"), u.parallelism)?
            .unwrap_or(dflt.parallelism),
        delay: duration(&format!("{what}.Delay"), u.delay)?.unwrap_or(dflt.delay),
        failure_action: match u.failure_action.as_deref() {
            None | Some("") | Some("pause") => FailureAction::Pause,
            Some("continue") => FailureAction::Continue,
            Some("rollback") => FailureAction::Rollback,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "{what}.FailureAction: invalid {other:?}"
                )));
            }
        },
        monitor: duration(&format!("{what}.Monitor"), u.monitor)?.unwrap_or(dflt.monitor),
        max_failure_ratio: u.max_failure_ratio.unwrap_or_default() as f32,
        order: match u.order.as_deref() {
            None | Some("") | Some("stop-first") => UpdateOrder::StopFirst,
            Some("start-first") => UpdateOrder::StartFirst,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "{what}.Order: invalid {other:?}"
                )));
            }
        },
    })
}

fn endpoint_spec(e: dm::EndpointSpec) -> Result<EndpointSpec, ApiError> {
    let ports = e
        .ports
        .unwrap_or_default()
        .into_iter()
        .map(port_config)
        .collect::<Result<_, _>>()?;
    Ok(EndpointSpec {
        mode: match e.mode.map(|m| enum_str(&m)).as_deref() {
            Some("dnsrr") => ResolutionMode::Dnsrr,
            _ => ResolutionMode::Vip,
        },
        ports,
    })
}

fn port_config(p: dm::EndpointPortConfig) -> Result<PortConfig, ApiError> {
    Ok(PortConfig {
        name: p.name.unwrap_or_default(),
        protocol: match p.protocol.map(|x| enum_str(&x)).as_deref() {
            None | Some("") | Some("tcp") => Protocol::Tcp,
            Some("udp") => Protocol::Udp,
            Some("sctp") => Protocol::Sctp,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "EndpointSpec.Ports: invalid protocol {other:?}"
                )));
            }
        },
        target_port: port("TargetPort", p.target_port)?,
        published_port: port("PublishedPort", p.published_port)?,
        publish_mode: match p.publish_mode.map(|x| enum_str(&x)).as_deref() {
            Some("host") => PublishMode::Host,
            _ => PublishMode::Ingress,
        },
    })
}

fn port(field: &str, v: Option<i64>) -> Result<u32, ApiError> {
    match v {
        None => Ok(0),
        Some(p) if (0..=65535).contains(&p) => Ok(p as u32),
        Some(p) => Err(ApiError::bad_request(format!(
            "EndpointSpec.Ports.{field}: {p} is not a port number"
        ))),
    }
}

fn update_json(u: &UpdateConfig) -> Value {
    json!({
        "Parallelism": u.parallelism,
        "Delay": nanos(u.delay),
        "FailureAction": match u.failure_action {
            FailureAction::Pause => "pause",
            FailureAction::Continue => "continue",
            FailureAction::Rollback => "rollback",
        },
        "Monitor": nanos(u.monitor),
        "MaxFailureRatio": u.max_failure_ratio,
        "Order": match u.order {
            UpdateOrder::StopFirst => "stop-first",
            UpdateOrder::StartFirst => "start-first",
        },
    })
}

pub(super) fn ports_json(ports: &[PortConfig]) -> Value {
    ports
        .iter()
        .map(|p| {
            json!({
                "Name": p.name,
                "Protocol": p.protocol.to_string(),
                "TargetPort": p.target_port,
                "PublishedPort": p.published_port,
                "PublishMode": match p.publish_mode {
                    PublishMode::Ingress => "ingress",
                    PublishMode::Host => "host",
                },
            })
        })
        .collect()
}

/// A service spec as the Engine API shows it.
fn service_spec_json(s: &ServiceSpec) -> Value {
    let mut v = json!({
        "Name": s.annotations.name,
        "Labels": s.annotations.labels,
        "TaskTemplate": task_spec_json(&s.task),
        "Mode": match &s.mode {
            ServiceMode::Replicated { replicas } => json!({"Replicated": {"Replicas": replicas}}),
            ServiceMode::Global => json!({"Global": {}}),
            ServiceMode::ReplicatedJob { max_concurrent, total_completions } => json!({
                "ReplicatedJob": {"MaxConcurrent": max_concurrent, "TotalCompletions": total_completions}
            }),
            ServiceMode::GlobalJob => json!({"GlobalJob": {}}),
        },
    });
    if let Some(u) = &s.update {
        v["UpdateConfig"] = update_json(u);
    }
    if let Some(u) = &s.rollback {
        v["RollbackConfig"] = update_json(u);
    }
    let e = s.endpoint.clone().unwrap_or_default();
    v["EndpointSpec"] = json!({
        "Mode": match e.mode { ResolutionMode::Vip => "vip", ResolutionMode::Dnsrr => "dnsrr" },
        "Ports": ports_json(&e.ports),
    });
    v
}

/// What `GET /services?status=true` adds: running, desired and completed tasks.
#[derive(Clone, Copy, Debug, Default)]
pub struct ServiceCounts {
    /// Tasks RUNNING now.
    pub running: u64,
    /// Tasks wanted.
    pub desired: u64,
    /// Job tasks COMPLETE.
    pub completed: u64,
}

/// A service as `GET /services` shows it.
pub fn service_json(s: &Service, counts: Option<ServiceCounts>) -> Value {
    let mut v = json!({
        "ID": s.id.as_str(),
        "Version": {"Index": s.meta.version.index},
        "CreatedAt": time(s.meta.created_at),
        "UpdatedAt": time(s.meta.updated_at),
        "Spec": service_spec_json(&s.spec),
    });
    if let Some(p) = &s.previous_spec {
        v["PreviousSpec"] = service_spec_json(p);
    }
    let e = s.endpoint.clone().unwrap_or_default();
    let mut endpoint = json!({
        "Spec": v["Spec"]["EndpointSpec"].clone(),
    });
    if !e.ports.is_empty() {
        endpoint["Ports"] = ports_json(&e.ports);
    }
    if !e.virtual_ips.is_empty() {
        endpoint["VirtualIPs"] = e
            .virtual_ips
            .iter()
            .map(|vip| json!({"NetworkID": vip.network_id.as_str(), "Addr": vip.addr}))
            .collect();
    }
    v["Endpoint"] = endpoint;
    if let Some(u) = &s.update_status
        && u.state != UpdateState::Unknown
    {
        v["UpdateStatus"] = update_status_json(u);
    }
    if let Some(c) = counts {
        v["ServiceStatus"] = json!({
            "RunningTasks": c.running,
            "DesiredTasks": c.desired,
            "CompletedTasks": c.completed,
        });
    }
    v
}

/// Where a rolling update or rollback stands.
fn update_status_json(u: &UpdateStatus) -> Value {
    let mut st = json!({
        "State": match u.state {
            UpdateState::Unknown => "",
            UpdateState::Updating => "updating",
            UpdateState::Paused => "paused",
            UpdateState::Completed => "completed",
            UpdateState::RollbackStarted => "rollback_started",
            UpdateState::RollbackPaused => "rollback_paused",
            UpdateState::RollbackCompleted => "rollback_completed",
        },
        "Message": u.message,
    });
    if let Some(t) = u.started_at {
        st["StartedAt"] = json!(time(t));
    }
    if let Some(t) = u.completed_at {
        st["CompletedAt"] = json!(time(t));
    }
    st
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::strict;
    use super::*;

    #[test]
    fn a_service_spec_round_trips_through_docker_json() {
        let body = br#"{
            "Name": "web",
            "Labels": {"a": "b"},
            "TaskTemplate": {
                "ContainerSpec": {"Image": "busybox:1", "Args": ["sleep", "60"], "StopGracePeriod": 2000000000},
                "RestartPolicy": {"Condition": "on-failure", "Delay": 1000000000, "MaxAttempts": 3},
                "Placement": {"Constraints": ["node.role==worker"]},
                "ForceUpdate": 2
            },
            "Mode": {"Replicated": {"Replicas": 3}},
            "UpdateConfig": {"Parallelism": 2, "Delay": 10000000000, "FailureAction": "rollback", "Order": "start-first"},
            "EndpointSpec": {"Ports": [{"Protocol": "udp", "TargetPort": 80, "PublishedPort": 8080}]}
        }"#;
        let spec = service_spec(strict(body).unwrap()).unwrap();
        assert_eq!(spec.annotations.name, "web");
        assert_eq!(spec.mode, ServiceMode::Replicated { replicas: 3 });
        assert_eq!(spec.task.container.args, vec!["sleep", "60"]);
        assert_eq!(
            spec.task.container.stop_grace_period,
            Some(Duration::from_secs(2))
        );
        let r = spec.task.restart.clone().unwrap();
        assert_eq!(
            (r.condition, r.delay, r.max_attempts),
            (RestartCondition::OnFailure, Duration::from_secs(1), 3)
        );
        let u = spec.update.clone().unwrap();
        assert_eq!(
            (u.parallelism, u.delay, u.failure_action, u.order),
            (
                2,
                Duration::from_secs(10),
                FailureAction::Rollback,
                UpdateOrder::StartFirst
            )
        );
        assert_eq!(spec.task.force_update, 2);
        let p = &spec.endpoint.as_ref().unwrap().ports[0];
        assert_eq!(
            (p.protocol, p.target_port, p.published_port),
            (Protocol::Udp, 80, 8080)
        );
        // Written back and read again: the same spec.
        let again =
            service_spec(serde_json::from_value(service_spec_json(&spec)).expect("docker's shape"))
                .unwrap();
        assert_eq!(again, spec);
    }

    #[test]
    fn the_clis_create_and_update_bodies_give_the_same_task_spec() {
        // What docker 28 sends for `service create busybox sleep 600` and then
        // for `service update --publish-add 9998:80`: only the ports differ, so
        // no task may be replaced.
        let create = br#"{"Name":"w2","Labels":{},"TaskTemplate":{"ContainerSpec":{"Image":"busybox:latest","Args":["sleep","600"],"Init":false,"DNSConfig":{}},"Resources":{"Limits":{},"Reservations":{}},"Placement":{},"ForceUpdate":0},"Mode":{"Replicated":{"Replicas":1}},"EndpointSpec":{"Mode":"vip"}}"#;
        let update = br#"{"Name":"w2","Labels":{},"TaskTemplate":{"ContainerSpec":{"Image":"busybox:latest","Args":["sleep","600"],"Init":false,"Isolation":"default"},"Resources":{"Limits":{},"Reservations":{}},"Placement":{},"ForceUpdate":0,"Runtime":"container"},"Mode":{"Replicated":{"Replicas":1}},"EndpointSpec":{"Mode":"vip","Ports":[{"Protocol":"tcp","TargetPort":80,"PublishedPort":9998,"PublishMode":"ingress"}]}}"#;
        let a = service_spec(strict(create).unwrap()).unwrap();
        let b = service_spec(strict(update).unwrap()).unwrap();
        assert_eq!(a.task, b.task);
        let mut with_dns = a.clone();
        with_dns.task.container.dns_config = Some(DnsConfig {
            nameservers: vec!["10.0.0.2".into()],
            ..Default::default()
        });
        let again = service_spec(
            serde_json::from_value(service_spec_json(&with_dns)).expect("docker's shape"),
        )
        .unwrap();
        assert_eq!(again.task, with_dns.task, "a DNS config is written back");
    }
    #[test]
    fn negative_numbers_are_refused_with_the_field() {
        let e =
            service_spec(strict(br#"{"Name":"a","Mode":{"Replicated":{"Replicas":-1}}}"#).unwrap())
                .unwrap_err();
        assert!(
            e.message.contains("Mode.Replicated.Replicas"),
            "{}",
            e.message
        );
    }
}
