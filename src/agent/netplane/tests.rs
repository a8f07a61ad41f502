use swarm_core::testing::{service, task};
use swarm_net::overlay::{OverlayConfig, OverlayDriver, OverlayError};

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

/// An [`OverlayFactory`] that records what it is asked to start and starts
/// nothing (so no dead node's sandboxes are touched: collecting them stops at
/// the first overlay that does not start).
#[derive(Default)]
struct Recording(std::sync::Mutex<Vec<OverlayConfig>>);

#[async_trait]
impl OverlayFactory for Recording {
    async fn start(&self, cfg: OverlayConfig) -> Result<Arc<dyn OverlayDriver>, OverlayError> {
        self.0.lock().unwrap().push(cfg);
        Err(OverlayError::Unsupported("a recording factory".into()))
    }
}

#[tokio::test]
async fn the_plane_starts_the_overlay_it_was_given() {
    if !is_root() {
        println!("skipped: the plane runs only as root");
        return;
    }
    let node_id = Id::from(format!("swm7-node-{}", &Id::generate()[..8]).as_str());
    let dir = Path::new(swarm_net::overlay::DEFAULT_NETNS_DIR).join(node_id.as_str());
    let factory = Arc::new(Recording::default());
    let plane = NetPlane::with_overlay(&node_id, factory.clone());
    let addr: IpAddr = "10.217.0.7".parse().unwrap();
    plane.set_view(Arc::new(NetworkView {
        vxlan_port: 4799,
        nodes: vec![(node_id.clone(), addr)],
        ..Default::default()
    }));
    let started = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let asked = factory.0.lock().unwrap().clone();
            if let Some(cfg) = asked.into_iter().find(|c| c.underlay_ip == addr) {
                return cfg;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let _ = std::fs::remove_file(dir.join(OWNER_FILE));
    let _ = std::fs::remove_dir(&dir);
    let cfg = started.expect("the plane never started its overlay");
    assert_eq!(cfg.vxlan_port, 4799);
    assert_eq!(cfg.netns_dir, dir);
}
