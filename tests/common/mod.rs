//! Helpers the multi-node tests share.
#![allow(dead_code)] // each test file uses its own subset

use std::sync::Arc;
use std::time::Duration;

use swarm::control::{Control, TaskFilter};
use swarm::core::types::*;
use swarm::runtime::{ProcessRuntime, Runtime};

/// How long a test waits for the swarm to get somewhere.
pub const PATIENCE: Duration = Duration::from_secs(90);

/// A process runtime keeping its state under `dir`.
pub fn runtime(dir: &std::path::Path) -> Arc<dyn Runtime> {
    Arc::new(ProcessRuntime::new(dir.join("runtime")).unwrap())
}

/// Waits (bounded) until `f` holds, failing the test with `what` if it never does.
pub async fn eventually<F: Fn() -> bool>(what: &str, f: F) {
    tokio::time::timeout(PATIENCE, async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

/// [`eventually`] for a test that must await to look.
pub async fn eventually_async<F: AsyncFnMut() -> bool>(what: &str, mut f: F) {
    tokio::time::timeout(PATIENCE, async {
        while !f().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

/// A replicated service of `replicas` tasks running `sleep 600`.
pub fn sleep_spec(name: &str, replicas: u64) -> ServiceSpec {
    ServiceSpec {
        annotations: Annotations::named(name),
        task: TaskSpec {
            container: ContainerSpec {
                image: "busybox".into(),
                command: vec!["/bin/sh".into(), "-c".into(), "sleep 600".into()],
                stop_grace_period: Some(Duration::from_secs(1)),
                ..Default::default()
            },
            ..Default::default()
        },
        mode: ServiceMode::Replicated { replicas },
        ..Default::default()
    }
}

/// Every task of `service`.
pub fn tasks(control: &Control, service: &str) -> Vec<Arc<Task>> {
    control
        .list_tasks(&TaskFilter {
            services: vec![service.into()],
            ..Default::default()
        })
        .unwrap_or_default()
}

/// Wanted tasks of `service` observed RUNNING.
pub fn wanted_running(control: &Control, service: &str) -> Vec<Arc<Task>> {
    tasks(control, service)
        .into_iter()
        .filter(|t| t.status.state == TaskState::Running && t.desired_state == TaskState::Running)
        .collect()
}
