//! Helpers for tests and benches that run a whole swarm in one process
//! (feature `testing`; this crate's own tests and benches turn it on):
//! [`Cluster`], managers and workers over real sockets on 127.0.0.1, and what
//! the tests built on it share: waiting with [`eventually`], a service of
//! sleeping tasks, its tasks and the running ones.
//!
//! ```no_run
//! use swarm::testing::{Cluster, eventually, sleep_spec, wanted_running};
//!
//! # async fn demo() {
//! // One manager and two workers, each running tasks as processes.
//! let c = Cluster::builder().workers(2).start().await;
//! c.until_ready().await;
//! let control = c.control();
//! control.create_service(sleep_spec("web", 3)).await.unwrap();
//! eventually("3 running tasks", || wanted_running(&control, "web").len() == 3).await;
//! c.remove_and_shutdown("web").await;
//! # }
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use swarm_core::types::*;
use swarm_runtime::{ProcessRuntime, Runtime};

use crate::{Control, TaskFilter};

mod cluster;

pub use cluster::{Cluster, ClusterBuilder, NodeDir};
pub use swarm_core::testing::Patience;

/// How long a test waits for a swarm to get somewhere: 90 s, looking every
/// 20 ms.
pub const PATIENCE: Patience = Patience::within(Duration::from_secs(90));

/// The raft tick of the managers of a [`Cluster`] (20 ms, where a deployment
/// ticks every 100 ms): a lost leader is replaced in a fraction of a second.
pub const FAST_TICK: Duration = Duration::from_millis(20);

/// Waits until `f` holds, with [`PATIENCE`].
///
/// # Panics
///
/// With `timed out waiting for {what}` when it does not hold in time.
pub async fn eventually(what: &str, f: impl FnMut() -> bool) {
    PATIENCE.until(what, f).await;
}

/// [`eventually`] for a test that must await to look.
///
/// # Panics
///
/// With `timed out waiting for {what}` when it does not hold in time.
pub async fn eventually_async(what: &str, f: impl AsyncFnMut() -> bool) {
    PATIENCE.until_async(what, f).await;
}

/// A process runtime keeping its state under `dir/runtime`.
///
/// # Panics
///
/// When the directory cannot be made.
pub fn process_runtime(dir: &Path) -> Arc<dyn Runtime> {
    Arc::new(ProcessRuntime::new(dir.join("runtime")).expect("a process runtime"))
}

/// A replicated service of `replicas` tasks running `sleep 600` (image
/// `busybox`, which the process runtime ignores), stopped within 1 s.
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

/// Every task of `service` (none when it does not exist).
pub fn tasks(control: &Control, service: &str) -> Vec<Arc<Task>> {
    control
        .list_tasks(&TaskFilter {
            services: vec![service.into()],
            ..Default::default()
        })
        .unwrap_or_default()
}

/// The tasks of `service` wanted RUNNING and observed RUNNING.
pub fn wanted_running(control: &Control, service: &str) -> Vec<Arc<Task>> {
    tasks(control, service)
        .into_iter()
        .filter(|t| t.status.state == TaskState::Running && t.desired_state == TaskState::Running)
        .collect()
}

/// How many nodes are READY.
pub fn ready_nodes(control: &Control) -> usize {
    control
        .list_nodes(&Default::default())
        .iter()
        .filter(|n| n.status.state == NodeState::Ready)
        .count()
}
