//! The driver: follows the store, runs scheduling passes, validates their plans
//! and writes the assignments back.
//!
//! ```text
//! store ──view_and_watch──► NodeView (built once) ◄── node/task events, each O(log n)
//!                               │
//!   PENDING tasks (queued) ─────┼──► Scheduler::schedule(view, batch) ──► Plan
//!                               │                                          │
//!                               └──────── validate (Draft + filters) ◄─────┘
//!                                               │ assignments, reasons
//!                                               ▼
//!                          store.update, chunked; stale tasks re-queued
//! ```

use std::future::Future;
use std::sync::Arc;

use futures::future::{Either, select};
use futures::{FutureExt, StreamExt};
use swarm_core::types::{Task, TaskState, TaskStatus};
use swarm_core::{Action, Change, Event, Filter as WatchFilter, Id, Kind, Object, Store, Watch};

use crate::draft::Draft;
use crate::error::Result;
use crate::filter::{Explanation, Filter, Requirements};
use crate::scheduler::{Plan, Scheduler};
use crate::view::{FastMap, NodeView};

/// The message an assigned task carries, as in SwarmKit.
pub const ASSIGNED_MESSAGE: &str = "scheduler assigned task to node";

/// How the driver batches its work.
#[derive(Clone, Debug)]
pub struct DriverConfig {
    /// Most task updates written in one store transaction.
    pub max_writes_per_transaction: usize,
    /// Most tasks handed to the scheduler in one pass; the rest wait for the
    /// next tick.
    pub max_tasks_per_pass: usize,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            max_writes_per_transaction: 10_000,
            max_tasks_per_pass: 1_000_000,
        }
    }
}

/// What one [`Driver::tick`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Store events taken in.
    pub events: usize,
    /// Tasks given to the scheduler (plus pre-assigned tasks checked).
    pub considered: usize,
    /// Tasks written as ASSIGNED.
    pub assigned: usize,
    /// Tasks that fit nowhere (their error written when it changed).
    pub unplaced: usize,
    /// Placements the validation refused.
    pub rejected: usize,
    /// Tasks changed in the store since they were read; re-queued.
    pub conflicts: usize,
}

/// A validated decision about one task.
#[derive(Clone, Debug)]
enum Decision {
    Assign {
        task: Arc<Task>,
        node: Id,
        slot: usize,
    },
    Fail {
        task: Arc<Task>,
        reason: String,
    },
}

impl Decision {
    fn task(&self) -> &Arc<Task> {
        match self {
            Decision::Assign { task, .. } | Decision::Fail { task, .. } => task,
        }
    }
}

struct Pending {
    task: Arc<Task>,
    queued: bool,
}

/// Whether the scheduler should place `task`: PENDING and still wanted.
fn wants_node(task: &Task) -> bool {
    task.status.state == TaskState::Pending && task.desired_state <= TaskState::Complete
}

/// Runs a [`Scheduler`] against a store: the loop a manager's leader runs.
///
/// [`tick`](Driver::tick) does one step (take in events, schedule what is
/// queued, write back) and can be called directly in tests and benches;
/// [`run`](Driver::run) ticks whenever the store changes, until told to stop.
/// Tasks that fit nowhere keep their reason in `status.err` and are offered
/// again whenever a node changes or a task frees capacity.
pub struct Driver {
    store: Store,
    watch: Watch,
    view: NodeView,
    scheduler: Box<dyn Scheduler>,
    pending: FastMap<Id, Pending>,
    queue: Vec<Id>,
    retry_waiting: bool,
    buffered: Vec<Event>,
    config: DriverConfig,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("nodes", &self.view.len())
            .field("pending", &self.pending.len())
            .field("queued", &self.queue.len())
            .finish_non_exhaustive()
    }
}

impl Driver {
    /// A driver over `store` with the default configuration. Reads the store's
    /// current state once; later changes come from a watch.
    pub fn new(store: Store, scheduler: Box<dyn Scheduler>) -> Driver {
        Driver::with_config(store, scheduler, DriverConfig::default())
    }

