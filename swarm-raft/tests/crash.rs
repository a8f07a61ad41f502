//! Durability: member processes killed with SIGKILL in the middle of writes lose
//! no acknowledged write; a torn tail on disk is cut off at recovery.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use swarm_raft::testing::*;
use swarm_raft::{RaftNode, Start};

/// Child processes, killed and reaped when dropped (even if the test fails).
struct Procs(BTreeMap<u64, Child>);

impl Procs {
    fn kill(&mut self, id: u64) {
        if let Some(mut c) = self.0.remove(&id) {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.0.keys().copied().collect();
        for id in ids {
            self.kill(id);
        }
    }
}

enum Line {
    Ack(String),
    Leader(u64),
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn_member(
    id: u64,
    dir: &Path,
    peers: &str,
    listen: &str,
    writes: usize,
    tx: mpsc::Sender<(u64, Line)>,
) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_raft-member"))
        .args(["--id", &id.to_string(), "--dir"])
        .arg(dir)
        .args(["--listen", listen, "--peers", peers, "--tick-ms", "20"])
        .args([
            "--writes",
            &writes.to_string(),
            "--concurrency",
            "8",
            "--prefix",
            &format!("p{id}"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn raft-member");
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let parsed = if let Some(name) = line.strip_prefix("ACK ") {
                Line::Ack(name.to_string())
            } else if let Some(rest) = line.strip_prefix("LEADER ") {
                match rest.split(' ').next().and_then(|l| l.parse().ok()) {
                    Some(l) => Line::Leader(l),
                    None => continue,
                }
            } else {
                continue;
            };
            if tx.send((id, parsed)).is_err() {
                return;
            }
        }
    });
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_writes_loses_no_acknowledged_write() {
    let tmp = tempfile::tempdir().unwrap();
    let addrs: HashMap<u64, String> = (1..=3)
        .map(|i| (i, format!("127.0.0.1:{}", free_port())))
        .collect();
    let peers = (1..=3)
        .map(|i| format!("{i}={}", addrs[&i]))
        .collect::<Vec<_>>()
        .join(",");
    let (tx, rx) = mpsc::channel();
    let mut procs = Procs(BTreeMap::new());
    for id in 1..=3 {
        let dir = tmp.path().join(format!("m{id}"));
        procs.0.insert(
            id,
            spawn_member(id, &dir, &peers, &addrs[&id], 10_000, tx.clone()),
        );
    }
    drop(tx);

    let mut acked = HashSet::new();
    let mut leader = None;
    let mut killed = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    // Kill the leader once 3000 writes are acknowledged, then everyone at 10k.
    while acked.len() < 10_000 {
        assert!(
            Instant::now() < deadline,
            "only {} writes acknowledged",
            acked.len()
        );
        let Ok((from, line)) = rx.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        match line {
            Line::Ack(name) => {
                acked.insert(name);
            }
            Line::Leader(l) if Some(from) != killed => leader = Some(l),
            Line::Leader(_) => {}
        }
        if killed.is_none()
            && acked.len() >= 3000
            && let Some(l) = leader
        {
            procs.kill(l);
            killed = Some(l);
        }
    }
    assert!(killed.is_some());
    for id in 1..=3 {
        procs.kill(id);
    }
    // Acknowledgements printed before the kill are still in the pipe.
    while let Ok((_, line)) = rx.recv_timeout(Duration::from_millis(100)) {
        if let Line::Ack(name) = line {
            acked.insert(name);
        }
    }

    // Every member restarts from its directory; every acknowledged write is there.
    let mut nodes: Vec<(RaftNode, swarm_core::Store)> = Vec::new();
    let mut transports = Vec::new();
    for id in 1..=3u64 {
        let cfg = config(id, tmp.path().join(format!("m{id}")));
        let (node, store, t) = tcp_member(cfg, &addrs[&id], &HashMap::new(), Start::Join).await;
        nodes.push((node, store));
        transports.push(t);
    }
    nodes[0].0.wait_for_leader(WAIT).await.unwrap();
    for (node, store) in &nodes {
        if let Err(e) = node.read_index().await {
            for (n, _) in &nodes {
                eprintln!("{:?}", n.status().await);
            }
            panic!("read_index on {}: {e}", node.id());
        }
        let missing: Vec<&String> = acked.iter().filter(|n| !has(store, n)).collect();
        assert!(
            missing.is_empty(),
            "member {} lost {} acknowledged writes, e.g. {:?}",
            node.id(),
            missing.len(),
            missing.first()
        );
    }
    let reference = nodes[0].1.snapshot();
    for (_, store) in &nodes[1..] {
        assert_eq!(store.snapshot(), reference, "members diverge");
    }
    for (node, _) in &nodes {
        node.shutdown();
    }
    for t in transports {
        t.shutdown();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_is_cut_off_and_acknowledged_entries_survive() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m1");
    let voters = BTreeMap::from([(1, "m1".to_string())]);
    let net = swarm_raft::MemNetwork::new();
    {
        let (t, inbox) = net.join(1);
        let store = swarm_core::Store::new();
        let node = RaftNode::start(
            config(1, dir.clone()),
            store.clone(),
            t,
            inbox,
            Start::NewCluster(voters),
        )
        .unwrap();
        for k in 0..200 {
            put_retry(&store, &format!("s{k}")).await;
        }
        node.shutdown();
    }
    // A crash in the middle of the next write leaves part of a record behind:
    // append half a record of garbage to the newest log file, and flip the last
    // bytes of a copy in a second run.
    let newest = std::fs::read_dir(dir.join("log"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "raftlog"))
        .max()
        .expect("a log file");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&newest)
        .unwrap();
    f.write_all(&[0xA5; 37]).unwrap();
    f.sync_all().unwrap();
    drop(f);

    let (t, inbox) = net.join(1);
    let store = swarm_core::Store::new();
    let node =
        RaftNode::start(config(1, dir.clone()), store.clone(), t, inbox, Start::Join).unwrap();
    node.wait_for_leader(WAIT).await.unwrap();
    node.read_index().await.unwrap();
    assert_eq!(services(&store), 200);
    put_retry(&store, "after-recovery").await;
    node.shutdown();

    // And once more from the recovered files.
    let (t, inbox) = net.join(1);
    let store = swarm_core::Store::new();
    let node = RaftNode::start(config(1, dir), store.clone(), t, inbox, Start::Join).unwrap();
    node.wait_for_leader(WAIT).await.unwrap();
    node.read_index().await.unwrap();
    assert_eq!(services(&store), 201);
    node.shutdown();
}
