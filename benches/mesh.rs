//! The ingress routing mesh (`swarm_net::mesh`) against a direct connection to
//! one backend and against HAProxy (`mode tcp`, roundrobin) in front of the
//! same backends, in one run on loopback: bulk TCP throughput, new connections
//! per second (connect + one small request/response + close), latency of a
//! small request on an established connection, UDP request/response packets
//! per second. The mesh is measured with splice(2) and with tokio's copy.
//!
//! `cargo bench --bench mesh`; with `-- --test` a small run (a few seconds).
//! HAProxy rows are skipped, with the reason printed, when `haproxy` is not
//! installed (Debian package `haproxy`).
//!
//! Layout: the backends run on one tokio runtime, each mesh node on its own,
//! the clients on plain threads with blocking sockets; everything shares the
//! machine's cores. Node a (127.0.0.51) publishes a TCP and a UDP port over
//! two local backends, and a TCP and a UDP port whose only task runs on node b
//! (127.0.0.52), reached through b's peer listener.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use swarm_net::mesh::{Backend, IngressView, Mesh, MeshConfig, Protocol, PublishedPort, Target};
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
                let s = UdpSocket::bind("127.0.0.1:0").expect("udp bind");
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
    name: &'static str,
    mib_s: f64,
    conns: f64,
    lat: (Duration, Duration),
    udp: Option<(f64, usize)>,
}

/// One path through which clients reach the backends.
struct Path {
    name: &'static str,
    tcp: SocketAddr,
    udp: Option<SocketAddr>,
    /// For the mesh: splice (true) or tokio copy (false), set before each use.
    zero_copy: Option<bool>,
}

