//! The routing mesh's kernel data path (nftables NAT) between two network
//! namespaces joined by a veth pair: the mesh node ("m", 10.201.0.1, with its
//! local tasks on that address) and a client host ("c", 10.201.0.2). Each test
//! makes its own pair (`swm1-<pid>-<n>-m/c`), removed when it ends, passed or
//! not. Needs root and the `ip` and `nft` tools; skips with a reason otherwise.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};
use swarm_net::mesh::{
    Backend, IngressView, KernelPath, Mesh, MeshConfig, Protocol, PublishedPort, Target, header,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

const NODE: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 2);
const TIMEOUT: Duration = Duration::from_secs(5);

fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The namespaces of a test; deleted on drop.
struct Hosts {
    node: String,
    client: String,
    /// A third host behind the node (see `tasks_host`), when made.
    tasks: Option<String>,
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for ns in [Some(&self.node), Some(&self.client), self.tasks.as_ref()]
            .into_iter()
            .flatten()
        {
            let _ = run("ip", &["netns", "del", ns]);
        }
    }
}

const TASKS_HOST: Ipv4Addr = Ipv4Addr::new(10, 201, 1, 2);

/// Adds a host for tasks behind the node (10.201.1.2, routed through the
/// node's 10.201.1.1), as containers on a bridge are, and makes the node
/// filter forwarded traffic as Docker does: FORWARD policy drop, a
/// DOCKER-USER chain, established connections accepted.
fn tasks_host(h: &mut Hosts) -> Result<(), String> {
    run("iptables", &["--version"]).map_err(|e| format!("no iptables tool: {e}"))?;
    let t = h.node.replace("-m", "-t");
    run("ip", &["netns", "add", &t])?;
    h.tasks = Some(t.clone());
    let m = h.node.as_str();
    run(
        "ip",
        &[
            "-n", m, "link", "add", "swm1t", "type", "veth", "peer", "name", "swm1m", "netns", &t,
        ],
    )?;
    run(
        "ip",
        &["-n", m, "addr", "add", "10.201.1.1/24", "dev", "swm1t"],
    )?;
    run(
        "ip",
        &[
            "-n",
            &t,
            "addr",
            "add",
            &format!("{TASKS_HOST}/24"),
            "dev",
            "swm1m",
        ],
    )?;
    for (ns, dev) in [(m, "swm1t"), (t.as_str(), "swm1m"), (t.as_str(), "lo")] {
        run("ip", &["-n", ns, "link", "set", dev, "up"])?;
    }
    run(
        "ip",
        &["-n", &t, "route", "add", "default", "via", "10.201.1.1"],
    )?;
    let exec = |args: &[&str]| {
        let mut all = vec!["netns", "exec", m];
        all.extend_from_slice(args);
        run("ip", &all)
    };
    exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
    exec(&["iptables", "-w", "-N", "DOCKER-USER"])?;
    exec(&["iptables", "-w", "-P", "FORWARD", "DROP"])?;
    exec(&["iptables", "-w", "-A", "FORWARD", "-j", "DOCKER-USER"])?;
    exec(&[
        "iptables",
        "-w",
        "-A",
        "FORWARD",
        "-m",
        "conntrack",
        "--ctstate",
        "RELATED,ESTABLISHED",
        "-j",
        "ACCEPT",
    ])?;
    Ok(())
}

fn hosts() -> Result<Hosts, String> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    if !nix::unistd::geteuid().is_root() {
        return Err("not root".into());
    }
    run("nft", &["--version"]).map_err(|e| format!("no nft tool: {e}"))?;
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let hosts = Hosts {
        node: format!("swm1-{pid}-{n}-m"),
        client: format!("swm1-{pid}-{n}-c"),
        tasks: None,
    };
    let (m, c) = (hosts.node.as_str(), hosts.client.as_str());
    run("ip", &["netns", "add", m])?;
    run("ip", &["netns", "add", c])?;
    run(
        "ip",
        &[
            "-n", m, "link", "add", "swm1m", "type", "veth", "peer", "name", "swm1c", "netns", c,
        ],
    )?;
    for (ns, dev, addr) in [(m, "swm1m", NODE), (c, "swm1c", CLIENT)] {
        run(
            "ip",
            &["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev],
        )?;
        run("ip", &["-n", ns, "link", "set", dev, "up"])?;
        run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
    }
    Ok(hosts)
}

