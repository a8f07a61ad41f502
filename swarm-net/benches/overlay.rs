//! Overlay network figures (root only; prints the reason and exits otherwise):
//!
//! * control plane: time to set up a network's sandbox, a task namespace, an attach, and
//!   to program 1 and 250 peers;
//! * data plane: a bulk TCP transfer and small TCP round trips between two tasks on two
//!   namespaced hosts over VXLAN, over an encrypted network (the user-space AES-256-GCM
//!   data path, a quarter of the bulk bytes), and between the hosts directly over their
//!   underlay veth, in the same run;
//! * the cipher alone: AES-256-GCM sealing of full-size frames on one core.
//!
//! Run: `cargo bench -p swarm-net --bench overlay` (as root). `-- --test` runs a short
//! version (what CI does so the bench does not rot).
//!
//! Two runs on the 2-core build VM (kernel 6.18, shared with other builds, load ~7),
//! 2026-11-28: bulk TCP 10.2 / 9.9 Gbit/s over VXLAN against 13.3 / 14.5 Gbit/s direct
//! (69-76 %); 64-byte round trips p50 22.9-23.1 µs over VXLAN against 13.8 µs direct,
//! p99 34-85 µs against 18-20 µs; ensure_network 13-31 ms, attach 23-44 ms, 251 peers
//! 8-49 ms. Encrypted (three runs, load 4-6): bulk 3.3-4.1 Gbit/s against 8-12 over
//! VXLAN in the same runs; round trips p50 24 µs (VXLAN 7.1-7.3), p99 0.03-0.57 ms; the
//! cipher alone 24-41 Gbit/s. See BENCHMARKS.md, "Overlay".

#[cfg(not(target_os = "linux"))]
fn main() {
    println!("overlay bench skipped: overlay networks need Linux");
}

#[cfg(target_os = "linux")]
fn main() -> anyhow::Result<()> {
    linux::main()
}

#[cfg(target_os = "linux")]
mod linux {

    use std::io::{Read, Write};
    use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use anyhow::{Context, Result, bail};
    use nix::sched::{CloneFlags, setns};
    use swarm_net::overlay::{NetworkDef, Overlay, OverlayConfig, Peer, mac_for_ip};

    const NET: &str = "ovbench";
    /// The encrypted network (user-space AES-256-GCM data path).
    const CRYPT: &str = "ovcrypt";