fn runtime(name: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("runtime")
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
    let backends_rt = runtime("backends");
    let (b1, b2, u1, u2) = backends_rt.block_on(async {
        let mut tcp = Vec::new();
        let mut udp = Vec::new();
        for _ in 0..2 {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("backend");
            tcp.push(l.local_addr().expect("addr"));
            tokio::spawn(tcp_backend(l));
            let u = tokio::net::UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("udp backend");
            udp.push(u.local_addr().expect("addr"));
            tokio::spawn(udp_backend(u));
        }
        (tcp[0], tcp[1], udp[0], udp[1])
    });

    // Two nodes, each with its own runtime, as two swarm nodes would be.
    let (a_ip, b_ip) = (ip("127.0.0.51"), ip("127.0.0.52"));
    let (rt_a, rt_b) = (runtime("mesh-a"), runtime("mesh-b"));
    let a = rt_a
        .block_on(Mesh::start(MeshConfig::new(a_ip, SocketAddr::new(a_ip, 0))))
        .expect("mesh a");
    let b = rt_b
        .block_on(Mesh::start(MeshConfig::new(b_ip, SocketAddr::new(b_ip, 0))))
        .expect("mesh b");
    b.set_peers(HashSet::from([a_ip]));
    let (local_port, remote_port) = (free_port(a_ip), free_port(a_ip));
    let backend = |id: &str, target| Backend {
        task_id: id.into(),
        target,
        draining_until: None,
    };
    let published = |protocol, port, backends| PublishedPort {
        protocol,
        published_port: port,
        target_port: 80,
        proxy_protocol: false,
        backends,
    };
    let to_b = Target::Remote {
        peer: b.peer_addr(),
    };
    let view_a = IngressView {
        ports: vec![
            published(
                Protocol::Tcp,
                local_port,
                vec![
                    backend("t1", Target::Local(b1)),
                    backend("t2", Target::Local(b2)),
                ],
            ),
            published(
                Protocol::Udp,
                local_port,
                vec![
                    backend("u1", Target::Local(u1)),
                    backend("u2", Target::Local(u2)),
                ],
            ),
            published(Protocol::Tcp, remote_port, vec![backend("t1", to_b)]),
            published(Protocol::Udp, remote_port, vec![backend("u1", to_b)]),
        ],
    };
    let view_b = IngressView {
        ports: vec![
            published(
                Protocol::Tcp,
                remote_port,
                vec![backend("t1", Target::Local(b1))],
            ),
            published(
                Protocol::Udp,
                remote_port,
                vec![backend("u1", Target::Local(u1))],
            ),
        ],
    };
    assert!(a.apply(view_a).is_empty(), "mesh a ports");
    assert!(b.apply(view_b).is_empty(), "mesh b ports");
    let mesh_local = SocketAddr::new(a_ip, local_port);
    let mesh_remote = SocketAddr::new(a_ip, remote_port);

    let mut paths = vec![
        Path {
            name: "direct (one backend)",
            tcp: b1,
            udp: Some(u1),
            zero_copy: None,
        },
        Path {
            name: "mesh, 2 local backends, splice (adaptive)",
            tcp: mesh_local,
            udp: Some(mesh_local),
            zero_copy: Some(true),
        },
        Path {
            name: "mesh, 2 local backends, tokio copy",
            tcp: mesh_local,
            udp: None,
            zero_copy: Some(false),
        },
        Path {
            name: "mesh, remote hand-over (a→b), splice (adaptive)",
            tcp: mesh_remote,
            udp: Some(mesh_remote),
            zero_copy: Some(true),
        },
    ];
    let dir = tempfile::tempdir().expect("temp dir");
    let ha_addr = SocketAddr::new(ip("127.0.0.53"), free_port(ip("127.0.0.53")));
    let mut haproxy = match start_haproxy(ha_addr, &[b1, b2], dir.path()) {
        Ok(child) => {
            paths.push(Path {
                name: "haproxy mode tcp, roundrobin, 2 backends",
                tcp: ha_addr,
                udp: None,
                zero_copy: None,
            });
            Some(child)
        }
        Err(reason) => {
            println!("haproxy rows skipped: {reason}");
            None
        }
    };
    let use_path = |p: &Path| {
        if let Some(z) = p.zero_copy {
            a.set_zero_copy(z);
        }
    };
    // Like the latency, in rounds where the paths take turns.
    let rounds = 4;
    let per_conn = sz.bulk_per_conn / rounds as u64;
    let conns_per_round = sz.new_conns / rounds;
    let mut times = vec![(Duration::ZERO, Duration::ZERO); paths.len()];
    for round in 0..rounds {
        for (p, t) in paths.iter().zip(times.iter_mut()) {
            use_path(p);
            t.0 += bulk(p.tcp, &sz, per_conn);
            t.1 += new_conns(p.tcp, &sz, conns_per_round);
        }
        eprintln!(
            "bulk and new connections: round {} of {rounds} done",
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
    let mut conns: Vec<TcpStream> = paths
        .iter()
        .map(|p| {
            use_path(p);
            let mut s = connect(p.tcp);
            s.write_all(b"E").expect("mode");
            s
        })
        .collect();
    let lat = latencies(&mut conns, &sz);
    drop(conns);
    let mut rows = Vec::new();
    for ((p, (mib_s, conns)), lat) in paths.iter().zip(throughput).zip(lat) {
        rows.push(Row {
            name: p.name,
            mib_s,
            conns,
            lat,
            udp: p.udp.map(|u| udp_pps(u, &sz)),
        });
    }
    if let Some(child) = haproxy.as_mut() {
        let _ = child.kill();
        let _ = child.wait();
    }

    let direct = &rows[0];
    let (d_mib, (d50, d99)) = (direct.mib_s, direct.lat);
    println!(
        "\n{:<50} {:>10} {:>8} {:>10} {:>9} {:>9} {:>10} {:>10} {:>10}",
        "path", "MiB/s", "% direct", "conn/s", "p50 µs", "p99 µs", "+p50 µs", "+p99 µs", "udp pps"
    );
    for r in &rows {
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
    rt_a.block_on(a.shutdown());
    rt_b.block_on(b.shutdown());
}
