//! A service's task template both ways: the Engine API's `TaskTemplate`
//! (container spec, restart policy, placement, resources, networks, log
//! driver) into a [`TaskSpec`], and a [`TaskSpec`] as the Engine API shows it.

use bollard::models as dm;
use serde_json::{Value, json};
use swarm_core::types::*;

use super::values::{duration, enum_str, map, nanos, unsigned};
use crate::api::ApiError;

/// The task template of a service spec of the Engine API, with the networks
/// the service spec names itself (Docker's older place for them) after the
/// template's.
pub(super) fn task_spec(
    task: dm::TaskSpec,
    service_networks: Option<Vec<dm::NetworkAttachmentConfig>>,
) -> Result<TaskSpec, ApiError> {
    Ok(TaskSpec {
        container: container_spec(task.container_spec.unwrap_or_default())?,
        restart: task.restart_policy.map(restart_policy).transpose()?,
        resources: task.resources.map(resources),
        placement: task.placement.map(placement),
        log_driver: task.log_driver.map(|l| Driver {
            name: l.name.unwrap_or_default(),
            options: map(l.options),
        }),
        networks: task
            .networks
            .unwrap_or_default()
            .into_iter()
            .chain(service_networks.unwrap_or_default())
            .map(network_attachment)
            .collect(),
        force_update: task.force_update.unwrap_or_default(),
    })
}

/// The container a task runs: image, command, environment, files, mounts,
/// health check and DNS settings.
fn container_spec(c: dm::TaskSpecContainerSpec) -> Result<ContainerSpec, ApiError> {
    Ok(ContainerSpec {
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
        secrets: c
            .secrets
            .unwrap_or_default()
            .into_iter()
            .map(secret_reference)
            .collect(),
        configs: c
            .configs
            .unwrap_or_default()
            .into_iter()
            .map(config_reference)
            .collect(),
        mounts: c
            .mounts
            .unwrap_or_default()
            .into_iter()
            .map(mount)
            .collect::<Result<_, _>>()?,
        healthcheck: c.health_check.map(health_config).transpose()?,
        // The CLI sends `{}` on create and nothing on update: the same spec.
        dns_config: c
            .dns_config
            .map(dns_config)
            .filter(|d| *d != DnsConfig::default()),
    })
}

fn secret_reference(r: dm::TaskSpecContainerSpecSecrets) -> SecretReference {
    let f = r.file.unwrap_or_default();
    SecretReference {
        secret_id: r.secret_id.unwrap_or_default().into(),
        secret_name: r.secret_name.unwrap_or_default(),
        file_name: f.name.unwrap_or_default(),
        uid: f.uid.unwrap_or_default(),
        gid: f.gid.unwrap_or_default(),
        mode: f.mode.unwrap_or(0o444),
    }
}

fn config_reference(r: dm::TaskSpecContainerSpecConfigs) -> ConfigReference {
    let f = r.file.unwrap_or_default();
    ConfigReference {
        config_id: r.config_id.unwrap_or_default().into(),
        config_name: r.config_name.unwrap_or_default(),
        file_name: f.name.unwrap_or_default(),
        uid: f.uid.unwrap_or_default(),
        gid: f.gid.unwrap_or_default(),
        mode: f.mode.unwrap_or(0o444),
    }
}

fn mount(m: dm::Mount) -> Result<Mount, ApiError> {
    let kind = m
        .typ
        .map(|t| enum_str(&t))
        .unwrap_or_else(|| "volume".into());
    Ok(Mount {
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
    })
}

fn health_config(h: dm::HealthConfig) -> Result<HealthConfig, ApiError> {
    Ok(HealthConfig {
        test: h.test.unwrap_or_default(),
        interval: duration("Healthcheck.Interval", h.interval)?.unwrap_or_default(),
        timeout: duration("Healthcheck.Timeout", h.timeout)?.unwrap_or_default(),
        retries: h.retries.unwrap_or_default().clamp(0, i32::MAX as i64) as i32,
        start_period: duration("Healthcheck.StartPeriod", h.start_period)?.unwrap_or_default(),
        start_interval: duration("Healthcheck.StartInterval", h.start_interval)?
            .unwrap_or_default(),
    })
}

fn dns_config(dns: dm::TaskSpecContainerSpecDnsConfig) -> DnsConfig {
    DnsConfig {
        nameservers: dns.nameservers.unwrap_or_default(),
        search: dns.search.unwrap_or_default(),
        options: dns.options.unwrap_or_default(),
    }
}

fn restart_policy(r: dm::TaskSpecRestartPolicy) -> Result<RestartPolicy, ApiError> {
    let dflt = RestartPolicy::default();
    Ok(RestartPolicy {
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
        max_attempts: unsigned("RestartPolicy.MaxAttempts", r.max_attempts)?.unwrap_or_default(),
        window: duration("RestartPolicy.Window", r.window)?.unwrap_or_default(),
    })
}

fn placement(p: dm::TaskSpecPlacement) -> Placement {
    Placement {
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
    }
}

fn resources(r: dm::TaskSpecResources) -> ResourceRequirements {
    ResourceRequirements {
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
    }
}

fn network_attachment(n: dm::NetworkAttachmentConfig) -> NetworkAttachmentConfig {
    NetworkAttachmentConfig {
        target: n.target.unwrap_or_default(),
        aliases: n.aliases.unwrap_or_default(),
        addresses: Vec::new(),
        driver_attachment_opts: map(n.driver_opts),
    }
}

/// The task template as the Engine API shows it.
pub(super) fn task_spec_json(t: &TaskSpec) -> Value {
    let mut v = json!({
        "ContainerSpec": container_spec_json(&t.container),
        "ForceUpdate": t.force_update,
        "Runtime": "container",
    });
    if let Some(r) = &t.restart {
        v["RestartPolicy"] = restart_policy_json(r);
    }
    if let Some(p) = &t.placement {
        v["Placement"] = placement_json(p);
    }
    if let Some(r) = &t.resources {
        v["Resources"] = resources_json(r);
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

fn container_spec_json(c: &ContainerSpec) -> Value {
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
    container
}

fn restart_policy_json(r: &RestartPolicy) -> Value {
    json!({
        "Condition": match r.condition {
            RestartCondition::None => "none",
            RestartCondition::OnFailure => "on-failure",
            RestartCondition::Any => "any",
        },
        "Delay": nanos(r.delay),
        "MaxAttempts": r.max_attempts,
        "Window": nanos(r.window),
    })
}

fn placement_json(p: &Placement) -> Value {
    json!({
        "Constraints": p.constraints,
        "Preferences": p.preferences.iter().map(|p| json!({"Spread": {"SpreadDescriptor": p.spread_descriptor}})).collect::<Vec<_>>(),
        "MaxReplicas": p.max_replicas,
        "Platforms": p.platforms.iter().map(|p| json!({"Architecture": p.architecture, "OS": p.os})).collect::<Vec<_>>(),
    })
}

fn resources_json(r: &ResourceRequirements) -> Value {
    let res = |r: &Option<Resources>| {
        r.as_ref()
            .map(|r| json!({"NanoCPUs": r.nano_cpus, "MemoryBytes": r.memory_bytes}))
            .unwrap_or(json!({}))
    };
    json!({"Limits": res(&r.limits), "Reservations": res(&r.reservations)})
}
