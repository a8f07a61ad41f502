//! Harnesses for tests and benches of this and other crates (feature `testing`):
//! groups of members on real disks (temp directories) over the in-process
//! network ([`MemCluster`]) or loopback TCP ([`TcpCluster`]), helpers that
//! write through a member's store and wait for the group, and the suite every
//! [`Transport`](crate::Transport) must pass ([`transport_suite`]).
//!
//! ```
//! use swarm_raft::testing::{MemCluster, put_retry, services};
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() {
//! let mut c = MemCluster::new(3);
//! let leader = c.leader().await;
//! put_retry(c.store(leader), "web").await;
//! c.stop(leader);
//! let rest: Vec<u64> = c.members.keys().copied().collect();
//! let new = c.leader_among(&rest).await;
//! c.node(new).read_index().await.unwrap();
//! assert_eq!(services(c.store(new)), 1);
//! # }
//! ```
//!
//! Helpers panic, naming what they waited for, when the group does not get
//! there within [`WAIT`]: they are for tests.

mod cluster;
mod transport;

pub use cluster::{MemCluster, Member, TcpCluster, tcp_member};
pub use transport::{TransportFailure, TransportHarness, transport_suite};

use std::path::PathBuf;
use std::time::Duration;

use swarm_core::Store;
use swarm_core::types::{Annotations, RaftConfig, Service, ServiceSpec};

use crate::Config;

/// The tick of the members [`config`] makes: elections within a few hundred
/// milliseconds.
pub const TICK: Duration = Duration::from_millis(20);

/// How long the helpers wait for the group before they panic.
pub const WAIT: Duration = Duration::from_secs(10);

/// Installs a log subscriber writing to the test's output, filtered by
/// `RUST_LOG`, unless one is installed already.
pub fn init_log() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// The configuration of member `id` on `dir` for tests: the default raft
/// settings with a [`TICK`] tick and a 3 s request timeout. Installs the test
/// log subscriber ([`init_log`]).
pub fn config(id: u64, dir: PathBuf) -> Config {
    init_log();
    let mut c = Config::new(id, dir, &RaftConfig::default());
    c.tick_interval = TICK;
    c.request_timeout = Duration::from_secs(3);
    c
}

/// A service named `name`, nothing else set.
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

/// Retries [`put`] on retryable errors until [`WAIT`] passes. A write that
/// timed out may still have committed: a name conflict after a retry means it
/// did.
///
/// # Panics
/// When the write fails for good, or is still refused after [`WAIT`].
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

/// How many services `store` holds.
pub fn services(store: &Store) -> usize {
    store.view().count::<Service>()
}

/// Whether `store` holds service `name`.
pub fn has(store: &Store, name: &str) -> bool {
    store.view().get_by_name::<Service>(name).is_some()
}

/// Waits until `f` holds, polling every [`TICK`].
///
/// # Panics
/// After [`WAIT`], naming `what`.
pub async fn eventually(what: &str, f: impl FnMut() -> bool) {
    swarm_core::testing::Patience::within(WAIT)
        .every(TICK)
        .until(what, f)
        .await;
}
