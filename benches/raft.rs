//! Raft benchmark: 3 members over loopback TCP, each with its own raft-engine
//! log fsynced on every write, all in this process (one driver thread each).
//!
//! 1. committed proposals per second with 1, 16 and 256 concurrent proposers on
//!    the leader, two kinds of proposal: `raft` = an empty store batch (measures
//!    consensus: batching, fsync, replication, apply bookkeeping) and `store` =
//!    a `store.update` creating a service (adds the transaction and the store's
//!    own apply on all three members);
//! 2. commit latency p50/p99 at a fixed offered load of 10k proposals/s (`raft`);
//! 3. failover: time from killing the leader to the first new commit, tick 100 ms.
//!
//! Run: `cargo bench --bench raft` (about a minute). `-- --test` runs every step
//! briefly, as CI does.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use swarm_core::Store;
use swarm_core::types::{Annotations, RaftConfig, Service, ServiceSpec};
use swarm_raft::testing::{Member, TcpCluster};
use swarm_raft::{Config, RaftNode};

static NAMES: AtomicU64 = AtomicU64::new(0);

#[derive(Clone, Copy, Debug)]
enum Kind {
    Raft,
    Store,
}

async fn propose(kind: Kind, node: &RaftNode, store: &Store) -> bool {
    match kind {
        Kind::Raft => node
            .propose_encoded(swarm_core::encode_batch(&[]))
            .await
            .is_ok(),
        Kind::Store => create(store).await.is_ok(),
    }
}

async fn create(store: &Store) -> swarm_core::Result<()> {
    let n = NAMES.fetch_add(1, Ordering::Relaxed);
    let svc = Service {
        spec: ServiceSpec {
            annotations: Annotations::named(format!("svc-{n}")),
            ..Default::default()
        },
        ..Default::default()
    };
    store.update(|tx| tx.create(svc)).await.map(|_| ())
}

/// Three members over loopback TCP, ticking every `tick`, with a leader.
async fn cluster(tick: Duration) -> TcpCluster {
    let timeout = Config::new(0, PathBuf::new(), &RaftConfig::default()).request_timeout;
    let c = TcpCluster::with(3, move |cfg| {
        cfg.tick_interval = tick;
        cfg.request_timeout = timeout;
    })
    .await;
    c.leader().await;
    c
}

/// The member that leads now (the first one when none does).
fn leader(c: &TcpCluster) -> &Member {
    c.members
        .values()
        .find(|m| m.node.is_leader())
        .or_else(|| c.members.values().next())
        .expect("a member")
}

/// Committed proposals per second with `concurrency` proposers looping for `secs`.
async fn throughput(c: &TcpCluster, kind: Kind, concurrency: usize, run: Duration) -> f64 {
    let m = leader(c);
    let (node, store) = (m.node.clone(), m.store.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (node, store, stop, done) = (node.clone(), store.clone(), stop.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if propose(kind, &node, &store).await {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(run).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// Latencies (µs, sorted) of proposals offered at `rate`/s for `run`.
async fn latency(c: &TcpCluster, rate: u64, run: Duration) -> Vec<u64> {
    let node = leader(c).node.clone();
    let per_ms = (rate / 1000).max(1);
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::new();
    let end = Instant::now() + run;
    while Instant::now() < end {
        ticker.tick().await;
        for _ in 0..per_ms {
            let node = node.clone();
            let offered = Instant::now();
            tasks.push(tokio::spawn(async move {
                let ok = node
                    .propose_encoded(swarm_core::encode_batch(&[]))
                    .await
                    .is_ok();
                ok.then(|| offered.elapsed().as_micros() as u64)
            }));
        }
    }
    let mut lat = Vec::with_capacity(tasks.len());
    for t in tasks {
        if let Ok(Some(l)) = t.await {
            lat.push(l);
        }
    }
    lat.sort_unstable();
    lat
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// Kills the leader and returns the time until a survivor commits a write.
async fn failover(c: &mut TcpCluster) -> Duration {
    for _ in 0..50 {
        create(&leader(c).store).await.expect("warm-up write");
    }
    let old = leader(c).node.id();
    let store = (c.members.iter())
        .find(|(id, _)| **id != old)
        .map(|(_, m)| m.store.clone())
        .expect("a survivor");
    let killed = Instant::now();
    c.stop(old);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stop = Arc::new(AtomicBool::new(false));
    let attempts = {
        let stop = stop.clone();
        tokio::spawn(async move {
            // A write every 10 ms from a survivor; the first to commit stops the clock.
            while !stop.load(Ordering::Relaxed) {
                let (store, tx) = (store.clone(), tx.clone());
                tokio::spawn(async move {
                    if create(&store).await.is_ok() {
                        let _ = tx.send(Instant::now());
                    }
                });
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let first = rx.recv().await.expect("a commit after failover");
    stop.store(true, Ordering::Relaxed);
    let _ = attempts.await;
    first - killed
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let quick = std::env::args().any(|a| a == "--test");
    let run = if quick {
        Duration::from_millis(300)
    } else {
        Duration::from_secs(5)
    };
    println!("raft bench: 3 members, loopback TCP, raft-engine fsync on every write");

    for kind in [Kind::Raft, Kind::Store] {
        let c = cluster(Duration::from_millis(100)).await;
        for concurrency in [1usize, 16, 256] {
            let rate = throughput(&c, kind, concurrency, run).await;
            println!("throughput  {kind:?} proposers={concurrency:<4} committed/s={rate:>10.0}");
        }
    }
    let c = cluster(Duration::from_millis(100)).await;
    let rate = if quick { 1_000 } else { 10_000 };
    let lat = latency(&c, rate, run).await;
    println!(
        "latency     Raft offered={rate}/s n={} p50={:.2} ms p99={:.2} ms max={:.2} ms",
        lat.len(),
        pct(&lat, 0.50),
        pct(&lat, 0.99),
        pct(&lat, 1.0)
    );
    drop(c);

    let tick = if quick {
        Duration::from_millis(20)
    } else {
        Duration::from_millis(100)
    };
    let rounds = if quick { 1 } else { 3 };
    for _ in 0..rounds {
        let mut c = cluster(tick).await;
        let t = failover(&mut c).await;
        let election = tick * 10;
        println!(
            "failover    tick={tick:?} election timeout={election:?} leader killed -> first commit {t:?} ({:.2} election timeouts)",
            t.as_secs_f64() / election.as_secs_f64()
        );
    }
}