    /// A driver with an explicit configuration.
    pub fn with_config(
        store: Store,
        scheduler: Box<dyn Scheduler>,
        config: DriverConfig,
    ) -> Driver {
        let (snapshot, watch) = store.view_and_watch(WatchFilter::kinds([Kind::Node, Kind::Task]));
        let view = NodeView::from_tables(&snapshot);
        let mut driver = Driver {
            store,
            watch,
            view,
            scheduler,
            pending: FastMap::default(),
            queue: Vec::new(),
            retry_waiting: false,
            buffered: Vec::new(),
            config,
        };
        let mut tasks: Vec<Arc<Task>> = snapshot.list::<Task>().filter(|t| wants_node(t)).collect();
        tasks.sort_by(|a, b| a.id.cmp(&b.id));
        for t in tasks {
            driver.observe_task(&t);
        }
        driver
    }

    /// The node view as of the last tick.
    pub fn view(&self) -> &NodeView {
        &self.view
    }

    /// Tasks waiting for a node (queued or waiting for a change).
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Ticks whenever the store changes, until `stop` completes (then returns
    /// `Ok`) or a write fails (then returns the error; build a new driver, e.g.
    /// once this manager is leader again).
    pub async fn run(mut self, stop: impl Future<Output = ()>) -> Result<()> {
        let mut stop = std::pin::pin!(stop);
        loop {
            let report = self.tick().await?;
            if report.considered > 0 {
                tracing::debug!(?report, "scheduling pass");
            }
            if !self.queue.is_empty() || self.retry_waiting {
                // Work left (a capped pass, or events taken in after the
                // write): go on at once.
                if stop.as_mut().now_or_never().is_some() {
                    return Ok(());
                }
                continue;
            }
            match select(stop.as_mut(), self.watch.next()).await {
                Either::Left(_) => return Ok(()),
                Either::Right((Some(event), _)) => self.buffered.push(event),
                Either::Right((None, _)) => return Ok(()),
            }
        }
    }

    /// One step: applies the queued store events to the view, schedules the
    /// queued tasks, validates the plan, writes it back, and takes in the
    /// events of its own writes (so [`view`](Driver::view) includes them).
    pub async fn tick(&mut self) -> Result<TickReport> {
        let mut report = TickReport::default();
        self.take_events(&mut report);
        if self.retry_waiting {
            self.retry_waiting = false;
            for (id, p) in self.pending.iter_mut().filter(|(_, p)| !p.queued) {
                p.queued = true;
                self.queue.push(id.clone());
            }
        }
        if self.queue.is_empty() {
            return Ok(report);
        }
        let take = self.queue.len().min(self.config.max_tasks_per_pass);
        let (mut free, mut preset) = (Vec::new(), Vec::new());
        for id in self.queue.drain(..take) {
            if let Some(p) = self.pending.get_mut(&id).filter(|p| p.queued) {
                p.queued = false;
                match p.task.node_id.is_empty() {
                    true => free.push(p.task.clone()),
                    false => preset.push(p.task.clone()),
                }
            }
        }
        report.considered = free.len() + preset.len();
        let plan = self.scheduler.schedule(&self.view, &free);
        let decisions = validate(&self.view, &free, &preset, plan, &mut report);
        // Writing each node's tasks together keeps the store's per-node index
        // (and the view's per-node counts, next) hot.
        let mut decisions = decisions;
        decisions.sort_by_key(|d| match d {
            Decision::Assign { slot, .. } => *slot,
            Decision::Fail { .. } => usize::MAX,
        });
        // The view learns of the assignments from the store's events, queued by
        // the time `write` returns (a commit publishes before it resolves).
        self.view.reserve_tasks(decisions.len());
        self.write(decisions, &mut report).await?;
        self.take_events(&mut report);
        Ok(report)
    }

    /// Applies every queued store event to the view and the pending tasks.
    fn take_events(&mut self, report: &mut TickReport) {
        let mut events = std::mem::take(&mut self.buffered);
        events.extend(self.watch.drain());
        report.events += events.len();
        for event in events {
            self.pending.reserve(event.changes.len());
            for change in event.changes {
                self.apply_change(change);
            }
        }
    }

    fn apply_change(&mut self, change: Change) {
        match (change.object, change.action) {
            (Object::Node(n), Action::Remove) => {
                self.view.remove_node(&n.id);
                self.retry_waiting = true;
            }
            (Object::Node(n), _) => {
                self.view.upsert_node(n);
                self.retry_waiting = true;
            }
            (Object::Task(t), Action::Remove) => {
                self.retry_waiting |= self.view.forget_task(&t.id);
                self.pending.remove(&t.id);
            }
            (Object::Task(t), _) => self.observe_task(&t),
            _ => {}
        }
    }

    /// Takes in the store's version of a task.
    fn observe_task(&mut self, t: &Arc<Task>) {
        self.retry_waiting |= self.view.account_task(t);
        if !wants_node(t) {
            self.pending.remove(&t.id);
            return;
        }
        match self.pending.get_mut(&t.id) {
            Some(p) => {
                let changed = p.task.spec != t.spec || p.task.node_id != t.node_id;
                p.task = t.clone();
                if changed && !p.queued {
                    p.queued = true;
                    self.queue.push(t.id.clone());
                }
            }
            None => {
                self.pending.insert(
                    t.id.clone(),
                    Pending {
                        task: t.clone(),
                        queued: true,
                    },
                );
                self.queue.push(t.id.clone());
            }
        }
    }

    /// Writes decisions in chunked transactions. A task changed since it was
    /// read is skipped and re-queued; only a failed commit fails the tick.
    async fn write(&mut self, decisions: Vec<Decision>, report: &mut TickReport) -> Result<()> {
        let chunk_size = self.config.max_writes_per_transaction.max(1);
        for (i, chunk) in decisions.chunks(chunk_size).enumerate() {
            let mut attempts = 0;
            let outcome = loop {
                match self.store.update(|tx| write_chunk(tx, chunk)).await {
                    Err(swarm_core::Error::Conflict { .. }) if attempts < 3 => attempts += 1,
                    other => break other,
                }
            };
            let stale = match outcome {
                Ok(stale) => stale,
                Err(e) => {
                    // Nothing from here on was written: re-queue it.
                    for d in &decisions[i * chunk_size..] {
                        let id = &d.task().id;
                        if let Some(p) = self.pending.get_mut(id).filter(|p| !p.queued) {
                            p.queued = true;
                            self.queue.push(id.clone());
                        }
                    }
                    return Err(e.into());
                }
            };
            for d in chunk {
                match d {
                    Decision::Assign { .. } => report.assigned += 1,
                    Decision::Fail { .. } => {}
                }
            }
            for (id, current) in stale {
                report.conflicts += 1;
                if let Some(Decision::Assign { .. }) = chunk.iter().find(|d| d.task().id == id) {
                    report.assigned -= 1;
                }
                match current {
                    Some(cur) => {
                        self.observe_task(&cur);
                        if let Some(p) = self.pending.get_mut(&id).filter(|p| !p.queued) {
                            p.queued = true;
                            self.queue.push(id);
                        }
                    }
                    None => {
                        self.retry_waiting |= self.view.forget_task(&id);
                        self.pending.remove(&id);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Writes one chunk; returns the tasks that changed since they were read, with
/// their current version (`None`: removed).
fn write_chunk(
    tx: &mut swarm_core::Tx,
    chunk: &[Decision],
) -> swarm_core::Result<Vec<(Id, Option<Arc<Task>>)>> {
    let mut stale = Vec::new();
    let now = tx.now();
    for d in chunk {
        let read = d.task();
        let current = tx.get::<Task>(&read.id);
        let Some(cur) = current.filter(|c| c.meta.version == read.meta.version) else {
            stale.push((read.id.clone(), tx.get::<Task>(&read.id)));
            continue;
        };
        let mut new = (*cur).clone();
        match d {
            Decision::Assign { node, .. } => {
                new.node_id = node.clone();
                new.status = TaskStatus {
                    state: TaskState::Assigned,
                    timestamp: now,
                    message: ASSIGNED_MESSAGE.into(),
                    ..Default::default()
                };
            }
            Decision::Fail { reason, .. } => {
                new.status.err = reason.clone();
                new.status.timestamp = now;
            }
        }
        tx.update(new)?;
    }
    Ok(stale)
}

/// Checks a plan against the view, as the store would see it: every placement
/// must name a task of the batch and a node passing every filter, counting the
/// plan's earlier placements. Pre-assigned tasks are checked on their node.
fn validate(
    view: &NodeView,
    free: &[Arc<Task>],
    preset: &[Arc<Task>],
    plan: Plan,
    report: &mut TickReport,
) -> Vec<Decision> {
    let mut draft = Draft::new(view);
    let batch: FastMap<&str, usize> = free
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i))
        .collect();
    let mut decided = vec![false; free.len()];
    let mut decisions = Vec::with_capacity(plan.placements.len() + plan.unplaced.len());
    // Tasks of one service at one spec version share their requirements.
    let mut known: FastMap<(&Id, u64), Requirements> = FastMap::default();
    for p in plan.placements {
        let Some(&i) = batch.get(p.task.as_str()) else {
            tracing::warn!(task = %p.task, "plan places a task that was not offered");
            report.rejected += 1;
            continue;
        };
        if std::mem::replace(&mut decided[i], true) {
            continue;
        }
        let task = &free[i];
        let Some(node) = view.node(&p.node) else {
            tracing::warn!(task = %p.task, node = %p.node, "plan names an unknown node");
            report.rejected += 1;
            continue;
        };
        let computed;
        let req = match (&task.spec_version, task.service_id.is_empty()) {
            (Some(v), false) => known
                .entry((&task.service_id, v.index))
                .or_insert_with(|| Requirements::of(task)),
            _ => {
                computed = Requirements::of(task);
                &computed
            }
        };
        match draft.check(node, &task.service_id, req) {
            Ok(()) => {
                draft.place(node, &task.service_id, req);
                decisions.push(Decision::Assign {
                    task: task.clone(),
                    node: node.id().clone(),
                    slot: node.slot,
                });
            }
            Err(filter) => {
                tracing::warn!(task = %p.task, node = %p.node, ?filter, "placement refused");
                report.rejected += 1;
            }
        }
    }
    for u in plan.unplaced {
        let Some(&i) = batch.get(u.task.as_str()) else {
            continue;
        };
        if !std::mem::replace(&mut decided[i], true) {
            let task = &free[i];
            report.unplaced += 1;
            if task.status.err != u.reason {
                decisions.push(Decision::Fail {
                    task: task.clone(),
                    reason: u.reason,
                });
            }
        }
    }
    for task in preset {
        let req = Requirements::of(task);
        let verdict = match view.node(&task.node_id) {
            Some(node) => draft.check(node, &task.service_id, &req).map(|()| node),
            None => Err(Filter::Ready),
        };
        match verdict {
            Ok(node) => {
                draft.place(node, &task.service_id, &req);
                decisions.push(Decision::Assign {
                    task: task.clone(),
                    node: node.id().clone(),
                    slot: node.slot,
                });
            }
            Err(filter) => {
                report.unplaced += 1;
                let mut e = Explanation::default();
                e.add(filter);
                let reason = e.message();
                if task.status.err != reason {
                    decisions.push(Decision::Fail {
                        task: task.clone(),
                        reason,
                    });
                }
            }
        }
    }
    decisions
}
