//! The routing mesh across real nodes: a published port answers on every node,
//! whether or not it runs a task of the service, over real sockets. Each node
//! has its own 127.0.0.x address (cluster port, published ports and mesh peer
//! listener on it).
//!
//! The process runtime runs tasks on the host network, so on one machine only
//! one task may listen on a target port: those tests run one task and reach it
//! from every node. Balancing over several tasks uses the Docker runtime
//! (containers have their own addresses); it skips with a printed reason when
//! no Docker Engine or test image is available.
//!
//! Host-mode published ports answer only on the nodes that run a task of the
//! service, with that node's task. These tests use 127.0.0.81–92 and ports
//! 18000–18999.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use swarm::RoutingMeshConfig;
use swarm::core::Id;
use swarm::core::types::*;
use swarm::net::mesh::KernelPath;
use swarm::runtime::{DockerRuntime, ProcessRuntime, Runtime};
use swarm::testing::{FAST_TICK, eventually_async, sleep_spec, tasks, wanted_running};
use swarm::{ManagerConfig, Node};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

mod common;
use common::{RemoveContainers, TEST_IMAGE as IMAGE, containers};

/// A python3 server answering on TCP and UDP port `port` with `name:` and what
/// it got: the task's own identity, so a test sees which task answered.
const ECHO: &str = r#"
import socket, sys, threading
name, port = sys.argv[1], int(sys.argv[2])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
u.bind(("0.0.0.0", port))
def udp():
    while True:
        data, peer = u.recvfrom(2048)
        u.sendto(name.encode() + b":" + data, peer)
threading.Thread(target=udp, daemon=True).start()
t = socket.socket()
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", port))
t.listen(64)
while True:
    c, _ = t.accept()
    data = c.recv(2048)
    c.sendall(name.encode() + b":" + data)
    c.close()
"#;

const PYTHON: &str = "/usr/bin/python3";

