//! Groups of members on real disks, over the in-process network or loopback TCP.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use swarm_core::Store;
use tempfile::TempDir;

use super::{TICK, WAIT, config};
use crate::{Config, MemNetwork, RaftNode, Start, TcpTransport};

type Tweak = Arc<dyn Fn(&mut Config) + Send + Sync>;

/// One running member: its node and the store it applies to.
pub struct Member {
    /// The raft member.
    pub node: RaftNode,
    /// Its store, written through raft.
    pub store: Store,
}

/// Waits until one member of `ids` leads and every one of them agrees on it.
async fn agreed_leader(members: &BTreeMap<u64, Member>, ids: &[u64]) -> u64 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let seen: Vec<Option<u64>> = ids
            .iter()
            .map(|i| members[i].node.leadership().leader)
            .collect();
        if let Some(Some(l)) = seen.first()
            && seen.iter().all(|s| *s == Some(*l))
            && ids.contains(l)
            && members[l].node.is_leader()
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

/// A group over the in-process network ([`MemNetwork`]: links the test can
/// cut), each member on its own directory of `tmp`. Dropping it shuts every
/// member down.
///
/// Methods taking a member ID panic when that member is not running.
pub struct MemCluster {
    /// The network, to cut and heal links.
    pub net: MemNetwork,
    /// Where the members' directories are (`m<id>`).
    pub tmp: TempDir,
    /// The running members.
    pub members: BTreeMap<u64, Member>,
    tweak: Tweak,
}

impl MemCluster {
    /// A new group of members 1..=`n`, configured by [`config`].
    pub fn new(n: u64) -> MemCluster {
        MemCluster::with(n, |_| {})
    }

    /// A new group of members 1..=`n`, each configured by [`config`] and then
    /// `tweak` (also for members started later).
    ///
    /// # Panics
    /// When a temporary directory or a member cannot be made.
    pub fn with(n: u64, tweak: impl Fn(&mut Config) + Send + Sync + 'static) -> MemCluster {
        let mut c = MemCluster {
            net: MemNetwork::new(),
            tmp: tempfile::tempdir().expect("a temporary directory"),
            members: BTreeMap::new(),
            tweak: Arc::new(tweak),
        };
        let voters: BTreeMap<u64, String> = (1..=n).map(|i| (i, format!("m{i}"))).collect();
        for id in 1..=n {
            c.start(id, Start::NewCluster(voters.clone()));
        }
        c
    }

    /// Member `id`'s configuration, on its directory.
    pub fn config(&self, id: u64) -> Config {
        let mut c = config(id, self.tmp.path().join(format!("m{id}")));
        (self.tweak)(&mut c);
        c
    }

    /// Starts member `id` on its directory (again, after [`stop`](Self::stop)).
    ///
    /// # Panics
    /// When the member cannot start.
    pub fn start(&mut self, id: u64, start: Start) {
        let (t, inbox) = self.net.join(id);
        let store = Store::new();
        let node = RaftNode::start(self.config(id), store.clone(), t, inbox, start)
            .unwrap_or_else(|e| panic!("member {id} did not start: {e}"));
        self.members.insert(id, Member { node, store });
    }

    /// Shuts member `id` down and disconnects it; its directory stays.
    pub fn stop(&mut self, id: u64) {
        if let Some(m) = self.members.remove(&id) {
            m.node.shutdown();
        }
        self.net.leave(id);
    }

    /// Member `id`'s store.
    pub fn store(&self, id: u64) -> &Store {
        &self.members[&id].store
    }

    /// Member `id`'s node.
    pub fn node(&self, id: u64) -> &RaftNode {
        &self.members[&id].node
    }

    /// Waits until one running member of `ids` leads and every one of them
    /// agrees on it.
    ///
    /// # Panics
    /// After [`WAIT`] without an agreed leader.
    pub async fn leader_among(&self, ids: &[u64]) -> u64 {
        agreed_leader(&self.members, ids).await
    }

    /// [`leader_among`](Self::leader_among) every running member.
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

/// A group over loopback TCP ([`TcpTransport`], real sockets), each member on
/// its own directory of `tmp`: a deployment's members, in one process.
/// Dropping it shuts every member and transport down.
///
/// Methods taking a member ID panic when that member is not running.
pub struct TcpCluster {
    /// Where the members' directories are (`m<id>`).
    pub tmp: TempDir,
    /// The running members.
    pub members: BTreeMap<u64, Member>,
    /// The running members' transports.
    pub transports: BTreeMap<u64, Arc<TcpTransport>>,
    /// Every member's address, kept when it stops so it restarts there.
    pub addrs: BTreeMap<u64, String>,
    tweak: Tweak,
}

impl TcpCluster {
    /// A new group of members 1..=`n`, configured by [`config`].
    pub async fn new(n: u64) -> TcpCluster {
        TcpCluster::with(n, |_| {}).await
    }

