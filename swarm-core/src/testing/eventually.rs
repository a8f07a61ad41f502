//! Waiting in tests: poll a condition until it holds, or fail naming what was
//! awaited once a deadline passes.
//!
//! The async waits run on tokio's timer (the feature `testing` brings tokio
//! in): every test that waits runs on tokio, the deadline must cut short a
//! look that hangs (an `async` check is dropped when time is up, which needs a
//! timer), and tokio's clock is the one a test pauses or advances.
//! [`Patience::until_blocking`] needs no runtime.

use std::time::{Duration, Instant};

use crate::store::{Store, View};

/// How long to wait for a condition and how often to look.
///
/// ```
/// use std::time::Duration;
/// use swarm_core::testing::Patience;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let start = std::time::Instant::now();
/// Patience::within(Duration::from_secs(5))
///     .every(Duration::from_millis(1))
///     .until("10 ms gone by", || start.elapsed() >= Duration::from_millis(10))
///     .await;
/// # });
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Patience {
    /// How long to wait before giving up.
    pub within: Duration,
    /// How long to sleep between two looks.
    pub every: Duration,
}

impl Patience {
    /// Waits up to `within`, looking every 20 ms.
    pub const fn within(within: Duration) -> Patience {
        Patience {
            within,
            every: Duration::from_millis(20),
        }
    }

    /// This patience, looking every `every`.
    pub const fn every(self, every: Duration) -> Patience {
        Patience { every, ..self }
    }

    /// Looks at `f` until it holds: whether it did before the time was up.
    /// For a caller that says more than [`until`](Self::until) when it did not.
    pub async fn poll(self, mut f: impl FnMut() -> bool) -> bool {
        self.poll_async(async || f()).await
    }

    /// [`poll`](Self::poll) for a check that must await to look; a look still
    /// pending when the time is up is dropped.
    pub async fn poll_async(self, mut f: impl AsyncFnMut() -> bool) -> bool {
        tokio::time::timeout(self.within, async {
            while !f().await {
                tokio::time::sleep(self.every).await;
            }
        })
        .await
        .is_ok()
    }

    /// Waits until `f` holds.
    ///
    /// # Panics
    ///
    /// With `timed out waiting for {what}` when it does not hold in time.
    pub async fn until(self, what: &str, f: impl FnMut() -> bool) {
        if !self.poll(f).await {
            panic!("timed out waiting for {what}");
        }
    }

    /// [`until`](Self::until) for a check that must await to look.
    ///
    /// # Panics
    ///
    /// With `timed out waiting for {what}` when it does not hold in time.
    pub async fn until_async(self, what: &str, f: impl AsyncFnMut() -> bool) {
        if !self.poll_async(f).await {
            panic!("timed out waiting for {what}");
        }
    }

    /// Waits until `f` holds on the latest view of `store`.
    ///
    /// # Panics
    ///
    /// With `timed out waiting for {what}` when it does not hold in time.
    pub async fn until_view(self, store: &Store, what: &str, mut f: impl FnMut(&View) -> bool) {
        self.until(what, || f(&store.view())).await;
    }

    /// [`poll`](Self::poll) for a caller without an async runtime: sleeps the
    /// thread between looks.
    pub fn poll_blocking(self, mut f: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + self.within;
        while !f() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(self.every);
        }
        true
    }

    /// [`until`](Self::until) for a test without an async runtime: sleeps the
    /// thread between looks.
    ///
    /// # Panics
    ///
    /// With `timed out waiting for {what}` when it does not hold in time.
    pub fn until_blocking(self, what: &str, f: impl FnMut() -> bool) {
        assert!(self.poll_blocking(f), "timed out waiting for {what}");
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::types::Node;

    const SHORT: Patience =
        Patience::within(Duration::from_millis(200)).every(Duration::from_millis(1));

    #[tokio::test]
    async fn a_condition_that_comes_true_ends_the_wait() {
        let looks = Cell::new(0);
        SHORT
            .until("the third look", || {
                looks.set(looks.get() + 1);
                looks.get() == 3
            })
            .await;
        assert_eq!(looks.get(), 3);
        let mut n = 0;
        SHORT
            .until_async("the second look", async || {
                n += 1;
                n == 2
            })
            .await;
        assert_eq!(n, 2);
    }

    #[tokio::test]
    #[should_panic(expected = "timed out waiting for nothing")]
    async fn a_condition_that_never_holds_panics_with_what_was_awaited() {
        SHORT.until("nothing", || false).await;
    }

    #[tokio::test]
    async fn poll_says_whether_it_held_and_drops_a_hanging_look() {
        assert!(!SHORT.poll(|| false).await);
        assert!(SHORT.poll(|| true).await);
        assert!(!SHORT.poll_async(std::future::pending::<bool>).await);
    }

    #[tokio::test]
    async fn until_view_follows_the_store() {
        let store = Store::new();
        let writer = store.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            writer
                .update(|tx| {
                    tx.create(Node {
                        id: "n1".into(),
                        ..Default::default()
                    })
                })
                .await
                .unwrap();
        });
        SHORT
            .until_view(&store, "the node", |v| v.count::<Node>() == 1)
            .await;
    }

    #[test]
    fn until_blocking_needs_no_runtime() {
        let start = Instant::now();
        SHORT.until_blocking("5 ms", || start.elapsed() >= Duration::from_millis(5));
        assert!(!SHORT.poll_blocking(|| false));
        let panicked = std::panic::catch_unwind(|| SHORT.until_blocking("never", || false));
        assert!(panicked.is_err());
    }
}