/// Runs `f` on a thread inside namespace `ns` (sockets it makes stay there).
fn in_ns<R: Send>(ns: &str, f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::File::open(format!("/run/netns/{ns}")).expect("netns file");
            setns(&file, CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .expect("namespace thread panicked")
    })
}

/// Runs an async test body on a runtime whose threads all live in `ns`.
fn run_in<F: Future<Output = ()>>(ns: &str, body: impl FnOnce() -> F + Send) {
    in_ns(ns, || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(body())
    })
}

/// `nft list tables` in `ns`.
fn tables(ns: &str) -> String {
    run("ip", &["netns", "exec", ns, "nft", "list", "tables"]).unwrap()
}

fn table(ns: &str, name: &str) -> String {
    run(
        "ip",
        &["netns", "exec", ns, "nft", "list", "table", "ip", name],
    )
    .unwrap()
}

/// A TCP task on the node's address: answers each line with "<name> <client>".
async fn tcp_task(name: &'static str) -> SocketAddr {
    let l = tokio::net::TcpListener::bind((NODE, 0)).await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, peer)) = l.accept().await {
            tokio::spawn(async move {
                let (r, mut w) = s.split();
                let mut lines = tokio::io::BufReader::new(r).lines();
                while let Ok(Some(_)) = lines.next_line().await {
                    let answer = format!("{name} {}\n", peer.ip());
                    if w.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A UDP task on the node's address: answers "<name> <client>".
async fn udp_task(name: &'static str) -> SocketAddr {
    let s = tokio::net::UdpSocket::bind((NODE, 0)).await.unwrap();
    let addr = s.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((_, from)) = s.recv_from(&mut buf).await {
            let _ = s
                .send_to(format!("{name} {}", from.ip()).as_bytes(), from)
                .await;
        }
    });
    addr
}

/// Another node's peer listener as the wire protocol defines it: reads the
/// hand-over header, acknowledges, then answers each line with
/// "remote <client in the header>".
async fn peer_node() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; header::FIXED_LEN];
                s.read_exact(&mut buf).await.unwrap();
                let len = header::body_len(&buf).unwrap();
                buf.resize(header::FIXED_LEN + len, 0);
                s.read_exact(&mut buf[header::FIXED_LEN..]).await.unwrap();
                let ho = header::decode(&buf).unwrap().0.hand_over().unwrap();
                s.write_all(&[0]).await.unwrap();
                let (r, mut w) = s.split();
                let mut lines = tokio::io::BufReader::new(r).lines();
                while let Ok(Some(_)) = lines.next_line().await {
                    let answer = format!("remote {}\n", ho.client.ip());
                    if w.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Another node's UDP peer listener: each datagram carries a hand-over
/// header; answers "remote <client in the header>" without one.
async fn udp_peer_node() -> SocketAddr {
    let s = tokio::net::UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let addr = s.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = s.recv_from(&mut buf).await {
            let ho = header::decode(&buf[..n]).unwrap().0.hand_over().unwrap();
            let _ = s
                .send_to(format!("remote {}", ho.client.ip()).as_bytes(), from)
                .await;
        }
    });
    addr
}

