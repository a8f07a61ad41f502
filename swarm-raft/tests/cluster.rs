//! Groups of 1, 3 and 5 members on real disks: writes, failover, partitions,
//! restarts, linearizable reads.

use std::time::Duration;

use swarm_core::testing::proposer_suite;
use swarm_raft::Start;
use swarm_raft::testing::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_three_and_five_members_replicate_every_write() {
    for n in [1u64, 3, 5] {
        let c = MemCluster::new(n);
        let leader = c.leader().await;
        // Write through every member: followers forward to the leader.
        let mut writes = Vec::new();
        for (i, id) in c.members.keys().enumerate() {
            let store = c.store(*id).clone();
            writes.push(tokio::spawn(async move {
                for k in 0..20 {
                    put_retry(&store, &format!("s{i}-{k}")).await;
                }
            }));
        }
        for w in writes {
            w.await.unwrap();
        }
        let total = 20 * n as usize;
        for id in c.members.keys() {
            c.node(*id).read_index().await.unwrap();
        }
        assert_eq!(services(c.store(leader)), total);
        for id in c.members.keys() {
            assert_eq!(services(c.store(*id)), total, "member {id} of {n}");
            assert_eq!(c.store(*id).index(), c.store(leader).index());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_reports_its_error_and_consumes_an_index() {
    let c = MemCluster::new(3);
    let leader = c.leader().await;
    let follower = *c.members.keys().find(|i| **i != leader).unwrap();
    put_retry(c.store(follower), "warmup").await;
    let before = c.store(follower).index();
    // Two members create the same name at once: both transactions pass locally,
    // the second one to be applied is refused by the store.
    let (a, b) = tokio::join!(put(c.store(leader), "web"), put(c.store(follower), "web"));
    let errors: Vec<_> = [a, b].into_iter().filter_map(|r| r.err()).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        matches!(errors[0], swarm_core::Error::NameConflict { .. }),
        "{}",
        errors[0]
    );
    c.node(follower).read_index().await.unwrap();
    assert_eq!(c.store(follower).index(), before + 2);
    assert_eq!(c.store(leader).index(), before + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_elects_another_and_writes_continue() {
    let mut c = MemCluster::new(3);
    let old = c.leader().await;
    for k in 0..10 {
        put_retry(c.store(old), &format!("before-{k}")).await;
    }
    c.stop(old);
    let rest: Vec<u64> = c.members.keys().copied().collect();
    let new = c.leader_among(&rest).await;
    assert_ne!(new, old);
    for k in 0..10 {
        put_retry(c.store(rest[0]), &format!("after-{k}")).await;
    }
    for id in &rest {
        c.node(*id).read_index().await.unwrap();
        assert_eq!(services(c.store(*id)), 20);
    }
    // The old leader comes back and catches up.
    c.start(old, Start::Join);
    let s = c.store(old).clone();
    eventually("the old leader to catch up", || services(&s) == 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_minority_refuses_writes_and_heals() {
    let c = MemCluster::new(5);
    let leader = c.leader().await;
    put_retry(c.store(leader), "first").await;
    // Cut the leader and one follower from the other three.
    let follower = *c.members.keys().find(|i| **i != leader).unwrap();
    let minority = [leader, follower];
    let majority: Vec<u64> = c
        .members
        .keys()
        .copied()
        .filter(|i| !minority.contains(i))
        .collect();
    c.net.partition(&minority, &majority);

    let new = c.leader_among(&majority).await;
    for k in 0..10 {
        put_retry(c.store(new), &format!("major-{k}")).await;
    }
    // The minority cannot commit: a clear, retryable refusal, never a hang.
    let err = put(c.store(follower), "minor").await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(!has(c.store(follower), "minor"));
    let err = c.node(follower).read_index().await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    // Once the minority knows it has no leader, it says it lacks a quorum.
    let node = c.node(follower).clone();
    eventually("the minority to lose its leader", || {
        node.leadership().leader.is_none()
    })
    .await;
    let asked = std::time::Instant::now();
    let err = put(c.store(follower), "minor").await.unwrap_err();
    assert!(err.to_string().contains("quorum"), "{err}");
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "{:?}",
        asked.elapsed()
    );

    c.net.heal();
    for id in minority {
        let s = c.store(id).clone();
        eventually("the minority to catch up", || services(&s) == 11).await;
    }
    let leader = c.leader().await;
    put_retry(c.store(leader), "healed").await;
    for id in c.members.keys() {
        c.node(*id).read_index().await.unwrap();
        assert!(has(c.store(*id), "healed"));
        assert!(!has(c.store(*id), "minor"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_every_member_keeps_the_state() {
    let mut c = MemCluster::new(3);
    let leader = c.leader().await;
    for k in 0..30 {
        put_retry(c.store(leader), &format!("s{k}")).await;
    }
    let index = c.store(leader).index();
    for id in 1..=3 {
        c.stop(id);
    }
    for id in 1..=3 {
        c.start(id, Start::Join);
    }
    let leader = c.leader().await;
    c.node(leader).read_index().await.unwrap();
    for id in 1..=3 {
        let s = c.store(id).clone();
        eventually("replay after restart", || services(&s) == 30).await;
        assert!(c.store(id).index() >= index);
    }
    put_retry(c.store(leader), "after-restart").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_index_sees_writes_made_through_other_members() {
    let c = MemCluster::new(3);
    let leader = c.leader().await;
    for id in c.members.keys().copied().filter(|i| *i != leader) {
        put_retry(c.store(leader), &format!("w{id}")).await;
        c.node(id).read_index().await.unwrap();
        assert!(has(c.store(id), &format!("w{id}")));
    }
    let _ = Duration::ZERO;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_member_refuses_writes_instead_of_diverging() {
    let mut c = MemCluster::new(1);
    let leader = c.leader().await;
    put_retry(c.store(leader), "a").await;
    let store = c.store(leader).clone();
    c.stop(leader);
    let err = put(&store, "b").await.unwrap_err();
    assert!(matches!(err, swarm_core::Error::Unavailable(_)), "{err}");
    assert!(!has(&store, "b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_member_keeps_the_proposer_contract() {
    let c = MemCluster::new(3);
    c.leader().await;
    // The leader and the followers, which forward to it.
    for id in c.members.keys() {
        let failures = proposer_suite(c.store(*id), c.node(*id)).await;
        assert!(failures.is_empty(), "member {id}: {failures:#?}");
    }
}
