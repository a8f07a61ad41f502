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
#![cfg(target_os = "linux")]

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use nix::sched::{CloneFlags, setns};
use swarm_net::overlay::{
    Cidr, MacAddr, NetworkDef, Overlay, OverlayConfig, OverlayDriver, OverlayError, Peer,
    mac_for_ip,
};

use common::{Hosts, ip};

const NET: &str = "ovtestnet";
const WAIT: Duration = Duration::from_secs(10);

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

/// What the test's main thread asks a host for once its task is attached.
enum Cmd {
    SetPeers(Vec<Peer>),
    Detach,
    /// A new `Overlay` (as after a restart of the node) adopting the sandbox.
    Restart,
}

/// One host's end of the conversation with the test's main thread.
struct HostLinks {
    attached: mpsc::Sender<Result<Attached, String>>,
    commands: mpsc::Receiver<Cmd>,
    replies: mpsc::Sender<Result<(), String>>,
}

/// Runs one host: an overlay in the host's namespace, network, task namespace, attach;
/// then runs the commands of the main thread and, once it hangs up, cleans up.
fn run_host(
    host_ns: PathBuf,
    dir: PathBuf,
    underlay: IpAddr,
    task_addr: &'static str,
    links: HostLinks,
) -> Result<(), String> {
    let HostLinks {
        attached,
        commands,
        replies,
    } = links;
    enter(&host_ns);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let mut cfg = OverlayConfig::new(underlay);
        cfg.netns_dir = dir;
        let mut overlay = Overlay::new(cfg.clone()).await.map_err(|e| e.to_string())?;
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
            // A second interface asking for a default route too fails (there is one) and
            // is rolled back: no eth1, no second veth left in the sandbox.
            let second: Cidr = task_addr.replace(".0.9.", ".0.9.1").parse()?;
            let failed = overlay.attach(NET, &task_netns, "eth1", second, true).await;
            assert!(
                matches!(
                    failed,
                    Err(OverlayError::Netlink {
                        errno: Some(17),
                        ..
                    })
                ),
                "{failed:?}"
            );
            Ok::<_, OverlayError>(Attached {
                task_netns,
                sandbox: overlay.sandbox_netns(NET),
                mac,
            })
        }
        .await
        .map_err(|e| e.to_string());
        let task_netns = setup.as_ref().map(|a| a.task_netns.clone()).ok();
        let _ = attached.send(setup);
        if let Some(task_netns) = task_netns {
            while let Ok(cmd) = commands.recv() {
                let done = match cmd {
                    Cmd::SetPeers(peers) => match overlay.set_peers(NET, &peers).await {
                        // What is programmed is what was asked (all peers are remote).
                        Ok(()) => match overlay.peers(NET).await {
                            Ok(now) if now == peers => Ok(()),
                            Ok(now) => Err(OverlayError::InvalidArgument(format!(
                                "peers {now:?} after setting {peers:?}"
                            ))),
                            Err(e) => Err(e),
                        },
                        Err(e) => Err(e),
                    },
                    Cmd::Detach => {
                        // Through the trait a host would hold.
                        let driver: &dyn OverlayDriver = &overlay;
                        driver.detach(NET, &task_netns, "eth0").await
                    }
                    Cmd::Restart => match Overlay::new(cfg.clone()).await {
                        Ok(new) => {
                            overlay = new;
                            overlay.ensure_network(&net).await
                        }
                        Err(e) => Err(e),
                    },
                };
                let _ = replies.send(done.map_err(|e| e.to_string()));
            }
        }
        let removed = overlay.remove_network(NET).await;
        let task_removed = overlay.remove_task_netns("task");
        removed.map_err(|e| e.to_string())?;
        task_removed.map_err(|e| e.to_string())?;
        Ok(())
    })
}

