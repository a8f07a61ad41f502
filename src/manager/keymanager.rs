//! The keys of encrypted overlay networks (`docker network create --opt encrypted`).
//!
//! The leader keeps [`KEYS_KEPT`] random 256-bit keys in the cluster object
//! (`network_bootstrap_keys`, subsystem [`KEY_SUBSYSTEM`](crate::views::network::KEY_SUBSYSTEM)), each stamped with the
//! cluster's lamport clock, and rotates them every [`DEFAULT_KEY_ROTATION`]
//! (`ManagerConfig::network_key_rotation`): a new key is added and the oldest
//! dropped, as Docker's key manager does. Raft gives the keys to every manager;
//! nodes get them with the swarm's network view and hand them to their overlay
//! data plane.
//!
//! Which key a node sends with is [`OverlayKeys::primary`](crate::views::network::OverlayKeys::primary): the second newest.
//! A key becomes primary one rotation after it was made, so every node has
//! learnt it before anyone sends with it, and a receiver still accepts the
//! oldest until the next rotation drops it. The keys live in the raft log and
//! snapshots in clear, like the CA key: encryption at rest is not built yet.

use std::time::Duration;

use ring::rand::{SecureRandom, SystemRandom};
use swarm_core::Store;
use swarm_core::types::EncryptionKey;
use tokio::sync::watch;

use crate::error::{Error, Result};
#[cfg(test)]
use crate::views::network::OverlayKeys;
use crate::views::network::{KEY_LEN, KEY_SUBSYSTEM};

/// The cipher the keys are for.
pub const KEY_ALGORITHM: &str = "AES-256-GCM";

/// How many keys the cluster keeps (Docker keeps three).
pub const KEYS_KEPT: usize = 3;

/// How often the leader rotates the keys by default (Docker: every 12 hours).
pub const DEFAULT_KEY_ROTATION: Duration = Duration::from_secs(12 * 3600);

/// The leader's key loop: makes the keys at once when the cluster has fewer
/// than [`KEYS_KEPT`], then rotates every `rotation` until `stop` turns true.
pub(crate) async fn run(store: Store, rotation: Duration, mut stop: watch::Receiver<bool>) {
    if let Err(e) = refresh(&store, false).await {
        tracing::warn!(error = %e, "could not make the overlay keys");
    }
    let period = rotation.max(Duration::from_millis(10));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                match refresh(&store, true).await {
                    Ok(()) => tracing::info!("overlay encryption keys rotated"),
                    Err(e) => tracing::warn!(error = %e, "could not rotate the overlay keys"),
                }
            }
            r = stop.changed() => {
                if r.is_err() || *stop.borrow() {
                    return;
                }
            }
        }
    }
}

