//! From a task to a Docker container: the create body, and back from an inspect
//! response to an [`Inspection`].

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, HostConfig, Mount,
    MountBindOptions, MountBindOptionsPropagationEnum, MountTmpfsOptions, MountType,
    MountVolumeOptions, MountVolumeOptionsDriverConfig, PortBinding, RestartPolicy,
    RestartPolicyNameEnum,
};
use swarm_core::Timestamp;
use swarm_core::types::{
    ContainerStatus, MountType as SpecMount, PortConfig, Protocol, PublishMode, Task,
};

use crate::error::{Error, Result};
use crate::runtime::{ContainerState, Inspection, TaskLabels, host_ports, stop_grace};

/// Label marking a container whose task is attached to an overlay network: its
/// namespace is reported ([`Inspection::netns`]) for the node to attach.
pub(crate) const LABEL_OVERLAY: &str = "com.docker.swarm.overlay";

/// The embedded DNS address of a task on an overlay network (Docker's).
pub(crate) const OVERLAY_DNS: &str = "127.0.0.11";

/// The container create body of a task.
pub(crate) fn container_config(task: &Task) -> Result<ContainerCreateBody> {
    let c = &task.spec.container;
    if c.image.is_empty() {
        return Err(Error::InvalidSpec {
            field: "container.image",
            reason: "no image".into(),
        });
    }
    let mut labels: HashMap<String, String> = c.labels.clone().into_iter().collect();
    labels.extend(TaskLabels::of(task).to_map());
    let overlay = crate::runtime::has_overlay(task);
    if overlay {
        labels.insert(LABEL_OVERLAY.to_string(), "true".to_string());
    }

    // As in swarm mode: `command` replaces the image's entrypoint, `args` its cmd.
    let (entrypoint, cmd) = if c.command.is_empty() {
        (None, (!c.args.is_empty()).then(|| c.args.clone()))
    } else {
        (Some(c.command.clone()), Some(c.args.clone()))
    };

    let ports = host_ports(task);
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in &ports {
        let host_port = (p.published_port != 0).then(|| p.published_port.to_string());
        bindings
            .entry(port_key(p))
            .or_default()
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: None,
                host_port: Some(host_port.unwrap_or_default()),
            });
    }

    let limits = task.spec.resources.as_ref().and_then(|r| r.limits.as_ref());
    let host_config = HostConfig {
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        }),
        mounts: Some(c.mounts.iter().map(mount).collect::<Result<_>>()?),
        nano_cpus: limits.map(|l| l.nano_cpus).filter(|n| *n > 0),
        memory: limits.map(|l| l.memory_bytes).filter(|n| *n > 0),
        port_bindings: (!bindings.is_empty()).then_some(bindings),
        init: c.init,
        readonly_rootfs: c.read_only.then_some(true),
        group_add: (!c.groups.is_empty()).then(|| c.groups.clone()),
        cap_add: (!c.capability_add.is_empty()).then(|| c.capability_add.clone()),
        cap_drop: (!c.capability_drop.is_empty()).then(|| c.capability_drop.clone()),
        extra_hosts: (!c.hosts.is_empty()).then(|| c.hosts.clone()),
        // The node serves the overlay networks' names there, inside the
        // container's namespace, once it attached them (after start): only a
        // node running as root attaches overlays (else the container keeps
        // Docker's resolver, which at least answers names outside the swarm).
        dns: (overlay && nix::unistd::geteuid().is_root()).then(|| vec![OVERLAY_DNS.to_string()]),
        ..Default::default()
    };
    let nonempty = |s: &String| (!s.is_empty()).then(|| s.clone());
    Ok(ContainerCreateBody {
        image: Some(c.image.clone()),
        hostname: nonempty(&c.hostname),
        user: nonempty(&c.user),
        env: (!c.env.is_empty()).then(|| c.env.clone()),
        working_dir: nonempty(&c.dir),
        entrypoint,
        cmd,
        labels: Some(labels),
        tty: c.tty.then_some(true),
        open_stdin: c.open_stdin.then_some(true),
        stop_signal: nonempty(&c.stop_signal),
        stop_timeout: Some(stop_grace(task).as_secs_f64().ceil() as i64),
        exposed_ports: (!ports.is_empty()).then(|| ports.iter().map(port_key).collect()),
        host_config: Some(host_config),
        ..Default::default()
    })
}

fn port_key(p: &PortConfig) -> String {
    format!("{}/{}", p.target_port, p.protocol)
}

