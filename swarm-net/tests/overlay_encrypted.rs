//! Two tasks on two hosts talk over an *encrypted* overlay network, and what crosses the
//! underlay is never in clear.
//!
//! The hosts are network namespaces joined by a veth pair `u0` (the underlay,
//! 192.168.242.1 and .2), each running its own [`Overlay`] on a tokio runtime that keeps
//! running (the encrypted data path is tokio tasks). Each host has an encrypted network
//! `crypt` (VNI 4098, 10.0.10.0/24, the task's `eth0` with the default route) and, as a
//! control, a plain VXLAN network `plain` (VNI 4097, 10.0.9.0/24, the task's `eth1`).
//! A capture on host A's `u0` (an `AF_PACKET` socket) shows the marker sent over `plain`
//! in clear and never the one sent over `crypt`.
//!
//! Then: replayed and random datagrams are dropped (and counted) without harm; keys are
//! rotated while a TCP stream runs; a node with another key gets nothing through; a node
//! without peers sends and accepts nothing; removing the network frees the UDP port.
//!
//! Needs root, the `ip` tool, vxlan and /dev/net/tun; skips with the reason otherwise.
#![cfg(target_os = "linux")]

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};
use swarm_net::overlay::{
    CRYPT_PORT, CryptStats, NetworkDef, Overlay, OverlayConfig, OverlayError, Peer, mac_for_ip,
};

use common::{Hosts, ip};

const WAIT: Duration = Duration::from_secs(10);
const UNDERLAY: [&str; 2] = ["192.168.242.1", "192.168.242.2"];
const CRYPT_TASKS: [&str; 2] = ["10.0.10.2", "10.0.10.3"];
const PLAIN_TASKS: [&str; 2] = ["10.0.9.2", "10.0.9.3"];
/// Sent over the encrypted network: must never show on the underlay.
const SECRET: &[u8] = b"SWM2-SECRET-MARKER-7f3a";
/// Sent over the plain network: shows the capture does see payloads in clear.
const CLEAR: &[u8] = b"SWM2-CLEAR-MARKER-91c4";

impl Hosts {
    fn ns(&self, i: usize) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.names[i])
    }
}

fn hosts() -> Result<Hosts, String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("not root".into());
    }
    if !Path::new("/dev/net/tun").exists() {
        return Err("no /dev/net/tun".into());
    }
    let pid = std::process::id();
    let hosts = Hosts {
        names: [format!("swm2-A-{pid}"), format!("swm2-B-{pid}")],
        dirs: [
            tempfile::tempdir().map_err(|e| e.to_string())?,
            tempfile::tempdir().map_err(|e| e.to_string())?,
        ],
    };
    let [a, b] = &hosts.names;
    ip(&["netns", "add", a])?;
    ip(&["netns", "add", b])?;
    ip(&[
        "-n", a, "link", "add", "u0", "type", "veth", "peer", "name", "u0", "netns", b,
    ])?;
    for (ns, addr) in [(a, UNDERLAY[0]), (b, UNDERLAY[1])] {
        ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", "u0"])?;
        ip(&["-n", ns, "link", "set", "u0", "up"])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
    }
    ip(&[
        "-n", a, "link", "add", "vxprobe", "type", "vxlan", "id", "1", "dstport", "4789",
    ])
    .map_err(|e| format!("no vxlan support: {e}"))?;
    ip(&["-n", a, "link", "del", "vxprobe"])?;
    Ok(hosts)
}

fn enter(path: &Path) {
    let ns = std::fs::File::open(path).expect("namespace file");
    setns(&ns, CloneFlags::CLONE_NEWNET).expect("setns");
}

/// Runs `f` on a thread inside the network namespace at `ns`.
fn in_ns<T: Send + 'static>(
    ns: &Path,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let ns = ns.to_owned();
    std::thread::spawn(move || {
        enter(&ns);
        f()
    })
}

fn net(id: &str, vni: u32, subnet: &str, gateway: &str, encrypted: bool) -> NetworkDef {
    NetworkDef {
        id: id.into(),
        vni,
        subnet: subnet.into(),
        gateway: gateway.into(),
        encrypted,
    }
}

