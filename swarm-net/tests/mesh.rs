//! The routing mesh over real sockets on loopback: nodes are Mesh instances
//! on their own 127.x addresses, tasks are small TCP/UDP servers that answer
//! with their name and the client address they see.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use swarm_core::testing::Patience;
use swarm_net::mesh::{
    Backend, IngressView, KernelPath, Mesh, MeshConfig, MeshError, NftError, PortError, Protocol,
    PublishedPort, Target, header,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A port free on `ip` for both TCP and UDP right now.
fn free_port(ip: IpAddr) -> u16 {
    loop {
        let t = std::net::TcpListener::bind((ip, 0)).unwrap();
        let port = t.local_addr().unwrap().port();
        if std::net::UdpSocket::bind((ip, port)).is_ok() {
            return port;
        }
    }
}

/// A TCP task: for each line it reads, answers "<name> <client>", where the
/// client is taken from a PROXY v2 header when `proxy` is set.
async fn tcp_task(name: &'static str, proxy: bool) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, peer)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut client = peer;
                if proxy {
                    let mut buf = vec![0u8; header::FIXED_LEN];
                    s.read_exact(&mut buf).await.unwrap();
                    let len = header::body_len(&buf).unwrap();
                    buf.resize(header::FIXED_LEN + len, 0);
                    s.read_exact(&mut buf[header::FIXED_LEN..]).await.unwrap();
                    client = header::decode(&buf).unwrap().0.source;
                }
                let (r, mut w) = s.split();
                let mut lines = BufReader::new(r).lines();
                while let Ok(Some(_)) = lines.next_line().await {
                    if w.write_all(format!("{name} {client}\n").as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A UDP task: answers each datagram with "<name> <payload>".
async fn udp_task(name: &'static str) -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = s.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((n, from)) = s.recv_from(&mut buf).await {
            let msg = format!("{name} {}", String::from_utf8_lossy(&buf[..n]));
            let _ = s.send_to(msg.as_bytes(), from).await;
        }
    });
    addr
}

/// Connects (from `from` when given) and keeps the connection for more questions.
async fn open(to: SocketAddr, from: Option<IpAddr>) -> io::Result<BufReader<TcpStream>> {
    let s = TcpSocket::new_v4()?;
    if let Some(ip) = from {
        s.bind(SocketAddr::new(ip, 0))?;
    }
    Ok(BufReader::new(s.connect(to).await?))
}

/// One question on an open connection: the answer line, or an error at EOF.
async fn ask_on(c: &mut BufReader<TcpStream>) -> io::Result<String> {
    c.get_mut().write_all(b"hello\n").await?;
    let mut line = String::new();
    let n = tokio::time::timeout(Duration::from_secs(10), c.read_line(&mut line))
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
    if n == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(line.trim_end().to_owned())
}

async fn ask(to: SocketAddr, from: Option<IpAddr>) -> io::Result<String> {
    ask_on(&mut open(to, from).await?).await
}

fn local(task: &str, addr: SocketAddr) -> Backend {
    Backend {
        task_id: task.into(),
        target: Target::Local(addr),
        draining_until: None,
    }
}

fn remote(task: &str, peer: SocketAddr) -> Backend {
    Backend {
        task_id: task.into(),
        target: Target::Remote { peer },
        draining_until: None,
    }
}

fn port(protocol: Protocol, published: u16, proxy: bool, backends: Vec<Backend>) -> PublishedPort {
    PublishedPort {
        protocol,
        published_port: published,
        target_port: 80,
        proxy_protocol: proxy,
        backends,
    }
}

async fn node(addr: &str) -> Mesh {
    let mut config = MeshConfig::new(ip(addr), SocketAddr::new(ip(addr), 0));
    config.udp_idle_timeout = Duration::from_millis(300);
    // The user-space path (tests/mesh_kernel.rs covers the kernel path).
    config.kernel = KernelPath::Off;
    Mesh::start(config).await.unwrap()
}

/// Waits (10 s at most) until `check` holds.
async fn eventually(what: &str, check: impl AsyncFnMut() -> bool) {
    Patience::within(Duration::from_secs(10))
        .until_async(what, check)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connections_are_balanced_over_three_local_tasks() {
    let mesh = node("127.0.0.21").await;
    let p = free_port(ip("127.0.0.21"));
    let tasks = [
        tcp_task("a", false).await,
        tcp_task("b", false).await,
        tcp_task("c", false).await,
    ];
    let backends = ["a", "b", "c"]
        .iter()
        .zip(tasks)
        .map(|(n, a)| local(n, a))
        .collect();
    assert!(
        mesh.apply(IngressView {
            ports: vec![port(Protocol::Tcp, p, false, backends)]
        })
        .is_empty()
    );
    for mode in [true, false] {
        mesh.set_zero_copy(mode);
        let mut seen: HashMap<String, usize> = HashMap::new();
        for _ in 0..9 {
            let answer = ask(SocketAddr::new(ip("127.0.0.21"), p), None)
                .await
                .unwrap();
            *seen
                .entry(answer.split(' ').next().unwrap().to_owned())
                .or_default() += 1;
        }
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert!(seen.values().all(|&n| n == 3), "round robin: {seen:?}");
    }
    mesh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_hand_over_reaches_a_task_on_the_other_node_with_the_client_address() {
    let (a, b) = (node("127.0.0.31").await, node("127.0.0.32").await);
    b.set_peers(HashSet::from([ip("127.0.0.31")]));
    let (p, q) = (free_port(ip("127.0.0.31")), free_port(ip("127.0.0.31")));
    let task = tcp_task("t", false).await;
    let proxied = tcp_task("tp", true).await;
    a.apply(IngressView {
        ports: vec![
            port(Protocol::Tcp, p, false, vec![remote("t", b.peer_addr())]),
            port(Protocol::Tcp, q, true, vec![remote("tp", b.peer_addr())]),
        ],
    });
    b.apply(IngressView {
        ports: vec![
            port(Protocol::Tcp, p, false, vec![local("t", task)]),
            port(Protocol::Tcp, q, true, vec![local("tp", proxied)]),
        ],
    });
    let answer = ask(SocketAddr::new(ip("127.0.0.31"), p), None)
        .await
        .unwrap();
    assert!(answer.starts_with("t "), "{answer}");
    // The task on node b learns the address of the client that reached node a.
    let mut c = open(SocketAddr::new(ip("127.0.0.31"), q), Some(ip("127.0.0.41")))
        .await
        .unwrap();
    let client = c.get_ref().local_addr().unwrap();
    assert_eq!(ask_on(&mut c).await.unwrap(), format!("tp {client}"));
    assert_eq!(a.open_count(Protocol::Tcp, q), 1);
    assert_eq!(b.open_count(Protocol::Tcp, q), 1);
    drop(c);

    // A task node b does not (yet) know: the client is closed, nothing served.
    a.apply(IngressView {
        ports: vec![port(
            Protocol::Tcp,
            p,
            false,
            vec![remote("unknown", b.peer_addr())],
        )],
    });
    assert!(
        ask(SocketAddr::new(ip("127.0.0.31"), p), None)
            .await
            .is_err()
    );
    // ... and with a second, known backend, the connection goes there instead.
    a.apply(IngressView {
        ports: vec![port(
            Protocol::Tcp,
            p,
            false,
            vec![remote("unknown", b.peer_addr()), remote("t", b.peer_addr())],
        )],
    });
    for _ in 0..2 {
        assert!(
            ask(SocketAddr::new(ip("127.0.0.31"), p), None)
                .await
                .unwrap()
                .starts_with("t ")
        );
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_listener_refuses_sources_that_are_not_swarm_nodes() {
    let (a, b) = (node("127.0.0.33").await, node("127.0.0.34").await);
    b.set_peers(HashSet::from([ip("127.0.0.99")]));
    let p = free_port(ip("127.0.0.33"));
    let task = tcp_task("t", false).await;
    a.apply(IngressView {
        ports: vec![port(
            Protocol::Tcp,
            p,
            false,
            vec![remote("t", b.peer_addr())],
        )],
    });
    b.apply(IngressView {
        ports: vec![port(Protocol::Tcp, p, false, vec![local("t", task)])],
    });
    let published = SocketAddr::new(ip("127.0.0.33"), p);
    assert!(
        ask(published, None).await.is_err(),
        "hand-over from 127.0.0.33 accepted"
    );
    b.set_peers(HashSet::from([ip("127.0.0.33")]));
    assert!(ask(published, None).await.unwrap().starts_with("t "));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_hand_over_headers_are_closed_and_the_peer_keeps_serving() {
    let b = node("127.0.0.35").await;
    b.set_peers(HashSet::from([ip("127.0.0.36")]));
    let p = free_port(ip("127.0.0.35"));
    let task = tcp_task("t", false).await;
    b.apply(IngressView {
        ports: vec![port(Protocol::Tcp, p, false, vec![local("t", task)])],
    });
    let client: SocketAddr = "10.1.2.3:4444".parse().unwrap();
    let dest: SocketAddr = "127.0.0.36:80".parse().unwrap();
    let good = header::encode(Protocol::Tcp, client, dest, Some(("t", p, 80)));
    let mut cases: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        vec![0; 16],
        good[..20].to_vec(),
        header::encode(Protocol::Tcp, client, dest, None),
        header::encode(Protocol::Tcp, client, dest, Some(("other-task", p, 80))),
        header::encode(Protocol::Tcp, client, dest, Some(("t", p, 81))),
        header::encode(Protocol::Tcp, client, dest, Some(("t", p + 1, 80))),
        header::encode(Protocol::Udp, client, dest, Some(("t", p, 80))),
    ];
    let mut huge = good.clone();
    huge[14] = 0xFF;
    cases.push(huge);
    for (i, case) in cases.iter().enumerate() {
        let s = TcpSocket::new_v4().unwrap();
        s.bind(SocketAddr::new(ip("127.0.0.36"), 0)).unwrap();
        let mut s = s.connect(b.peer_addr()).await.unwrap();
        s.write_all(case).await.unwrap();
        s.shutdown().await.unwrap(); // truncated headers end here
        let mut rest = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await;
        let ok = matches!(r, Ok(Ok(_)) | Ok(Err(_)));
        assert!(ok, "case {i}: connection left open");
        assert!(rest.is_empty() || rest == [1], "case {i}: served {rest:?}");
    }
    // The well-formed hand-over still works: ack 0, then the task answers.
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(ip("127.0.0.36"), 0)).unwrap();
    let mut s = s.connect(b.peer_addr()).await.unwrap();
    s.write_all(&good).await.unwrap();
    assert_eq!(s.read_u8().await.unwrap(), 0);
    let mut c = BufReader::new(s);
    assert!(ask_on(&mut c).await.unwrap().starts_with("t "));
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_flows_both_ways_local_and_remote_and_expire_when_idle() {
    let (a, b) = (node("127.0.0.37").await, node("127.0.0.38").await);
    b.set_peers(HashSet::from([ip("127.0.0.37")]));
    let (p, r) = (free_port(ip("127.0.0.37")), free_port(ip("127.0.0.37")));
    let (u1, u2) = (udp_task("u1").await, udp_task("u2").await);
    a.apply(IngressView {
        ports: vec![
            port(Protocol::Udp, p, false, vec![local("u1", u1)]),
            port(Protocol::Udp, r, false, vec![remote("u2", b.peer_addr())]),
        ],
    });
    b.apply(IngressView {
        ports: vec![port(Protocol::Udp, r, false, vec![local("u2", u2)])],
    });
    for (published, name) in [(p, "u1"), (r, "u2")] {
        let to = SocketAddr::new(ip("127.0.0.37"), published);
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut buf = [0u8; 256];
        for i in 0..3 {
            client
                .send_to(format!("ping{i}").as_bytes(), to)
                .await
                .unwrap();
            let (n, from) =
                tokio::time::timeout(Duration::from_secs(10), client.recv_from(&mut buf))
                    .await
                    .expect("udp reply")
                    .unwrap();
            assert_eq!(from, to, "the reply comes from the published port");
            assert_eq!(&buf[..n], format!("{name} ping{i}").as_bytes());
        }
        assert_eq!(
            a.open_count(Protocol::Udp, published),
            1,
            "one flow per client"
        );
        eventually("idle udp flow expired", async || {
            a.open_count(Protocol::Udp, published) == 0
        })
        .await;
    }
    eventually("peer-side flow expired", async || {
        b.open_count(Protocol::Udp, r) == 0
    })
    .await;

    // A backend that leaves the view loses its flows: the next datagram picks again.
    let to = SocketAddr::new(ip("127.0.0.37"), p);
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut buf = [0u8; 256];
    for (task, addr) in [("u1", u1), ("u2", u2)] {
        a.apply(IngressView {
            ports: vec![port(Protocol::Udp, p, false, vec![local(task, addr)])],
        });
        client.send_to(b"again", to).await.unwrap();
        let (n, _) = tokio::time::timeout(Duration::from_secs(10), client.recv_from(&mut buf))
            .await
            .expect("udp reply")
            .unwrap();
        assert_eq!(&buf[..n], format!("{task} again").as_bytes());
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_task_gets_no_new_connections_and_its_open_ones_close_at_the_deadline() {
    let mesh = node("127.0.0.22").await;
    let p = free_port(ip("127.0.0.22"));
    let (t1, t2) = (tcp_task("t1", false).await, tcp_task("t2", false).await);
    let published = SocketAddr::new(ip("127.0.0.22"), p);
    mesh.apply(IngressView {
        ports: vec![port(
            Protocol::Tcp,
            p,
            false,
            vec![local("t1", t1), local("t2", t2)],
        )],
    });
    let mut conns = HashMap::new();
    for _ in 0..2 {
        let mut c = open(published, None).await.unwrap();
        let name = ask_on(&mut c)
            .await
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .to_owned();
        conns.insert(name, c);
    }
    assert_eq!(conns.len(), 2);
    let mut draining = local("t1", t1);
    draining.draining_until = Some(Instant::now() + Duration::from_millis(300));
    mesh.apply(IngressView {
        ports: vec![port(
            Protocol::Tcp,
            p,
            false,
            vec![draining, local("t2", t2)],
        )],
    });
    for _ in 0..4 {
        assert!(
            ask(published, None).await.unwrap().starts_with("t2 "),
            "new connection to a draining task"
        );
    }
    let mut c1 = conns.remove("t1").unwrap();
    let mut c2 = conns.remove("t2").unwrap();
    let mut rest = Vec::new();
    let end = tokio::time::timeout(Duration::from_secs(10), c1.read_to_end(&mut rest)).await;
    assert!(
        end.is_ok(),
        "draining connection not closed after its deadline"
    );
    assert!(
        ask_on(&mut c2).await.unwrap().starts_with("t2 "),
        "active connection lost"
    );
    // A backend removed while active keeps its open connections.
    mesh.apply(IngressView {
        ports: vec![port(Protocol::Tcp, p, false, vec![local("t1", t1)])],
    });
    assert!(ask_on(&mut c2).await.unwrap().starts_with("t2 "));
    mesh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ports_follow_apply_and_a_port_in_use_is_reported_while_the_others_work() {
    let mesh = node("127.0.0.23").await;
    let task = tcp_task("t", false).await;
    let (busy, p) = (free_port(ip("127.0.0.23")), free_port(ip("127.0.0.23")));
    let _squatter = std::net::TcpListener::bind(("127.0.0.23", busy)).unwrap();
    let view = IngressView {
        ports: vec![
            port(Protocol::Tcp, busy, false, vec![local("t", task)]),
            port(Protocol::Tcp, p, false, vec![local("t", task)]),
            port(Protocol::Tcp, p, false, vec![local("t", task)]),
        ],
    };
    let errors = mesh.apply(view.clone());
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(matches!(&errors[0], PortError::Duplicate { port, .. } if *port == p));
    assert_eq!(errors[1].port(), busy);
    assert_eq!(
        errors[1].to_string(),
        format!("cannot listen on 127.0.0.23:{busy}/tcp: address in use")
    );
    let published = SocketAddr::new(ip("127.0.0.23"), p);
    assert!(ask(published, None).await.unwrap().starts_with("t "));
    // Idempotent: the same view again keeps the listener (and its connections).
    let mut c = open(published, None).await.unwrap();
    assert_eq!(mesh.apply(view).len(), 2);
    assert!(ask_on(&mut c).await.unwrap().starts_with("t "));
    // Removing the port closes its listener.
    assert!(mesh.apply(IngressView::default()).is_empty());
    eventually("listener closed", async || {
        TcpStream::connect(published).await.is_err()
    })
    .await;
    mesh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_v2_tells_a_local_task_the_client_address() {
    let mesh = node("127.0.0.24").await;
    let p = free_port(ip("127.0.0.24"));
    let task = tcp_task("t", true).await;
    mesh.apply(IngressView {
        ports: vec![port(Protocol::Tcp, p, true, vec![local("t", task)])],
    });
    let mut c = open(SocketAddr::new(ip("127.0.0.24"), p), Some(ip("127.0.0.42")))
        .await
        .unwrap();
    let client = c.get_ref().local_addr().unwrap();
    assert_eq!(ask_on(&mut c).await.unwrap(), format!("t {client}"));
    mesh.shutdown().await;
}

#[test]
fn start_outside_a_tokio_runtime_is_an_error() {
    let config = MeshConfig::new(ip("127.0.0.25"), SocketAddr::new(ip("127.0.0.25"), 0));
    let err = block_on_here(Mesh::start(config)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the routing mesh must start inside a tokio runtime"
    );
}

/// Polls a future to completion on this thread, outside any tokio runtime.
fn block_on_here<F: std::future::Future>(f: F) -> F::Output {
    use std::task::{Context, Poll, Waker};
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::yield_now();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_kernel_path_that_cannot_work_is_an_error_and_auto_falls_back_to_user_space() {
    let addr = ip("127.0.0.26");
    let mut config = MeshConfig::new(addr, SocketAddr::new(addr, 0));
    config.nft_table = Some("no spaces; allowed".into());
    config.kernel = KernelPath::Require;
    let err = Mesh::start(config.clone()).await.unwrap_err();
    assert!(
        matches!(err, MeshError::Kernel(NftError::BadTable(ref t)) if t == "no spaces; allowed"),
        "{err}"
    );

    // Auto: the same config serves every port in user space.
    config.kernel = KernelPath::Auto;
    let mesh = Mesh::start(config).await.unwrap();
    let t = tcp_task("t", false).await;
    // A port picked free can be taken by another test's socket before the mesh
    // binds it: pick again then (what is checked is the data path, not the port).
    let mut published = 0;
    for _ in 0..5 {
        published = free_port(addr);
        let errors = mesh.apply(IngressView {
            ports: vec![port(Protocol::Tcp, published, false, vec![local("t", t)])],
        });
        if errors.is_empty() {
            break;
        }
        eprintln!("port {published} not served, picking another: {errors:?}");
        published = 0;
    }
    assert_ne!(published, 0, "no port could be published");
    let mut c = open(SocketAddr::new(addr, published), None).await.unwrap();
    let answer = ask_on(&mut c).await.unwrap();
    // The task sees the mesh's own connection: user space.
    assert!(answer.starts_with("t 127.0.0.1:"), "{answer}");
    assert_eq!(mesh.open_count(Protocol::Tcp, published), 1);
    mesh.shutdown().await;
}
