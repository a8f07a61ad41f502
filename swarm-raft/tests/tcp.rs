//! A group over loopback TCP (real sockets, real disks).

use swarm_raft::testing::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_over_tcp() {
    let c = TcpCluster::new(3).await;
    c.leader().await;
    for (i, id) in c.members.keys().enumerate() {
        for k in 0..20 {
            put_retry(c.store(*id), &format!("m{i}-{k}")).await;
        }
    }
    for (id, m) in &c.members {
        m.node.read_index().await.unwrap();
        assert_eq!(services(&m.store), 60, "member {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_member_restarts_on_its_address_and_catches_up() {
    let mut c = TcpCluster::new(3).await;
    let leader = c.leader().await;
    let down = *c.members.keys().find(|i| **i != leader).unwrap();
    let addr = c.addrs[&down].clone();
    c.stop(down);
    for k in 0..10 {
        put_retry(c.store(leader), &format!("s{k}")).await;
    }
    c.start(down, swarm_raft::Start::Join).await;
    assert_eq!(c.addrs[&down], addr);
    let s = c.store(down).clone();
    eventually("the restarted member to catch up", || services(&s) == 10).await;
}
