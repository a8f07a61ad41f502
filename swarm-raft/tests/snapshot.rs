//! Snapshots: taken every `snapshot_interval` entries, old ones pruned, the log
//! compacted behind them, and a far-behind member caught up by one.

use swarm_raft::testing::*;
use swarm_raft::{Config, Start};

fn small_snapshots(c: &mut Config) {
    c.snapshot_interval = 50;
    c.log_entries_for_slow_followers = 10;
    c.keep_old_snapshots = 1;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_down_for_many_entries_catches_up_by_snapshot() {
    let mut c = MemCluster::with(3, small_snapshots);
    let leader = c.leader().await;
    let down = *c.members.keys().find(|i| **i != leader).unwrap();
    c.stop(down);
    // One write per entry: sequential writes are not batched together.
    for k in 0..300 {
        put_retry(c.store(leader), &format!("s{k}")).await;
    }
    let st = c.node(leader).status().await.unwrap();
    assert!(st.snapshot_index >= 250, "{st:?}");
    assert!(st.first_index > 200, "log not compacted: {st:?}");
    assert!(
        st.first_index + 10 <= st.snapshot_index + 1,
        "kept entries: {st:?}"
    );
    assert_eq!(st.snapshot_files, 2, "one snapshot and one old one");

    c.start(down, Start::Join);
    let s = c.store(down).clone();
    eventually("the member to catch up", || services(&s) == 300).await;
    let back = c.node(down).status().await.unwrap();
    assert!(
        back.snapshot_index >= 250,
        "caught up without a snapshot: {back:?}"
    );
    // It keeps following the log afterwards and agrees with the leader.
    put_retry(c.store(leader), "after").await;
    c.node(down).read_index().await.unwrap();
    assert!(has(c.store(down), "after"));
    assert_eq!(c.store(down).index(), c.store(leader).index());
    assert_eq!(c.store(down).snapshot(), c.store(leader).snapshot());

    // Restart from the snapshot plus the log.
    c.stop(down);
    c.start(down, Start::Join);
    let s = c.store(down).clone();
    eventually("restart from snapshot", || services(&s) == 301).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_member_receives_the_snapshot_then_the_log() {
    let mut c = MemCluster::with(1, small_snapshots);
    let leader = c.leader().await;
    for k in 0..120 {
        put_retry(c.store(leader), &format!("s{k}")).await;
    }
    c.start(2, Start::Join);
    c.node(leader).add_member(2, "m2").await.unwrap();
    let s = c.store(2).clone();
    eventually("the new member to catch up", || services(&s) == 120).await;
    let st = c.node(leader).status().await.unwrap();
    assert_eq!(st.voters, vec![1, 2]);
    put_retry(c.store(2), "from-new").await;
    c.node(leader).read_index().await.unwrap();
    assert!(has(c.store(leader), "from-new"));
}

/// The scenario at the default snapshot interval (10000): a member down
/// for 25k entries comes back through a snapshot, not a 25k-entry replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_down_for_25k_entries_catches_up_by_snapshot() {
    let mut c = MemCluster::new(3);
    let leader = c.leader().await;
    let down = *c.members.keys().find(|i| **i != leader).unwrap();
    put_retry(c.store(leader), "before").await;
    c.stop(down);
    let node = c.node(leader).clone();
    let start = node.status().await.unwrap().last_index;
    // A few proposers in a pipeline; each entry holds what arrived together.
    let mut proposers = Vec::new();
    for _ in 0..8 {
        let node = node.clone();
        proposers.push(tokio::spawn(async move {
            while node.status().await.unwrap().last_index < start + 25_000 {
                let batch = swarm_core::encode_batch(&[]);
                node.propose_encoded(batch).await.unwrap();
            }
        }));
    }
    for p in proposers {
        p.await.unwrap();
    }
    put_retry(c.store(leader), "after").await;
    let st = node.status().await.unwrap();
    assert!(st.snapshot_index >= 20_000, "{st:?}");
    assert!(st.first_index > st.snapshot_index - 500, "{st:?}");

    c.start(down, Start::Join);
    let s = c.store(down).clone();
    eventually("the member to catch up", || has(&s, "after")).await;
    let back = c.node(down).status().await.unwrap();
    assert!(
        back.snapshot_index >= 20_000,
        "not caught up by snapshot: {back:?}"
    );
    assert!(has(&s, "before"));
    assert_eq!(c.store(down).index(), c.store(leader).index());
}