fn mount(m: &swarm_core::types::Mount) -> Result<Mount> {
    let mut out = Mount {
        target: Some(m.target.clone()),
        source: (!m.source.is_empty()).then(|| m.source.clone()),
        read_only: m.readonly.then_some(true),
        ..Default::default()
    };
    match m.r#type {
        SpecMount::Bind => {
            out.typ = Some(MountType::BIND);
            if !m.bind_propagation.is_empty() {
                let propagation: MountBindOptionsPropagationEnum =
                    m.bind_propagation.parse().map_err(|_| Error::InvalidSpec {
                        field: "container.mounts.bind_propagation",
                        reason: format!("unknown propagation {:?}", m.bind_propagation),
                    })?;
                out.bind_options = Some(MountBindOptions {
                    propagation: Some(propagation),
                    ..Default::default()
                });
            }
        }
        SpecMount::Volume => {
            out.typ = Some(MountType::VOLUME);
            out.volume_options = Some(MountVolumeOptions {
                labels: (!m.volume_labels.is_empty())
                    .then(|| m.volume_labels.clone().into_iter().collect()),
                driver_config: m
                    .volume_driver
                    .as_ref()
                    .map(|d| MountVolumeOptionsDriverConfig {
                        name: Some(d.name.clone()),
                        options: Some(d.options.clone().into_iter().collect()),
                    }),
                ..Default::default()
            });
        }
        SpecMount::Tmpfs => {
            out.typ = Some(MountType::TMPFS);
            out.tmpfs_options = Some(MountTmpfsOptions {
                size_bytes: (m.tmpfs_size_bytes > 0).then_some(m.tmpfs_size_bytes),
                mode: (m.tmpfs_mode > 0).then_some(m.tmpfs_mode as i64),
                ..Default::default()
            });
        }
        other => {
            return Err(Error::InvalidSpec {
                field: "container.mounts.type",
                reason: format!("{other:?} mounts are not supported by the Docker runtime"),
            });
        }
    }
    Ok(out)
}

/// An [`Inspection`] from Docker's inspect response.
pub(crate) fn inspection(resp: ContainerInspectResponse) -> Inspection {
    let config = resp.config.unwrap_or_default();
    let labels = config
        .labels
        .as_ref()
        .and_then(|l| TaskLabels::from_map(l.iter()))
        .unwrap_or_default();
    let st = resp.state.unwrap_or_default();
    let state = match st.status {
        Some(ContainerStateStatusEnum::RUNNING)
        | Some(ContainerStateStatusEnum::PAUSED)
        | Some(ContainerStateStatusEnum::RESTARTING)
        | Some(ContainerStateStatusEnum::STOPPING) => ContainerState::Running,
        Some(ContainerStateStatusEnum::EXITED)
        | Some(ContainerStateStatusEnum::DEAD)
        | Some(ContainerStateStatusEnum::REMOVING) => ContainerState::Exited,
        _ => ContainerState::Created,
    };
    let exit_code = (state == ContainerState::Exited).then(|| st.exit_code.unwrap_or(0) as i32);
    let mut ports = Vec::new();
    let mut addr = None;
    let overlay = config
        .labels
        .as_ref()
        .is_some_and(|l| l.get(LABEL_OVERLAY).is_some_and(|v| v == "true"));
    let netns = (state == ContainerState::Running && overlay)
        .then_some(st.pid)
        .flatten()
        .filter(|pid| *pid > 0)
        .map(|pid| std::path::PathBuf::from(format!("/proc/{pid}/ns/net")));
    if state == ContainerState::Running {
        let settings = resp.network_settings.unwrap_or_default();
        addr = container_ip(&settings);
        let map = settings.ports.unwrap_or_default();
        for (key, bindings) in map {
            let Some((target, proto)) = key.split_once('/') else {
                continue;
            };
            let protocol = match proto {
                "udp" => Protocol::Udp,
                "sctp" => Protocol::Sctp,
                _ => Protocol::Tcp,
            };
            let Ok(target_port) = target.parse() else {
                continue;
            };
            for b in bindings.into_iter().flatten() {
                let Some(published_port) = b.host_port.and_then(|p| p.parse().ok()) else {
                    continue;
                };
                // Docker lists a binding once per address family.
                if b.host_ip.as_deref().is_some_and(|ip| ip.contains(':')) {
                    continue;
                }
                ports.push(PortConfig {
                    name: String::new(),
                    protocol,
                    target_port,
                    published_port,
                    publish_mode: PublishMode::Host,
                });
            }
        }
        ports.sort_by_key(|p| (p.target_port, p.protocol));
    }
    let pid = if state == ContainerState::Running {
        st.pid.unwrap_or(0) as i32
    } else {
        0
    };
    Inspection {
        labels,
        image: config.image.unwrap_or_default(),
        state,
        exit_code,
        container: ContainerStatus {
            container_id: resp.id.unwrap_or_default(),
            pid,
            exit_code: exit_code.unwrap_or(0),
        },
        ports,
        started_at: st.started_at.as_deref().and_then(parse_time),
        finished_at: st.finished_at.as_deref().and_then(parse_time),
        addr,
        netns,
    }
}

