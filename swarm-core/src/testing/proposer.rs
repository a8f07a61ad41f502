//! A proposer that commits in process, and the suite every [`Proposer`] must
//! pass.

use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::id::Id;
use crate::store::{Object, Proposer, Store, StoreAction, Tx, WeakStore};
use crate::time::Timestamp;
use crate::types::Service;

/// A [`Proposer`] that commits each batch at once on its store, at the next
/// index, in call order: the store as the only member of a group.
///
/// Unlike a standalone store, a store with a proposer runs each transaction on
/// a snapshot and checks its batch again when it applies, so concurrent writers
/// can conflict, as on a replicated store (what
/// [`Store::update_retrying`] is for). The proposer does not keep the store
/// alive; once the store is dropped it answers `Unavailable`.
///
/// ```
/// use swarm_core::{Store, testing::{LocalProposer, service}};
///
/// # futures::executor::block_on(async {
/// let store = Store::new();
/// LocalProposer::attach(&store);
/// store.update(|tx| tx.create(service("svc-web", "web", "nginx", 1))).await?;
/// assert_eq!(store.index(), 1);
/// # Ok::<(), swarm_core::Error>(())
/// # }).unwrap();
/// ```
pub struct LocalProposer {
    store: WeakStore,
    /// Held from picking an index to applying at it.
    order: Mutex<()>,
}

impl LocalProposer {
    /// A proposer committing on `store`, made `store`'s proposer.
    pub fn attach(store: &Store) -> Arc<LocalProposer> {
        let proposer = Arc::new(LocalProposer {
            store: store.downgrade(),
            order: Mutex::new(()),
        });
        store.set_proposer(proposer.clone());
        proposer
    }
}

#[async_trait]
impl Proposer for LocalProposer {
    async fn propose(&self, batch: Vec<StoreAction>) -> Result<u64> {
        let store = (self.store.upgrade())
            .ok_or_else(|| Error::Unavailable("the store was dropped".into()))?;
        let _order = self.order.lock();
        let index = store.index() + 1;
        store.apply(index, &batch).map(|()| index)
    }
}

/// A check of [`proposer_suite`] that failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("proposer check {check} failed: {message}")]
pub struct ProposerFailure {
    /// The check: `applied`, `increasing`, `conflict`, `apply_errors` or
    /// `concurrent`.
    pub check: &'static str,
    /// What went wrong.
    pub message: String,
}

/// Checks that `proposer` keeps the [`Proposer`] contract on `store`, the
/// store it applies batches to (this member's; it may hold objects already:
/// the suite creates services named `proposer-suite-<random>-…`). Returns the
/// failures (none: it conforms).
///
/// - `applied`: when `propose` returns `Ok(index)`, the batch is in the store,
///   at version `index`, and the store's index is at least `index`;
/// - `increasing`: batches proposed one after the other commit at increasing
///   indexes;
/// - `conflict`: a batch that updates an object from a version another batch
///   changed since fails with `Conflict` and changes nothing, not even its
///   other actions;
/// - `apply_errors`: a batch whose apply fails for another reason (a taken
///   name, an existing ID) fails with that error and changes nothing;
/// - `concurrent`: of two batches proposed together from the same read, one
///   commits and the other fails with `Conflict`; when the loser resolves, the
///   store shows the winner's write.
///
/// The last two points of the contract (`NotLeader`/`Unavailable` only for
/// batches that may still commit, and no hang) need a proposer that cannot
/// commit, and are not checked.
///
/// ```
/// use swarm_core::Store;
/// use swarm_core::testing::{LocalProposer, proposer_suite};
///
/// # futures::executor::block_on(async {
/// let store = Store::new();
/// let proposer = LocalProposer::attach(&store);
/// let failures = proposer_suite(&store, proposer.as_ref()).await;
/// assert!(failures.is_empty(), "{failures:#?}");
/// # });
/// ```
pub async fn proposer_suite(store: &Store, proposer: &dyn Proposer) -> Vec<ProposerFailure> {
    let tag = format!("proposer-suite-{}", &Id::generate()[..8]);
    let suite = Suite {
        store,
        proposer,
        tag,
    };
    let mut failures = Vec::new();
    let mut record = |check, outcome: Outcome| {
        if let Err(message) = outcome {
            failures.push(ProposerFailure { check, message });
        }
    };
    record("applied", suite.applied().await);
    record("increasing", suite.increasing().await);
    record("conflict", suite.conflict().await);
    record("apply_errors", suite.apply_errors().await);
    record("concurrent", suite.concurrent().await);
    failures
}