    fn ip(args: &[&str]) -> Result<()> {
        let out = Command::new("ip").args(args).output().context("ip")?;
        if !out.status.success() {
            bail!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// The two hosts; removed on drop.
    struct Hosts {
        names: [String; 2],
        dirs: [tempfile::TempDir; 2],
    }

    impl Drop for Hosts {
        fn drop(&mut self) {
            for dir in &self.dirs {
                for entry in std::fs::read_dir(dir.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    let _ = nix::mount::umount2(&entry.path(), nix::mount::MntFlags::MNT_DETACH);
                    let _ = std::fs::remove_file(entry.path());
                }
            }
            for name in &self.names {
                let _ = ip(&["netns", "del", name]);
            }
        }
    }

    fn hosts() -> Result<Hosts> {
        let pid = std::process::id();
        let hosts = Hosts {
            names: [format!("swovb-A-{pid}"), format!("swovb-B-{pid}")],
            dirs: [tempfile::tempdir()?, tempfile::tempdir()?],
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
        Ok(hosts)
    }

    fn enter(path: &Path) -> Result<()> {
        let ns = std::fs::File::open(path).with_context(|| path.display().to_string())?;
        setns(&ns, CloneFlags::CLONE_NEWNET).context("setns")?;
        Ok(())
    }

    /// Control-plane timings of one host, and its task namespace.
    struct Setup {
        task_netns: PathBuf,
        timings: Vec<(&'static str, Duration)>,
    }

    /// One host: sets everything up, reports, then waits for `done` and cleans up.
    fn host(
        host_ns: PathBuf,
        dir: PathBuf,
        me: usize,
        ready: mpsc::Sender<Result<Setup>>,
        done: mpsc::Receiver<()>,
    ) -> Result<()> {
        enter(&host_ns)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let underlay: [IpAddr; 2] = ["192.168.251.1".parse()?, "192.168.251.2".parse()?];
            let tasks = [Ipv4Addr::new(10, 0, 9, 2), Ipv4Addr::new(10, 0, 9, 3)];
            let crypt_tasks = [Ipv4Addr::new(10, 0, 10, 2), Ipv4Addr::new(10, 0, 10, 3)];
            let mut cfg = OverlayConfig::new(underlay[me]);
            cfg.netns_dir = dir;
            let overlay = Overlay::new(cfg).await?;
            let net = NetworkDef {
                id: NET.into(),
                vni: 4097,
                subnet: "10.0.9.0/24".into(),
                gateway: "10.0.9.1".into(),
                encrypted: false,
            };
            let crypt = NetworkDef {
                id: CRYPT.into(),
                vni: 4098,
                subnet: "10.0.10.0/24".into(),
                gateway: "10.0.10.1".into(),
                encrypted: true,
            };
            let setup = async {
                let mut timings = Vec::new();
                let t = Instant::now();
                overlay.ensure_network(&net).await?;
                timings.push(("ensure_network (new sandbox)", t.elapsed()));
                let t = Instant::now();
                let task_netns = overlay.create_task_netns("task")?;
                timings.push(("create_task_netns", t.elapsed()));
                let t = Instant::now();
                let addr = format!("{}/24", tasks[me]).parse()?;
                overlay.attach(NET, &task_netns, "eth0", addr, true).await?;
                timings.push(("attach", t.elapsed()));
                let other = 1 - me;
                let peer = Peer {
                    addr: IpAddr::V4(tasks[other]),
                    mac: mac_for_ip(tasks[other]).0,
                    node_underlay: underlay[other],
                };
                // 250 peers (the real one among them), then back to the real one.
                let many: Vec<Peer> = (4..254u8)
                    .map(|i| {
                        let a = Ipv4Addr::new(10, 0, 9, i);
                        Peer {
                            addr: IpAddr::V4(a),
                            mac: mac_for_ip(a).0,
                            node_underlay: underlay[other],
                        }
                    })
                    .chain([peer])
                    .collect();
                let t = Instant::now();
                overlay.set_peers(NET, &many).await?;
                timings.push(("set_peers (251 new)", t.elapsed()));
                let t = Instant::now();
                overlay.set_peers(NET, &[peer]).await?;
                timings.push(("set_peers (250 removed)", t.elapsed()));
                let t = Instant::now();
                overlay.ensure_network(&crypt).await?;
                timings.push(("ensure_network (encrypted)", t.elapsed()));
                let addr = format!("{}/24", crypt_tasks[me]).parse()?;
                overlay
                    .attach(CRYPT, &task_netns, "eth1", addr, false)
                    .await?;
                let t = Instant::now();
                overlay.set_keys(CRYPT, &[vec![7u8; 32]]).await?;
                timings.push(("set_keys (1 key)", t.elapsed()));
                let crypt_peer = Peer {
                    addr: IpAddr::V4(crypt_tasks[other]),
                    mac: mac_for_ip(crypt_tasks[other]).0,
                    node_underlay: underlay[other],
                };
                overlay.set_peers(CRYPT, &[crypt_peer]).await?;
                anyhow::Ok(Setup {
                    task_netns,
                    timings,
                })
            }
            .await;
            let ok = setup.is_ok();
            let _ = ready.send(setup);
            if ok {
                // Waiting off the runtime: the encrypted data path runs on it.
                let _ = tokio::task::spawn_blocking(move || done.recv()).await;
            }
            overlay.remove_network(CRYPT).await?;
            overlay.remove_network(NET).await?;
            overlay.remove_task_netns("task")?;
            anyhow::Ok(())
        })
    }

    /// Sends `bytes` from a thread in namespace `from` to a listener at `to` in namespace
    /// `at`; the rate in Gbit/s.
    fn bulk(from: &Path, at: &Path, to: SocketAddr, bytes: usize) -> Result<f64> {
        let at = at.to_owned();
        let (tx, rx) = mpsc::channel();
        let server = std::thread::spawn(move || -> Result<Duration> {
            enter(&at)?;
            let listener = TcpListener::bind(to)?;
            tx.send(())?;
            let (mut conn, _) = listener.accept()?;
            let start = Instant::now();
            let mut buf = vec![0u8; 1 << 16];
            let mut got = 0;
            while got < bytes {
                let n = conn.read(&mut buf)?;
                if n == 0 {
                    bail!("closed after {got} bytes");
                }
                got += n;
            }
            Ok(start.elapsed())
        });
        rx.recv()?;
        let from = from.to_owned();
        let client = std::thread::spawn(move || -> Result<()> {
            enter(&from)?;
            let mut conn = TcpStream::connect(to)?;
            let chunk = vec![7u8; 1 << 16];
            let mut sent = 0;
            while sent < bytes {
                let n = chunk.len().min(bytes - sent);
                conn.write_all(&chunk[..n])?;
                sent += n;
            }
            Ok(())
        });
        client.join().expect("client")?;
        let took = server.join().expect("server")?;
        Ok(bytes as f64 * 8.0 / took.as_secs_f64() / 1e9)
    }

    /// `rounds` round trips of 64 bytes; (p50, p99).
    fn round_trips(
        from: &Path,
        at: &Path,
        to: SocketAddr,
        rounds: usize,
    ) -> Result<(Duration, Duration)> {
        let at = at.to_owned();
        let (tx, rx) = mpsc::channel();
        let server = std::thread::spawn(move || -> Result<()> {
            enter(&at)?;
            let listener = TcpListener::bind(to)?;
            tx.send(())?;
            let (mut conn, _) = listener.accept()?;
            conn.set_nodelay(true)?;
            let mut buf = [0u8; 64];
            for _ in 0..rounds {
                conn.read_exact(&mut buf)?;
                conn.write_all(&buf)?;
            }
            Ok(())
        });
        rx.recv()?;
        let from = from.to_owned();
        let client = std::thread::spawn(move || -> Result<Vec<Duration>> {
            enter(&from)?;
            let mut conn = TcpStream::connect(to)?;
            conn.set_nodelay(true)?;
            let mut buf = [1u8; 64];
            let mut times = Vec::with_capacity(rounds);
            for _ in 0..rounds {
                let t = Instant::now();
                conn.write_all(&buf)?;
                conn.read_exact(&mut buf)?;
                times.push(t.elapsed());
            }
            Ok(times)
        });
        let mut times = client.join().expect("client")?;
        server.join().expect("server")?;
        times.sort();
        Ok((times[times.len() / 2], times[times.len() * 99 / 100]))
    }

    pub(crate) fn main() -> Result<()> {
        let quick = std::env::args().any(|a| a == "--test");
        if !nix::unistd::geteuid().is_root() {
            println!("overlay bench skipped: needs root (network namespaces, vxlan)");
            return Ok(());
        }
        let hosts = match hosts() {
            Ok(hosts) => hosts,
            Err(e) => {
                println!("overlay bench skipped: cannot simulate two hosts ({e:#})");
                return Ok(());
            }
        };
        let host_ns: Vec<PathBuf> = hosts
            .names
            .iter()
            .map(|n| PathBuf::from("/run/netns").join(n))
            .collect();
        let mut ready = Vec::new();
        let mut done = Vec::new();
        let mut threads = Vec::new();
        for (me, (ns, dir)) in host_ns.iter().zip(&hosts.dirs).enumerate() {
            let (r_tx, r_rx) = mpsc::channel();
            let (d_tx, d_rx) = mpsc::channel();
            let (ns, dir) = (ns.clone(), dir.path().to_owned());
            threads.push(std::thread::spawn(move || host(ns, dir, me, r_tx, d_rx)));
            ready.push(r_rx);
            done.push(d_tx);
        }
        let setups: Vec<Setup> = ready
            .iter()
            .map(|rx| rx.recv().context("host thread")?)
            .collect::<Result<_>>()?;
        println!("control plane (host A):");
        for (what, took) in &setups[0].timings {
            println!("  {what:<30} {:>9.3} ms", took.as_secs_f64() * 1e3);
        }

        let (bytes, rounds) = if quick {
            (8 << 20, 200)
        } else {
            (1 << 30, 20_000)
        };
        let overlay_to: SocketAddr = "10.0.9.3:7000".parse()?;
        let direct_to: SocketAddr = "192.168.251.2:7001".parse()?;
        let (ta, tb) = (&setups[0].task_netns, &setups[1].task_netns);
        let over = bulk(ta, tb, overlay_to, bytes)?;
        let direct = bulk(&host_ns[0], &host_ns[1], direct_to, bytes)?;
        let crypt_bytes = bytes / 4;
        let sealed = bulk(ta, tb, "10.0.10.3:7004".parse()?, crypt_bytes)?;
        println!(
            "bulk TCP, {} MiB ({} MiB encrypted):",
            bytes >> 20,
            crypt_bytes >> 20
        );
        println!("  over VXLAN      {over:>7.2} Gbit/s");
        println!(
            "  encrypted       {sealed:>7.2} Gbit/s  (= {:.0}% of VXLAN)",
            sealed / over * 100.0
        );
        println!(
            "  direct underlay {direct:>7.2} Gbit/s  (overlay = {:.0}%)",
            over / direct * 100.0
        );
        let overlay_rr = round_trips(ta, tb, "10.0.9.3:7002".parse()?, rounds)?;
        let crypt_rr = round_trips(ta, tb, "10.0.10.3:7005".parse()?, rounds)?;
        let direct_rr = round_trips(
            &host_ns[0],
            &host_ns[1],
            "192.168.251.2:7003".parse()?,
            rounds,
        )?;
        println!("TCP round trip of 64 bytes, {rounds} rounds (p50 / p99):");
        println!(
            "  over VXLAN      {:>7.1} / {:>7.1} µs",
            us(overlay_rr.0),
            us(overlay_rr.1)
        );
        println!(
            "  encrypted       {:>7.1} / {:>7.1} µs",
            us(crypt_rr.0),
            us(crypt_rr.1)
        );
        println!(
            "  direct underlay {:>7.1} / {:>7.1} µs",
            us(direct_rr.0),
            us(direct_rr.1)
        );

        seal_rate(quick);

        drop(done);
        for t in threads {
            t.join().expect("host thread")?;
        }
        drop(hosts);
        Ok(())
    }

    /// What the encrypted data path's cipher costs alone: AES-256-GCM (ring) sealing
    /// 1432-byte pieces, about the largest the data path seals (1404 + 14 + 10), on one core.
    fn seal_rate(quick: bool) {
        use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).expect("key"));
        let mut frame = vec![0u8; 1432];
        let rounds: u64 = if quick { 2_000 } else { 200_000 };
        let start = Instant::now();
        for i in 0..rounds {
            let mut nonce = [0u8; 12];
            nonce[4..].copy_from_slice(&i.to_be_bytes());
            let tag = key
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from([0u8; 24]),
                    &mut frame,
                )
                .expect("seal");
            std::hint::black_box(&tag);
        }
        let took = start.elapsed();
        println!(
            "AES-256-GCM seal of {}-byte frames, one core: {:.2} Gbit/s ({:.2} µs a frame)",
            frame.len(),
            (rounds * frame.len() as u64) as f64 * 8.0 / took.as_secs_f64() / 1e9,
            us(took) / rounds as f64
        );
    }

    fn us(d: Duration) -> f64 {
        d.as_secs_f64() * 1e6
    }
}
