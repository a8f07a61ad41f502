//! Validation of user specs, before anything is written. Every error is an
//! `InvalidArgument` whose message names the field at fault.

use std::collections::HashSet;
use std::path::Path;

use swarm_core::Tables;
use swarm_core::types::*;

use crate::error::{Error, Result};

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidArgument(msg.into())
}

/// A name usable as a DNS label: letters, digits, `-` and `_`, starting and
/// ending with a letter or digit, at most 63 characters.
pub fn validate_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(invalid(format!("{what}: name must be provided")));
    }
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok_chars || !alphanumeric_ends(name) || name.len() > 63 {
        return Err(invalid(format!(
            "{what}: name {name:?} is invalid: use at most 63 letters, digits, '-' or '_', starting and ending with a letter or digit"
        )));
    }
    Ok(())
}

/// Whether a name starts and ends with a letter or digit (ASCII).
pub(super) fn alphanumeric_ends(name: &str) -> bool {
    let alphanumeric = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    alphanumeric(name.chars().next()) && alphanumeric(name.chars().last())
}

fn validate_image(image: &str) -> Result<()> {
    if image.is_empty() {
        return Err(invalid("ContainerSpec: image reference must be provided"));
    }
    if image.chars().any(|c| c.is_whitespace() || c.is_control())
        || image.starts_with([':', '@', '/'])
    {
        return Err(invalid(format!(
            "ContainerSpec: {image:?} is not a valid image reference"
        )));
    }
    Ok(())
}

fn validate_mounts(mounts: &[Mount]) -> Result<()> {
    let mut targets = HashSet::new();
    for m in mounts {
        if !Path::new(&m.target).is_absolute() {
            return Err(invalid(format!(
                "ContainerSpec.Mounts: target {:?} must be an absolute path",
                m.target
            )));
        }
        if !targets.insert(m.target.as_str()) {
            return Err(invalid(format!(
                "ContainerSpec.Mounts: duplicate mount point {:?}",
                m.target
            )));
        }
        if m.r#type == MountType::Bind && !Path::new(&m.source).is_absolute() {
            return Err(invalid(format!(
                "ContainerSpec.Mounts: bind source {:?} must be an absolute path",
                m.source
            )));
        }
        if m.r#type == MountType::Tmpfs && !m.source.is_empty() {
            return Err(invalid(
                "ContainerSpec.Mounts: a tmpfs mount takes no source",
            ));
        }
    }
    Ok(())
}

fn validate_resources(r: &Option<ResourceRequirements>) -> Result<()> {
    let Some(r) = r else { return Ok(()) };
    for (what, res) in [("Limits", &r.limits), ("Reservations", &r.reservations)] {
        if let Some(res) = res {
            if res.nano_cpus < 0 {
                return Err(invalid(format!(
                    "Resources.{what}.NanoCPUs must not be negative"
                )));
            }
            if res.memory_bytes < 0 {
                return Err(invalid(format!(
                    "Resources.{what}.MemoryBytes must not be negative"
                )));
            }
        }
    }
    if let (Some(l), Some(res)) = (&r.limits, &r.reservations) {
        if l.nano_cpus > 0 && res.nano_cpus > l.nano_cpus {
            return Err(invalid(
                "Resources: the CPU reservation exceeds the CPU limit",
            ));
        }
        if l.memory_bytes > 0 && res.memory_bytes > l.memory_bytes {
            return Err(invalid(
                "Resources: the memory reservation exceeds the memory limit",
            ));
        }
    }
    Ok(())
}

fn validate_placement(p: &Option<Placement>) -> Result<()> {
    let Some(p) = p else { return Ok(()) };
    swarm_sched::parse_constraints(&p.constraints)
        .map_err(|e| invalid(format!("Placement.Constraints: {e}")))?;
    for pref in &p.preferences {
        let d = &pref.spread_descriptor;
        if !(d.starts_with("node.labels.") || d.starts_with("engine.labels.")) || d.ends_with('.') {
            return Err(invalid(format!(
                "Placement.Preferences: spread descriptor {d:?} must be node.labels.NAME or engine.labels.NAME"
            )));
        }
    }
    Ok(())
}

fn validate_update(what: &str, u: &Option<UpdateConfig>) -> Result<()> {
    if let Some(u) = u
        && !(0.0..=1.0).contains(&u.max_failure_ratio)
    {
        return Err(invalid(format!(
            "{what}: MaxFailureRatio must be between 0 and 1, got {}",
            u.max_failure_ratio
        )));
    }
    Ok(())
}

fn validate_endpoint(e: &Option<EndpointSpec>) -> Result<()> {
    let Some(e) = e else { return Ok(()) };
    let mut published = HashSet::new();
    for p in &e.ports {
        if p.target_port == 0 || p.target_port > 65535 {
            return Err(invalid(format!(
                "EndpointSpec: target port {} is out of range 1-65535",
                p.target_port
            )));
        }
        if p.published_port > 65535 {
            return Err(invalid(format!(
                "EndpointSpec: published port {} is out of range",
                p.published_port
            )));
        }
        if p.published_port != 0 && !published.insert((p.published_port, p.protocol)) {
            return Err(invalid(format!(
                "EndpointSpec: duplicate published ports provided: {}/{}",
                p.published_port, p.protocol
            )));
        }
        if e.mode == ResolutionMode::Dnsrr && p.publish_mode == PublishMode::Ingress {
            return Err(invalid(
                "EndpointSpec: port published with ingress mode can't be used with dnsrr mode",
            ));
        }
    }
    Ok(())
}

fn validate_references(view: &Tables, task: &TaskSpec) -> Result<()> {
    for n in &task.networks {
        let net = view
            .resolve::<Network>(&n.target)
            .map_err(|_| invalid(format!("TaskSpec.Networks: network {} not found", n.target)))?;
        if net.spec.ingress {
            return Err(invalid(
                "TaskSpec.Networks: a service cannot be attached to the ingress network explicitly",
            ));
        }
    }
    for s in &task.container.secrets {
        view.get::<Secret>(&s.secret_id).ok_or_else(|| {
            invalid(format!(
                "ContainerSpec.Secrets: secret {} not found",
                s.secret_name
            ))
        })?;
    }
    for c in &task.container.configs {
        view.get::<Config>(&c.config_id).ok_or_else(|| {
            invalid(format!(
                "ContainerSpec.Configs: config {} not found",
                c.config_name
            ))
        })?;
    }
    Ok(())
}

/// Checks a service spec against SwarmKit's rules and the objects it refers to.
pub fn validate_service_spec(view: &Tables, spec: &ServiceSpec) -> Result<()> {
    validate_name("ServiceSpec", &spec.annotations.name)?;
    validate_image(&spec.task.container.image)?;
    validate_mounts(&spec.task.container.mounts)?;
    validate_resources(&spec.task.resources)?;
    validate_placement(&spec.task.placement)?;
    validate_update("UpdateConfig", &spec.update)?;
    validate_update("RollbackConfig", &spec.rollback)?;
    validate_endpoint(&spec.endpoint)?;
    if let ServiceMode::ReplicatedJob {
        max_concurrent,
        total_completions,
    } = spec.mode
        && max_concurrent > total_completions
        && total_completions > 0
    {
        return Err(invalid(
            "ReplicatedJob: MaxConcurrent must not exceed TotalCompletions",
        ));
    }
    validate_references(view, &spec.task)
}
