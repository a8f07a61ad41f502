use std::path::Path;
use std::sync::Arc;

use swarm_core::Id;
use swarm_core::testing::{service, task};
use swarm_core::types::*;

use super::*;
use crate::agent::netplane::claims::OWNER_FILE;
use crate::agent::netplane::{NetPlane, is_root};
use crate::views::network::tests::{on, overlay};

#[tokio::test]
async fn the_wrapper_answers_for_its_runtime() {
    // The node forwards host-mode ports itself when the runtime does not bind
    // them: the wrapper must say what the runtime it wraps says.
    let dir = tempfile::tempdir().unwrap();
    let process = swarm_runtime::ProcessRuntime::new(dir.path().join("rt")).unwrap();
    let plane = NetPlane { inner: None };
    let wrapped = NetRuntime::new(Arc::new(process.clone()), plane);
    assert_eq!(wrapped.binds_host_ports(), process.binds_host_ports());
    assert!(!wrapped.binds_host_ports());
    assert_eq!(wrapped.name(), "process");
}

/// A runtime whose task is seen running with the namespace at `netns` by the
/// first inspection and exited by the next ones: a container that ends while
/// the node attaches it.
#[derive(Debug)]
struct EndsAtOnce {
    netns: PathBuf,
    inspections: parking_lot::Mutex<u32>,
}

#[async_trait]
impl Runtime for EndsAtOnce {
    fn name(&self) -> &'static str {
        "ends-at-once"
    }
    async fn prepare(&self, _: &Task) -> swarm_runtime::Result<()> {
        Ok(())
    }
    async fn create(&self, _: &Task) -> swarm_runtime::Result<ContainerStatus> {
        Ok(ContainerStatus::default())
    }
    async fn start(&self, _: &str) -> swarm_runtime::Result<()> {
        Ok(())
    }
    async fn wait(&self, _: &str) -> swarm_runtime::Result<i32> {
        Ok(0)
    }
    async fn stop(&self, _: &str, _: Option<Duration>) -> swarm_runtime::Result<()> {
        Ok(())
    }
    async fn remove(&self, _: &str) -> swarm_runtime::Result<()> {
        Ok(())
    }
    async fn inspect(&self, task_id: &str) -> swarm_runtime::Result<Inspection> {
        let mut n = self.inspections.lock();
        *n += 1;
        let running = *n == 1;
        Ok(Inspection {
            labels: swarm_runtime::TaskLabels {
                task_id: task_id.into(),
                ..Default::default()
            },
            image: "busybox".into(),
            state: if running {
                swarm_runtime::ContainerState::Running
            } else {
                swarm_runtime::ContainerState::Exited
            },
            exit_code: (!running).then_some(0),
            container: ContainerStatus::default(),
            ports: vec![],
            started_at: None,
            finished_at: None,
            addr: None,
            netns: running.then(|| self.netns.clone()),
        })
    }
    async fn list(&self) -> swarm_runtime::Result<Vec<Inspection>> {
        Ok(vec![])
    }
    async fn logs(&self, task_id: &str, _: LogOptions) -> swarm_runtime::Result<LogChunks> {
        Err(swarm_runtime::Error::NotFound {
            task_id: task_id.into(),
        })
    }
}

#[tokio::test]
async fn a_container_that_ends_before_it_is_attached_starts_fine() {
    if !is_root() {
        println!("skipped: the plane attaches only as root");
        return;
    }
    let node_id = Id::from(format!("swm6-node-{}", &Id::generate()[..8]).as_str());
    /// Removes the plane's (empty) sandbox directory, even when the test fails.
    struct Owned(PathBuf);
    impl Drop for Owned {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(self.0.join(OWNER_FILE));
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let _owned = Owned(Path::new(swarm_net::overlay::DEFAULT_NETNS_DIR).join(node_id.as_str()));
    let plane = NetPlane::new(&node_id);
    assert!(plane.enabled());
    let dir = tempfile::tempdir().unwrap();
    // Its process is gone: the namespace path names nothing any more.
    let inner = Arc::new(EndsAtOnce {
        netns: dir.path().join("gone").join("ns").join("net"),
        inspections: parking_lot::Mutex::new(0),
    });
    let runtime = NetRuntime::new(inner.clone(), plane.clone());
    let net = overlay("swm6net", 4097, "10.216.0.0/24", "10.216.0.1");
    let t = on(
        task("t1", &service("web", "web", "busybox", 1), 1),
        &net,
        "10.216.0.3/24",
        node_id.as_str(),
        TaskState::Assigned,
    );
    runtime.create(&t).await.unwrap();
    runtime.start("t1").await.unwrap();
    assert_eq!(
        *inner.inspections.lock(),
        3,
        "create: seen running, then exited; start: exited"
    );
    assert!(plane.attached().await.is_empty());
}