    /// A new group of members 1..=`n` listening on loopback ports of their
    /// own, each configured by [`config`] and then `tweak` (also for members
    /// started later).
    ///
    /// # Panics
    /// When a temporary directory, a listener or a member cannot be made.
    pub async fn with(n: u64, tweak: impl Fn(&mut Config) + Send + Sync + 'static) -> TcpCluster {
        let mut c = TcpCluster {
            tmp: tempfile::tempdir().expect("a temporary directory"),
            members: BTreeMap::new(),
            transports: BTreeMap::new(),
            addrs: BTreeMap::new(),
            tweak: Arc::new(tweak),
        };
        let mut bound = Vec::new();
        for id in 1..=n {
            let (t, inbox) = TcpTransport::bind(id, "127.0.0.1:0", &HashMap::new())
                .await
                .expect("a loopback listener");
            c.addrs.insert(id, t.local_addr().to_string());
            bound.push((id, t, inbox));
        }
        let voters = c.addrs.clone();
        for (id, t, inbox) in bound {
            c.run(id, t, inbox, Start::NewCluster(voters.clone()));
        }
        c
    }

    /// Member `id`'s configuration, on its directory.
    pub fn config(&self, id: u64) -> Config {
        let mut c = config(id, self.tmp.path().join(format!("m{id}")));
        (self.tweak)(&mut c);
        c
    }

    fn run(&mut self, id: u64, t: Arc<TcpTransport>, inbox: crate::Inbox, start: Start) {
        let store = Store::new();
        let node = RaftNode::start(self.config(id), store.clone(), t.clone(), inbox, start)
            .unwrap_or_else(|e| panic!("member {id} did not start: {e}"));
        self.members.insert(id, Member { node, store });
        self.transports.insert(id, t);
    }

    /// Starts member `id` on its directory and address (again, after
    /// [`stop`](Self::stop)), or on a new loopback port for a new member (see
    /// [`addrs`](Self::addrs), e.g. to add it with
    /// [`RaftNode::add_member`]).
    ///
    /// # Panics
    /// When the address stays taken for [`WAIT`], or the member cannot start.
    pub async fn start(&mut self, id: u64, start: Start) {
        let listen = self.addrs.get(&id).map_or("127.0.0.1:0", String::as_str);
        let peers: HashMap<u64, String> = (self.addrs.iter())
            .filter(|(other, _)| **other != id)
            .map(|(other, addr)| (*other, addr.clone()))
            .collect();
        let deadline = tokio::time::Instant::now() + WAIT;
        // A stopped member's listener closes on its runtime: it may hold the
        // port for a moment.
        let (t, inbox) = loop {
            match TcpTransport::bind(id, listen, &peers).await {
                Ok(bound) => break bound,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(id, listen, error = %e, "address still taken");
                    tokio::time::sleep(TICK).await;
                }
                Err(e) => panic!("member {id} cannot listen on {listen}: {e}"),
            }
        };
        self.addrs.insert(id, t.local_addr().to_string());
        self.run(id, t, inbox, start);
    }

    /// Shuts member `id` and its transport down; its directory and address
    /// stay.
    pub fn stop(&mut self, id: u64) {
        if let Some(m) = self.members.remove(&id) {
            m.node.shutdown();
        }
        if let Some(t) = self.transports.remove(&id) {
            t.shutdown();
        }
    }

    /// Member `id`'s store.
    pub fn store(&self, id: u64) -> &Store {
        &self.members[&id].store
    }

    /// Member `id`'s node.
    pub fn node(&self, id: u64) -> &RaftNode {
        &self.members[&id].node
    }

    /// Waits until one running member of `ids` leads and every one of them
    /// agrees on it.
    ///
    /// # Panics
    /// After [`WAIT`] without an agreed leader.
    pub async fn leader_among(&self, ids: &[u64]) -> u64 {
        agreed_leader(&self.members, ids).await
    }

    /// [`leader_among`](Self::leader_among) every running member.
    pub async fn leader(&self) -> u64 {
        let ids: Vec<u64> = self.members.keys().copied().collect();
        self.leader_among(&ids).await
    }
}

impl Drop for TcpCluster {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.members.keys().copied().collect();
        for id in ids {
            self.stop(id);
        }
    }
}

/// Starts a member over loopback TCP listening on `listen`, knowing `peers`.
///
/// # Panics
/// When it cannot listen there or start.
pub async fn tcp_member(
    cfg: Config,
    listen: &str,
    peers: &HashMap<u64, String>,
    start: Start,
) -> (RaftNode, Store, Arc<TcpTransport>) {
    let (t, inbox) = TcpTransport::bind(cfg.id, listen, peers)
        .await
        .unwrap_or_else(|e| panic!("cannot listen on {listen}: {e}"));
    let store = Store::new();
    let node = RaftNode::start(cfg, store.clone(), t.clone(), inbox, start)
        .unwrap_or_else(|e| panic!("member did not start: {e}"));
    (node, store, t)
}
