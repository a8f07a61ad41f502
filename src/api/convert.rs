//! Docker Engine API JSON ↔ the object model.
//!
//! Requests are parsed into bollard's models of the Engine API (Docker's field
//! names, checked field by field: see [`strict`]); answers are written with
//! Docker's field names directly, so every field the docker CLI reads is there
//! in the shape it expects.

use std::collections::BTreeMap;
use std::time::Duration;

use bollard::models as dm;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use swarm_core::Timestamp;
use swarm_core::types::*;

use super::ApiError;

/// Parses a request body as `T`, refusing malformed JSON, wrong types and
/// fields the Engine API does not have (Docker's own decoder would drop them
/// silently; a typo then changes nothing without a word).
pub fn strict<T: DeserializeOwned + Serialize>(body: &[u8]) -> Result<T, ApiError> {
    let raw: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("malformed JSON in the request body: {e}")))?;
    let parsed: T = serde_json::from_value(raw.clone())
        .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))?;
    let back = serde_json::to_value(&parsed).unwrap_or(Value::Null);
    if let Some(path) = unknown_field(&raw, &back, String::new()) {
        return Err(ApiError::bad_request(format!(
            "unknown field {path:?} in the request body"
        )));
    }
    Ok(parsed)
}

/// The first field of `raw` that `known` (its parsed and re-written form) lost.
fn unknown_field(raw: &Value, known: &Value, at: String) -> Option<String> {
    match (raw, known) {
        (Value::Object(r), Value::Object(k)) => r.iter().find_map(|(key, v)| {
            let path = if at.is_empty() {
                key.clone()
            } else {
                format!("{at}.{key}")
            };
            match k.get(key) {
                None if v.is_null() || is_empty(v) => None,
                None => Some(path),
                Some(kv) => unknown_field(v, kv, path),
            }
        }),
        (Value::Array(r), Value::Array(k)) => r
            .iter()
            .zip(k)
            .enumerate()
            .find_map(|(i, (rv, kv))| unknown_field(rv, kv, format!("{at}[{i}]"))),
        _ => None,
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Object(o) => o.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

/// `POST /swarm/init` (Docker's `InitRequest`, which has fields bollard's
/// model lacks).
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InitRequest {
    /// Cluster port to listen on.
    pub listen_addr: Option<String>,
    /// Address to advertise.
    pub advertise_addr: Option<String>,
    /// Data-path address.
    pub data_path_addr: Option<String>,
    /// VXLAN port.
    pub data_path_port: Option<u32>,
    /// Force a new cluster from this manager's state.
    pub force_new_cluster: Option<bool>,
    /// Swarm settings.
    pub spec: Option<dm::SwarmSpec>,
    /// Autolock.
    pub auto_lock_managers: Option<bool>,
    /// This node's availability.
    pub availability: Option<String>,
    /// Address pools for overlay subnets.
    pub default_addr_pool: Option<Vec<String>>,
    /// Their subnet size.
    pub subnet_size: Option<u32>,
}

/// `POST /swarm/join` (Docker's `JoinRequest`).
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct JoinRequest {
    /// Cluster port to listen on.
    pub listen_addr: Option<String>,
    /// Address to advertise.
    pub advertise_addr: Option<String>,
    /// Data-path address.
    pub data_path_addr: Option<String>,
    /// Managers to join through.
    pub remote_addrs: Option<Vec<String>>,
    /// The join token.
    pub join_token: Option<String>,
    /// This node's availability.
    pub availability: Option<String>,
}

/// The JSON string of a bollard enum (`"drain"`, `"on-failure"`, ...).
fn enum_str<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// A time as the Engine API writes it (RFC 3339 with nanoseconds).
pub fn time(t: Timestamp) -> String {
    t.to_string()
}

fn nanos(d: Duration) -> i64 {
    d.as_nanos().min(i64::MAX as u128) as i64
}

fn duration(field: &str, ns: Option<i64>) -> Result<Option<Duration>, ApiError> {
    match ns {
        None => Ok(None),
        Some(n) if n < 0 => Err(ApiError::bad_request(format!(
            "{field}: a duration must not be negative (got {n}ns)"
        ))),
        Some(n) => Ok(Some(Duration::from_nanos(n as u64))),
    }
}

fn unsigned(field: &str, v: Option<i64>) -> Result<Option<u64>, ApiError> {
    match v {
        None => Ok(None),
        Some(n) if n < 0 => Err(ApiError::bad_request(format!(
            "{field}: must not be negative (got {n})"
        ))),
        Some(n) => Ok(Some(n as u64)),
    }
}

fn map(m: Option<std::collections::HashMap<String, String>>) -> BTreeMap<String, String> {
    m.unwrap_or_default().into_iter().collect()
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

/// A service spec of the Engine API.
pub fn service_spec(d: dm::ServiceSpec) -> Result<ServiceSpec, ApiError> {
    let task = d.task_template.unwrap_or_default();
    let c = task.container_spec.unwrap_or_default();
    let mut container = ContainerSpec {
        image: c.image.unwrap_or_default(),
        labels: map(c.labels),
        command: c.command.unwrap_or_default(),
        args: c.args.unwrap_or_default(),
        hostname: c.hostname.unwrap_or_default(),
        env: c.env.unwrap_or_default(),
        dir: c.dir.unwrap_or_default(),
        user: c.user.unwrap_or_default(),
        groups: c.groups.unwrap_or_default(),
        init: c.init,
        tty: c.tty.unwrap_or_default(),
        open_stdin: c.open_stdin.unwrap_or_default(),
        read_only: c.read_only.unwrap_or_default(),
        stop_signal: c.stop_signal.unwrap_or_default(),
        stop_grace_period: duration("StopGracePeriod", c.stop_grace_period)?,
        hosts: c.hosts.unwrap_or_default(),
        sysctls: map(c.sysctls),
        capability_add: c.capability_add.unwrap_or_default(),
        capability_drop: c.capability_drop.unwrap_or_default(),
        ..Default::default()
    };
    for r in c.secrets.unwrap_or_default() {
        let f = r.file.unwrap_or_default();
        container.secrets.push(SecretReference {
            secret_id: r.secret_id.unwrap_or_default().into(),
            secret_name: r.secret_name.unwrap_or_default(),
            file_name: f.name.unwrap_or_default(),
            uid: f.uid.unwrap_or_default(),
            gid: f.gid.unwrap_or_default(),
            mode: f.mode.unwrap_or(0o444),
        });
    }
    for r in c.configs.unwrap_or_default() {
        let f = r.file.unwrap_or_default();
        container.configs.push(ConfigReference {
            config_id: r.config_id.unwrap_or_default().into(),
            config_name: r.config_name.unwrap_or_default(),
            file_name: f.name.unwrap_or_default(),
            uid: f.uid.unwrap_or_default(),
            gid: f.gid.unwrap_or_default(),
            mode: f.mode.unwrap_or(0o444),
        });
    }
    for m in c.mounts.unwrap_or_default() {
        let kind = m
            .typ
            .map(|t| enum_str(&t))
            .unwrap_or_else(|| "volume".into());
        container.mounts.push(Mount {
            r#type: match kind.as_str() {
                "bind" => MountType::Bind,
                "volume" => MountType::Volume,
                "tmpfs" => MountType::Tmpfs,
                "npipe" => MountType::Npipe,
                "cluster" => MountType::Cluster,
                other => {
                    return Err(ApiError::bad_request(format!(
                        "Mounts: invalid mount type {other:?}"
                    )));
                }
            },
            source: m.source.unwrap_or_default(),
            target: m.target.unwrap_or_default(),
            readonly: m.read_only.unwrap_or_default(),
            ..Default::default()
        });
    }
    if let Some(h) = c.health_check {
        container.healthcheck = Some(HealthConfig {
            test: h.test.unwrap_or_default(),
            interval: duration("Healthcheck.Interval", h.interval)?.unwrap_or_default(),
            timeout: duration("Healthcheck.Timeout", h.timeout)?.unwrap_or_default(),
            retries: h.retries.unwrap_or_default().clamp(0, i32::MAX as i64) as i32,
            start_period: duration("Healthcheck.StartPeriod", h.start_period)?.unwrap_or_default(),
            start_interval: duration("Healthcheck.StartInterval", h.start_interval)?
                .unwrap_or_default(),
        });
    }
    if let Some(dns) = c.dns_config {
        // The CLI sends `{}` on create and nothing on update: the same spec.
        container.dns_config = Some(DnsConfig {
            nameservers: dns.nameservers.unwrap_or_default(),
            search: dns.search.unwrap_or_default(),
            options: dns.options.unwrap_or_default(),
        })
        .filter(|d| *d != DnsConfig::default());
    }
    let restart = match task.restart_policy {
        None => None,
        Some(r) => {
            let dflt = RestartPolicy::default();
            Some(RestartPolicy {
                condition: match r.condition.map(|c| enum_str(&c)).as_deref() {
                    None | Some("") | Some("any") => RestartCondition::Any,
                    Some("none") => RestartCondition::None,
                    Some("on-failure") => RestartCondition::OnFailure,
                    Some(other) => {
                        return Err(ApiError::bad_request(format!(
                            "RestartPolicy.Condition: invalid {other:?}"
                        )));
                    }
                },
                delay: duration("RestartPolicy.Delay", r.delay)?.unwrap_or(dflt.delay),
                max_attempts: unsigned("RestartPolicy.MaxAttempts", r.max_attempts)?
                    .unwrap_or_default(),
                window: duration("RestartPolicy.Window", r.window)?.unwrap_or_default(),
            })
        }
    };
    let placement = task.placement.map(|p| Placement {
        constraints: p.constraints.unwrap_or_default(),
        preferences: p
            .preferences
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| p.spread.and_then(|s| s.spread_descriptor))
            .map(|spread_descriptor| PlacementPreference { spread_descriptor })
            .collect(),
        max_replicas: p.max_replicas.unwrap_or_default().max(0) as u64,
        platforms: p
            .platforms
            .unwrap_or_default()
            .into_iter()
            .map(|p| Platform {
                architecture: p.architecture.unwrap_or_default(),
                os: p.os.unwrap_or_default(),
            })
            .collect(),
    });
    let resources = task.resources.map(|r| ResourceRequirements {
        limits: r.limits.map(|l| Resources {
            nano_cpus: l.nano_cpus.unwrap_or_default(),
            memory_bytes: l.memory_bytes.unwrap_or_default(),
            generic: Vec::new(),
        }),
        reservations: r.reservations.map(|l| Resources {
            nano_cpus: l.nano_cpus.unwrap_or_default(),
            memory_bytes: l.memory_bytes.unwrap_or_default(),
            generic: Vec::new(),
        }),
    });
    let networks = task
        .networks
        .unwrap_or_default()
        .into_iter()
        .chain(d.networks.unwrap_or_default())
        .map(|n| NetworkAttachmentConfig {
            target: n.target.unwrap_or_default(),
            aliases: n.aliases.unwrap_or_default(),
            addresses: Vec::new(),
            driver_attachment_opts: map(n.driver_opts),
        })
        .collect();
    let mode = match d.mode {
        None => ServiceMode::Replicated { replicas: 1 },
        Some(m) => {
            if let Some(r) = m.replicated {
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
            }
        }
    };
    let update = |u: Option<UpdateFields>, what: &str| -> Result<Option<UpdateConfig>, ApiError> {
        let Some((par, delay, action, monitor, ratio, order)) = u else {
            return Ok(None);
        };
        let dflt = UpdateConfig::default();
        Ok(Some(UpdateConfig {
            parallelism: unsigned(&format!("{what}.Parallelism"), par)?.unwrap_or(dflt.parallelism),
            delay: duration(&format!("{what}.Delay"), delay)?.unwrap_or(dflt.delay),
            failure_action: match action.as_deref() {
                None | Some("") | Some("pause") => FailureAction::Pause,
                Some("continue") => FailureAction::Continue,
                Some("rollback") => FailureAction::Rollback,
                Some(other) => {
                    return Err(ApiError::bad_request(format!(
                        "{what}.FailureAction: invalid {other:?}"
                    )));
                }
            },
            monitor: duration(&format!("{what}.Monitor"), monitor)?.unwrap_or(dflt.monitor),
            max_failure_ratio: ratio.unwrap_or_default() as f32,
            order: match order.as_deref() {
                None | Some("") | Some("stop-first") => UpdateOrder::StopFirst,
                Some("start-first") => UpdateOrder::StartFirst,
                Some(other) => {
                    return Err(ApiError::bad_request(format!(
                        "{what}.Order: invalid {other:?}"
                    )));
                }
            },
        }))
    };
    // bollard has one type for each config, with the same fields.
    macro_rules! fields {
        ($u:expr) => {
            $u.map(|u| {
                (
                    u.parallelism,
                    u.delay,
                    u.failure_action.map(|a| enum_str(&a)),
                    u.monitor,
                    u.max_failure_ratio,
                    u.order.map(|o| enum_str(&o)),
                )
            })
        };
    }
    let update_config = update(fields!(d.update_config), "UpdateConfig")?;
    let rollback_config = update(fields!(d.rollback_config), "RollbackConfig")?;
    let endpoint = match d.endpoint_spec {
        None => None,
        Some(e) => {
            let mut ports = Vec::new();
            for p in e.ports.unwrap_or_default() {
                ports.push(PortConfig {
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
                });
            }
            Some(EndpointSpec {
                mode: match e.mode.map(|m| enum_str(&m)).as_deref() {
                    Some("dnsrr") => ResolutionMode::Dnsrr,
                    _ => ResolutionMode::Vip,
                },
                ports,
            })
        }
    };
    Ok(ServiceSpec {
        annotations: Annotations {
            name: d.name.unwrap_or_default(),
            labels: map(d.labels),
        },
        task: TaskSpec {
            container,
            resources,
            restart,
            placement,
            log_driver: task.log_driver.map(|l| Driver {
                name: l.name.unwrap_or_default(),
                options: map(l.options),
            }),
            networks,
            force_update: task.force_update.unwrap_or_default(),
        },
        mode,
        update: update_config,
        rollback: rollback_config,
        endpoint,
    })
}

/// Parallelism, delay, failure action, monitor, max failure ratio and order of
/// an update or rollback config (bollard has one type for each).
type UpdateFields = (
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<f64>,
    Option<String>,
);

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

fn ports_json(ports: &[PortConfig]) -> Value {
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

/// The task template as the Engine API shows it.
pub fn task_spec_json(t: &TaskSpec) -> Value {
    let c = &t.container;
    let mut container = json!({
        "Image": c.image,
        "Labels": c.labels,
        "Args": c.args,
        "Env": c.env,
        "Dir": c.dir,
        "User": c.user,
        "Hostname": c.hostname,
        "TTY": c.tty,
        "OpenStdin": c.open_stdin,
        "ReadOnly": c.read_only,
        "Mounts": c.mounts.iter().map(|m| json!({
            "Type": serde_json::to_value(m.r#type).unwrap_or(Value::Null),
            "Source": m.source, "Target": m.target, "ReadOnly": m.readonly,
        })).collect::<Vec<_>>(),
        "Hosts": c.hosts,
        "Isolation": "default",
    });
    if !c.command.is_empty() {
        container["Command"] = json!(c.command);
    }
    if let Some(g) = c.stop_grace_period {
        container["StopGracePeriod"] = json!(nanos(g));
    }
    if !c.stop_signal.is_empty() {
        container["StopSignal"] = json!(c.stop_signal);
    }
    if let Some(i) = c.init {
        container["Init"] = json!(i);
    }
    if let Some(d) = &c.dns_config {
        container["DNSConfig"] =
            json!({"Nameservers": d.nameservers, "Search": d.search, "Options": d.options});
    }
    let file = |name: &str, uid: &str, gid: &str, mode: u32| json!({"Name": name, "UID": uid, "GID": gid, "Mode": mode});
    if !c.secrets.is_empty() {
        container["Secrets"] = c
            .secrets
            .iter()
            .map(|r| {
                json!({
                    "File": file(&r.file_name, &r.uid, &r.gid, r.mode),
                    "SecretID": r.secret_id.as_str(),
                    "SecretName": r.secret_name,
                })
            })
            .collect();
    }
    if !c.configs.is_empty() {
        container["Configs"] = c
            .configs
            .iter()
            .map(|r| {
                json!({
                    "File": file(&r.file_name, &r.uid, &r.gid, r.mode),
                    "ConfigID": r.config_id.as_str(),
                    "ConfigName": r.config_name,
                })
            })
            .collect();
    }
    let mut v = json!({
        "ContainerSpec": container,
        "ForceUpdate": t.force_update,
        "Runtime": "container",
    });
    if let Some(r) = &t.restart {
        v["RestartPolicy"] = json!({
            "Condition": match r.condition {
                RestartCondition::None => "none",
                RestartCondition::OnFailure => "on-failure",
                RestartCondition::Any => "any",
            },
            "Delay": nanos(r.delay),
            "MaxAttempts": r.max_attempts,
            "Window": nanos(r.window),
        });
    }
    if let Some(p) = &t.placement {
        v["Placement"] = json!({
            "Constraints": p.constraints,
            "Preferences": p.preferences.iter().map(|p| json!({"Spread": {"SpreadDescriptor": p.spread_descriptor}})).collect::<Vec<_>>(),
            "MaxReplicas": p.max_replicas,
            "Platforms": p.platforms.iter().map(|p| json!({"Architecture": p.architecture, "OS": p.os})).collect::<Vec<_>>(),
        });
    }
    if let Some(r) = &t.resources {
        let res = |r: &Option<Resources>| {
            r.as_ref()
                .map(|r| json!({"NanoCPUs": r.nano_cpus, "MemoryBytes": r.memory_bytes}))
                .unwrap_or(json!({}))
        };
        v["Resources"] = json!({"Limits": res(&r.limits), "Reservations": res(&r.reservations)});
    }
    if let Some(l) = &t.log_driver {
        v["LogDriver"] = json!({"Name": l.name, "Options": l.options});
    }
    if !t.networks.is_empty() {
        v["Networks"] = t
            .networks
            .iter()
            .map(|n| json!({"Target": n.target, "Aliases": n.aliases}))
            .collect();
    }
    v
}

/// A service spec as the Engine API shows it.
pub fn service_spec_json(s: &ServiceSpec) -> Value {
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
        v["UpdateStatus"] = st;
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

/// A time written straight into the output (no intermediate string).
struct TimeOut(Timestamp);

impl Serialize for TimeOut {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

#[derive(Serialize)]
struct PortsOut {
    #[serde(rename = "Ports")]
    ports: Value,
}

#[derive(Serialize)]
struct IndexOut {
    #[serde(rename = "Index")]
    index: u64,
}

#[derive(Serialize)]
struct ContainerOut<'a> {
    #[serde(rename = "ContainerID")]
    container_id: &'a str,
    #[serde(rename = "PID")]
    pid: i32,
    #[serde(rename = "ExitCode")]
    exit_code: i32,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct TaskStatusOut<'a> {
    timestamp: TimeOut,
    state: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    err: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    container_status: Option<ContainerOut<'a>>,
    port_status: PortsOut,
}

/// A task in Docker's shape, written straight from the object (no
/// intermediate JSON tree: `GET /tasks` of 10k tasks is one pass).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct TaskOut<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    version: IndexOut,
    created_at: TimeOut,
    updated_at: TimeOut,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    labels: &'a BTreeMap<String, String>,
    spec: &'a serde_json::value::RawValue,
    #[serde(rename = "ServiceID")]
    service_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    slot: Option<u64>,
    #[serde(rename = "NodeID", skip_serializing_if = "Option::is_none")]
    node_id: Option<&'a str>,
    status: TaskStatusOut<'a>,
    desired_state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    job_iteration: Option<IndexOut>,
}

fn task_out<'a>(t: &'a Task, spec: &'a serde_json::value::RawValue) -> TaskOut<'a> {
    TaskOut {
        id: t.id.as_str(),
        version: IndexOut {
            index: t.meta.version.index,
        },
        created_at: TimeOut(t.meta.created_at),
        updated_at: TimeOut(t.meta.updated_at),
        name: (!t.annotations.name.is_empty()).then_some(t.annotations.name.as_str()),
        labels: &t.annotations.labels,
        spec,
        service_id: t.service_id.as_str(),
        slot: (t.slot > 0).then_some(t.slot),
        node_id: (!t.node_id.is_empty()).then_some(t.node_id.as_str()),
        status: TaskStatusOut {
            timestamp: TimeOut(t.status.timestamp),
            state: t.status.state.as_str(),
            message: &t.status.message,
            err: &t.status.err,
            container_status: t.status.container_status.as_ref().map(|c| ContainerOut {
                container_id: &c.container_id,
                pid: c.pid,
                exit_code: c.exit_code,
            }),
            port_status: PortsOut {
                ports: match &t.status.port_status {
                    Some(p) if !p.ports.is_empty() => ports_json(&p.ports),
                    _ => Value::Array(Vec::new()),
                },
            },
        },
        desired_state: t.desired_state.as_str(),
        job_iteration: t.job_iteration.map(|j| IndexOut { index: j.index }),
    }
}

fn raw_spec(spec: &TaskSpec) -> Box<serde_json::value::RawValue> {
    serde_json::value::to_raw_value(&task_spec_json(spec)).expect("JSON values always serialise")
}

/// A task as `GET /tasks/{id}` shows it.
pub fn task_json(t: &Task) -> Value {
    let spec = raw_spec(&t.spec);
    serde_json::to_value(task_out(t, &spec)).unwrap_or(Value::Null)
}

/// Each task's JSON, in order. Tasks of one service version share their
/// template: it is written once and reused.
fn tasks_json_each(tasks: &[std::sync::Arc<Task>]) -> Vec<Vec<u8>> {
    let mut specs: std::collections::HashMap<
        (&str, u64),
        (&TaskSpec, Box<serde_json::value::RawValue>),
    > = std::collections::HashMap::new();
    tasks
        .iter()
        .map(|t| {
            let own;
            let spec: &serde_json::value::RawValue = match t.spec_version {
                Some(v) => {
                    let key = (t.service_id.as_str(), v.index);
                    match specs.get(&key) {
                        Some((s, raw)) if **s == t.spec => raw,
                        Some(_) => {
                            own = raw_spec(&t.spec);
                            &own
                        }
                        None => &specs.entry(key).or_insert((&t.spec, raw_spec(&t.spec))).1,
                    }
                }
                None => {
                    own = raw_spec(&t.spec);
                    &own
                }
            };
            serde_json::to_vec(&task_out(t, spec)).unwrap_or_else(|_| b"null".to_vec())
        })
        .collect()
}

fn json_array<B: AsRef<[u8]>>(items: &[B]) -> Vec<u8> {
    let len = items.iter().map(|i| i.as_ref().len() + 1).sum::<usize>() + 2;
    let mut out = Vec::with_capacity(len);
    out.push(b'[');
    for (n, i) in items.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        out.extend_from_slice(i.as_ref());
    }
    out.push(b']');
    out
}

/// Tasks as `GET /tasks` shows them, as JSON bytes, with no cache.
#[cfg(test)]
fn tasks_json_bytes(tasks: &[std::sync::Arc<Task>]) -> Vec<u8> {
    json_array(&tasks_json_each(tasks))
}

/// Each task's JSON by task ID and version. A stored object never changes
/// without a new version, so a listing writes again only the tasks that
/// changed since the last one.
#[derive(Default)]
pub struct TaskJsonCache {
    entries: parking_lot::Mutex<CachedTasks>,
}

/// Task ID → (version, its JSON).
type CachedTasks = std::collections::HashMap<swarm_core::Id, (u64, std::sync::Arc<[u8]>)>;

impl std::fmt::Debug for TaskJsonCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskJsonCache")
            .field("entries", &self.entries.lock().len())
            .finish()
    }
}

