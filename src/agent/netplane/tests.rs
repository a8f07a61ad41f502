use std::sync::Arc;

use swarm_core::testing::{service, task};
use swarm_core::types::*;

use super::*;
use crate::views::network::compute;
use crate::views::network::tests::{backend_store, on, overlay};

#[test]
fn records_resolve_running_tasks_and_vips_take_their_traffic() {
    let v = compute(&backend_store().view());
    let n = &v.networks[0];
    let (records, vips) = records_of(n);
    let web_rec = records.services.iter().find(|s| s.name == "web").unwrap();
    assert_eq!(web_rec.mode, Resolution::Vip("10.0.1.2".parse().unwrap()));
    assert_eq!(web_rec.aliases, vec!["www".to_string()]);
    // Only the running task resolves and takes VIP traffic.
    assert_eq!(web_rec.tasks.len(), 1);
    assert_eq!(
        vips,
        vec![VipRule {
            vip: "10.0.1.2".parse().unwrap(),
            backends: vec!["10.0.1.3".parse().unwrap()],
        }]
    );
    let db_rec = records.services.iter().find(|s| s.name == "db").unwrap();
    assert_eq!(db_rec.mode, Resolution::Dnsrr);
    assert_eq!(db_rec.tasks[0].addr, "10.0.1.5".parse::<IpAddr>().unwrap());
}

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

#[tokio::test]
async fn sandboxes_of_a_node_that_is_gone_are_removed() {
    if !is_root() {
        println!("skipped: sandboxes need root");
        return;
    }
    let root = Path::new(swarm_net::overlay::DEFAULT_NETNS_DIR);
    let suffix = Id::generate();
    let dead = root.join(format!("swm3-dead-{}", &suffix[..8]));
    let alive = root.join(format!("swm3-live-{}", &suffix[..8]));
    let mine = root.join(format!("swm3-mine-{}", &suffix[..8]));
    // A sandbox left by a node whose process is gone, and one of a live node.
    for (dir, owner) in [(&dead, "999999999 1".to_string()), (&alive, me().unwrap())] {
        let mut cfg = OverlayConfig::new("127.0.0.1".parse().unwrap());
        cfg.netns_dir = dir.clone();
        cfg.vxlan_port = 48_913;
        let overlay = Overlay::new(cfg).await.unwrap();
        let vni = if *dir == dead { 16_000_001 } else { 16_000_002 };
        overlay
            .ensure_network(&NetworkDef {
                id: "swm3net".into(),
                vni,
                subnet: "10.213.0.0/24".into(),
                gateway: "10.213.0.1".into(),
                encrypted: false,
            })
            .await
            .unwrap();
        std::fs::write(dir.join(OWNER_FILE), owner).unwrap();
    }
    collect_dead_nodes(&mine).await;
    assert!(!dead.exists(), "the dead node's sandboxes stay");
    assert!(
        alive.join("ov-swm3net").exists(),
        "a live node's sandbox went"
    );
    // Clean up the live one as its node would.
    let mut cfg = OverlayConfig::new("127.0.0.1".parse().unwrap());
    cfg.netns_dir = alive.clone();
    Overlay::new(cfg)
        .await
        .unwrap()
        .remove_network("swm3net")
        .await
        .unwrap();
    let _ = std::fs::remove_file(alive.join(OWNER_FILE));
    let _ = std::fs::remove_dir(&alive);
}

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

/// `/proc/net/dev` of a namespace with `names`.
fn dev_text(names: &[&str]) -> String {
    let mut s = String::from(
        "Inter-|   Receive                            |  Transmit\n face |bytes    packets errs\n",
    );
    for n in names {
        s.push_str(&format!("{n:>6}: 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"));
    }
    s
}

/// A `/proc/net/route` line (addresses as the kernel prints them: hex in the
/// host's byte order).
fn route_line(ifname: &str, dest: [u8; 4], gw: [u8; 4], mask: [u8; 4]) -> String {
    let hex = |a: [u8; 4]| format!("{:08X}", u32::from_ne_bytes(a));
    format!(
        "{ifname}\t{}\t{}\t0003\t0\t0\t0\t{}\t0\t0\t0\n",
        hex(dest),
        hex(gw),
        hex(mask)
    )
}

const ROUTE_HEAD: &str =
    "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n";

#[test]
fn a_fresh_namespace_gets_eth0_and_the_default_route() {
    let ours: Vec<Cidr> = vec!["10.0.1.3/24".parse().unwrap()];
    assert_eq!(
        before_of(&dev_text(&["lo"]), ROUTE_HEAD, &ours),
        Before {
            first_eth: 0,
            default_route: false
        }
    );
    // Adopted: eth0 routes into the task's subnet, so it is the overlay's.
    let route = format!(
        "{ROUTE_HEAD}{}{}",
        route_line("eth0", [0; 4], [10, 0, 1, 1], [0; 4]),
        route_line("eth0", [10, 0, 1, 0], [0; 4], [255, 255, 255, 0])
    );
    assert_eq!(
        before_of(&dev_text(&["lo", "eth0"]), &route, &ours),
        Before {
            first_eth: 0,
            default_route: false
        }
    );
}

#[test]
fn a_docker_container_keeps_its_eth0_and_default_route() {
    let ours: Vec<Cidr> = vec!["10.0.1.3/24".parse().unwrap()];
    let docker = format!(
        "{ROUTE_HEAD}{}{}",
        route_line("eth0", [0; 4], [172, 17, 0, 1], [0; 4]),
        route_line("eth0", [172, 17, 0, 0], [0; 4], [255, 255, 0, 0])
    );
    let want = Before {
        first_eth: 1,
        default_route: true,
    };
    assert_eq!(before_of(&dev_text(&["lo", "eth0"]), &docker, &ours), want);
    // Adopted after a restart: eth1 is the overlay's, found again as eth1.
    let adopted = format!(
        "{docker}{}",
        route_line("eth1", [10, 0, 1, 0], [0; 4], [255, 255, 255, 0])
    );
    assert_eq!(
        before_of(&dev_text(&["lo", "eth0", "eth1"]), &adopted, &ours),
        want
    );
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