type Outcome = std::result::Result<(), String>;

fn ensure(cond: bool, message: impl FnOnce() -> String) -> Outcome {
    if cond { Ok(()) } else { Err(message()) }
}

struct Suite<'a> {
    store: &'a Store,
    proposer: &'a dyn Proposer,
    tag: String,
}

impl Suite<'_> {
    /// The batch `f` makes on the store's current state.
    fn batch(
        &self,
        f: impl FnOnce(&mut Tx) -> Result<()>,
    ) -> std::result::Result<Vec<StoreAction>, String> {
        let base = self.store.view();
        let mut tx = Tx::new(&base, Timestamp::ZERO);
        f(&mut tx).map_err(|e| format!("making a batch: {e}"))?;
        Ok(tx.finish().1)
    }

    /// A service of the suite, `<tag>-<name>` (its ID and name).
    fn service(&self, name: &str) -> Service {
        let id = format!("{}-{name}", self.tag);
        super::service(&id, &id, "busybox", 1)
    }

    /// Proposes a batch creating the suite's service `name`.
    async fn create(&self, name: &str) -> std::result::Result<u64, String> {
        let s = self.service(name);
        let batch = self.batch(|tx| tx.create(s).map(drop))?;
        (self.proposer.propose(batch).await).map_err(|e| format!("creating {name}: {e}"))
    }

    /// A batch labelling the suite's service `name` with `by=<by>`, from the
    /// store's current state.
    fn relabel(&self, name: &str, by: &str) -> std::result::Result<Vec<StoreAction>, String> {
        let id = self.service(name).id;
        self.batch(|tx| {
            let mut s = (*tx.resolve::<Service>(&id)?).clone();
            s.spec.annotations.labels.insert("by".into(), by.into());
            tx.update(s).map(drop)
        })
    }

    /// The `by` label of the suite's service `name` in `view`.
    fn by(&self, view: &crate::View, name: &str) -> Option<String> {
        let s = view.get::<Service>(&self.service(name).id)?;
        s.spec.annotations.labels.get("by").cloned()
    }

    async fn applied(&self) -> Outcome {
        let index = self.create("applied").await?;
        let view = self.store.view();
        let Some(s) = view.get::<Service>(&self.service("applied").id) else {
            return Err(format!(
                "propose returned Ok({index}) before the batch was in the store"
            ));
        };
        ensure(s.meta.version.index == index, || {
            format!(
                "propose returned Ok({index}) for a batch applied at {}",
                s.meta.version.index
            )
        })?;
        ensure(self.store.index() >= index, || {
            format!(
                "propose returned Ok({index}); the store is at {}",
                self.store.index()
            )
        })
    }

    async fn increasing(&self) -> Outcome {
        let mut last = 0;
        for name in ["inc-1", "inc-2", "inc-3"] {
            let index = self.create(name).await?;
            ensure(index > last, || {
                format!("{name} committed at {index}, after one at {last}")
            })?;
            last = index;
        }
        Ok(())
    }

    async fn conflict(&self) -> Outcome {
        self.create("b").await?;
        let first = self.relabel("b", "first")?;
        let mut second = self.relabel("b", "second")?;
        let c = self.service("c");
        second.extend(self.batch(|tx| tx.create(c).map(drop))?);
        (self.proposer.propose(first).await).map_err(|e| format!("the first update: {e}"))?;
        let outcome = self.proposer.propose(second).await;
        ensure(matches!(outcome, Err(Error::Conflict { .. })), || {
            format!("an update of a version changed since: want Conflict, got {outcome:?}")
        })?;
        let view = self.store.view();
        ensure(self.by(&view, "b").as_deref() == Some("first"), || {
            format!("the failed batch changed b: {:?}", self.by(&view, "b"))
        })?;
        ensure(view.get::<Service>(&self.service("c").id).is_none(), || {
            "the failed batch created c".into()
        })
    }

    async fn apply_errors(&self) -> Outcome {
        self.create("taken").await?;
        let taken = self.service("taken");
        let mut same_name = self.service("other");
        same_name.spec.annotations.name = taken.spec.annotations.name.clone();
        // Batches the store refuses when they apply (a transaction on an
        // older state would have let them through).
        let create = |s: Service| vec![StoreAction::Create(Object::Service(Arc::new(s)))];
        let before = self.store.view();
        let outcome = self.proposer.propose(create(same_name)).await;
        ensure(matches!(outcome, Err(Error::NameConflict { .. })), || {
            format!("a taken name: want NameConflict, got {outcome:?}")
        })?;
        let outcome = self.proposer.propose(create(taken)).await;
        ensure(matches!(outcome, Err(Error::AlreadyExists { .. })), || {
            format!("an existing ID: want AlreadyExists, got {outcome:?}")
        })?;
        let after = self.store.view();
        ensure(
            after.count::<Service>() == before.count::<Service>()
                && after.get::<Service>(&self.service("other").id).is_none(),
            || "a failed batch changed the store".into(),
        )
    }

    async fn concurrent(&self) -> Outcome {
        self.create("d").await?;
        let one = self.relabel("d", "one")?;
        let two = self.relabel("d", "two")?;
        let propose = |batch| async move {
            let outcome = self.proposer.propose(batch).await;
            (outcome, self.store.view())
        };
        let ((r1, v1), (r2, v2)) = futures::join!(propose(one), propose(two));
        let (winner, loser_view, loser) = match (&r1, &r2) {
            (Ok(_), Err(Error::Conflict { .. })) => ("one", v2, "two"),
            (Err(Error::Conflict { .. }), Ok(_)) => ("two", v1, "one"),
            _ => {
                return Err(format!(
                    "two updates from the same read: want one Ok and one Conflict, got {r1:?} and {r2:?}"
                ));
            }
        };
        let now = self.by(&self.store.view(), "d");
        ensure(now.as_deref() == Some(winner), || {
            format!("the store shows {now:?}, not the winner {winner:?}")
        })?;
        let seen = self.by(&loser_view, "d");
        ensure(seen.as_deref() == Some(winner), || {
            format!(
                "when {loser} resolved with Conflict, the store showed {seen:?}, not {winner}'s write"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;

    use super::*;

    #[test]
    fn the_local_proposer_keeps_the_contract() {
        let store = Store::new();
        let proposer = LocalProposer::attach(&store);
        let failures = block_on(proposer_suite(&store, proposer.as_ref()));
        assert!(failures.is_empty(), "{failures:#?}");
    }

    /// Commits without applying: `Ok` before the batch is in the store.
    struct Forgetful(Arc<Mutex<u64>>);

    #[async_trait]
    impl Proposer for Forgetful {
        async fn propose(&self, _: Vec<StoreAction>) -> Result<u64> {
            let mut index = self.0.lock();
            *index += 1;
            Ok(*index)
        }
    }

    #[test]
    fn a_proposer_that_does_not_apply_fails_the_suite() {
        let store = Store::new();
        let failures = block_on(proposer_suite(&store, &Forgetful(Arc::default())));
        let checks: Vec<&str> = failures.iter().map(|f| f.check).collect();
        assert_eq!(
            checks,
            ["applied", "conflict", "apply_errors", "concurrent"],
            "{failures:#?}"
        );
    }

    #[test]
    fn a_dropped_store_is_unavailable() {
        let store = Store::new();
        let proposer = LocalProposer::attach(&store);
        drop(store);
        let outcome = block_on(proposer.propose(Vec::new()));
        assert!(matches!(outcome, Err(Error::Unavailable(_))), "{outcome:?}");
    }
}