impl TaskJsonCache {
    /// `tasks` as a JSON array; `stored` is how many tasks the store holds
    /// (the cache keeps about that many entries).
    pub fn list(&self, tasks: &[std::sync::Arc<Task>], stored: usize) -> Vec<u8> {
        let misses: Vec<std::sync::Arc<Task>> = {
            let e = self.entries.lock();
            tasks
                .iter()
                .filter(|t| e.get(&t.id).map(|(v, _)| *v) != Some(t.meta.version.index))
                .cloned()
                .collect()
        };
        let fresh = tasks_json_each(&misses);
        let mut e = self.entries.lock();
        for (t, json) in misses.iter().zip(fresh) {
            e.insert(t.id.clone(), (t.meta.version.index, json.into()));
        }
        let parts: Vec<std::sync::Arc<[u8]>> = tasks
            .iter()
            .map(|t| {
                e.get(&t.id)
                    .map(|(_, j)| j.clone())
                    .unwrap_or_else(|| b"null".as_slice().into())
            })
            .collect();
        if e.len() > 2 * stored + 1024 {
            let keep: std::collections::HashSet<&swarm_core::Id> =
                tasks.iter().map(|t| &t.id).collect();
            e.retain(|id, _| keep.contains(id));
        }
        drop(e);
        json_array(&parts)
    }
}

