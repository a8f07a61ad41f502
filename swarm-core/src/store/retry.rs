//! [`Store::update_retrying`]: an update redone when a concurrent write got
//! there first.

use super::{Store, Tx};
use crate::error::{Error, Result};

/// How many times [`Store::update_retrying`] runs its closure at most.
const ATTEMPTS: u32 = 10;

impl Store {
    /// [`update`](Store::update), run again when its commit fails with
    /// [`Error::Conflict`] because a concurrent write changed an object `f`
    /// read: up to 10 attempts, each on the store's state of the moment. Any
    /// other error, a `Conflict` that `f` itself returns, and the conflict of
    /// the 10th attempt are returned as they are.
    ///
    /// Only for writes whose reads are the caller's own: `f` reads through
    /// `tx` every object it changes, so redoing it on the new state redoes the
    /// change right ("one more replica", "this task is shut down"). Never for
    /// an object carrying a version a user gave (an update made from what the
    /// user read): that conflict must reach the user, whose read is stale, so
    /// use [`update`](Store::update). (Should `f` write such an object, the
    /// retry fails inside `f` with that `Conflict`, which is returned.)
    ///
    /// There is no wait between attempts, and none is needed: a `Conflict`
    /// from the commit is reported only after the write that caused it has
    /// been applied to this store (the [`Proposer`](crate::Proposer) contract:
    /// `propose` resolves after the batch's own apply on this member, and
    /// batches apply in commit order), so the retry reads the state that write
    /// left. A standalone store runs `f` under its commit lock and never
    /// conflicts at commit.
    ///
    /// `f` may run several times: keep it free of effects other than its
    /// writes to `tx`.
    ///
    /// ```
    /// use swarm_core::Store;
    /// use swarm_core::types::{Annotations, Service, ServiceMode, ServiceSpec};
    ///
    /// # futures::executor::block_on(async {
    /// let store = Store::new();
    /// let spec = ServiceSpec { annotations: Annotations::named("web"), ..Default::default() };
    /// store.update(|tx| tx.create(Service { spec, ..Default::default() })).await?;
    ///
    /// // One more replica, whatever other writers did meanwhile.
    /// store.update_retrying(|tx| {
    ///     let mut web = (*tx.resolve::<Service>("web")?).clone();
    ///     if let ServiceMode::Replicated { replicas } = &mut web.spec.mode {
    ///         *replicas += 1;
    ///     }
    ///     tx.update(web)
    /// }).await?;
    /// # Ok::<(), swarm_core::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn update_retrying<T>(&self, f: impl Fn(&mut Tx) -> Result<T>) -> Result<T> {
        let mut attempt = 1;
        loop {
            let mut failed_in_f = false;
            let outcome = self
                .update(|tx| f(tx).inspect_err(|_| failed_in_f = true))
                .await;
            match outcome {
                Err(Error::Conflict { .. }) if !failed_in_f && attempt < ATTEMPTS => {
                    tracing::debug!(attempt, "a concurrent write got there first; retrying");
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use futures::executor::block_on;

    use super::*;
    use crate::store::{Proposer, StoreAction};
    use crate::testing::{LocalProposer, service};
    use crate::time::Timestamp;
    use crate::types::Service;

    /// A store replicated through a [`LocalProposer`], holding service `web`.
    fn replicated() -> Store {
        let store = Store::new();
        LocalProposer::attach(&store);
        block_on(store.update(|tx| tx.create(service("svc-web", "web", "nginx", 1)))).unwrap();
        store
    }

    /// A write of another member, committed and applied here at the next index.
    fn concurrent_write(store: &Store, f: impl FnOnce(&mut Tx) -> Result<()>) {
        let base = store.view();
        let mut tx = Tx::new(&base, Timestamp::ZERO);
        f(&mut tx).unwrap();
        let (_, batch, _) = tx.finish();
        store.apply(store.index() + 1, &batch).unwrap();
    }

    fn label(store: &Store, key: &str) -> Option<String> {
        let web = store.view().get::<Service>("svc-web").unwrap();
        web.spec.annotations.labels.get(key).cloned()
    }

    /// `f` for update_retrying: counts `web`'s writes in label `n`.
    fn count_up(tx: &mut Tx) -> Result<u64> {
        let mut web = (*tx.get::<Service>("svc-web").unwrap()).clone();
        let labels = &mut web.spec.annotations.labels;
        let n = labels.get("n").map_or(0, |n| n.parse::<u64>().unwrap()) + 1;
        labels.insert("n".into(), n.to_string());
        tx.update(web)?;
        Ok(n)
    }

    fn relabel(key: &'static str, value: String) -> impl FnOnce(&mut Tx) -> Result<()> {
        move |tx| {
            let mut web = (*tx.get::<Service>("svc-web").unwrap()).clone();
            web.spec.annotations.labels.insert(key.into(), value);
            tx.update(web).map(drop)
        }
    }

    #[test]
    fn a_conflict_with_a_concurrent_write_is_redone_on_the_new_state() {
        let store = replicated();
        let calls = AtomicU32::new(0);
        let n = block_on(store.update_retrying(|tx| {
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                // Another member writes `web` after this transaction read it.
                concurrent_write(&store, relabel("by", "other".into()));
            }
            count_up(tx)
        }))
        .unwrap();
        assert_eq!((n, calls.into_inner()), (1, 2));
        assert_eq!(label(&store, "by").as_deref(), Some("other"), "kept");
        assert_eq!(label(&store, "n").as_deref(), Some("1"));
    }

    #[test]
    fn after_ten_conflicts_the_last_one_is_returned() {
        let store = replicated();
        let calls = AtomicU32::new(0);
        let outcome = block_on(store.update_retrying(|tx| {
            let call = calls.fetch_add(1, Ordering::SeqCst);
            concurrent_write(&store, relabel("by", format!("other-{call}")));
            count_up(tx)
        }));
        assert!(
            matches!(outcome, Err(Error::Conflict { .. })),
            "{outcome:?}"
        );
        assert_eq!(calls.into_inner(), ATTEMPTS);
        assert_eq!(label(&store, "by").as_deref(), Some("other-9"));
        assert_eq!(label(&store, "n"), None, "none of ours committed");
    }

    #[test]
    fn a_conflict_of_a_version_the_caller_gave_is_returned_at_once() {
        let store = replicated();
        // What a user read, before another write.
        let read = (*store.view().get::<Service>("svc-web").unwrap()).clone();
        concurrent_write(&store, relabel("by", "other".into()));
        let calls = AtomicU32::new(0);
        let outcome = block_on(store.update_retrying(|tx| {
            calls.fetch_add(1, Ordering::SeqCst);
            let mut web = read.clone();
            web.spec
                .annotations
                .labels
                .insert("by".into(), "user".into());
            tx.update(web)
        }));
        assert!(
            matches!(outcome, Err(Error::Conflict { .. })),
            "{outcome:?}"
        );
        assert_eq!(calls.into_inner(), 1);
        assert_eq!(label(&store, "by").as_deref(), Some("other"));
    }

    #[test]
    fn other_commit_errors_are_not_retried() {
        let store = replicated();
        let calls = AtomicU32::new(0);
        // Another member takes the name after this transaction saw it free.
        let outcome = block_on(store.update_retrying(|tx| {
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                concurrent_write(&store, |tx| {
                    tx.create(service("svc-api-1", "api", "nginx", 1)).map(drop)
                });
            }
            tx.create(service("svc-api-2", "api", "nginx", 1))
        }));
        assert!(
            matches!(outcome, Err(Error::NameConflict { .. })),
            "{outcome:?}"
        );
        assert_eq!(calls.into_inner(), 1);
    }

    /// A [`LocalProposer`] that lets every other ready writer run before it
    /// commits: concurrent transactions all read the same state.
    struct Yielding(Arc<LocalProposer>);

    #[async_trait::async_trait]
    impl Proposer for Yielding {
        async fn propose(&self, batch: Vec<StoreAction>) -> Result<u64> {
            let mut yielded = false;
            futures::future::poll_fn(|cx| {
                if std::mem::replace(&mut yielded, true) {
                    std::task::Poll::Ready(())
                } else {
                    cx.waker().wake_by_ref();
                    std::task::Poll::Pending
                }
            })
            .await;
            self.0.propose(batch).await
        }
    }

    #[test]
    fn concurrent_writers_lose_no_write() {
        let store = replicated();
        let local = LocalProposer::attach(&store);
        store.set_proposer(Arc::new(Yielding(local)));
        let calls = AtomicU32::new(0);
        let writers = (0..5).map(|_| {
            store.update_retrying(|tx| {
                calls.fetch_add(1, Ordering::SeqCst);
                count_up(tx)
            })
        });
        let counts = block_on(futures::future::join_all(writers));
        let mut counts: Vec<u64> = counts.into_iter().map(Result::unwrap).collect();
        counts.sort();
        assert_eq!(counts, [1, 2, 3, 4, 5]);
        assert_eq!(label(&store, "n").as_deref(), Some("5"));
        assert!(calls.into_inner() > 5, "the writers never conflicted");
    }

    #[test]
    fn a_standalone_store_runs_f_once() {
        let store = Store::new();
        store
            .update_local(|tx| tx.create(service("svc-web", "web", "nginx", 1)))
            .unwrap();
        let calls = AtomicU32::new(0);
        let n = block_on(store.update_retrying(|tx| {
            calls.fetch_add(1, Ordering::SeqCst);
            count_up(tx)
        }))
        .unwrap();
        assert_eq!((n, calls.into_inner()), (1, 1));
    }
}