/// Tops the keys up to [`KEYS_KEPT`]; with `rotate`, also adds one new key and
/// drops the oldest. Keys of other subsystems are kept as they are. Writes
/// nothing when there is nothing to do.
pub(crate) async fn refresh(store: &Store, rotate: bool) -> Result<()> {
    let rng = SystemRandom::new();
    store
        .update_retrying(|tx| {
            let Some(cluster) = tx.cluster() else {
                return Ok(());
            };
            let (mut ours, others): (Vec<EncryptionKey>, Vec<EncryptionKey>) = cluster
                .network_bootstrap_keys
                .iter()
                .cloned()
                .partition(|k| k.subsystem == KEY_SUBSYSTEM && k.key.len() == KEY_LEN);
            let missing = KEYS_KEPT.saturating_sub(ours.len());
            let new = if rotate { missing.max(1) } else { missing };
            if new == 0 {
                return Ok(());
            }
            let mut c = (*cluster).clone();
            for _ in 0..new {
                let mut key = vec![0u8; KEY_LEN];
                rng.fill(&mut key)
                    .map_err(|_| swarm_core::Error::Unavailable("no system randomness".into()))?;
                c.encryption_key_lamport_clock += 1;
                ours.push(EncryptionKey {
                    subsystem: KEY_SUBSYSTEM.into(),
                    algorithm: KEY_ALGORITHM.into(),
                    key,
                    lamport_time: c.encryption_key_lamport_clock,
                });
            }
            ours.sort_by_key(|k| k.lamport_time);
            let excess = ours.len().saturating_sub(KEYS_KEPT);
            ours.drain(..excess);
            c.network_bootstrap_keys = others.into_iter().chain(ours).collect();
            tx.update(c).map(drop)
        })
        .await
        .map(|_| ())
        .map_err(Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_core::types::{Annotations, Cluster, ClusterSpec, DEFAULT_CLUSTER_NAME};
    use swarm_core::{Id, View};

    async fn store() -> Store {
        let store = Store::new();
        store
            .update(|tx| {
                tx.create(Cluster {
                    id: Id::from("c1"),
                    spec: ClusterSpec {
                        annotations: Annotations::named(DEFAULT_CLUSTER_NAME),
                        ..Default::default()
                    },
                    network_bootstrap_keys: vec![EncryptionKey {
                        subsystem: "networking:gossip".into(),
                        algorithm: "other".into(),
                        key: vec![7; 16],
                        lamport_time: 0,
                    }],
                    ..Default::default()
                })
            })
            .await
            .unwrap();
        store
    }

    fn keys(view: &View) -> OverlayKeys {
        OverlayKeys::of(&view.cluster().unwrap())
    }

    #[tokio::test]
    async fn three_keys_are_made_then_rotated_oldest_out() {
        let store = store().await;
        refresh(&store, false).await.unwrap();
        let first = keys(&store.view());
        assert_eq!(first.keys.len(), KEYS_KEPT);
        assert_eq!(
            first.keys.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(first.primary, 1, "the second newest is sent with");
        let distinct: std::collections::BTreeSet<_> = first.keys.iter().map(|(_, k)| k).collect();
        assert_eq!(distinct.len(), 3, "random keys");
        let version = store.view().cluster().unwrap().meta.version.index;
        refresh(&store, false).await.unwrap();
        assert_eq!(
            store.view().cluster().unwrap().meta.version.index,
            version,
            "nothing to do writes nothing"
        );

        refresh(&store, true).await.unwrap();
        let second = keys(&store.view());
        assert_eq!(
            second.keys.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
            [2, 3, 4]
        );
        assert_eq!(second.keys[..2], first.keys[1..], "the oldest went");
        assert_eq!(second.primary_key(), Some(first.keys[2].1.as_slice()));
        let ring = second.ring();
        assert_eq!(ring.len(), 3);
        assert_eq!(ring[0], second.keys[1].1, "primary first");
        assert_eq!(ring[1], second.keys[2].1, "then the newest");
        assert_eq!(ring[2], second.keys[0].1);
        assert!(OverlayKeys::default().ring().is_empty());
        let cluster = store.view().cluster().unwrap();
        assert!(
            cluster
                .network_bootstrap_keys
                .iter()
                .any(|k| k.subsystem == "networking:gossip" && k.key == vec![7; 16]),
            "other subsystems' keys are kept"
        );
        assert!(!format!("{second:?}").contains(&format!("{:?}", second.keys[0].1)));
    }

    #[tokio::test]
    async fn the_loop_makes_and_rotates_until_stopped() {
        let store = store().await;
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(run(store.clone(), Duration::from_millis(20), rx));
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let k = keys(&store.view());
                if k.keys.last().is_some_and(|(t, _)| *t >= 5) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("rotated twice");
        stop.send(true).unwrap();
        task.await.unwrap();
        assert_eq!(keys(&store.view()).keys.len(), KEYS_KEPT);
    }

    #[tokio::test]
    async fn no_cluster_no_keys() {
        let store = Store::new();
        refresh(&store, true).await.unwrap();
        assert!(store.view().cluster().is_none());
    }
}
