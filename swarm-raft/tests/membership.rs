//! Membership: add (as learner, then voter), remove, leadership transfer, the
//! refusals that protect quorum, and churn under load.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use swarm_raft::testing::*;
use swarm_raft::{RaftError, Start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_and_remove_members() {
    let mut c = MemCluster::new(1);
    let leader = c.leader().await;
    put_retry(c.store(leader), "one").await;
    // Removing the only member is refused.
    let err = c.node(leader).remove_member(1).await.unwrap_err();
    assert!(matches!(err, RaftError::LastMember(1)), "{err}");

    for id in [2, 3] {
        c.start(id, Start::Join);
        c.node(leader)
            .add_member(id, &format!("m{id}"))
            .await
            .unwrap();
    }
    let st = c.node(leader).status().await.unwrap();
    assert_eq!(st.voters, vec![1, 2, 3]);
    assert!(st.learners.is_empty());
    for id in [2, 3] {
        let s = c.store(id).clone();
        eventually("new members to catch up", || has(&s, "one")).await;
    }
    // Adding a voter twice is a no-op; a follower cannot change membership.
    c.node(leader).add_member(2, "m2").await.unwrap();
    let err = c.node(2).remove_member(3).await.unwrap_err();
    assert!(
        matches!(err, RaftError::NotLeader { leader: Some(1) }),
        "{err}"
    );
    assert!(matches!(
        c.node(1).remove_member(9).await.unwrap_err(),
        RaftError::NotMember(9)
    ));

    c.node(leader).remove_member(3).await.unwrap();
    c.stop(3);
    assert_eq!(c.node(leader).status().await.unwrap().voters, vec![1, 2]);
    put_retry(c.store(2), "two").await;
    c.node(leader).read_index().await.unwrap();
    assert!(has(c.store(leader), "two"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_that_would_lose_quorum_is_refused() {
    let mut c = MemCluster::new(3);
    let leader = c.leader().await;
    let others: Vec<u64> = c.members.keys().copied().filter(|i| *i != leader).collect();
    put_retry(c.store(leader), "x").await;
    // One follower is gone: removing the other reachable one would leave
    // {leader, dead} whose quorum (2) only the leader can reach.
    c.stop(others[0]);
    let leader_node = c.node(leader).clone();
    eventually("the leader to notice the dead member", || {
        futures::executor::block_on(leader_node.status())
            .map(|s| s.progress.get(&others[0]).is_some_and(|p| !p.recent_active))
            .unwrap_or(false)
    })
    .await;
    let err = c.node(leader).remove_member(others[1]).await.unwrap_err();
    assert!(
        matches!(
            err,
            RaftError::WouldLoseQuorum {
                reachable: 1,
                remaining: 2,
                needed: 2
            }
        ),
        "{err}"
    );
    // Removing the dead one keeps a reachable quorum: allowed.
    c.node(leader).remove_member(others[0]).await.unwrap();
    put_retry(c.store(leader), "y").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_leader_transfers_leadership_first() {
    let mut c = MemCluster::new(3);
    let old = c.leader().await;
    put_retry(c.store(old), "x").await;
    let err = c.node(old).remove_member(old).await.unwrap_err();
    let RaftError::NotLeader { leader: Some(new) } = err else {
        panic!("expected NotLeader naming the new leader, got {err}");
    };
    assert_ne!(new, old);
    // A freshly elected leader vouches for a peer only once it has heard from
    // it; until then the change is refused as unsafe. Retry, bounded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match c.node(new).remove_member(old).await {
            Ok(()) => break,
            Err(RaftError::WouldLoseQuorum { .. }) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("removing the old leader: {e}"),
        }
    }
    c.stop(old);
    let rest: Vec<u64> = c.members.keys().copied().collect();
    assert_eq!(c.leader_among(&rest).await, new);
    put_retry(c.store(new), "y").await;
    assert_eq!(c.node(new).status().await.unwrap().voters.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_and_demote_churn_under_load() {
    let mut c = MemCluster::new(3);
    let leader = c.leader().await;
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..4 {
        let store = c.store(leader).clone();
        let (stop, done) = (stop.clone(), done.clone());
        writers.push(tokio::spawn(async move {
            let mut k = 0;
            while !stop.load(Ordering::Relaxed) {
                put_retry(&store, &format!("w{w}-{k}")).await;
                done.fetch_add(1, Ordering::Relaxed);
                k += 1;
            }
        }));
    }
    // Members 4..=7 join (promoted) and leave (demoted) one after the other.
    for id in 4..=7u64 {
        c.start(id, Start::Join);
        c.node(leader)
            .add_member(id, &format!("m{id}"))
            .await
            .unwrap();
        let s = c.store(id).clone();
        let target = done.load(Ordering::Relaxed);
        eventually("the new member to follow", || services(&s) >= target).await;
        c.node(leader).remove_member(id).await.unwrap();
        c.stop(id);
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let total = done.load(Ordering::Relaxed);
    assert!(total > 0);
    let st = c.node(leader).status().await.unwrap();
    assert_eq!(st.voters, vec![1, 2, 3]);
    for id in 1..=3 {
        c.node(id).read_index().await.unwrap();
        assert_eq!(services(c.store(id)), total, "member {id}");
    }
}
