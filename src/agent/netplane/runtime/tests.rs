use std::path::Path;
use std::sync::Arc;

use swarm_core::Id;
use swarm_core::testing::{service, task};
use swarm_core::types::*;

use swarm_runtime::testing::{Script, ScriptedRuntime};

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
    // Seen running with its namespace by the first inspection, exited by the
    // next: a container that ends while the node attaches it. Its process is
    // gone: the namespace path names nothing any more.
    let gone = dir.path().join("gone").join("ns").join("net");
    let inner = Arc::new(
        ScriptedRuntime::new().task("t1", Script::new().netns(gone).exit_after_inspections(1, 0)),
    );
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
    let seen = inner.inspect("t1").await.unwrap();
    assert_eq!(
        (seen.state, seen.exit_code, seen.netns),
        (swarm_runtime::ContainerState::Exited, Some(0), None),
        "start: seen running, then exited while attaching"
    );
    assert!(plane.attached().await.is_empty());
}