enum Cmd {
    SetPeers(&'static str, Vec<Peer>),
    SetKeys(Vec<Vec<u8>>),
    Stats,
    /// As a restart of the node's daemon: the overlay goes (its data path with it) and a
    /// new one adopts the sandboxes.
    Restart,
}

enum Reply {
    Done,
    Stats(CryptStats),
}

type Request = (Cmd, mpsc::Sender<Result<Reply, String>>);

/// One host: its overlay, both networks and a task attached to both; then serves the
/// main thread's requests, asynchronously (the data path runs on this runtime), and
/// cleans up when the main thread hangs up.
fn run_host(
    host_ns: PathBuf,
    dir: PathBuf,
    me: usize,
    attached: mpsc::Sender<Result<PathBuf, String>>,
    mut requests: tokio::sync::mpsc::UnboundedReceiver<Request>,
) -> Result<(), String> {
    enter(&host_ns);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let mut cfg = OverlayConfig::new(UNDERLAY[me].parse().unwrap());
        cfg.netns_dir = dir;
        let mut overlay = Overlay::new(cfg.clone()).await.map_err(|e| e.to_string())?;
        let crypt = net("crypt", 4098, "10.0.10.0/24", "10.0.10.1", true);
        let plain = net("plain", 4097, "10.0.9.0/24", "10.0.9.1", false);
        let setup = async {
            overlay.ensure_network(&crypt).await?;
            overlay.ensure_network(&crypt).await?;
            // The same network unencrypted is another network.
            let unencrypted = NetworkDef {
                encrypted: false,
                ..crypt.clone()
            };
            assert!(matches!(
                overlay.ensure_network(&unencrypted).await,
                Err(OverlayError::InvalidArgument(_))
            ));
            overlay.ensure_network(&plain).await?;
            // Keys only for encrypted networks, and checked.
            assert!(matches!(
                overlay.set_keys("plain", &[vec![1; 32]]).await,
                Err(OverlayError::InvalidArgument(_))
            ));
            assert!(matches!(
                overlay.set_keys("crypt", &[vec![1; 8]]).await,
                Err(OverlayError::InvalidArgument(_))
            ));
            assert!(matches!(
                overlay.set_keys("nowhere", &[vec![1; 32]]).await,
                Err(OverlayError::UnknownNetwork(_))
            ));
            let task = overlay.create_task_netns("task")?;
            let a = format!("{}/24", CRYPT_TASKS[me]).parse()?;
            overlay.attach("crypt", &task, "eth0", a, true).await?;
            let a = format!("{}/24", PLAIN_TASKS[me]).parse()?;
            overlay.attach("plain", &task, "eth1", a, false).await?;
            Ok::<_, OverlayError>(task)
        }
        .await
        .map_err(|e| e.to_string());
        let ok = setup.is_ok();
        let _ = attached.send(setup);
        if ok {
            while let Some((cmd, reply)) = requests.recv().await {
                let done = match cmd {
                    Cmd::SetPeers(net, peers) => {
                        overlay.set_peers(net, &peers).await.map(|()| Reply::Done)
                    }
                    Cmd::SetKeys(keys) => {
                        overlay.set_keys("crypt", &keys).await.map(|()| Reply::Done)
                    }
                    Cmd::Stats => overlay.crypt_stats("crypt").await.map(Reply::Stats),
                    Cmd::Restart => {
                        drop(overlay);
                        // No waiting: the old data path releases its port and tap0 only
                        // once this runtime has dropped its aborted tasks, and
                        // ensure_network copes with that.
                        overlay = Overlay::new(cfg.clone()).await.map_err(|e| e.to_string())?;
                        let mut done = overlay.ensure_network(&crypt).await;
                        if done.is_ok() {
                            done = overlay.ensure_network(&plain).await;
                        }
                        done.map(|()| Reply::Done)
                    }
                };
                let _ = reply.send(done.map_err(|e| e.to_string()));
            }
        }
        let results = [
            overlay.remove_network("crypt").await,
            overlay.remove_network("plain").await,
            overlay.remove_task_netns("task"),
        ];
        for r in results {
            r.map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}

/// The main thread's handle on a host.
struct Host {
    requests: tokio::sync::mpsc::UnboundedSender<Request>,
    task: PathBuf,
}

impl Host {
    fn ask(&self, cmd: Cmd) -> Reply {
        let (tx, rx) = mpsc::channel();
        self.requests.send((cmd, tx)).expect("host thread");
        rx.recv_timeout(WAIT)
            .expect("host thread")
            .expect("host request")
    }
    fn set_keys(&self, keys: &[&Vec<u8>]) {
        self.ask(Cmd::SetKeys(keys.iter().map(|k| (*k).clone()).collect()));
    }
    fn stats(&self) -> CryptStats {
        match self.ask(Cmd::Stats) {
            Reply::Stats(s) => s,
            Reply::Done => unreachable!(),
        }
    }
    /// Waits until `done(stats)` holds; the last stats either way.
    fn stats_until(&self, done: impl Fn(&CryptStats) -> bool) -> CryptStats {
        let start = Instant::now();
        loop {
            let s = self.stats();
            if done(&s) || start.elapsed() > WAIT {
                return s;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn peer(task: &str, node: usize) -> Peer {
    let addr: Ipv4Addr = task.parse().unwrap();
    Peer {
        addr: IpAddr::V4(addr),
        mac: mac_for_ip(addr).0,
        node_underlay: UNDERLAY[node].parse().unwrap(),
    }
}

/// Captures every frame on `dev` of the namespace `ns` until `stop` is set.
fn capture(
    ns: &Path,
    dev: &'static str,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<Vec<u8>>> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let thread = in_ns(ns, move || {
        // SAFETY: plain socket calls on a descriptor we own (wrapped right away), with
        // pointers to live locals of the sizes given.
        let sock = unsafe {
            let fd = libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                (libc::ETH_P_ALL as u16).to_be() as i32,
            );
            assert!(
                fd >= 0,
                "AF_PACKET socket: {}",
                std::io::Error::last_os_error()
            );
            OwnedFd::from_raw_fd(fd)
        };
        let name = std::ffi::CString::new(dev).unwrap();
        unsafe {
            let index = libc::if_nametoindex(name.as_ptr());
            assert!(index > 0, "no {dev}");
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
            sll.sll_ifindex = index as i32;
            let rc = libc::bind(
                sock.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
            let size: libc::c_int = 64 << 20;
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&size as *const libc::c_int).cast(),
                4,
            );
            let tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 50_000,
            };
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            );
        }
        ready_tx.send(()).unwrap();
        let mut frames = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        // Drain what is queued after the stop too.
        let mut idle_after_stop = 0;
        while idle_after_stop < 2 {
            let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n > 0 {
                frames.push(buf[..n as usize].to_vec());
            } else if stop.load(Ordering::SeqCst) {
                idle_after_stop += 1;
            }
        }
        frames
    });
    ready_rx.recv_timeout(WAIT).expect("capture ready");
    thread
}

