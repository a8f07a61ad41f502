//! Helpers the multi-node tests share.
#![allow(dead_code)] // each test file uses its own subset

pub mod netlab;

use std::sync::Arc;
use std::time::Duration;

use swarm::core::types::*;
use swarm::runtime::{ProcessRuntime, Runtime};
use swarm::{Control, TaskFilter};

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

/// The image the Docker tests run: a busybox rootfs imported locally.
pub const TEST_IMAGE: &str = "swarm-test/busybox:1";

/// Whether a Docker Engine answers and [`TEST_IMAGE`] is built; prints why
/// the test skips when not.
pub fn have_engine_and_image() -> bool {
    use std::process::Command;
    let engine = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !engine {
        eprintln!("skipping: no Docker Engine answers");
        return false;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/build-test-image.sh");
    match Command::new("sh").args([script, TEST_IMAGE]).output() {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            eprintln!(
                "skipping: cannot build {TEST_IMAGE}: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            false
        }
        Err(e) => {
            eprintln!("skipping: cannot run the image script: {e}");
            false
        }
    }
}

/// IDs of the containers whose names start with `prefix`.
pub fn containers(prefix: &str) -> Vec<String> {
    std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("name=^/{prefix}")])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Removes every container whose name starts with `prefix`.
pub fn remove_containers(prefix: &str) {
    let ids = containers(prefix);
    if !ids.is_empty() {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f"])
            .args(&ids)
            .output();
    }
}

/// Removes the containers whose names start with its prefix when dropped: a
/// failed (or killed) test's nodes stop without removing theirs.
pub struct RemoveContainers(pub &'static str);

impl Drop for RemoveContainers {
    fn drop(&mut self) {
        remove_containers(self.0);
    }
}