/// A swarm spec of the Engine API, applied over `current`. Zero values of the
/// settings docker leaves at zero when a flag is not given keep the current
/// value, as dockerd does.
pub fn swarm_spec(d: dm::SwarmSpec, current: &ClusterSpec) -> Result<ClusterSpec, ApiError> {
    let mut s = current.clone();
    if let Some(n) = d.name.filter(|n| !n.is_empty()) {
        s.annotations.name = n;
    }
    if let Some(l) = d.labels {
        s.annotations.labels = l.into_iter().collect();
    }
    if let Some(o) = d.orchestration
        && let Some(l) = o.task_history_retention_limit
    {
        s.orchestration.task_history_retention_limit = l;
    }
    if let Some(r) = d.raft {
        if let Some(v) = r.snapshot_interval.filter(|v| *v > 0) {
            s.raft.snapshot_interval = v;
        }
        if let Some(v) = r.keep_old_snapshots {
            s.raft.keep_old_snapshots = v;
        }
        if let Some(v) = r.log_entries_for_slow_followers.filter(|v| *v > 0) {
            s.raft.log_entries_for_slow_followers = v;
        }
        if let Some(v) = r.election_tick.filter(|v| *v != 0) {
            s.raft.election_tick = u32::try_from(v)
                .map_err(|_| ApiError::bad_request(format!("Raft.ElectionTick: invalid {v}")))?;
        }
        if let Some(v) = r.heartbeat_tick.filter(|v| *v != 0) {
            s.raft.heartbeat_tick = u32::try_from(v)
                .map_err(|_| ApiError::bad_request(format!("Raft.HeartbeatTick: invalid {v}")))?;
        }
    }
    if let Some(disp) = d.dispatcher
        && let Some(p) = duration("Dispatcher.HeartbeatPeriod", disp.heartbeat_period)?
        && !p.is_zero()
    {
        s.dispatcher.heartbeat_period = p;
    }
    if let Some(ca) = d.ca_config
        && let Some(e) = duration("CAConfig.NodeCertExpiry", ca.node_cert_expiry)?
        && !e.is_zero()
    {
        s.ca_config.node_cert_expiry = e;
    }
    if let Some(e) = d.encryption_config
        && let Some(a) = e.auto_lock_managers
    {
        refuse_autolock(a)?;
        s.encryption_config.auto_lock_managers = a;
    }
    Ok(s)
}

