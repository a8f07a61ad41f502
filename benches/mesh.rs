//! The ingress routing mesh (`swarm_net::mesh`) against a direct connection to
//! one backend and against HAProxy (`mode tcp`, roundrobin) in front of the
//! same backends, in one run: bulk TCP throughput, new connections per second
//! (connect + one small request/response + close), latency of a small request
//! on an established connection, UDP request/response packets per second. The
//! mesh is measured on its kernel path (nftables DNAT, when root) and in user
//! space (splice(2) and tokio's copy).
//!
//! `cargo bench --bench mesh`; with `-- --test` a small run (a few seconds).
//! HAProxy rows are skipped, with the reason printed, when `haproxy` is not
//! installed (Debian package `haproxy`); kernel rows and the "hosts" set-up
//! when not root.
//!
//! Two set-ups, each with its own table:
//! - loopback (in a network namespace of its own when root): backends on
//!   127.0.0.1; node a publishes twice, kernel path on 127.0.0.51 and user
//!   space on 127.0.0.54, a TCP and a UDP port over two local backends, and a
//!   TCP and a UDP port whose only task runs on node b (127.0.0.52), reached
//!   through b's peer listener (user space on both paths: no local backend).
//! - hosts: three namespaces joined by veth pairs, as three machines: the
//!   client (10.202.1.2), the mesh node a (10.202.1.1 kernel path, .3 user
//!   space, .4 HAProxy; it routes between its two links) and the backends'
//!   host (10.202.2.2), which is also node b. "direct" goes through node a as
//!   a plain router, so every row crosses the same two links. Every host sets
//!   `net.ipv4.tcp_tw_reuse=1`, as load generators and proxy hosts do (see `hosts`).
//!
//! Each mesh node and the backends run on their own tokio runtime, the clients
//! on plain threads with blocking sockets; everything shares the machine's cores.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use swarm_net::mesh::{
    Backend, IngressView, KernelPath, Mesh, MeshConfig, Protocol, PublishedPort, Target,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Sizes {
    bulk_per_conn: u64,
    bulk_conns: usize,
    new_conns: usize,
    conn_threads: usize,
    latency_iters: usize,
    udp_packets: usize,
    udp_threads: usize,
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn free_port(ip: IpAddr) -> u16 {
    loop {
        let t = std::net::TcpListener::bind((ip, 0)).expect("bind");
        let port = t.local_addr().expect("addr").port();
        if UdpSocket::bind((ip, port)).is_ok() {
            return port;
        }
    }
}

/// A backend: the first byte says the mode: `S` reads to EOF then answers the
/// byte count (8 bytes, big endian); anything else echoes every byte after it.
async fn tcp_backend(l: tokio::net::TcpListener) {
    while let Ok((mut s, _)) = l.accept().await {
        let _ = s.set_nodelay(true);
        tokio::spawn(async move {
            let mut mode = [0u8; 1];
            if s.read_exact(&mut mode).await.is_err() {
                return;
            }
            if mode[0] == b'S' {
                let mut buf = vec![0u8; 256 << 10];
                let mut n = 0u64;
                while let Ok(m) = s.read(&mut buf).await {
                    if m == 0 {
                        break;
                    }
                    n += m as u64;
                }
                let _ = s.write_all(&n.to_be_bytes()).await;
            } else {
                let mut buf = [0u8; 4096];
                while let Ok(m) = s.read(&mut buf).await {
                    if m == 0 || s.write_all(&buf[..m]).await.is_err() {
                        return;
                    }
                }
            }
        });
    }
}

async fn udp_backend(s: tokio::net::UdpSocket) {
    let mut buf = [0u8; 2048];
    while let Ok((n, from)) = s.recv_from(&mut buf).await {
        let _ = s.send_to(&buf[..n], from).await;
    }
}

fn connect(to: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(to).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s
}

/// Time of `bulk_conns` parallel transfers of `per_conn` bytes each.
fn bulk(to: SocketAddr, sz: &Sizes, per_conn: u64) -> Duration {
    let start = Instant::now();
    let threads: Vec<_> = (0..sz.bulk_conns)
        .map(|_| {
            std::thread::spawn(move || {
                let mut s = connect(to);
                s.write_all(b"S").expect("mode");
                let buf = vec![0x5au8; 256 << 10];
                let mut left = per_conn;
                while left > 0 {
                    let n = left.min(buf.len() as u64) as usize;
                    s.write_all(&buf[..n]).expect("write");
                    left -= n as u64;
                }
                s.shutdown(Shutdown::Write).expect("shutdown");
                let mut count = [0u8; 8];
                s.read_exact(&mut count).expect("count");
                assert_eq!(u64::from_be_bytes(count), per_conn, "bytes lost");
            })
        })
        .collect();
    for t in threads {
        t.join().expect("bulk thread");
    }
    start.elapsed()
}

/// Time of `n` new connections: connect, 32-byte request and response, close.
fn new_conns(to: SocketAddr, sz: &Sizes, n: usize) -> Duration {
    let left = Arc::new(AtomicUsize::new(n));
    let start = Instant::now();
    let threads: Vec<_> = (0..sz.conn_threads)
        .map(|_| {
            let left = left.clone();
            std::thread::spawn(move || {
                let req = [b'E'; 32];
                let mut resp = [0u8; 31];
                while left
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
                {
                    let mut s = connect(to);
                    s.write_all(&req).expect("request");
                    s.read_exact(&mut resp).expect("response");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("conn thread");
    }
    start.elapsed()
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// p50 and p99 of a 64-byte request/response on one established connection
/// per target. The targets take turns in short rounds, so a burst of load from
/// other processes on the machine falls on all of them alike.
fn latencies(conns: &mut [TcpStream], sz: &Sizes) -> Vec<(Duration, Duration)> {
    let req = [7u8; 64];
    let mut resp = [0u8; 64];
    let mut rtt = |s: &mut TcpStream| {
        let t = Instant::now();
        s.write_all(&req).expect("request");
        s.read_exact(&mut resp).expect("response");
        t.elapsed()
    };
    for s in conns.iter_mut() {
        for _ in 0..100 {
            rtt(s);
        }
    }
    let rounds = 20;
    let per = sz.latency_iters.div_ceil(rounds);
    let mut times = vec![Vec::with_capacity(per * rounds); conns.len()];
    for _ in 0..rounds {
        for (i, s) in conns.iter_mut().enumerate() {
            for _ in 0..per {
                times[i].push(rtt(s));
            }
        }
    }
    times
        .iter_mut()
        .map(|t| (percentile(t, 0.5), percentile(t, 0.99)))
        .collect()
}

/// UDP request/response datagrams (64 bytes) per second, several clients.
fn udp_pps(to: SocketAddr, sz: &Sizes) -> (f64, usize) {
    let lost = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let per = sz.udp_packets / sz.udp_threads;
    let threads: Vec<_> = (0..sz.udp_threads)
        .map(|_| {
            let lost = lost.clone();
            std::thread::spawn(move || {
                let s = UdpSocket::bind("0.0.0.0:0").expect("udp bind");
                s.connect(to).expect("udp connect");
                s.set_read_timeout(Some(Duration::from_millis(200)))
                    .expect("timeout");
                let mut buf = [0u8; 128];
                for _ in 0..per {
                    s.send(&[9u8; 64]).expect("udp send");
                    if s.recv(&mut buf).is_err() {
                        lost.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("udp thread");
    }
    let n = per * sz.udp_threads;
    (
        n as f64 / start.elapsed().as_secs_f64(),
        lost.load(Ordering::Relaxed),
    )
}

fn start_haproxy(
    listen: SocketAddr,
    backends: &[SocketAddr],
    dir: &std::path::Path,
) -> Result<Child, String> {
    let servers: String = backends
        .iter()
        .enumerate()
        .map(|(i, b)| format!("    server b{i} {b}\n"))
        .collect();
    let config = format!(
        "global\n    maxconn 4000\n    nbthread 2\n\ndefaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n\nfrontend fe\n    bind {listen}\n    default_backend be\n\nbackend be\n    balance roundrobin\n{servers}"
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, config).map_err(|e| format!("cannot write its config: {e}"))?;
    let mut child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("haproxy not runnable ({e}); install the Debian package `haproxy`"))?;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if TcpStream::connect(listen).is_ok() {
            return Ok(child);
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            return Err(format!(
                "haproxy exited at start ({status}): {}",
                err.trim()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    Err("haproxy did not listen within 5 s".into())
}

struct Row {
    name: String,
    mib_s: f64,
    conns: f64,
    lat: (Duration, Duration),
    udp: Option<(f64, usize)>,
}

/// One path through which clients reach the backends.
struct Path {
    name: String,
    tcp: SocketAddr,
    udp: Option<SocketAddr>,
    /// For a user-space mesh: splice (true) or tokio copy (false), set before each use.
    zero_copy: Option<(Mesh, bool)>,
}

fn runtime(name: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("runtime")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn sh(cmd: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `f` on a thread inside the named network namespace (`None`: here).
/// Threads and processes it starts stay there, and so do its sockets.
fn in_ns<R: Send>(ns: Option<&str>, f: impl FnOnce() -> R + Send) -> R {
    let Some(ns) = ns else {
        return f();
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::File::open(format!("/run/netns/{ns}")).expect("netns file");
            // SAFETY: setns on an open namespace file for this thread only.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("namespace thread")
    })
}

/// Moves the calling thread (and what it starts later) to a new network
/// namespace with loopback up: the loopback rows and their nftables rules stay
/// away from the rest of the machine.
fn private_namespace() -> Result<(), String> {
    // SAFETY: unshare of the network namespace affects this thread only.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(format!("unshare: {}", std::io::Error::last_os_error()));
    }
    sh("ip", &["link", "set", "lo", "up"])
}

/// The named namespaces of the hosts set-up; deleted on drop.
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = sh("ip", &["netns", "del", ns]);
        }
    }
}

/// A mesh node on its own runtime, in its namespace.
struct Node {
    ns: Option<String>,
    rt: tokio::runtime::Runtime,
    mesh: Mesh,
}

impl Node {
    fn start(ns: Option<&str>, name: &str, config: MeshConfig) -> Result<Node, String> {
        in_ns(ns, || {
            let rt = runtime(name);
            let mesh = rt
                .block_on(Mesh::start(config))
                .map_err(|e| e.to_string())?;
            Ok(Node {
                ns: ns.map(str::to_owned),
                rt,
                mesh,
            })
        })
    }

    fn apply(&self, view: IngressView) {
        let errors = in_ns(self.ns.as_deref(), || self.mesh.apply(view));
        assert!(errors.is_empty(), "{errors:?}");
    }

    fn stop(self) {
        let ns = self.ns.clone();
        in_ns(ns.as_deref(), move || {
            self.rt.block_on(self.mesh.shutdown());
            drop(self);
        });
    }
}

struct Backends {
    _rt: tokio::runtime::Runtime,
    tcp: [SocketAddr; 2],
    udp: [SocketAddr; 2],
}

fn backends(ns: Option<&str>, ip: IpAddr) -> Backends {
    in_ns(ns, || {
        let rt = runtime("backends");
        let (tcp, udp) = rt.block_on(async {
            let mut tcp = Vec::new();
            let mut udp = Vec::new();
            for _ in 0..2 {
                let l = tokio::net::TcpListener::bind((ip, 0))
                    .await
                    .expect("backend");
                tcp.push(l.local_addr().expect("addr"));
                tokio::spawn(tcp_backend(l));
                let u = tokio::net::UdpSocket::bind((ip, 0))
                    .await
                    .expect("udp backend");
                udp.push(u.local_addr().expect("addr"));
                tokio::spawn(udp_backend(u));
            }
            (tcp, udp)
        });
        Backends {
            _rt: rt,
            tcp: [tcp[0], tcp[1]],
            udp: [udp[0], udp[1]],
        }
    })
}

fn config(ingress: IpAddr, peer: IpAddr, kernel: KernelPath) -> MeshConfig {
    let mut c = MeshConfig::new(ingress, SocketAddr::new(peer, 0));
    c.kernel = kernel;
    c
}

fn backend(id: &str, target: Target) -> Backend {
    Backend {
        task_id: id.into(),
        target,
        draining_until: None,
    }
}

fn published(protocol: Protocol, port: u16, backends: Vec<Backend>) -> PublishedPort {
    PublishedPort {
        protocol,
        published_port: port,
        target_port: 80,
        proxy_protocol: false,
        backends,
    }
}

/// Node a's view: a TCP and a UDP port on `local` over both backends, and a
/// TCP and a UDP port on `remote` whose task runs on node b.
fn view_a(local: u16, remote: u16, be: &Backends, b: SocketAddr) -> IngressView {
    let to_b = Target::Remote { peer: b };
    IngressView {
        ports: vec![
            published(
                Protocol::Tcp,
                local,
                vec![
                    backend("t1", Target::Local(be.tcp[0])),
                    backend("t2", Target::Local(be.tcp[1])),
                ],
            ),
            published(
                Protocol::Udp,
                local,
                vec![
                    backend("u1", Target::Local(be.udp[0])),
                    backend("u2", Target::Local(be.udp[1])),
                ],
            ),
            published(Protocol::Tcp, remote, vec![backend("t1", to_b)]),
            published(Protocol::Udp, remote, vec![backend("u1", to_b)]),
        ],
    }
}

/// Node b's view: the remote port's task runs there.
fn view_b(remote: u16, be: &Backends) -> IngressView {
    IngressView {
        ports: vec![
            published(
                Protocol::Tcp,
                remote,
                vec![backend("t1", Target::Local(be.tcp[0]))],
            ),
            published(
                Protocol::Udp,
                remote,
                vec![backend("u1", Target::Local(be.udp[0]))],
            ),
        ],
    }
}

/// One set-up: where the clients run, the paths they measure, what to stop.
struct Scenario {
    title: &'static str,
    client_ns: Option<String>,
    paths: Vec<Path>,
    haproxy: Option<Child>,
    nodes: Vec<Node>,
    _backends: Vec<Backends>,
    _namespaces: Option<Namespaces>,
    _dir: tempfile::TempDir,
}

impl Scenario {
    fn stop(mut self) {
        if let Some(child) = self.haproxy.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for node in self.nodes.drain(..) {
            node.stop();
        }
    }
}

/// Paths common to both set-ups, in table order, plus HAProxy when it runs.
#[allow(clippy::too_many_arguments)]
fn paths(
    direct: (SocketAddr, SocketAddr),
    kernel: Option<SocketAddr>,
    user: &Node,
    user_local: SocketAddr,
    user_remote: SocketAddr,
    haproxy: Option<SocketAddr>,
) -> Vec<Path> {
    let mut v = vec![Path {
        name: "direct (one backend)".into(),
        tcp: direct.0,
        udp: Some(direct.1),
        zero_copy: None,
    }];
    if let Some(k) = kernel {
        v.push(Path {
            name: "mesh kernel (nftables), 2 local backends".into(),
            tcp: k,
            udp: Some(k),
            zero_copy: None,
        });
    }
    v.push(Path {
        name: "mesh user space, 2 local, splice (adaptive)".into(),
        tcp: user_local,
        udp: Some(user_local),
        zero_copy: Some((user.mesh.clone(), true)),
    });
    v.push(Path {
        name: "mesh user space, 2 local, tokio copy".into(),
        tcp: user_local,
        udp: None,
        zero_copy: Some((user.mesh.clone(), false)),
    });
    v.push(Path {
        name: "mesh remote hand-over (a→b), splice".into(),
        tcp: user_remote,
        udp: Some(user_remote),
        zero_copy: Some((user.mesh.clone(), true)),
    });
    if let Some(h) = haproxy {
        v.push(Path {
            name: "haproxy mode tcp, roundrobin, 2 backends".into(),
            tcp: h,
            udp: None,
            zero_copy: None,
        });
    }
    v
}

fn haproxy_in(
    ns: Option<&str>,
    listen: SocketAddr,
    be: &Backends,
    dir: &std::path::Path,
) -> Option<Child> {
    match in_ns(ns, || start_haproxy(listen, &be.tcp, dir)) {
        Ok(child) => Some(child),
        Err(reason) => {
            println!("haproxy rows skipped: {reason}");
            None
        }
    }
}

fn loopback(root: bool) -> Scenario {
    let be = backends(None, ip("127.0.0.1"));
    let (k_ip, u_ip, b_ip) = (ip("127.0.0.51"), ip("127.0.0.54"), ip("127.0.0.52"));
    let kernel = root.then(|| {
        Node::start(
            None,
            "mesh-a-kernel",
            config(k_ip, k_ip, KernelPath::Require),
        )
        .expect("mesh a (kernel path)")
    });
    let user =
        Node::start(None, "mesh-a-user", config(u_ip, u_ip, KernelPath::Off)).expect("mesh a");
    let b = Node::start(None, "mesh-b", config(b_ip, b_ip, KernelPath::Off)).expect("mesh b");
    b.mesh.set_peers(HashSet::from([k_ip, u_ip]));
    let (local, remote) = (free_port(u_ip), free_port(u_ip));
    let mut nodes = Vec::new();
    let kernel_addr = kernel.map(|k| {
        let port = free_port(k_ip);
        k.apply(view_a(port, free_port(k_ip), &be, b.mesh.peer_addr()));
        nodes.push(k);
        SocketAddr::new(k_ip, port)
    });
    user.apply(view_a(local, remote, &be, b.mesh.peer_addr()));
    b.apply(view_b(remote, &be));
    let dir = tempfile::tempdir().expect("temp dir");
    let ha_addr = SocketAddr::new(ip("127.0.0.53"), free_port(ip("127.0.0.53")));
    let haproxy = haproxy_in(None, ha_addr, &be, dir.path());
    let paths = paths(
        (be.tcp[0], be.udp[0]),
        kernel_addr,
        &user,
        SocketAddr::new(u_ip, local),
        SocketAddr::new(u_ip, remote),
        haproxy.is_some().then_some(ha_addr),
    );
    nodes.push(user);
    nodes.push(b);
    Scenario {
        title: "loopback",
        client_ns: None,
        paths,
        haproxy,
        nodes,
        _backends: vec![be],
        _namespaces: None,
        _dir: dir,
    }
}

fn hosts() -> Result<Scenario, String> {
    let pid = std::process::id();
    let names: Vec<String> = ["c", "m", "t"]
        .iter()
        .map(|n| format!("swm1-b{pid}-{n}"))
        .collect();
    let (c, m, t) = (names[0].clone(), names[1].clone(), names[2].clone());
    for ns in &names {
        sh("ip", &["netns", "add", ns])?;
    }
    let namespaces = Namespaces(names);
    let ipn = |ns: &str, args: &[&str]| {
        let mut all = vec!["-n", ns];
        all.extend_from_slice(args);
        sh("ip", &all)
    };
    ipn(
        &m,
        &[
            "link", "add", "swm1c", "type", "veth", "peer", "name", "swm1m", "netns", &c,
        ],
    )?;
    ipn(
        &m,
        &[
            "link", "add", "swm1t", "type", "veth", "peer", "name", "swm1m", "netns", &t,
        ],
    )?;
    for a in ["10.202.1.1/24", "10.202.1.3/24", "10.202.1.4/24"] {
        ipn(&m, &["addr", "add", a, "dev", "swm1c"])?;
    }
    for a in ["10.202.2.1/24", "10.202.2.3/24"] {
        ipn(&m, &["addr", "add", a, "dev", "swm1t"])?;
    }
    ipn(&c, &["addr", "add", "10.202.1.2/24", "dev", "swm1m"])?;
    ipn(&t, &["addr", "add", "10.202.2.2/24", "dev", "swm1m"])?;
    for (ns, dev) in [(&m, "swm1c"), (&m, "swm1t"), (&c, "swm1m"), (&t, "swm1m")] {
        ipn(ns, &["link", "set", dev, "up"])?;
    }
    for ns in [&c, &m, &t] {
        ipn(ns, &["link", "set", "lo", "up"])?;
    }
    ipn(&c, &["route", "add", "default", "via", "10.202.1.1"])?;
    ipn(&t, &["route", "add", "default", "via", "10.202.2.1"])?;
    sh(
        "ip",
        &[
            "netns",
            "exec",
            &m,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ],
    )?;
    // Tens of thousands of connections a minute to one address leave as many
    // in TIME_WAIT on the side that closes first (the client; a proxy towards
    // its backends); Linux reuses them only on loopback by default, and past
    // ~20k the search for a free source port caps a host at ~2-3k conn/s.
    // Load generators and proxy hosts turn reuse on: so does every host here.
    for ns in [&c, &m, &t] {
        sh(
            "ip",
            &[
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                "net.ipv4.tcp_tw_reuse=1",
            ],
        )?;
    }

    let be = backends(Some(&t), ip("10.202.2.2"));
    let (k_ip, k_peer) = (ip("10.202.1.1"), ip("10.202.2.1"));
    let (u_ip, u_peer) = (ip("10.202.1.3"), ip("10.202.2.3"));
    let b_ip = ip("10.202.2.2");
    let kernel = Node::start(
        Some(&m),
        "mesh-a-kernel",
        config(k_ip, k_peer, KernelPath::Require),
    )?;
    let user = Node::start(
        Some(&m),
        "mesh-a-user",
        config(u_ip, u_peer, KernelPath::Off),
    )?;
    let b = Node::start(Some(&t), "mesh-b", config(b_ip, b_ip, KernelPath::Off))?;
    b.mesh.set_peers(HashSet::from([k_peer, u_peer]));
    // Ports are free on fresh namespaces; one set for every node.
    let (local, remote) = (18080, 18081);
    kernel.apply(view_a(local, remote, &be, b.mesh.peer_addr()));
    user.apply(view_a(local, remote, &be, b.mesh.peer_addr()));
    b.apply(view_b(remote, &be));
    let dir = tempfile::tempdir().expect("temp dir");
    let ha_addr = SocketAddr::new(ip("10.202.1.4"), local);
    let haproxy = haproxy_in(Some(&m), ha_addr, &be, dir.path());
    let paths = paths(
        (be.tcp[0], be.udp[0]),
        Some(SocketAddr::new(k_ip, local)),
        &user,
        SocketAddr::new(u_ip, local),
        SocketAddr::new(u_ip, remote),
        haproxy.is_some().then_some(ha_addr),
    );
    Ok(Scenario {
        title: "hosts (client, mesh node, backends in 3 namespaces joined by veth)",
        client_ns: Some(c),
        paths,
        haproxy,
        nodes: vec![kernel, user, b],
        _backends: vec![be],
        _namespaces: Some(namespaces),
        _dir: dir,
    })
}

/// Measures every path of a set-up, the paths taking turns in rounds.
fn measure(scn: &Scenario, sz: &Sizes) -> Vec<Row> {
    let use_path = |p: &Path| {
        if let Some((mesh, z)) = &p.zero_copy {
            mesh.set_zero_copy(*z);
        }
    };
    in_ns(scn.client_ns.as_deref(), || {
        // Like the latency, in rounds where the paths take turns.
        let rounds = 4;
        let per_conn = sz.bulk_per_conn / rounds as u64;
        let conns_per_round = sz.new_conns / rounds;
        let mut times = vec![(Duration::ZERO, Duration::ZERO); scn.paths.len()];
        for round in 0..rounds {
            for (p, t) in scn.paths.iter().zip(times.iter_mut()) {
                use_path(p);
                t.0 += bulk(p.tcp, sz, per_conn);
                t.1 += new_conns(p.tcp, sz, conns_per_round);
            }
            eprintln!(
                "{}: bulk and new connections: round {} of {rounds} done",
                scn.title,
                round + 1
            );
        }
        let mib = (per_conn * rounds as u64 * sz.bulk_conns as u64) as f64 / (1 << 20) as f64;
        let throughput = times.iter().map(|(b, c)| {
            (
                mib / b.as_secs_f64(),
                (conns_per_round * rounds) as f64 / c.as_secs_f64(),
            )
        });
        let mut conns: Vec<TcpStream> = scn
            .paths
            .iter()
            .map(|p| {
                use_path(p);
                let mut s = connect(p.tcp);
                s.write_all(b"E").expect("mode");
                s
            })
            .collect();
        let lat = latencies(&mut conns, sz);
        drop(conns);
        scn.paths
            .iter()
            .zip(throughput)
            .zip(lat)
            .map(|((p, (mib_s, conns)), lat)| {
                use_path(p);
                Row {
                    name: p.name.clone(),
                    mib_s,
                    conns,
                    lat,
                    udp: p.udp.map(|u| udp_pps(u, sz)),
                }
            })
            .collect()
    })
}

fn print(title: &str, rows: &[Row]) {
    let direct = &rows[0];
    let (d_mib, (d50, d99)) = (direct.mib_s, direct.lat);
    println!("\n{title}");
    println!(
        "{:<50} {:>10} {:>8} {:>10} {:>9} {:>9} {:>10} {:>10} {:>10}",
        "path", "MiB/s", "% direct", "conn/s", "p50 µs", "p99 µs", "+p50 µs", "+p99 µs", "udp pps"
    );
    for r in rows {
        let (p50, p99) = r.lat;
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        println!(
            "{:<50} {:>10.0} {:>7.0}% {:>10.0} {:>9.1} {:>9.1} {:>10.1} {:>10.1} {:>10}",
            r.name,
            r.mib_s,
            100.0 * r.mib_s / d_mib,
            r.conns,
            us(p50),
            us(p99),
            us(p50) - us(d50),
            us(p99) - us(d99),
            r.udp
                .map(|(pps, lost)| if lost > 0 {
                    format!("{pps:.0} ({lost} lost)")
                } else {
                    format!("{pps:.0}")
                })
                .unwrap_or_else(|| "—".into()),
        );
    }
}

fn main() {
    let test = std::env::args().any(|a| a == "--test");
    let sz = if test {
        Sizes {
            bulk_per_conn: 4 << 20,
            bulk_conns: 4,
            new_conns: 200,
            conn_threads: 4,
            latency_iters: 200,
            udp_packets: 400,
            udp_threads: 4,
        }
    } else {
        Sizes {
            bulk_per_conn: 256 << 20, // 1 GiB over 4 connections
            bulk_conns: 4,
            new_conns: 10_000,
            conn_threads: 8,
            latency_iters: 20_000,
            udp_packets: 100_000,
            udp_threads: 4,
        }
    };
    let root = is_root();
    if root {
        private_namespace().expect("a network namespace for the loopback rows");
    } else {
        println!("not root: kernel-path rows and the hosts set-up skipped");
    }
    let mut tables = Vec::new();
    let scn = loopback(root);
    tables.push((scn.title, measure(&scn, &sz)));
    scn.stop();
    if root {
        match hosts() {
            Ok(scn) => {
                tables.push((scn.title, measure(&scn, &sz)));
                scn.stop();
            }
            Err(reason) => println!("hosts set-up skipped: {reason}"),
        }
    }
    for (title, rows) in &tables {
        print(title, rows);
    }
    println!(
        "\nsizes: bulk {} × {} MiB, {} new connections over {} threads, {} latency samples, {} udp requests over {} sockets",
        sz.bulk_conns,
        sz.bulk_per_conn >> 20,
        sz.new_conns,
        sz.conn_threads,
        sz.latency_iters,
        sz.udp_packets,
        sz.udp_threads
    );
}