/// The UDP payload of an IPv4 frame to `port`, if it is one.
fn udp_payload(frame: &[u8], port: u16) -> Option<&[u8]> {
    if frame.len() < 14 + 20 + 8 || frame[12..14] != [0x08, 0x00] || frame[14 + 9] != 17 {
        return None;
    }
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    let udp = frame.get(14 + ihl..)?;
    if udp.len() < 8 || u16::from_be_bytes([udp[2], udp[3]]) != port {
        return None;
    }
    Some(&udp[8..])
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// In task A's namespace: `count` UDP pings to `to` with `marker`; how many came back.
fn pings(task: &Path, to: &'static str, count: usize, marker: &'static [u8]) -> usize {
    in_ns(task, move || {
        let udp = UdpSocket::bind("0.0.0.0:0").unwrap();
        udp.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut answered = 0;
        let mut buf = [0u8; 1500];
        for i in 0..count {
            let mut msg = marker.to_vec();
            msg.extend_from_slice(format!(" ping {i}").as_bytes());
            udp.send_to(&msg, to).unwrap();
            // Skip late answers to earlier pings.
            while let Ok((n, _)) = udp.recv_from(&mut buf) {
                if buf[..n] == msg[..] {
                    answered += 1;
                    break;
                }
            }
        }
        answered
    })
    .join()
    .unwrap()
}

/// Task B's servers on `ip`: a UDP echo on 7071, and on TCP 7070 a server that answers
/// each connection with the length and FNV-1a hash of everything it read.
fn servers(task: &Path, ip: &'static str, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let t = in_ns(task, move || {
        let tcp = std::net::TcpListener::bind((ip, 7070)).unwrap();
        tcp.set_nonblocking(true).unwrap();
        let udp = UdpSocket::bind((ip, 7071)).unwrap();
        udp.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        ready_tx.send(()).unwrap();
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::SeqCst) {
            if let Ok((n, from)) = udp.recv_from(&mut buf) {
                let _ = udp.send_to(&buf[..n], from);
            }
            if let Ok((mut conn, _)) = tcp.accept() {
                std::thread::spawn(move || {
                    conn.set_nonblocking(false).unwrap();
                    let mut data = vec![0u8; 1 << 16];
                    let (mut len, mut hash) = (0u64, FNV_START);
                    loop {
                        match conn.read(&mut data) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                len += n as u64;
                                hash = fnv(hash, &data[..n]);
                            }
                        }
                    }
                    let _ = conn.write_all(&len.to_be_bytes());
                    let _ = conn.write_all(&hash.to_be_bytes());
                });
            }
        }
    });
    ready_rx.recv_timeout(WAIT).expect("servers ready");
    t
}