/// A running container's IP address: on its first network (by name) that
/// gives it one. `None` on the host network.
fn container_ip(settings: &bollard::models::NetworkSettings) -> Option<std::net::IpAddr> {
    let mut networks: Vec<_> = settings.networks.iter().flatten().collect();
    networks.sort_by(|a, b| a.0.cmp(b.0));
    networks
        .into_iter()
        .filter_map(|(_, n)| n.ip_address.as_deref())
        .find_map(|ip| ip.parse().ok())
}

/// Parses Docker's RFC 3339 UTC times (`2026-11-28T07:10:00.123456789Z`); `None` for
/// the zero time Docker uses for "never" and for anything malformed.
pub(crate) fn parse_time(s: &str) -> Option<Timestamp> {
    let (date, time) = s.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    if y <= 1 {
        return None;
    }
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':').map(|x| x.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    let digits: String = frac.chars().take(9).collect();
    let nanos = if digits.is_empty() {
        0
    } else {
        digits.parse::<u32>().ok()? * 10u32.pow(9 - digits.len() as u32)
    };
    // Days from civil date (Howard Hinnant's algorithm).
    let yy = if m <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(Timestamp {
        seconds: days * 86_400 + hh * 3600 + mm * 60 + ss,
        nanos,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use swarm_core::Id;
    use swarm_core::types::{Annotations, Endpoint, ResourceRequirements, Resources};

    fn task() -> Task {
        let mut t = Task {
            id: Id::from("t1"),
            service_id: Id::from("s1"),
            node_id: Id::from("n1"),
            slot: 1,
            service_annotations: Annotations::named("web"),
            ..Default::default()
        };
        let c = &mut t.spec.container;
        c.image = "busybox:1".into();
        c.command = vec!["sh".into(), "-c".into()];
        c.args = vec!["echo hi".into()];
        c.env = vec!["A=1".into()];
        c.stop_grace_period = Some(Duration::from_millis(1500));
        c.mounts = vec![swarm_core::types::Mount {
            r#type: SpecMount::Bind,
            source: "/tmp".into(),
            target: "/data".into(),
            readonly: true,
            ..Default::default()
        }];
        t.spec.resources = Some(ResourceRequirements {
            limits: Some(Resources {
                nano_cpus: 500_000_000,
                memory_bytes: 64 << 20,
                generic: vec![],
            }),
            reservations: None,
        });
        t.endpoint = Some(Endpoint {
            ports: vec![PortConfig {
                target_port: 80,
                published_port: 8080,
                publish_mode: PublishMode::Host,
                ..Default::default()
            }],
            ..Default::default()
        });
        t
    }

    #[test]
    fn create_body_carries_the_spec() {
        let body = container_config(&task()).unwrap();
        assert_eq!(body.entrypoint.unwrap(), vec!["sh", "-c"]);
        assert_eq!(body.cmd.unwrap(), vec!["echo hi"]);
        assert_eq!(body.stop_timeout, Some(2));
        let labels = body.labels.unwrap();
        assert_eq!(labels["com.docker.swarm.task.id"], "t1");
        assert_eq!(labels["com.docker.swarm.node.id"], "n1");
        let hc = body.host_config.unwrap();
        assert_eq!(hc.nano_cpus, Some(500_000_000));
        assert_eq!(hc.memory, Some(64 << 20));
        assert_eq!(
            hc.restart_policy.unwrap().name,
            Some(RestartPolicyNameEnum::NO)
        );
        let binding = &hc.port_bindings.unwrap()["80/tcp"];
        assert_eq!(
            binding.as_ref().unwrap()[0].host_port.as_deref(),
            Some("8080")
        );
        let m = &hc.mounts.unwrap()[0];
        assert_eq!((m.typ, m.read_only), (Some(MountType::BIND), Some(true)));
        assert_eq!(body.exposed_ports.unwrap(), vec!["80/tcp"]);
    }

    #[test]
    fn bad_specs_are_rejected() {
        let mut t = task();
        t.spec.container.image.clear();
        assert!(matches!(
            container_config(&t),
            Err(Error::InvalidSpec { .. })
        ));
        let mut t = task();
        t.spec.container.mounts[0].bind_propagation = "sideways".into();
        assert!(matches!(
            container_config(&t),
            Err(Error::InvalidSpec { .. })
        ));
    }

    #[test]
    fn host_ports_bind_given_and_dynamic_ports_and_report_what_docker_bound() {
        let mut t = task();
        let ports = &mut t.endpoint.as_mut().unwrap().ports;
        ports.push(PortConfig {
            protocol: Protocol::Udp,
            target_port: 53,
            published_port: 0,
            publish_mode: PublishMode::Host,
            ..Default::default()
        });
        ports.push(PortConfig {
            target_port: 90,
            published_port: 9090,
            publish_mode: PublishMode::Ingress,
            ..Default::default()
        });
        let body = container_config(&t).unwrap();
        let bindings = body.host_config.unwrap().port_bindings.unwrap();
        let host_port = |key: &str| {
            bindings[key].as_ref().unwrap()[0]
                .host_port
                .clone()
                .unwrap()
        };
        assert_eq!(host_port("80/tcp"), "8080", "the given port");
        assert_eq!(host_port("53/udp"), "", "Docker picks one");
        assert_eq!(bindings.len(), 2, "ingress ports are the mesh's");

        let binding = |ip: &str, port: &str| PortBinding {
            host_ip: Some(ip.into()),
            host_port: Some(port.into()),
        };
        let resp = ContainerInspectResponse {
            state: Some(bollard::models::ContainerState {
                status: Some(ContainerStateStatusEnum::RUNNING),
                ..Default::default()
            }),
            network_settings: Some(bollard::models::NetworkSettings {
                ports: Some(HashMap::from([
                    (
                        "80/tcp".to_string(),
                        Some(vec![binding("0.0.0.0", "8080"), binding("::", "8080")]),
                    ),
                    (
                        "53/udp".to_string(),
                        Some(vec![binding("0.0.0.0", "49153")]),
                    ),
                    ("443/tcp".to_string(), None),
                ])),
                ..Default::default()
            }),
            ..Default::default()
        };
        let reported: Vec<_> = inspection(resp)
            .ports
            .iter()
            .map(|p| (p.protocol, p.published_port, p.target_port, p.publish_mode))
            .collect();
        assert_eq!(
            reported,
            vec![
                (Protocol::Udp, 49153, 53, PublishMode::Host),
                (Protocol::Tcp, 8080, 80, PublishMode::Host),
            ],
            "once per binding (not per address family), exposed-only ports left out"
        );
    }

    #[test]
    fn a_task_on_an_overlay_uses_the_embedded_dns_and_reports_its_namespace() {
        use bollard::models::{ContainerConfig, ContainerState as DockerState};
        use swarm_core::types::{Driver, Network, NetworkAttachment, NetworkSpec};
        let plain = container_config(&task()).unwrap();
        assert_eq!(plain.host_config.unwrap().dns, None);
        assert!(!plain.labels.unwrap().contains_key(LABEL_OVERLAY));

        let mut t = task();
        t.networks.push(NetworkAttachment {
            network: std::sync::Arc::new(Network {
                id: Id::from("net1"),
                spec: NetworkSpec {
                    driver_config: Driver {
                        name: "overlay".into(),
                        ..Default::default()
                    },
                    ..Default::default()
                },
                ..Default::default()
            }),
            addresses: vec!["10.0.1.3/24".into()],
            aliases: vec![],
        });
        let body = container_config(&t).unwrap();
        let embedded = nix::unistd::geteuid()
            .is_root()
            .then(|| vec!["127.0.0.11".to_string()]);
        assert_eq!(body.host_config.unwrap().dns, embedded, "as root only");
        let labels = body.labels.unwrap();
        assert_eq!(labels[LABEL_OVERLAY], "true");

        let inspected = |status, pid| {
            inspection(ContainerInspectResponse {
                config: Some(ContainerConfig {
                    labels: Some(labels.clone()),
                    ..Default::default()
                }),
                state: Some(DockerState {
                    status: Some(status),
                    pid: Some(pid),
                    ..Default::default()
                }),
                ..Default::default()
            })
        };
        assert_eq!(
            inspected(ContainerStateStatusEnum::RUNNING, 4242).netns,
            Some(std::path::PathBuf::from("/proc/4242/ns/net"))
        );
        // Its namespace exists only while it runs.
        assert_eq!(inspected(ContainerStateStatusEnum::CREATED, 0).netns, None);
        assert_eq!(inspected(ContainerStateStatusEnum::EXITED, 0).netns, None);
    }

    #[test]
    fn parses_docker_times() {
        assert_eq!(parse_time("0001-01-01T00:00:00Z"), None);
        let t = parse_time("2023-11-14T22:13:20.5Z").unwrap();
        assert_eq!((t.seconds, t.nanos), (1_700_000_000, 500_000_000));
        assert_eq!(t.to_string(), "2023-11-14T22:13:20.500000000Z");
        assert_eq!(parse_time("junk"), None);
    }
}
