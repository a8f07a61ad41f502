//! A group over loopback TCP (real sockets, real disks).

mod common;

use std::collections::{BTreeMap, HashMap};

use common::*;
use swarm_raft::Start;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_over_tcp() {
    let tmp = tempfile::tempdir().unwrap();
    let mut listeners = Vec::new();
    let mut members = Vec::new();
    for id in 1..=3u64 {
        let cfg = config(id, tmp.path().join(format!("m{id}")));
        let (t, inbox) = swarm_raft::TcpTransport::bind(id, "127.0.0.1:0", &HashMap::new())
            .await
            .unwrap();
        listeners.push((cfg, t, inbox));
    }
    let voters: BTreeMap<u64, String> = listeners
        .iter()
        .map(|(c, t, _)| (c.id, t.local_addr().to_string()))
        .collect();
    let mut transports = Vec::new();
    for (cfg, t, inbox) in listeners {
        let store = swarm_core::Store::new();
        let node = swarm_raft::RaftNode::start(
            cfg,
            store.clone(),
            t.clone(),
            inbox,
            Start::NewCluster(voters.clone()),
        )
        .unwrap();
        members.push((node, store));
        transports.push(t);
    }
    members[0].0.wait_for_leader(WAIT).await.unwrap();
    for (i, (_, store)) in members.iter().enumerate() {
        for k in 0..20 {
            put_retry(store, &format!("m{i}-{k}")).await;
        }
    }
    for (node, store) in &members {
        node.read_index().await.unwrap();
        assert_eq!(services(store), 60, "member {}", node.id());
    }
    for (node, _) in &members {
        node.shutdown();
    }
    for t in transports {
        t.shutdown();
    }
}