/// Autolock would promise keys encrypted at rest, which this swarm does not
/// do yet: refused rather than recorded and ignored.
fn refuse_autolock(on: bool) -> Result<(), ApiError> {
    if on {
        return Err(ApiError::bad_request(
            "autolock is not supported by this swarm: its managers do not encrypt their keys at rest",
        ));
    }
    Ok(())
}

/// The parts of a `swarm init` this swarm cannot honour, refused with a
/// message naming them (nothing is set up).
pub fn refuse_unsupported_init(req: &InitRequest) -> Result<(), ApiError> {
    refuse_autolock(req.auto_lock_managers.unwrap_or(false))?;
    if req.force_new_cluster == Some(true) {
        return Err(ApiError::bad_request(
            "--force-new-cluster is not supported: start a new swarm, or restore a manager's data directory",
        ));
    }
    Ok(())
}

/// A swarm spec as the Engine API shows it.
pub fn swarm_spec_json(s: &ClusterSpec) -> Value {
    json!({
        "Name": s.annotations.name,
        "Labels": s.annotations.labels,
        "Orchestration": {"TaskHistoryRetentionLimit": s.orchestration.task_history_retention_limit},
        "Raft": {
            "SnapshotInterval": s.raft.snapshot_interval,
            "KeepOldSnapshots": s.raft.keep_old_snapshots,
            "LogEntriesForSlowFollowers": s.raft.log_entries_for_slow_followers,
            "ElectionTick": s.raft.election_tick,
            "HeartbeatTick": s.raft.heartbeat_tick,
        },
        "Dispatcher": {"HeartbeatPeriod": nanos(s.dispatcher.heartbeat_period)},
        "CAConfig": {"NodeCertExpiry": nanos(s.ca_config.node_cert_expiry)},
        "TaskDefaults": {},
        "EncryptionConfig": {"AutoLockManagers": s.encryption_config.auto_lock_managers},
    })
}

