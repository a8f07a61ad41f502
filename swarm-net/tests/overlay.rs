//! Two tasks on two hosts reach each other over a VXLAN overlay network.
//!
//! The hosts are network namespaces joined by a veth pair (the underlay,
//! 192.168.251.1 and .2); each runs its own [`Overlay`] from a thread that entered it,
//! with its own namespace directory. A task namespace on each host is attached to network
//! `10.0.9.0/24` (VNI 4097) with 10.0.9.2 and 10.0.9.3, the peers are set both ways, and
//! then task A talks TCP and UDP to task B: the frames go through each sandbox's
//! `vxlan0` and cross the underlay veth as VXLAN.
//!
//! Needs root, the `ip` tool and a kernel with vxlan; skips with the reason otherwise.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use nix::sched::{CloneFlags, setns};
use swarm_net::overlay::{
    Cidr, MacAddr, NetworkDef, Overlay, OverlayConfig, OverlayError, Peer, mac_for_ip,
};

const NET: &str = "ovtestnet";
const WAIT: Duration = Duration::from_secs(10);

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The two simulated hosts; removes them (and every namespace mounted under their
/// directories) when dropped, whether the test passed or not.
struct Hosts {
    names: [String; 2],
    dirs: [tempfile::TempDir; 2],
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for dir in &self.dirs {
            if let Ok(entries) = std::fs::read_dir(dir.path()) {
                for entry in entries.flatten() {
                    let _ = nix::mount::umount2(&entry.path(), nix::mount::MntFlags::MNT_DETACH);
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        for name in &self.names {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

fn hosts() -> Result<Hosts, String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("not root".into());
    }
    let pid = std::process::id();
    let hosts = Hosts {
        names: [format!("swov-hostA-{pid}"), format!("swov-hostB-{pid}")],
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
    for (ns, addr) in [(a, "192.168.251.1/24"), (b, "192.168.251.2/24")] {
        ip(&["-n", ns, "addr", "add", addr, "dev", "u0"])?;
        ip(&["-n", ns, "link", "set", "u0", "up"])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
    }
    // Probe: can this kernel make vxlan devices at all?
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

/// What a host thread reports once its task is attached.
struct Attached {
    task_netns: PathBuf,
    sandbox: PathBuf,
    mac: MacAddr,
}

/// One host's end of the conversation with the test's main thread.
struct HostLinks {
    attached: mpsc::Sender<Result<Attached, String>>,
    peers: mpsc::Receiver<Vec<Peer>>,
    peers_set: mpsc::Sender<Result<(), String>>,
    done: mpsc::Receiver<()>,
}

/// Runs one host: an overlay in the host's namespace, network, task namespace, attach;
/// then waits for the peers, sets them, and waits for the end to clean up.
fn run_host(
    host_ns: PathBuf,
    dir: PathBuf,
    underlay: IpAddr,
    task_addr: &'static str,
    links: HostLinks,
) -> Result<(), String> {
    let HostLinks {
        attached,
        peers,
        peers_set,
        done,
    } = links;
    enter(&host_ns);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let mut cfg = OverlayConfig::new(underlay);
        cfg.netns_dir = dir;
        let overlay = Overlay::new(cfg).await.map_err(|e| e.to_string())?;
        let net = NetworkDef {
            id: NET.into(),
            vni: 4097,
            subnet: "10.0.9.0/24".into(),
            gateway: "10.0.9.1".into(),
            encrypted: false,
        };
        let setup = async {
            overlay.ensure_network(&net).await?;
            // Idempotent.
            overlay.ensure_network(&net).await?;
            let other = NetworkDef {
                vni: 4098,
                ..net.clone()
            };
            assert!(matches!(
                overlay.ensure_network(&other).await,
                Err(OverlayError::InvalidArgument(_))
            ));
            let task_netns = overlay.create_task_netns("task")?;
            let addr: Cidr = task_addr.parse()?;
            let mac = overlay.attach(NET, &task_netns, "eth0", addr, true).await?;
            let again = overlay.attach(NET, &task_netns, "eth0", addr, true).await;
            assert!(
                matches!(again, Err(OverlayError::InvalidArgument(_))),
                "{again:?}"
            );
            Ok::<_, OverlayError>(Attached {
                task_netns,
                sandbox: overlay.sandbox_netns(NET),
                mac,
            })
        }
        .await
        .map_err(|e| e.to_string());
        let ok = setup.is_ok();
        let _ = attached.send(setup);
        if ok && let Ok(peers) = peers.recv() {
            let set = overlay
                .set_peers(NET, &peers)
                .await
                .map_err(|e| e.to_string());
            let _ = peers_set.send(set);
            let _ = done.recv();
        }
        let removed = overlay.remove_network(NET).await;
        let task_removed = overlay.remove_task_netns("task");
        removed.map_err(|e| e.to_string())?;
        task_removed.map_err(|e| e.to_string())?;
        Ok(())
    })
}

/// Reads the transmitted bytes of `dev` from /proc/net/dev of the namespace at `ns`.
fn tx_bytes(ns: &Path, dev: &str) -> u64 {
    let ns = ns.to_owned();
    let dev = format!("{dev}:");
    std::thread::spawn(move || {
        enter(&ns);
        let table = std::fs::read_to_string("/proc/thread-self/net/dev").unwrap();
        let line = table
            .lines()
            .find(|l| l.trim_start().starts_with(&dev))
            .unwrap_or_else(|| panic!("no {dev} in {table}"));
        // Receive: 8 columns, then transmit bytes.
        line.split_whitespace().nth(9).unwrap().parse().unwrap()
    })
    .join()
    .unwrap()
}

#[test]
fn two_tasks_on_two_hosts_talk_over_vxlan() {
    let hosts = match hosts() {
        Ok(hosts) => hosts,
        Err(reason) => {
            println!("skipped: cannot simulate two hosts ({reason}); needs root, ip and vxlan");
            return;
        }
    };
    let underlay: [IpAddr; 2] = [
        "192.168.251.1".parse().unwrap(),
        "192.168.251.2".parse().unwrap(),
    ];
    let task_ips = ["10.0.9.2", "10.0.9.3"];
    let mut attached = Vec::new();
    let mut peer_txs = Vec::new();
    let mut done_txs = Vec::new();
    let mut set_rxs = Vec::new();
    let mut threads = Vec::new();
    for (i, task) in ["10.0.9.2/24", "10.0.9.3/24"].into_iter().enumerate() {
        let (a_tx, a_rx) = mpsc::channel();
        let (p_tx, p_rx) = mpsc::channel();
        let (d_tx, d_rx) = mpsc::channel();
        let (s_tx, s_rx) = mpsc::channel();
        let host_ns = PathBuf::from("/run/netns").join(&hosts.names[i]);
        let dir = hosts.dirs[i].path().to_owned();
        let under = underlay[i];
        threads.push(std::thread::spawn(move || {
            let links = HostLinks {
                attached: a_tx,
                peers: p_rx,
                peers_set: s_tx,
                done: d_rx,
            };
            run_host(host_ns, dir, under, task, links)
        }));
        attached.push(a_rx);
        peer_txs.push(p_tx);
        done_txs.push(d_tx);
        set_rxs.push(s_rx);
    }
    let attached: Vec<Attached> = attached
        .iter()
        .map(|rx| {
            rx.recv_timeout(WAIT)
                .expect("host thread")
                .expect("host setup")
        })
        .collect();
    for (i, a) in attached.iter().enumerate() {
        let ip: Ipv4Addr = task_ips[i].parse().unwrap();
        assert_eq!(a.mac, mac_for_ip(ip));
    }
    // Each host learns the other's task.
    for (i, tx) in peer_txs.iter().enumerate() {
        let j = 1 - i;
        let peer = Peer {
            addr: task_ips[j].parse().unwrap(),
            mac: attached[j].mac.0,
            node_underlay: underlay[j],
        };
        tx.send(vec![peer]).unwrap();
    }
    for rx in &set_rxs {
        rx.recv_timeout(WAIT)
            .expect("host thread")
            .expect("set_peers");
    }

    if let Ok(secs) = std::env::var("OVERLAY_TEST_PAUSE") {
        println!(
            "paused: sandboxes {:?} {:?}",
            attached[0].sandbox, attached[1].sandbox
        );
        println!(
            "tasks {:?} {:?}",
            attached[0].task_netns, attached[1].task_netns
        );
        std::thread::sleep(Duration::from_secs(secs.parse().unwrap_or(60)));
    }
    let vxlan_before = tx_bytes(&attached[0].sandbox, "vxlan0");
    let underlay_before = tx_bytes(&PathBuf::from("/run/netns").join(&hosts.names[0]), "u0");

    // Task B listens (TCP echo, UDP echo) in its namespace.
    let b_ns = attached[1].task_netns.clone();
    let (ready_tx, ready_rx) = mpsc::channel();
    let server = std::thread::spawn(move || {
        enter(&b_ns);
        let tcp = TcpListener::bind("10.0.9.3:7070").unwrap();
        let udp = UdpSocket::bind("10.0.9.3:7071").unwrap();
        ready_tx.send(()).unwrap();
        let udp_thread = std::thread::spawn(move || {
            udp.set_read_timeout(Some(WAIT)).unwrap();
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = udp.recv_from(&mut buf) {
                udp.send_to(&buf[..n], from).unwrap();
                if &buf[..n] == b"last" {
                    break;
                }
            }
        });
        let (mut conn, peer) = tcp.accept().unwrap();
        let mut data = Vec::new();
        conn.read_to_end(&mut data).unwrap();
        conn.write_all(&data).unwrap();
        drop(conn);
        udp_thread.join().unwrap();
        peer
    });
    ready_rx.recv_timeout(WAIT).unwrap();

    // Task A: 1 MiB over TCP and back, then UDP datagrams.
    let a_ns = attached[0].task_netns.clone();
    let client = std::thread::spawn(move || {
        enter(&a_ns);
        let payload: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
        let to: SocketAddr = "10.0.9.3:7070".parse().unwrap();
        let mut conn = TcpStream::connect_timeout(&to, WAIT).unwrap();
        conn.set_read_timeout(Some(WAIT)).unwrap();
        let writer = {
            let mut conn = conn.try_clone().unwrap();
            let payload = payload.clone();
            std::thread::spawn(move || {
                conn.write_all(&payload).unwrap();
                conn.shutdown(std::net::Shutdown::Write).unwrap();
            })
        };
        let mut echoed = Vec::new();
        conn.read_to_end(&mut echoed).unwrap();
        writer.join().unwrap();
        assert!(echoed == payload, "the echo differs from the payload");

        let udp = UdpSocket::bind("10.0.9.2:0").unwrap();
        udp.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut answered = 0;
        let mut buf = [0u8; 1500];
        for i in 0..20 {
            let msg = format!("ping {i}");
            udp.send_to(msg.as_bytes(), "10.0.9.3:7071").unwrap();
            if let Ok((n, from)) = udp.recv_from(&mut buf) {
                assert_eq!(from, "10.0.9.3:7071".parse::<SocketAddr>().unwrap());
                assert_eq!(&buf[..n], msg.as_bytes());
                answered += 1;
            }
        }
        udp.send_to(b"last", "10.0.9.3:7071").unwrap();
        answered
    });
    let answered = client.join().expect("task A's client");
    let seen_from = server.join().expect("task B's server");
    assert_eq!(seen_from.ip(), "10.0.9.2".parse::<IpAddr>().unwrap());
    assert!(answered >= 15, "only {answered} of 20 UDP pings answered");

    // The traffic went through host A's vxlan0 and crossed the underlay veth.
    let vxlan_sent = tx_bytes(&attached[0].sandbox, "vxlan0") - vxlan_before;
    let underlay_sent =
        tx_bytes(&PathBuf::from("/run/netns").join(&hosts.names[0]), "u0") - underlay_before;
    assert!(
        vxlan_sent >= 1 << 20,
        "vxlan0 of host A sent only {vxlan_sent} bytes"
    );
    assert!(
        underlay_sent >= vxlan_sent,
        "the underlay sent {underlay_sent} bytes, less than vxlan0's {vxlan_sent}"
    );

    for tx in &done_txs {
        tx.send(()).unwrap();
    }
    for t in threads {
        t.join().expect("host thread").expect("host cleanup");
    }
    for a in &attached {
        assert!(!a.sandbox.exists(), "{} left behind", a.sandbox.display());
        assert!(
            !a.task_netns.exists(),
            "{} left behind",
            a.task_netns.display()
        );
    }
    drop(hosts);
}