/// One datagram from a new socket of the client host; the answer.
fn udp_ask(client_ns: &str, published: u16) -> io::Result<String> {
    in_ns(client_ns, || {
        let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        s.set_read_timeout(Some(TIMEOUT))?;
        s.connect((NODE, published))?;
        s.send(b"hello")?;
        let mut buf = [0u8; 100];
        let n = s.recv(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    })
}

fn local(task: &str, addr: SocketAddr) -> Backend {
    Backend {
        task_id: task.into(),
        target: Target::Local(addr),
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

async fn mesh() -> Mesh {
    let mut config = MeshConfig::new(
        Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0),
    );
    config.kernel = KernelPath::Require;
    Mesh::start(config).await.unwrap()
}

/// A connection from the client host to the published port.
fn connect(client_ns: &str, published: u16) -> io::Result<BufReader<TcpStream>> {
    let to = SocketAddr::from((NODE, published));
    let s = in_ns(client_ns, || TcpStream::connect_timeout(&to, TIMEOUT))?;
    s.set_read_timeout(Some(TIMEOUT))?;
    Ok(BufReader::new(s))
}

fn ask_on(c: &mut BufReader<TcpStream>) -> io::Result<String> {
    c.get_mut().write_all(b"hello\n")?;
    let mut line = String::new();
    if c.read_line(&mut line)? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(line.trim_end().to_owned())
}

/// `n` new connections from the client host, one question each, off the runtime.
async fn ask_many(client_ns: &str, published: u16, n: usize) -> Vec<String> {
    let ns = client_ns.to_owned();
    tokio::task::spawn_blocking(move || {
        (0..n)
            .map(|_| ask_on(&mut connect(&ns, published)?))
            .collect::<io::Result<Vec<_>>>()
    })
    .await
    .unwrap()
    .expect("a connection through the mesh failed")
}

fn count(answers: &[String]) -> HashMap<String, usize> {
    let mut by = HashMap::new();
    for a in answers {
        *by.entry(a.clone()).or_default() += 1;
    }
    by
}

macro_rules! hosts_or_skip {
    () => {
        match hosts() {
            Ok(h) => h,
            Err(why) => {
                println!("skipped: {why}");
                return;
            }
        }
    };
}

#[test]
fn kernel_path_balances_over_three_local_tasks_and_is_removed_at_shutdown() {
    let h = hosts_or_skip!();
    let (m, c) = (h.node.clone(), h.client.clone());
    run_in(&m.clone(), || async move {
        let mesh = mesh().await;
        let (a, b, t) = (
            tcp_task("a").await,
            tcp_task("b").await,
            tcp_task("c").await,
        );
        let pp = tcp_task("proxied").await;
        let errors = mesh.apply(IngressView {
            ports: vec![
                port(
                    Protocol::Tcp,
                    8080,
                    false,
                    vec![local("a", a), local("b", b), local("c", t)],
                ),
                port(Protocol::Tcp, 8081, true, vec![local("p", pp)]),
            ],
        });
        assert!(errors.is_empty(), "{errors:?}");
        let rules = table(&m, "swarm_mesh");
        assert!(rules.contains("tcp dport 8080"), "{rules}");
        // A PROXY-protocol port needs the header: user space only.
        assert!(!rules.contains("dport 8081"), "{rules}");

        // DNAT keeps the source: the tasks see the client host itself, and
        // numgen inc gives each task exactly a third.
        let answers = ask_many(&c, 8080, 30).await;
        let by = count(&answers);
        for task in ["a", "b", "c"] {
            assert_eq!(by.get(&format!("{task} {CLIENT}")), Some(&10), "{by:?}");
        }
        // Kernel connections do not pass through user space.
        assert_eq!(mesh.open_count(Protocol::Tcp, 8080), 0);

        mesh.shutdown().await;
        let after = tables(&m);
        assert!(!after.contains("swarm_mesh"), "{after}");
        // A connection set up before the rules went can still be in flight
        // through conntrack for a moment: the port must be refused soon after.
        let refused = tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                if connect(&c, 8080).is_err() {
                    return true;
                }
                if Instant::now() > deadline {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
        .await
        .unwrap();
        assert!(refused, "the port still answers after shutdown");
    });
}

#[test]
fn remote_share_is_handed_over_with_the_client_address() {
    let h = hosts_or_skip!();
    let (m, c) = (h.node.clone(), h.client.clone());
    run_in(&m.clone(), || async move {
        let mesh = mesh().await;
        let a = tcp_task("a").await;
        let peer = peer_node().await;
        let remote = Backend {
            task_id: "r".into(),
            target: Target::Remote { peer },
            draining_until: None,
        };
        assert!(
            mesh.apply(IngressView {
                ports: vec![port(
                    Protocol::Tcp,
                    8080,
                    false,
                    vec![local("a", a), remote.clone()]
                )],
            })
            .is_empty()
        );
        let rules = table(&m, "swarm_mesh");
        assert!(rules.contains("redirect to :"), "{rules}");
        let by = count(&ask_many(&c, 8080, 10).await);
        assert_eq!(by.get(&format!("a {CLIENT}")), Some(&5), "{by:?}");
        assert_eq!(by.get(&format!("remote {CLIENT}")), Some(&5), "{by:?}");

        // UDP the same way: the remote share's replies come back through conntrack.
        let u = udp_task("a").await;
        let upeer = udp_peer_node().await;
        let uremote = Backend {
            task_id: "r".into(),
            target: Target::Remote { peer: upeer },
            draining_until: None,
        };
        let remote = Backend {
            task_id: "r".into(),
            target: Target::Remote { peer },
            draining_until: None,
        };
        assert!(
            mesh.apply(IngressView {
                ports: vec![
                    port(Protocol::Tcp, 8080, false, vec![local("a", a), remote]),
                    port(Protocol::Udp, 5353, false, vec![local("a", u), uremote]),
                ],
            })
            .is_empty()
        );
        let answers = tokio::task::spawn_blocking(move || {
            (0..6)
                .map(|_| udp_ask(&c, 5353))
                .collect::<io::Result<Vec<_>>>()
        })
        .await
        .unwrap()
        .expect("a datagram through the mesh got no answer");
        let by = count(&answers);
        assert_eq!(by.get(&format!("a {CLIENT}")), Some(&3), "{by:?}");
        assert_eq!(by.get(&format!("remote {CLIENT}")), Some(&3), "{by:?}");
        mesh.shutdown().await;
    });
}

#[test]
fn backend_sets_swap_atomically_and_a_draining_task_gets_no_new_connections() {
    let h = hosts_or_skip!();
    let (m, c) = (h.node.clone(), h.client.clone());
    run_in(&m.clone(), || async move {
        let mesh = mesh().await;
        let (a, b, t, d) = (
            tcp_task("a").await,
            tcp_task("b").await,
            tcp_task("c").await,
            tcp_task("d").await,
        );
        let set = |names: &[(&str, SocketAddr)], draining: Option<&str>| IngressView {
            ports: vec![port(
                Protocol::Tcp,
                8080,
                false,
                names
                    .iter()
                    .map(|(n, addr)| Backend {
                        draining_until: (Some(*n) == draining)
                            .then(|| Instant::now() + Duration::from_secs(60)),
                        ..local(n, *addr)
                    })
                    .collect(),
            )],
        };
        assert!(mesh.apply(set(&[("a", a)], None)).is_empty());
        let cc = c.clone();
        let mut held = tokio::task::spawn_blocking(move || connect(&cc, 8080).unwrap())
            .await
            .unwrap();
        let (first, held) = tokio::task::spawn_blocking(move || (ask_on(&mut held), held))
            .await
            .unwrap();
        assert_eq!(first.unwrap(), format!("a {CLIENT}"));

        // "a" drains: out of the map at once; its open connection goes on.
        mesh.apply(set(&[("a", a), ("b", b)], Some("a")));
        let by = count(&ask_many(&c, 8080, 6).await);
        assert_eq!(by.get(&format!("b {CLIENT}")), Some(&6), "{by:?}");
        let mut held = held;
        let again = tokio::task::spawn_blocking(move || ask_on(&mut held))
            .await
            .unwrap();
        assert_eq!(again.unwrap(), format!("a {CLIENT}"));

        // Swapping {b, c} <-> {c, d} while a client connects without pause: every
        // connection is answered, only ever by a task of one of the two sets.
        let cc = c.clone();
        let client = tokio::task::spawn_blocking(move || {
            (0..150)
                .map(|_| ask_on(&mut connect(&cc, 8080)?))
                .collect::<io::Result<Vec<_>>>()
        });
        for i in 0..20 {
            let view = if i % 2 == 0 {
                set(&[("c", t), ("d", d)], None)
            } else {
                set(&[("b", b), ("c", t)], None)
            };
            assert!(mesh.apply(view).is_empty());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let answers = client
            .await
            .unwrap()
            .expect("a connection failed during the swaps");
        for a in &answers {
            assert!(
                [
                    format!("b {CLIENT}"),
                    format!("c {CLIENT}"),
                    format!("d {CLIENT}")
                ]
                .contains(a),
                "{a}"
            );
        }
        mesh.shutdown().await;
    });
}

#[test]
fn udp_flows_are_balanced_and_leftover_rules_of_a_killed_mesh_are_replaced() {
    let h = hosts_or_skip!();
    let (m, c) = (h.node.clone(), h.client.clone());
    // What a killed mesh could leave: a table of the same name with a stale rule.
    let stale = "table ip swarm_mesh {\n chain prerouting {\n type nat hook prerouting priority dstnat;\n udp dport 5353 drop\n }\n}\n";
    let path = std::env::temp_dir().join(format!("{m}.nft"));
    std::fs::write(&path, stale).unwrap();
    run(
        "ip",
        &["netns", "exec", &m, "nft", "-f", path.to_str().unwrap()],
    )
    .unwrap();
    let _ = std::fs::remove_file(&path);
    run_in(&m.clone(), || async move {
        let mesh = mesh().await;
        assert!(!table(&m, "swarm_mesh").contains("drop"));
        let (a, b, t) = (
            udp_task("a").await,
            udp_task("b").await,
            udp_task("c").await,
        );
        assert!(
            mesh.apply(IngressView {
                ports: vec![port(
                    Protocol::Udp,
                    5353,
                    false,
                    vec![local("a", a), local("b", b), local("c", t)]
                )],
            })
            .is_empty()
        );
        let answers = tokio::task::spawn_blocking(move || {
            (0..9)
                .map(|_| udp_ask(&c, 5353))
                .collect::<io::Result<Vec<_>>>()
        })
        .await
        .unwrap()
        .expect("a datagram through the mesh got no answer");
        let by = count(&answers);
        for task in ["a", "b", "c"] {
            assert_eq!(by.get(&format!("{task} {CLIENT}")), Some(&3), "{by:?}");
        }
        // Dropping the last handle (no shutdown) removes the rules too.
        drop(mesh);
        let after = tables(&m);
        assert!(!after.contains("swarm_mesh"), "{after}");
    });
}

#[test]
fn a_node_local_client_on_loopback_falls_back_to_user_space_for_other_addresses() {
    let h = hosts_or_skip!();
    let m = h.node.clone();
    run_in(&m.clone(), || async move {
        let mesh = mesh().await;
        let a = tcp_task("a").await;
        assert!(
            mesh.apply(IngressView {
                ports: vec![port(Protocol::Tcp, 8080, false, vec![local("a", a)])],
            })
            .is_empty()
        );
        // From 127.0.0.1 the kernel cannot DNAT to 10.201.0.1 (a 127/8 source
        // cannot leave loopback): the user-space listener takes it. To the
        // node's own address the kernel answers. Both stay open while counted.
        let (answers, conns) = tokio::task::spawn_blocking(|| {
            let open = |to: SocketAddr| -> io::Result<BufReader<TcpStream>> {
                let s = TcpStream::connect_timeout(&to, TIMEOUT)?;
                s.set_read_timeout(Some(TIMEOUT))?;
                Ok(BufReader::new(s))
            };
            let mut lo = open("127.0.0.1:8080".parse().unwrap())?;
            let mut node = open(SocketAddr::from((NODE, 8080)))?;
            io::Result::Ok(((ask_on(&mut lo)?, ask_on(&mut node)?), (lo, node)))
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(answers.0, format!("a {NODE}"));
        assert_eq!(answers.1, format!("a {NODE}"));
        assert_eq!(IpAddr::from(NODE), a.ip());
        // Only the loopback one passes through user space.
        assert_eq!(mesh.open_count(Protocol::Tcp, 8080), 1);
        drop(conns);
        mesh.shutdown().await;
    });
}

#[test]
fn forwarded_tasks_are_reached_through_a_docker_like_forward_filter() {
    let mut h = hosts_or_skip!();
    if let Err(why) = tasks_host(&mut h) {
        println!("skipped: {why}");
        return;
    }
    let (m, c, t) = (h.node.clone(), h.client.clone(), h.tasks.clone().unwrap());
    // The task listens on the tasks host; its socket is served from the node's runtime.
    let listener = in_ns(&t, || std::net::TcpListener::bind((TASKS_HOST, 0))).unwrap();
    let exec = |args: &[&str]| {
        let mut all = vec!["netns", "exec", &m];
        all.extend_from_slice(args);
        run("ip", &all).unwrap()
    };
    run_in(&m.clone(), || async move {
        listener.set_nonblocking(true).unwrap();
        let l = tokio::net::TcpListener::from_std(listener).unwrap();
        let task = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, peer)) = l.accept().await {
                tokio::spawn(async move {
                    let (r, mut w) = s.split();
                    let mut lines = tokio::io::BufReader::new(r).lines();
                    while let Ok(Some(_)) = lines.next_line().await {
                        let _ = w.write_all(format!("f {}\n", peer.ip()).as_bytes()).await;
                    }
                });
            }
        });
        let mesh = mesh().await;
        let rules = exec(&["iptables", "-w", "-S", "DOCKER-USER"]);
        assert!(rules.contains("swarm_mesh"), "{rules}");
        assert!(
            mesh.apply(IngressView {
                ports: vec![port(Protocol::Tcp, 8080, false, vec![local("f", task)])],
            })
            .is_empty()
        );
        let by = count(&ask_many(&c, 8080, 4).await);
        assert_eq!(by.get(&format!("f {CLIENT}")), Some(&4), "{by:?}");
        mesh.shutdown().await;
        let rules = exec(&["iptables", "-w", "-S", "DOCKER-USER"]);
        assert!(!rules.contains("swarm_mesh"), "{rules}");
    });
}