fn ip(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

fn free_port(ip: IpAddr) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config(
    dir: &std::path::Path,
    name: &str,
    addr: IpAddr,
    rt: Arc<dyn Runtime>,
    kernel: KernelPath,
) -> ManagerConfig {
    ManagerConfig::new(dir, format!("{addr}:0"))
        .hostname(name)
        .runtime(rt)
        .tick_interval(FAST_TICK)
        .routing_mesh(RoutingMeshConfig::new(addr, addr).kernel_path(kernel))
}

/// A manager and two workers on 127.0.0.{base, base+1, base+2}, each with
/// its own runtime from `runtime`; their meshes use the kernel path when they
/// can (root).
async fn three_nodes(
    dirs: &[tempfile::TempDir; 3],
    base: u8,
    runtime: impl Fn(&std::path::Path) -> Arc<dyn Runtime>,
) -> Vec<Node> {
    three_nodes_with(dirs, base, KernelPath::Auto, runtime).await
}

/// [`three_nodes`] with the meshes' data path chosen.
async fn three_nodes_with(
    dirs: &[tempfile::TempDir; 3],
    base: u8,
    kernel: KernelPath,
    runtime: impl Fn(&std::path::Path) -> Arc<dyn Runtime>,
) -> Vec<Node> {
    let m = Node::start(config(
        dirs[0].path(),
        "node1",
        ip(base),
        runtime(dirs[0].path()),
        kernel,
    ))
    .await
    .unwrap();
    let control = m.control().await.unwrap();
    let addr = m.manager_addr().await.unwrap();
    let token = control.join_tokens().unwrap().worker;
    let mut nodes = vec![m];
    for i in 1..3u8 {
        let dir = dirs[i as usize].path();
        let name = format!("node{}", i + 1);
        let cfg = config(dir, &name, ip(base + i), runtime(dir), kernel);
        nodes.push(Node::join(cfg, &addr, &token).await.unwrap());
    }
    eventually_async("three ready nodes with a routing mesh", async || {
        let nodes = control.list_nodes(&Default::default());
        nodes.len() == 3
            && nodes.iter().all(|n| {
                n.status.state == NodeState::Ready
                    && n.description
                        .as_ref()
                        .is_some_and(|d| !d.mesh_addr.is_empty())
            })
    })
    .await;
    nodes
}

fn published_spec(
    name: &str,
    replicas: u64,
    command: Vec<String>,
    ports: &[(Protocol, u16, u16)],
) -> ServiceSpec {
    let mut spec = sleep_spec(name, replicas);
    spec.task.container.command = command;
    spec.endpoint = Some(EndpointSpec {
        ports: ports
            .iter()
            .map(|&(protocol, published, target)| PortConfig {
                protocol,
                published_port: published.into(),
                target_port: target.into(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    });
    spec
}

/// One TCP exchange through `addr`: what the backend answered, or the error.
async fn tcp_ask(addr: SocketAddr, msg: &str) -> std::io::Result<String> {
    let io = async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(msg.as_bytes()).await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        Ok(out)
    };
    tokio::time::timeout(Duration::from_secs(3), io)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

/// One UDP exchange through `addr`.
async fn udp_ask(addr: SocketAddr, msg: &str) -> std::io::Result<String> {
    let s = UdpSocket::bind("127.0.0.1:0").await?;
    s.send_to(msg.as_bytes(), addr).await?;
    let mut buf = [0u8; 2048];
    let n = tokio::time::timeout(Duration::from_millis(500), s.recv(&mut buf))
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn have_python() -> bool {
    if std::path::Path::new(PYTHON).exists() {
        return true;
    }
    eprintln!("skipping: {PYTHON} is missing (apt-get install python3-minimal)");
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_port_answers_on_every_node_over_tcp_and_udp() {
    if !have_python() {
        return;
    }
    let dirs = [(); 3].map(|_| tempfile::tempdir().unwrap());
    let nodes = three_nodes(&dirs, 41, |d| {
        Arc::new(ProcessRuntime::new(d.join("runtime")).unwrap()) as Arc<dyn Runtime>
    })
    .await;
    let control = nodes[0].control().await.unwrap();
    let target = free_port(ip(1));
    let published = free_port(ip(41));
    let mut spec = published_spec(
        "echo",
        1,
        vec![
            PYTHON.into(),
            "-c".into(),
            ECHO.into(),
            "echo-task".into(),
            target.to_string(),
        ],
        &[
            (Protocol::Tcp, published, target),
            (Protocol::Udp, published, target),
        ],
    );
    // The task runs on node3 only: node1 and node2 must hand over.
    spec.task.placement = Some(Placement {
        constraints: vec!["node.hostname==node3".into()],
        ..Default::default()
    });
    control.create_service(spec).await.unwrap();
    eventually_async("the echo task running", async || {
        wanted_running(&control, "echo").len() == 1
    })
    .await;

    for last in [41, 42, 43] {
        let at = SocketAddr::new(ip(last), published);
        eventually_async(&format!("tcp answer on {at}"), async || {
            tcp_ask(at, "hello").await.ok().as_deref() == Some("echo-task:hello")
        })
        .await;
        eventually_async(&format!("udp answer on {at}"), async || {
            udp_ask(at, "ping").await.ok().as_deref() == Some("echo-task:ping")
        })
        .await;
    }

    // publish-rm: the endpoint changes without restarting the task, and the
    // port stops answering on every node.
    let before: Vec<_> = wanted_running(&control, "echo")
        .iter()
        .map(|t| t.id.clone())
        .collect();
    let s = control.inspect_service("echo").unwrap();
    let mut spec = s.spec.clone();
    spec.endpoint
        .as_mut()
        .unwrap()
        .ports
        .retain(|p| p.protocol == Protocol::Udp);
    control
        .update_service("echo", s.meta.version.index, spec)
        .await
        .unwrap();
    for last in [41, 42, 43] {
        let at = SocketAddr::new(ip(last), published);
        eventually_async(&format!("tcp closed on {at}"), async || {
            tcp_ask(at, "x").await.is_err()
        })
        .await;
        assert_eq!(
            udp_ask(at, "still").await.ok().as_deref(),
            Some("echo-task:still"),
            "udp stays published on {at}"
        );
    }
    let after: Vec<_> = wanted_running(&control, "echo")
        .iter()
        .map(|t| t.id.clone())
        .collect();
    assert_eq!(before, after, "a publish change restarts no task");

    // Removing the service closes the port everywhere.
    control.remove_service("echo").await.unwrap();
    for last in [41, 42, 43] {
        let at = SocketAddr::new(ip(last), published);
        eventually_async(&format!("udp closed on {at}"), async || {
            udp_ask(at, "gone").await.is_err()
        })
        .await;
    }
    for n in nodes {
        n.shutdown().await;
    }
}

/// A Docker runtime for one test node: the engine is shared, each node sees
/// only its own containers.
async fn docker() -> Option<DockerRuntime> {
    let rt = match DockerRuntime::connect().await {
        Ok(rt) if rt.client().ping().await.is_ok() => rt,
        Ok(_) | Err(_) => {
            eprintln!("skipping: no Docker Engine answers");
            return None;
        }
    };
    if !common::have_engine_and_image() {
        return None;
    }
    Some(rt)
}

/// Which tasks answer `n` requests through `at` (busybox httpd serving the
/// container's host name, which is its own).
async fn answering(at: SocketAddr, n: usize) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for _ in 0..n {
        if let Ok(body) = tcp_ask(at, "GET / HTTP/1.0\r\n\r\n").await
            && let Some((_, b)) = body.split_once("\r\n\r\n")
        {
            seen.insert(b.trim().to_string());
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_balances_over_tasks_on_all_nodes_and_follows_scaling() {
    let Some(docker_rt) = docker().await else {
        return;
    };
    // Leftovers of a killed run go now; this run's go even if it fails.
    common::remove_containers("swt-mesh-web.");
    let _cleanup = RemoveContainers("swt-mesh-web.");
    let dirs = [(); 3].map(|_| tempfile::tempdir().unwrap());
    let nodes = three_nodes(&dirs, 44, |_| {
        Arc::new(docker_rt.clone()) as Arc<dyn Runtime>
    })
    .await;
    let control = nodes[0].control().await.unwrap();
    let published = free_port(ip(44));
    let mut spec = published_spec(
        "swt-mesh-web",
        3,
        vec![
            "/bin/sh".into(),
            "-c".into(),
            "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www".into(),
        ],
        &[(Protocol::Tcp, published, 80)],
    );
    spec.task.container.image = IMAGE.into();
    control.create_service(spec).await.unwrap();
    eventually_async("three web tasks running", async || {
        wanted_running(&control, "swt-mesh-web").len() == 3
    })
    .await;
    for last in [44, 45, 46] {
        let at = SocketAddr::new(ip(last), published);
        eventually_async(
            &format!("all three tasks answer through {at}"),
            async || answering(at, 9).await.len() == 3,
        )
        .await;
    }

    // Scale down: the backends follow.
    let s = control.inspect_service("swt-mesh-web").unwrap();
    let mut spec = s.spec.clone();
    spec.mode = ServiceMode::Replicated { replicas: 1 };
    control
        .update_service("swt-mesh-web", s.meta.version.index, spec)
        .await
        .unwrap();
    for last in [44, 45, 46] {
        let at = SocketAddr::new(ip(last), published);
        eventually_async(&format!("one task answers through {at}"), async || {
            answering(at, 6).await.len() == 1
        })
        .await;
    }
    control.remove_service("swt-mesh-web").await.unwrap();
    eventually_async("the containers gone", async || {
        tasks(&control, "swt-mesh-web").is_empty() && containers("swt-mesh-web.").is_empty()
    })
    .await;
    for n in nodes {
        n.shutdown().await;
    }
}

/// Whether a TCP connection to `at` is refused (nothing listens there).
async fn refused(at: SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(at)).await,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

/// Removes every task the process runtimes under these node directories hold
/// when dropped: a failed test's nodes stop without removing their tasks, and
/// a task left running would hold its ports in the next run.
struct RemoveProcesses(Vec<std::path::PathBuf>);

impl Drop for RemoveProcesses {
    fn drop(&mut self) {
        let dirs = std::mem::take(&mut self.0);
        // A runtime of its own: this may run while the test's is unwinding.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                for dir in dirs {
                    let Ok(runtime) = ProcessRuntime::new(dir.join("runtime")) else {
                        continue;
                    };
                    for task in runtime.list().await.unwrap_or_default() {
                        let _ = runtime.remove(&task.container.container_id).await;
                    }
                }
            });
        })
        .join();
    }
}

/// `spec` with its ports in host mode.
fn host_mode(mut spec: ServiceSpec) -> ServiceSpec {
    for p in &mut spec.endpoint.as_mut().unwrap().ports {
        p.publish_mode = PublishMode::Host;
    }
    spec
}

fn on_node(mut spec: ServiceSpec, hostname: &str) -> ServiceSpec {
    spec.task.placement = Some(Placement {
        constraints: vec![format!("node.hostname=={hostname}")],
        ..Default::default()
    });
    spec
}

/// A host-mode port as a task reports it: protocol, published and target
/// port.
type Reported = (Protocol, u32, u32);

/// The node addresses (127.0.0.x) of the nodes running wanted tasks of
/// `service`, with the host-mode ports each task reported.
fn host_ports_by_node(
    control: &swarm::Control,
    service: &str,
    first: u8,
) -> Vec<(u8, Vec<Reported>)> {
    let mut out: Vec<_> = wanted_running(control, service)
        .iter()
        .map(|t| {
            let n = control.inspect_node(t.node_id.as_str()).unwrap();
            let k: u8 = n.description.as_ref().unwrap().hostname[4..]
                .parse()
                .unwrap();
            let ports = t
                .status
                .port_status
                .iter()
                .flat_map(|p| &p.ports)
                .map(|p| (p.protocol, p.published_port, p.target_port))
                .collect();
            (first + k - 1, ports)
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_mode_ports_answer_only_on_the_nodes_of_their_tasks() {
    if !have_python() {
        return;
    }
    let dirs = [(); 3].map(|_| tempfile::tempdir().unwrap());
    let _cleanup = RemoveProcesses(dirs.iter().map(|d| d.path().to_path_buf()).collect());
    // User space: the tasks of the "pair" service below only sleep, and a port
    // is seen bound by the mesh accepting the connection; the kernel path
    // would answer a connection to a task that does not listen with a reset.
    let nodes = three_nodes_with(&dirs, 81, KernelPath::Off, |d| {
        Arc::new(ProcessRuntime::new(d.join("runtime")).unwrap()) as Arc<dyn Runtime>
    })
    .await;
    let control = nodes[0].control().await.unwrap();
    let echo = |name: &str, target: u16| {
        vec![
            PYTHON.into(),
            "-c".into(),
            ECHO.into(),
            name.to_string(),
            target.to_string(),
        ]
    };

    // A given published port on node2, forwarded to the task's target port.
    let (published, target) = (18012, 18011);
    let spec = published_spec(
        "hostecho",
        1,
        echo("hostecho-task", target),
        &[
            (Protocol::Tcp, published, target),
            (Protocol::Udp, published, target),
        ],
    );
    control
        .create_service(on_node(host_mode(spec), "node2"))
        .await
        .unwrap();
    // A dynamic one (published 0) on node3.
    let dyn_target = 18013;
    let spec = published_spec(
        "dynecho",
        1,
        echo("dynecho-task", dyn_target),
        &[(Protocol::Tcp, 0, dyn_target)],
    );
    control
        .create_service(on_node(host_mode(spec), "node3"))
        .await
        .unwrap();
    eventually_async("both echo tasks running", async || {
        wanted_running(&control, "hostecho").len() == 1
            && wanted_running(&control, "dynecho").len() == 1
    })
    .await;
    assert_eq!(
        host_ports_by_node(&control, "hostecho", 81),
        vec![(
            82,
            vec![
                (Protocol::Tcp, published.into(), target.into()),
                (Protocol::Udp, published.into(), target.into())
            ]
        )],
        "the task reports its ports"
    );
    let dynamic = host_ports_by_node(&control, "dynecho", 81);
    assert_eq!(dynamic.len(), 1);
    let (node, ports) = &dynamic[0];
    assert_eq!(*node, 83);
    let [(Protocol::Tcp, picked, t)] = ports[..] else {
        panic!("one TCP port reported: {ports:?}");
    };
    assert_eq!(t, u32::from(dyn_target));
    assert!(picked != 0 && picked != t, "a port picked: {picked}");
    let picked = picked as u16;

    let at = SocketAddr::new(ip(82), published);
    eventually_async(&format!("tcp answer on {at}"), async || {
        tcp_ask(at, "hello").await.ok().as_deref() == Some("hostecho-task:hello")
    })
    .await;
    eventually_async(&format!("udp answer on {at}"), async || {
        udp_ask(at, "ping").await.ok().as_deref() == Some("hostecho-task:ping")
    })
    .await;
    let at = SocketAddr::new(ip(83), picked);
    eventually_async(&format!("tcp answer on the picked {at}"), async || {
        tcp_ask(at, "hi").await.ok().as_deref() == Some("dynecho-task:hi")
    })
    .await;
    // Never forwarded: the nodes without a task refuse.
    for last in [81, 83] {
        let at = SocketAddr::new(ip(last), published);
        assert!(refused(at).await, "tcp {at} is refused");
        assert!(udp_ask(at, "ping").await.is_err(), "no udp answer on {at}");
    }
    for last in [81, 82] {
        let at = SocketAddr::new(ip(last), picked);
        assert!(refused(at).await, "tcp {at} is refused");
    }

    // Two replicas of one host port land on different nodes, and the port is
    // bound on those two only; a fourth replica on three nodes has nowhere to
    // go and stays pending with the scheduler's reason.
    let pair_port = 18014;
    let spec = host_mode(published_spec(
        "pair",
        2,
        vec!["/bin/sh".into(), "-c".into(), "sleep 600".into()],
        &[(Protocol::Tcp, pair_port, 18015)],
    ));
    control.create_service(spec).await.unwrap();
    eventually_async("two pair tasks running", async || {
        wanted_running(&control, "pair").len() == 2
    })
    .await;
    let placed: Vec<u8> = host_ports_by_node(&control, "pair", 81)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(placed.len(), 2);
    assert_ne!(placed[0], placed[1], "one per node");
    for last in [81, 82, 83] {
        let at = SocketAddr::new(ip(last), pair_port);
        if placed.contains(&last) {
            eventually_async(&format!("{at} bound"), async || {
                TcpStream::connect(at).await.is_ok()
            })
            .await;
        } else {
            assert!(refused(at).await, "{at} is refused");
        }
    }
    let s = control.inspect_service("pair").unwrap();
    let mut spec = s.spec.clone();
    spec.mode = ServiceMode::Replicated { replicas: 4 };
    control
        .update_service("pair", s.meta.version.index, spec)
        .await
        .unwrap();
    eventually_async("three running and one pending", async || {
        let tasks = tasks(&control, "pair");
        let pending: Vec<_> = tasks
            .iter()
            .filter(|t| t.status.state == TaskState::Pending)
            .collect();
        wanted_running(&control, "pair").len() == 3
            && pending.len() == 1
            && pending[0]
                .status
                .err
                .contains("host-mode port already in use on 3 nodes")
    })
    .await;

    // Removing the service frees its port on every node.
    control.remove_service("hostecho").await.unwrap();
    let at = SocketAddr::new(ip(82), published);
    eventually_async(&format!("{at} closed"), async || refused(at).await).await;
    for s in ["dynecho", "pair"] {
        control.remove_service(s).await.unwrap();
    }
    eventually_async("every task gone", async || {
        ["hostecho", "dynecho", "pair"]
            .iter()
            .all(|s| tasks(&control, s).is_empty())
    })
    .await;
    for n in nodes {
        n.shutdown().await;
    }
}

/// The host names (short container IDs, which busybox httpd serves) of the
/// wanted running tasks of `service`, and the nodes they run on.
fn task_hosts(control: &swarm::Control, service: &str) -> (BTreeSet<String>, BTreeSet<Id>) {
    let tasks = wanted_running(control, service);
    let hosts = tasks
        .iter()
        .filter_map(|t| t.status.container_status.as_ref())
        .map(|c| c.container_id.chars().take(12).collect())
        .collect();
    (hosts, tasks.iter().map(|t| t.node_id.clone()).collect())
}

/// Sets the replicas of `service`.
async fn scale(control: &swarm::Control, service: &str, replicas: u64) {
    let s = control.inspect_service(service).unwrap();
    let mut spec = s.spec.clone();
    spec.mode = ServiceMode::Replicated { replicas };
    control
        .update_service(service, s.meta.version.index, spec)
        .await
        .unwrap();
}

/// Waits until `replicas` tasks run and every node's port is served by
/// exactly those tasks, none on `not_on`.
async fn served_by_running_tasks(
    control: &swarm::Control,
    service: &str,
    replicas: usize,
    ports: &[SocketAddr],
    not_on: Option<&Id>,
) {
    eventually_async(&format!("{replicas} tasks running"), async || {
        let (hosts, on) = task_hosts(control, service);
        hosts.len() == replicas && not_on.is_none_or(|n| !on.contains(n))
    })
    .await;
    let (hosts, _) = task_hosts(control, service);
    for &at in ports {
        eventually_async(
            &format!("{at} served by the {replicas} running tasks {hosts:?}"),
            async || answering(at, 3 * replicas).await == hosts,
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mesh_follows_drain_and_scaling() {
    let Some(docker_rt) = docker().await else {
        return;
    };
    common::remove_containers("swt-drain-web.");
    let _cleanup = RemoveContainers("swt-drain-web.");
    let dirs = [(); 3].map(|_| tempfile::tempdir().unwrap());
    let nodes = three_nodes(&dirs, 84, |_| {
        Arc::new(docker_rt.clone()) as Arc<dyn Runtime>
    })
    .await;
    let control = nodes[0].control().await.unwrap();
    let published = 18020;
    let mut spec = published_spec(
        "swt-drain-web",
        3,
        vec![
            "/bin/sh".into(),
            "-c".into(),
            "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www".into(),
        ],
        &[(Protocol::Tcp, published, 80)],
    );
    spec.task.container.image = IMAGE.into();
    control.create_service(spec).await.unwrap();
    let every_node: Vec<SocketAddr> = [84, 85, 86]
        .map(|last| SocketAddr::new(ip(last), published))
        .into();
    served_by_running_tasks(&control, "swt-drain-web", 3, &every_node, None).await;

    // Drain the node of one task: the task moves, the port still answers on
    // every node (the drained one too), served by the tasks elsewhere only.
    let drained = wanted_running(&control, "swt-drain-web")[0].node_id.clone();
    let n = control.inspect_node(drained.as_str()).unwrap();
    let mut ns = n.spec.clone();
    ns.availability = Availability::Drain;
    control
        .update_node(drained.as_str(), n.meta.version.index, ns)
        .await
        .unwrap();
    served_by_running_tasks(&control, "swt-drain-web", 3, &every_node, Some(&drained)).await;

    // Scaling: the backend set follows, 3 → 5 → 1.
    scale(&control, "swt-drain-web", 5).await;
    served_by_running_tasks(&control, "swt-drain-web", 5, &every_node, Some(&drained)).await;
    scale(&control, "swt-drain-web", 1).await;
    served_by_running_tasks(&control, "swt-drain-web", 1, &every_node, Some(&drained)).await;

    control.remove_service("swt-drain-web").await.unwrap();
    eventually_async("the containers gone", async || {
        tasks(&control, "swt-drain-web").is_empty() && containers("swt-drain-web.").is_empty()
    })
    .await;
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_mode_container_answers_on_its_node_with_the_port_it_reports() {
    let Some(docker_rt) = docker().await else {
        return;
    };
    common::remove_containers("swt-host-web.");
    let _cleanup = RemoveContainers("swt-host-web.");
    let dirs = [(); 3].map(|_| tempfile::tempdir().unwrap());
    let nodes = three_nodes(&dirs, 87, |_| {
        Arc::new(docker_rt.clone()) as Arc<dyn Runtime>
    })
    .await;
    let control = nodes[0].control().await.unwrap();
    let published = 18040;
    let mut spec = host_mode(published_spec(
        "swt-host-web",
        1,
        vec![
            "/bin/sh".into(),
            "-c".into(),
            "mkdir -p /www && hostname > /www/index.html && httpd -p 81 -h /www && exec httpd -f -p 80 -h /www".into(),
        ],
        &[(Protocol::Tcp, published, 80), (Protocol::Tcp, 0, 81)],
    ));
    spec.task.container.image = IMAGE.into();
    control
        .create_service(on_node(spec, "node2"))
        .await
        .unwrap();
    eventually_async("the web task running", async || {
        wanted_running(&control, "swt-host-web").len() == 1
    })
    .await;
    let reported = host_ports_by_node(&control, "swt-host-web", 87);
    let [(88, ref ports)] = reported[..] else {
        panic!("one task on node2: {reported:?}");
    };
    let [(Protocol::Tcp, p80, 80), (Protocol::Tcp, p81, 81)] = ports[..] else {
        panic!("both ports reported: {ports:?}");
    };
    assert_eq!(p80, u32::from(published));
    assert!(p81 != 0, "Docker picked a port");
    let (hosts, _) = task_hosts(&control, "swt-host-web");
    // Docker binds the host ports itself, on every address of this host (the
    // three test nodes share it): ask the task's node.
    for port in [p80, p81] {
        let at = SocketAddr::new(ip(88), port as u16);
        eventually_async(&format!("the task answers on {at}"), async || {
            answering(at, 1).await == hosts
        })
        .await;
    }
    control.remove_service("swt-host-web").await.unwrap();
    eventually_async("the containers gone", async || {
        tasks(&control, "swt-host-web").is_empty() && containers("swt-host-web.").is_empty()
    })
    .await;
    for n in nodes {
        n.shutdown().await;
    }
}