/// Runs a command in the network namespace at `ns`; its standard output.
fn run_in(ns: &Path, args: &[&str]) -> String {
    let ns = ns.to_owned();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    std::thread::spawn(move || {
        enter(&ns);
        // A child starts in the namespace of the thread that forks it.
        let out = Command::new(&args[0]).args(&args[1..]).output().unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    })
    .join()
    .unwrap()
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
            if !nix::unistd::geteuid().is_root() {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                let refused = rt.block_on(Overlay::new(OverlayConfig::new(
                    "192.0.2.1".parse().unwrap(),
                )));
                match refused {
                    Err(OverlayError::NotPermitted(m)) => assert!(m.contains("root"), "{m}"),
                    other => panic!("not root, yet {other:?}"),
                }
            }
            return;
        }
    };
    let underlay: [IpAddr; 2] = [
        "192.168.251.1".parse().unwrap(),
        "192.168.251.2".parse().unwrap(),
    ];
    let task_ips = ["10.0.9.2", "10.0.9.3"];
    let mut attached = Vec::new();
    let mut cmd_txs = Vec::new();
    let mut reply_rxs = Vec::new();
    let mut threads = Vec::new();
    for (i, task) in ["10.0.9.2/24", "10.0.9.3/24"].into_iter().enumerate() {
        let (a_tx, a_rx) = mpsc::channel();
        let (c_tx, c_rx) = mpsc::channel();
        let (r_tx, r_rx) = mpsc::channel();
        let host_ns = PathBuf::from("/run/netns").join(&hosts.names[i]);
        let dir = hosts.dirs[i].path().to_owned();
        let under = underlay[i];
        threads.push(std::thread::spawn(move || {
            let links = HostLinks {
                attached: a_tx,
                commands: c_rx,
                replies: r_tx,
            };
            run_host(host_ns, dir, under, task, links)
        }));
        attached.push(a_rx);
        cmd_txs.push(c_tx);
        reply_rxs.push(r_rx);
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
    let mut peers = Vec::new();
    for (i, tx) in cmd_txs.iter().enumerate() {
        let j = 1 - i;
        let peer = Peer {
            addr: task_ips[j].parse().unwrap(),
            mac: attached[j].mac.0,
            node_underlay: underlay[j],
        };
        tx.send(Cmd::SetPeers(vec![peer])).unwrap();
        peers.push(peer);
    }
    for rx in &reply_rxs {
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

    // Host A forgets task B: its FDB and neighbour entries go; setting it again brings
    // them back.
    let ask_a = |cmd: Cmd| {
        cmd_txs[0].send(cmd).unwrap();
        reply_rxs[0].recv_timeout(WAIT).expect("host thread")
    };
    let sandbox_a = &attached[0].sandbox;
    let links_a = || run_in(&attached[0].task_netns, &["ip", "-o", "link"]);
    let fdb = || run_in(sandbox_a, &["bridge", "fdb", "show", "dev", "vxlan0"]);
    let neigh = || run_in(sandbox_a, &["ip", "neigh", "show", "dev", "vxlan0"]);
    assert!(
        fdb().contains("02:42:0a:00:09:03 dst 192.168.251.2"),
        "{}",
        fdb()
    );
    assert!(
        neigh().contains("10.0.9.3 lladdr 02:42:0a:00:09:03"),
        "{}",
        neigh()
    );
    assert!(!links_a().contains("eth1"), "{}", links_a());
    let sandbox_links = run_in(sandbox_a, &["ip", "-o", "link"]);
    assert_eq!(sandbox_links.matches(": vb").count(), 1, "{sandbox_links}");
    // After a restart, the new overlay adopts the sandbox and the peers it programmed.
    ask_a(Cmd::Restart).expect("restart");
    assert!(links_a().contains("eth0"), "{}", links_a());
    ask_a(Cmd::SetPeers(vec![])).expect("set_peers([])");
    // (The bridge itself may still have learnt the MAC on its vxlan0 port: not a tunnel
    // entry.)
    assert!(!fdb().contains("02:42:0a:00:09:03 dst"), "{}", fdb());
    assert!(!neigh().contains("10.0.9.3"), "{}", neigh());
    ask_a(Cmd::SetPeers(vec![peers[0]])).expect("set_peers again");
    ask_a(Cmd::SetPeers(vec![peers[0]])).expect("set_peers unchanged");
    assert!(
        fdb().contains("02:42:0a:00:09:03 dst 192.168.251.2"),
        "{}",
        fdb()
    );
    // A bad peer is refused and changes nothing.
    let outside = Peer {
        addr: "10.0.10.3".parse().unwrap(),
        ..peers[0]
    };
    assert!(ask_a(Cmd::SetPeers(vec![outside])).is_err());
    assert!(
        fdb().contains("02:42:0a:00:09:03 dst 192.168.251.2"),
        "{}",
        fdb()
    );

    // Detaching task A removes its interface (twice is fine).
    assert!(links_a().contains("eth0"), "{}", links_a());
    ask_a(Cmd::Detach).expect("detach");
    ask_a(Cmd::Detach).expect("detach again");
    assert!(!links_a().contains("eth0"), "{}", links_a());

    drop(cmd_txs);
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
