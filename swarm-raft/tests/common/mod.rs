//! Test clusters: members on real disks (temp dirs) over the in-process network
//! or loopback TCP.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use swarm_core::Store;
use swarm_core::types::{Annotations, RaftConfig, Service, ServiceSpec};
use swarm_raft::{Config, MemNetwork, RaftError, RaftNode, Start, TcpTransport};

pub const TICK: Duration = Duration::from_millis(20);
pub const WAIT: Duration = Duration::from_secs(10);

pub fn init_log() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

pub fn config(id: u64, dir: PathBuf) -> Config {
    init_log();
    let mut c = Config::new(id, dir, &RaftConfig::default());
    c.tick_interval = TICK;
    c.request_timeout = Duration::from_secs(3);
    c
}

pub fn service(name: &str) -> Service {
    Service {
        spec: ServiceSpec {
            annotations: Annotations::named(name),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Creates service `name` through `store` (and so through raft).
pub async fn put(store: &Store, name: &str) -> swarm_core::Result<()> {
    let s = service(name);
    store.update(|tx| tx.create(s)).await.map(|_| ())
}

/// Retries `put` on retryable errors until `WAIT` passes. A write that timed
/// out may still have committed: a name conflict after a retry means it did.
pub async fn put_retry(store: &Store, name: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut retried = false;
    loop {
        match put(store, name).await {
            Ok(()) => return,
            Err(swarm_core::Error::NameConflict { .. }) if retried => return,
            Err(e) if e.is_retryable() && tokio::time::Instant::now() < deadline => {
                retried = true;
                tokio::time::sleep(TICK).await
            }
            Err(e) => panic!("write {name} failed: {e}"),
        }
    }
}

pub fn services(store: &Store) -> usize {
    store.view().count::<Service>()
}

pub fn has(store: &Store, name: &str) -> bool {
    store.view().get_by_name::<Service>(name).is_some()
}

/// Waits until `f` holds, polling every tick; panics after `WAIT` naming `what`.
pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(TICK).await;
    }
}

pub struct Member {
    pub node: RaftNode,
    pub store: Store,
}

/// A group over the in-process network, each member on its own directory.
pub struct MemCluster {
    pub net: MemNetwork,
    pub tmp: tempfile::TempDir,
    pub members: BTreeMap<u64, Member>,
    pub tweak: fn(&mut Config),
}

fn no_tweak(_: &mut Config) {}

impl MemCluster {
    pub fn new(n: u64) -> MemCluster {
        MemCluster::with(n, no_tweak)
    }

    pub fn with(n: u64, tweak: fn(&mut Config)) -> MemCluster {
        let mut c = MemCluster {
            net: MemNetwork::new(),
            tmp: tempfile::tempdir().unwrap(),
            members: BTreeMap::new(),
            tweak,
        };
        let voters: BTreeMap<u64, String> = (1..=n).map(|i| (i, format!("m{i}"))).collect();
        for id in 1..=n {
            c.start(id, Start::NewCluster(voters.clone()));
        }
        c
    }

    pub fn config(&self, id: u64) -> Config {
        let mut c = config(id, self.tmp.path().join(format!("m{id}")));
        (self.tweak)(&mut c);
        c
    }

    pub fn start(&mut self, id: u64, start: Start) {
        let (t, inbox) = self.net.join(id);
        let store = Store::new();
        let node = RaftNode::start(self.config(id), store.clone(), t, inbox, start).unwrap();
        self.members.insert(id, Member { node, store });
    }

    pub fn stop(&mut self, id: u64) {
        if let Some(m) = self.members.remove(&id) {
            m.node.shutdown();
        }
        self.net.leave(id);
    }

    pub fn store(&self, id: u64) -> &Store {
        &self.members[&id].store
    }

    pub fn node(&self, id: u64) -> &RaftNode {
        &self.members[&id].node
    }

    /// Waits until one running member leads and every running member in `ids`
    /// agrees on it.
    pub async fn leader_among(&self, ids: &[u64]) -> u64 {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let seen: Vec<Option<u64>> = ids
                .iter()
                .map(|i| self.members[i].node.leadership().leader)
                .collect();
            if let Some(Some(l)) = seen.first()
                && seen.iter().all(|s| *s == Some(*l))
                && ids.contains(l)
                && self.members[l].node.is_leader()
            {
                return *l;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no agreed leader: {seen:?}"
            );
            tokio::time::sleep(TICK).await;
        }
    }

    pub async fn leader(&self) -> u64 {
        let ids: Vec<u64> = self.members.keys().copied().collect();
        self.leader_among(&ids).await
    }
}

impl Drop for MemCluster {
    fn drop(&mut self) {
        for (_, m) in std::mem::take(&mut self.members) {
            m.node.shutdown();
        }
    }
}

/// Starts a member over loopback TCP.
pub async fn tcp_member(
    cfg: Config,
    listen: &str,
    peers: &HashMap<u64, String>,
    start: Start,
) -> (RaftNode, Store, Arc<TcpTransport>) {
    let (t, inbox) = TcpTransport::bind(cfg.id, listen, peers).await.unwrap();
    let store = Store::new();
    let node = RaftNode::start(cfg, store.clone(), t.clone(), inbox, start).unwrap();
    (node, store, t)
}

pub fn is_refusal(e: &RaftError) -> bool {
    e.is_retryable()
}
