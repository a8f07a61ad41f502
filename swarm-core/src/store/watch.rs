//! Watching the store: changes delivered after each commit, in commit order.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use futures::channel::mpsc;

use super::object::{Kind, Object};

/// What happened to an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// It was created.
    Create,
    /// It was replaced.
    Update,
    /// It was removed.
    Remove,
}

impl Action {
    fn bit(&self) -> u8 {
        1 << (*self as u8)
    }
}

/// One object's change in a committed batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// Create, update or remove.
    pub action: Action,
    /// The object after the change (for a removal: as it was when removed).
    pub object: Object,
    /// For an update, the object before it.
    pub old: Option<Object>,
}

/// The changes of one committed batch that passed a watcher's filter.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The batch's index: the new `meta.version` of every object it touched.
    pub version: u64,
    /// The changes, in the batch's order.
    pub changes: Vec<Change>,
}

/// A caller-supplied test of a change.
type Predicate = Arc<dyn Fn(&Change) -> bool + Send + Sync>;

/// Which changes a watcher wants. The default wants everything.
#[derive(Clone, Default)]
pub struct Filter {
    kinds: u8,
    actions: u8,
    predicate: Option<Predicate>,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("kinds", &self.kinds)
            .field("actions", &self.actions)
            .field("predicate", &self.predicate.is_some())
            .finish()
    }
}

impl Filter {
    /// Every change.
    pub fn all() -> Filter {
        Filter::default()
    }

    /// Only changes to objects of these kinds.
    pub fn kinds(kinds: impl IntoIterator<Item = Kind>) -> Filter {
        Filter::default().and_kinds(kinds)
    }

    /// Also restricts to these kinds.
    pub fn and_kinds(mut self, kinds: impl IntoIterator<Item = Kind>) -> Filter {
        self.kinds = kinds.into_iter().fold(0, |m, k| m | k.bit());
        self
    }

    /// Also restricts to these actions.
    pub fn actions(mut self, actions: impl IntoIterator<Item = Action>) -> Filter {
        self.actions = actions.into_iter().fold(0, |m, a| m | a.bit());
        self
    }

    /// Also restricts to changes for which `f` returns true.
    pub fn matching(mut self, f: impl Fn(&Change) -> bool + Send + Sync + 'static) -> Filter {
        self.predicate = Some(Arc::new(f));
        self
    }

    /// Whether the filter passes `change`.
    pub fn accepts(&self, change: &Change) -> bool {
        (self.kinds == 0 || self.kinds & change.object.kind().bit() != 0)
            && (self.actions == 0 || self.actions & change.action.bit() != 0)
            && self.predicate.as_ref().is_none_or(|p| p(change))
    }
}

/// A subscription: a stream of [`Event`]s, one per committed batch with at least
/// one matching change, in commit order. The queue is unbounded: a watcher must
/// keep reading. Dropping the `Watch` unsubscribes.
#[derive(Debug)]
pub struct Watch {
    rx: mpsc::UnboundedReceiver<Event>,
}

impl Watch {
    /// The next event if one is queued, without waiting. `None` also when the
    /// store is gone.
    pub fn try_next(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }

    /// Every queued event, without waiting.
    pub fn drain(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.try_next()).collect()
    }
}

impl Stream for Watch {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        Pin::new(&mut self.rx).poll_next(cx)
    }
}

pub(crate) struct Subscriber {
    filter: Filter,
    tx: mpsc::UnboundedSender<Event>,
}

/// The subscribers of a store.
#[derive(Default)]
pub(crate) struct Watchers {
    subs: Vec<Subscriber>,
}

impl Watchers {
    pub(crate) fn subscribe(&mut self, filter: Filter) -> Watch {
        let (tx, rx) = mpsc::unbounded();
        self.subs.push(Subscriber { filter, tx });
        Watch { rx }
    }

    /// Sends the changes of a commit to every subscriber whose filter passes some;
    /// forgets subscribers that went away.
    pub(crate) fn publish(&mut self, version: u64, changes: &[Change]) {
        if changes.is_empty() {
            return;
        }
        self.subs.retain(|s| {
            if s.tx.is_closed() {
                return false;
            }
            let picked: Vec<Change> = changes
                .iter()
                .filter(|c| s.filter.accepts(c))
                .cloned()
                .collect();
            if picked.is_empty() {
                return true;
            }
            s.tx.unbounded_send(Event {
                version,
                changes: picked,
            })
            .is_ok()
        });
    }

    pub(crate) fn len(&self) -> usize {
        self.subs.len()
    }
}