/// The cluster block shared by `GET /swarm` and `GET /info`.
pub fn cluster_json(c: &Cluster) -> Value {
    json!({
        "ID": c.id.as_str(),
        "Version": {"Index": c.meta.version.index},
        "CreatedAt": time(c.meta.created_at),
        "UpdatedAt": time(c.meta.updated_at),
        "Spec": swarm_spec_json(&c.spec),
        "TLSInfo": {
            "TrustRoot": String::from_utf8_lossy(&c.root_ca.ca_cert),
        },
        "RootRotationInProgress": c.root_ca.root_rotation.is_some(),
        "DataPathPort": c.vxlan_udp_port,
        "DefaultAddrPool": c.default_address_pool,
        "SubnetSize": c.subnet_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_named() {
        let e = strict::<dm::NodeSpec>(br#"{"Role":"manager","Availabilty":"drain"}"#).unwrap_err();
        assert!(e.message.contains("Availabilty"), "{}", e.message);
        let e = strict::<dm::ServiceSpec>(
            br#"{"Name":"a","TaskTemplate":{"ContainerSpec":{"Imag":"x"}}}"#,
        )
        .unwrap_err();
        assert!(
            e.message.contains("TaskTemplate.ContainerSpec.Imag"),
            "{}",
            e.message
        );
        assert!(strict::<dm::NodeSpec>(br#"{"Role":"manager","Labels":null}"#).is_ok());
    }

    #[test]
    fn malformed_json_and_wrong_types_are_bad_requests() {
        let e = strict::<dm::ServiceSpec>(b"{not json").unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        let e = strict::<dm::ServiceSpec>(br#"{"Name": 5}"#).unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
    }

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
    fn autolock_and_force_new_cluster_are_refused_not_ignored() {
        let init: InitRequest =
            strict(br#"{"ListenAddr":"0.0.0.0:2377","AutoLockManagers":true}"#).unwrap();
        let e = refuse_unsupported_init(&init).unwrap_err();
        assert!(
            e.message.contains("autolock is not supported"),
            "{}",
            e.message
        );
        let init: InitRequest = strict(br#"{"ForceNewCluster":true}"#).unwrap();
        assert!(refuse_unsupported_init(&init).is_err());
        let init: InitRequest = strict(br#"{"AutoLockManagers":false}"#).unwrap();
        assert!(refuse_unsupported_init(&init).is_ok());
        let update: dm::SwarmSpec =
            strict(br#"{"EncryptionConfig":{"AutoLockManagers":true}}"#).unwrap();
        assert!(swarm_spec(update, &ClusterSpec::default()).is_err());
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
    fn a_task_list_shares_templates_and_matches_single_tasks() {
        use std::sync::Arc;
        let mut a = Task {
            id: "t1".into(),
            service_id: "s1".into(),
            slot: 1,
            spec_version: Some(swarm_core::types::Version { index: 1 }),
            ..Default::default()
        };
        a.spec.container.image = "busybox:1".into();
        let mut b = a.clone();
        b.id = "t2".into();
        b.slot = 2;
        b.node_id = "n1".into();
        // Same version, another template (never expected, still written right).
        let mut c = a.clone();
        c.id = "t3".into();
        c.spec.container.image = "busybox:2".into();
        let mut d = a.clone();
        d.id = "t4".into();
        d.spec_version = None;
        d.status.err = "No such image: busybox:1".into();
        let tasks: Vec<Arc<Task>> = [a, b, c, d].into_iter().map(Arc::new).collect();
        let listed: Value = serde_json::from_slice(&tasks_json_bytes(&tasks)).unwrap();
        let singles: Vec<Value> = tasks.iter().map(|t| task_json(t)).collect();
        assert_eq!(listed, json!(singles));
        // Through the cache: the same, and a new version is written again.
        let cache = TaskJsonCache::default();
        let cached: Value = serde_json::from_slice(&cache.list(&tasks, 4)).unwrap();
        assert_eq!(cached, listed);
        let mut moved = (*tasks[1]).clone();
        moved.meta.version.index += 1;
        moved.node_id = "n2".into();
        let again = vec![tasks[0].clone(), Arc::new(moved)];
        let cached: Value = serde_json::from_slice(&cache.list(&again, 4)).unwrap();
        assert_eq!(cached[1]["NodeID"], "n2");
        assert_eq!(cached[0], listed[0]);
        assert_eq!(listed[2]["Spec"]["ContainerSpec"]["Image"], "busybox:2");
        assert_eq!(listed[3]["Status"]["Err"], "No such image: busybox:1");
        assert_eq!(listed[1]["NodeID"], "n1");
        assert!(listed[0].get("NodeID").is_none());
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
