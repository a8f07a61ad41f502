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

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use swarm::core::types::*;
use swarm::ingress::RoutingMeshConfig;
use swarm::runtime::{DockerRuntime, ProcessRuntime, Runtime};
use swarm::{ManagerConfig, Node};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

mod common;
use common::{RemoveContainers, TEST_IMAGE as IMAGE, containers, eventually_async, wanted_running};

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

fn config(dir: &std::path::Path, name: &str, addr: IpAddr, rt: Arc<dyn Runtime>) -> ManagerConfig {
    ManagerConfig::new(dir, format!("{addr}:0"))
        .hostname(name)
        .runtime(rt)
        .tick_interval(Duration::from_millis(20))
        .routing_mesh(RoutingMeshConfig::new(addr, addr))
}

/// A manager and two workers on 127.0.0.{base, base+1, base+2}, each with
/// its own runtime from `runtime`.
async fn three_nodes(
    dirs: &[tempfile::TempDir; 3],
    base: u8,
    runtime: impl Fn(&std::path::Path) -> Arc<dyn Runtime>,
) -> Vec<Node> {
    let m = Node::start(config(
        dirs[0].path(),
        "node1",
        ip(base),
        runtime(dirs[0].path()),
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
        let cfg = config(dir, &name, ip(base + i), runtime(dir));
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
    let mut spec = common::sleep_spec(name, replicas);
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
        common::tasks(&control, "swt-mesh-web").is_empty() && containers("swt-mesh-web.").is_empty()
    })
    .await;
    for n in nodes {
        n.shutdown().await;
    }
}