const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv(mut h: u64, data: &[u8]) -> u64 {
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Payload of `len` bytes: the secret marker over and over, numbered.
fn payload(len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(len + 64);
    let mut i = 0u32;
    while p.len() < len {
        p.extend_from_slice(SECRET);
        p.extend_from_slice(format!("{i:08}").as_bytes());
        i += 1;
    }
    p.truncate(len);
    p
}

/// Reads the server's (length, hash) answer after the client shut down its writing side.
fn answer(conn: &mut TcpStream) -> (u64, u64) {
    let mut a = [0u8; 16];
    conn.read_exact(&mut a).unwrap();
    (
        u64::from_be_bytes(a[..8].try_into().unwrap()),
        u64::from_be_bytes(a[8..].try_into().unwrap()),
    )
}

#[test]
fn encrypted_overlay_carries_traffic_only_sealed() {
    let hosts = match hosts() {
        Ok(hosts) => hosts,
        Err(reason) => {
            println!(
                "skipped: cannot simulate two hosts ({reason}); needs root, ip, vxlan and /dev/net/tun"
            );
            return;
        }
    };
    let mut host = Vec::new();
    let mut threads = Vec::new();
    for i in 0..2 {
        let (a_tx, a_rx) = mpsc::channel();
        let (r_tx, r_rx) = tokio::sync::mpsc::unbounded_channel();
        let (ns, dir) = (hosts.ns(i), hosts.dirs[i].path().to_owned());
        threads.push(std::thread::spawn(move || run_host(ns, dir, i, a_tx, r_rx)));
        let task = a_rx
            .recv_timeout(WAIT)
            .expect("host thread")
            .expect("host setup");
        host.push(Host {
            requests: r_tx,
            task,
        });
    }
    let (k1, k2, k3) = (vec![1u8; 32], vec![2u8; 32], vec![3u8; 16]);
    for (i, h) in host.iter().enumerate() {
        let j = 1 - i;
        h.ask(Cmd::SetPeers("crypt", vec![peer(CRYPT_TASKS[j], j)]));
        h.ask(Cmd::SetPeers("plain", vec![peer(PLAIN_TASKS[j], j)]));
    }
    // Without keys nothing goes through.
    assert_eq!(pings(&host[0].task, "10.0.10.3:7071", 2, SECRET), 0);
    assert!(host[0].stats().no_key > 0, "{:?}", host[0].stats());
    for h in &host {
        h.set_keys(&[&k1]);
    }
    // The encrypted network's links are 32 bytes smaller than the plain one's.
    let mtu = |dev: &'static str| {
        in_ns(&host[0].task, move || {
            // A child starts in the namespace of the thread that forks it (sysfs would
            // show the test's own namespace).
            let out = Command::new("ip")
                .args(["-o", "link", "show", "dev", dev])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let words: Vec<&str> = text.split_whitespace().collect();
            let at = words.iter().position(|w| *w == "mtu").expect("mtu shown");
            words[at + 1].to_owned()
        })
        .join()
        .unwrap()
    };
    assert_eq!((mtu("eth0"), mtu("eth1")), ("1404".into(), "1450".into()));

    let stop_servers = Arc::new(AtomicBool::new(false));
    let server_b = servers(&host[1].task, "0.0.0.0", stop_servers.clone());

    // 1. Traffic under capture: 1 MiB of TCP and 20 UDP pings over `crypt`, 5 pings over
    //    `plain`.
    let stop_capture = Arc::new(AtomicBool::new(false));
    let cap = capture(&hosts.ns(0), "u0", stop_capture.clone());
    let data = payload(1 << 20);
    let expected = (data.len() as u64, fnv(FNV_START, &data));
    let got = in_ns(&host[0].task, move || {
        let to: SocketAddr = "10.0.10.3:7070".parse().unwrap();
        let mut conn = TcpStream::connect_timeout(&to, WAIT).unwrap();
        conn.set_read_timeout(Some(WAIT)).unwrap();
        conn.write_all(&data).unwrap();
        conn.shutdown(std::net::Shutdown::Write).unwrap();
        answer(&mut conn)
    })
    .join()
    .unwrap();
    assert_eq!(got, expected, "TCP over the encrypted network");
    assert!(pings(&host[0].task, "10.0.10.3:7071", 20, SECRET) >= 15);
    assert!(pings(&host[0].task, "10.0.9.3:7071", 5, CLEAR) >= 3);
    stop_capture.store(true, Ordering::SeqCst);
    let frames = cap.join().unwrap();

    let sealed: Vec<&[u8]> = frames
        .iter()
        .filter_map(|f| udp_payload(f, CRYPT_PORT))
        .collect();
    let sealed_bytes: usize = sealed.iter().map(|p| p.len()).sum();
    assert!(
        sealed_bytes >= 1 << 20,
        "only {sealed_bytes} bytes to or from UDP {CRYPT_PORT} in {} frames captured",
        frames.len()
    );
    assert!(
        frames.iter().any(|f| contains(f, CLEAR)),
        "the capture does not show the plain network's marker: it would not show a leak"
    );
    assert!(
        !frames.iter().any(|f| contains(f, SECRET)),
        "the encrypted network's marker crossed the underlay in clear"
    );
    let (a, b) = (host[0].stats(), host[1].stats());
    // Datagrams sent; messages (frames, or TCP super-frames of up to 64 KiB) received.
    assert!(a.sent > 700 && b.received > 16, "{a:?} {b:?}");
    println!("after 1 MiB of TCP and 20 pings: A {a:?}\nB {b:?}");
    assert!(a.arp_answered >= 1, "{a:?}");
    assert_eq!((b.forged, b.replayed, b.unknown_key), (0, 0, 0), "{b:?}");

    // 2. Datagrams A sent, sent again from A's address: dropped as replays.
    // The capture sees UDP GSO sends whole (several datagrams in one packet): they are cut
    // at the size of a full datagram (1404 + 14 bytes of frame, 10 of virtio-net header,
    // 44 of header and tag).
    let from_a: Vec<Vec<u8>> = frames
        .iter()
        .filter(|f| f.len() > 34 && f[26..30] == [192, 168, 242, 1])
        .filter_map(|f| udp_payload(f, CRYPT_PORT))
        .flat_map(|p| p.chunks(1404 + 14 + 10 + 44))
        .take(50)
        .map(|p| p.to_vec())
        .collect();
    assert_eq!(from_a.len(), 50);
    let header = from_a[0][..8].to_vec();
    let before = host[1].stats();
    let replays = from_a.clone();
    in_ns(&hosts.ns(0), move || {
        let udp = UdpSocket::bind((UNDERLAY[0], 0)).unwrap();
        for d in &replays {
            udp.send_to(d, (UNDERLAY[1], CRYPT_PORT)).unwrap();
        }
    })
    .join()
    .unwrap();
    let after = host[1].stats_until(|s| s.replayed >= before.replayed + 50);
    assert_eq!(after.replayed - before.replayed, 50, "{after:?}");

    // 3. 1000 random datagrams, half of them with a plausible header (version, VNI and
    //    key id of the real ones): all dropped, counted, and the path still works.
    let before = host[1].stats();
    in_ns(&hosts.ns(0), move || {
        let udp = UdpSocket::bind((UNDERLAY[0], 0)).unwrap();
        for i in 0..1000 {
            let len = rand::random_range(0..1500);
            let mut d: Vec<u8> = (0..len).map(|_| rand::random()).collect();
            if i % 2 == 0 && len >= 8 {
                d[..8].copy_from_slice(&header);
            }
            udp.send_to(&d, (UNDERLAY[1], CRYPT_PORT)).unwrap();
            if i % 100 == 0 {
                // Do not overrun the receiver's socket buffer.
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    })
    .join()
    .unwrap();
    let dropped = |s: &CryptStats| s.forged + s.malformed + s.replayed + s.unknown_key;
    let after = host[1].stats_until(|s| dropped(s) >= dropped(&before) + 1000);
    assert_eq!(dropped(&after) - dropped(&before), 1000, "{after:?}");
    assert!(pings(&host[0].task, "10.0.10.3:7071", 5, SECRET) >= 4);

    // 4. Keys rotate (new one added, made primary, old one dropped, on both nodes) while
    //    one TCP connection carries data between each step.
    let (step_tx, step_rx) = mpsc::channel::<()>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let stream = payload(4 << 20);
    let expected = (stream.len() as u64, fnv(FNV_START, &stream));
    let client = in_ns(&host[0].task, move || {
        let to: SocketAddr = "10.0.10.3:7070".parse().unwrap();
        let mut conn = TcpStream::connect_timeout(&to, WAIT).unwrap();
        conn.set_read_timeout(Some(WAIT)).unwrap();
        for chunk in stream.chunks(1 << 20) {
            conn.write_all(chunk).unwrap();
            step_tx.send(()).unwrap();
            go_rx.recv().unwrap();
        }
        conn.shutdown(std::net::Shutdown::Write).unwrap();
        answer(&mut conn)
    });
    let rings: [&[&Vec<u8>]; 4] = [&[&k1, &k2], &[&k2, &k1], &[&k2], &[&k2]];
    for ring in rings {
        step_rx.recv_timeout(WAIT).expect("client step");
        for h in &host {
            h.set_keys(ring);
        }
        go_tx.send(()).unwrap();
    }
    assert_eq!(
        client.join().unwrap(),
        expected,
        "TCP across a key rotation"
    );
    // Only k2 is left: what still goes through is sealed with it.
    assert!(pings(&host[0].task, "10.0.10.3:7071", 5, SECRET) >= 4);

    // 5. B with another key: nothing goes through, either way; with the key back, it does.
    let before = host[1].stats();
    host[1].set_keys(&[&k3]);
    assert_eq!(pings(&host[0].task, "10.0.10.3:7071", 5, SECRET), 0);
    let refused = in_ns(&host[0].task, || {
        let to: SocketAddr = "10.0.10.3:7070".parse().unwrap();
        TcpStream::connect_timeout(&to, Duration::from_millis(500)).is_err()
    });
    assert!(refused.join().unwrap(), "a TCP connection got through");
    let after = host[1].stats();
    assert!(after.unknown_key >= before.unknown_key + 5, "{after:?}");
    assert_eq!(after.received, before.received, "{after:?}");
    host[1].set_keys(&[&k2]);
    assert!(pings(&host[0].task, "10.0.10.3:7071", 5, SECRET) >= 4);

    // 6. A forgets B's task: A sends nothing to B and takes nothing from B.
    host[0].ask(Cmd::SetPeers("crypt", vec![]));
    let before = host[0].stats();
    assert_eq!(pings(&host[0].task, "10.0.10.3:7071", 3, SECRET), 0);
    let after = host[0].stats();
    assert_eq!(after.sent, before.sent, "{after:?}");
    assert!(after.not_forwarded >= before.not_forwarded + 3, "{after:?}");
    // B's own pings to A are refused by A as coming from no peer of the network.
    let b_to_a = in_ns(&host[1].task, || {
        let udp = UdpSocket::bind("0.0.0.0:0").unwrap();
        for _ in 0..3 {
            udp.send_to(b"hello A", "10.0.10.2:7071").unwrap();
        }
    });
    b_to_a.join().unwrap();
    let after = host[0].stats_until(|s| s.unknown_sender >= before.unknown_sender + 3);
    assert!(
        after.unknown_sender >= before.unknown_sender + 3,
        "{after:?}"
    );
    host[0].ask(Cmd::SetPeers("crypt", vec![peer(CRYPT_TASKS[1], 1)]));
    assert!(pings(&host[0].task, "10.0.10.3:7071", 5, SECRET) >= 4);

    // 7. Host A restarts: a new tap0, the port bound again, the task still attached; the
    //    network carries nothing until it has peers and keys again.
    host[0].ask(Cmd::Restart);
    assert_eq!(pings(&host[0].task, "10.0.10.3:7071", 3, SECRET), 0);
    assert_eq!(host[0].stats().sent, 0, "{:?}", host[0].stats());
    host[0].ask(Cmd::SetPeers("crypt", vec![peer(CRYPT_TASKS[1], 1)]));
    host[0].set_keys(&[&k2]);
    assert!(pings(&host[0].task, "10.0.10.3:7071", 5, SECRET) >= 4);
    assert!(host[0].stats().sent >= 4, "{:?}", host[0].stats());

    stop_servers.store(true, Ordering::SeqCst);
    server_b.join().unwrap();
    drop(host);
    for t in threads {
        t.join().expect("host thread").expect("host cleanup");
    }
    // The last encrypted network gone, the data path's port is free again.
    let freed = in_ns(&hosts.ns(0), || {
        UdpSocket::bind((UNDERLAY[0], CRYPT_PORT)).is_ok()
    });
    assert!(freed.join().unwrap(), "UDP {CRYPT_PORT} still held");
    drop(hosts);
}
