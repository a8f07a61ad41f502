//! The leader's views: pure computations from the store to what every node
//! needs to run its data plane — the routing mesh's [`ingress::IngressView`]
//! and the overlay networks' [`network::NetworkView`] — and the feed that keeps
//! each up to date while the dispatcher sends it on every session.
//!
//! Store in, view out: no sockets, no runtime; unit-testable on a store
//! snapshot. Used by the manager's dispatcher (which computes and sends them)
//! and by the agent (which applies them); uses only swarm-core (and the layer
//! crates' plain types).

use std::sync::Arc;
use std::time::Duration;

use swarm_core::{Filter, Store, View};
use tokio::sync::watch;

pub(crate) mod ingress;
pub(crate) mod network;

/// How long the leader gathers store changes before it sends a new view.
const FEED_WINDOW: Duration = Duration::from_millis(20);

/// The shared part of the views the leader sends every node (the routing mesh's,
/// the overlay networks'): computes a view of type `V` from the store, then on
/// each batch of changes that `relevant` (given `key` of the last view) says may
/// change it, gathers what else lands in [`FEED_WINDOW`], computes it again and
/// publishes it if it differs. Stops when every receiver is dropped.
pub(crate) fn feed_view<V, K>(
    store: Store,
    filter: Filter,
    compute: fn(&View) -> V,
    key: fn(&V) -> K,
    relevant: fn(&swarm_core::Change, &K) -> bool,
) -> watch::Receiver<Arc<V>>
where
    V: PartialEq + Send + Sync + 'static,
    K: Send + 'static,
{
    let (view, mut changes) = store.view_and_watch(filter);
    let first = compute(&view);
    drop(view);
    let mut last_key = key(&first);
    let (tx, rx) = watch::channel(Arc::new(first));
    tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                e = futures::StreamExt::next(&mut changes) => match e {
                    Some(e) => e,
                    None => return,
                },
                _ = tx.closed() => return,
            };
            if !event.changes.iter().any(|c| relevant(c, &last_key)) {
                continue;
            }
            // Gather what else lands in the window, then read the store once.
            let _ = tokio::time::timeout(FEED_WINDOW, async {
                while futures::StreamExt::next(&mut changes).await.is_some() {}
            })
            .await;
            let next = compute(&store.view());
            last_key = key(&next);
            tx.send_if_modified(|cur| {
                if **cur == next {
                    false
                } else {
                    *cur = Arc::new(next);
                    true
                }
            });
        }
    });
    rx
}
