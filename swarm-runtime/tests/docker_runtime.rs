//! Docker-runtime behaviour beyond the conformance suite, against the local engine:
//! the container name, labels, and the spec fields the engine applies.

mod docker_common;

use std::time::Duration;

use futures::StreamExt;
use swarm_core::Id;
use swarm_core::types::{
    Annotations, Endpoint, Mount, MountType, PortConfig, PublishMode, ResourceRequirements,
    Resources, Task, TaskState,
};
use swarm_runtime::{ContainerState, LogOptions, LogStream, Runtime};

use docker_common::{PREFIX, TEST_IMAGE, engine};

/// Removes the container and volume even when the test fails.
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", "-v", name])
                .output();
            let _ = std::process::Command::new("docker")
                .args(["volume", "rm", "-f", &format!("{PREFIX}-vol")])
                .output();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applies_the_spec() {
    let Some(rt) = engine().await else { return };
    let bind = tempfile::tempdir().unwrap();
    let id = format!("{PREFIX}-spec-{}", &Id::generate()[..10]);
    let mut t = Task {
        id: Id::from(id.as_str()),
        service_id: Id::from("svc-spec"),
        node_id: Id::from("node-spec"),
        slot: 2,
        service_annotations: Annotations::named(format!("{PREFIX}-spec")),
        desired_state: TaskState::Running,
        ..Default::default()
    };
    let c = &mut t.spec.container;
    c.image = TEST_IMAGE.into();
    c.command = vec!["/bin/sh".into(), "-c".into()];
    c.args = vec![
        "echo $GREETING; pwd; id -u; hostname; echo hi > /data/x; echo ready; sleep 300".into(),
    ];
    c.env = vec!["GREETING=hello".into()];
    c.dir = "/tmp".into();
    c.user = "65534".into();
    c.hostname = "swarmhost".into();
    c.stop_signal = "SIGINT".into();
    c.stop_grace_period = Some(Duration::from_secs(3));
    c.mounts = vec![
        Mount {
            r#type: MountType::Bind,
            source: bind.path().display().to_string(),
            target: "/data".into(),
            ..Default::default()
        },
        Mount {
            r#type: MountType::Volume,
            source: format!("{PREFIX}-vol"),
            target: "/vol".into(),
            ..Default::default()
        },
    ];
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
            target_port: 8080,
            published_port: 0,
            publish_mode: PublishMode::Host,
            ..Default::default()
        }],
        ..Default::default()
    });
    let name = format!("{PREFIX}-spec.2.{id}");
    let _cleanup = Cleanup(vec![name.clone()]);
    std::fs::set_permissions(
        bind.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();

    rt.prepare(&t).await.unwrap();
    let created = rt.create(&t).await.unwrap();
    rt.start(&t.id).await.unwrap();

    let raw = rt
        .client()
        .inspect_container(&created.container_id, None)
        .await
        .unwrap();
    assert_eq!(raw.name.as_deref(), Some(format!("/{name}").as_str()));
    let config = raw.config.unwrap();
    let labels = config.labels.unwrap();
    assert_eq!(labels["com.docker.swarm.task.id"], id);
    assert_eq!(
        labels["com.docker.swarm.task.name"],
        format!("{PREFIX}-spec.2")
    );
    assert_eq!(labels["com.docker.swarm.service.id"], "svc-spec");
    assert_eq!(
        labels["com.docker.swarm.service.name"],
        format!("{PREFIX}-spec")
    );
    assert_eq!(labels["com.docker.swarm.node.id"], "node-spec");
    assert_eq!(config.stop_signal.as_deref(), Some("SIGINT"));
    let hc = raw.host_config.unwrap();
    assert_eq!(hc.nano_cpus, Some(500_000_000));
    assert_eq!(hc.memory, Some(64 << 20));
    let policy = hc.restart_policy.unwrap().name.map(|n| n.to_string());
    assert!(
        matches!(policy.as_deref(), Some("no") | Some("")),
        "{policy:?}"
    );

    let i = rt.inspect(&t.id).await.unwrap();
    assert_eq!(i.state, ContainerState::Running);
    assert_eq!(i.ports.len(), 1, "{:?}", i.ports);
    assert_eq!(i.ports[0].target_port, 8080);
    assert!(i.ports[0].published_port > 0);

    // The output shows env, working dir, user and hostname; the bind mount is
    // writable from the container.
    let mut out = String::new();
    for _ in 0..200 {
        out.clear();
        let mut logs = rt.logs(&t.id, LogOptions::default()).await.unwrap();
        while let Some(chunk) = logs.next().await {
            let chunk = chunk.unwrap();
            if chunk.stream == LogStream::Stdout {
                out.push_str(&String::from_utf8_lossy(&chunk.data));
            }
        }
        if out.contains("ready") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(out, "hello\n/tmp\n65534\nswarmhost\nready\n");
    assert_eq!(
        std::fs::read_to_string(bind.path().join("x")).unwrap(),
        "hi\n"
    );

    rt.stop(&t.id, Some(Duration::from_secs(1))).await.unwrap();
    let code = rt.wait(&t.id).await.unwrap();
    // `sleep` as the container's pid 1 ignores SIGINT: killed after the grace.
    assert_eq!(code, 137);
    rt.remove(&t.id).await.unwrap();
    let gone = rt
        .client()
        .inspect_container(&created.container_id, None)
        .await;
    assert!(gone.is_err(), "container still there");
}
