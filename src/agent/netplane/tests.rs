use swarm_core::testing::{service, task};

use super::*;
use crate::agent::netplane::claims::OWNER_FILE;

#[tokio::test]
async fn a_plane_without_root_or_namespace_changes_nothing() {
    let plane = NetPlane::new(&Id::from("swm3-node"));
    if plane.enabled() {
        // As root the plane only acts on tasks that have a namespace.
        assert!(plane.attached().await.is_empty());
        plane.detach("no-such-task").await;
        let dir = Path::new(swarm_net::overlay::DEFAULT_NETNS_DIR).join("swm3-node");
        let _ = std::fs::remove_file(dir.join(OWNER_FILE));
        let _ = std::fs::remove_dir(dir);
        return;
    }
    let t = task("t1", &service("web", "web", "x", 1), 1);
    plane
        .attach(&t, Path::new("/nonexistent"), true)
        .await
        .unwrap();
    assert!(plane.attached().await.is_empty());
}
