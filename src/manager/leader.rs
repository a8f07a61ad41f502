//! Everything only the raft leader runs, started and stopped in one place
//! ([`follow_leadership`]): the orchestrator (replicated, global,
//! jobs, restarts, reaper, rolling updates), the [`allocator`](crate::manager::allocator)
//! (subnets, VIPs, ports, task addresses; NEW → PENDING), the
//! [`keymanager`](crate::manager::keymanager) (overlay encryption keys), and
//! the scheduler driver (PENDING → ASSIGNED), the [`roles`](crate::manager::roles)
//! loop (promotions, demotions, reachability), and the record of who leads in
//! the managers' node objects. They start when this manager
//! becomes leader and stop when it loses leadership; all their state is in the
//! store, so a new leader picks up exactly where the old one stopped (the
//! updater's memory of when ended tasks started running aside, see
//! [`orchestrator::RunHistory`]).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use swarm_core::types::{Node, Service, Task};
use swarm_core::{Clock, Filter, Id, Kind, Store, Timestamp};
use swarm_raft::RaftNode;
use swarm_sched::{Driver, Scheduler};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::manager::orchestrator;

/// Makes the scheduler each new leader term runs.
pub type SchedulerFactory = Arc<dyn Fn() -> Box<dyn Scheduler> + Send + Sync>;

/// The running leader loops; dropping or [`stop`](LeaderLoops::stop)ping ends them.
pub struct LeaderLoops {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for LeaderLoops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderLoops")
            .field("tasks", &self.tasks.len())
            .finish()
    }
}

/// What the leader runs, and with what: built once from the manager's
/// configuration, used at the start of every term.
#[derive(Clone)]
pub(crate) struct LeaderConfig {
    /// Makes the scheduler of each term.
    pub scheduler: SchedulerFactory,
    /// The clock of the orchestrator (restart delays, update monitors).
    pub clock: Arc<dyn Clock>,
    /// How often the [`keymanager`](crate::manager::keymanager) rotates the
    /// overlay keys.
    pub key_rotation: Duration,
}

impl LeaderConfig {
    /// The default spread scheduler's settings on `clock`, rotating keys every
    /// [`DEFAULT_KEY_ROTATION`](crate::manager::keymanager::DEFAULT_KEY_ROTATION).
    #[cfg(test)]
    pub fn new(scheduler: SchedulerFactory, clock: Arc<dyn Clock>) -> LeaderConfig {
        LeaderConfig {
            scheduler,
            clock,
            key_rotation: crate::manager::keymanager::DEFAULT_KEY_ROTATION,
        }
    }
}

impl LeaderLoops {
    /// Starts every loop of a leader's term over `store`: the
    /// [`keymanager`](crate::manager::keymanager), the orchestrator, the
    /// [`allocator`](crate::manager::allocator), the scheduler driver, and with
    /// the raft member (`raft`) the [`roles`](crate::manager::roles) loop
    /// (promotions, demotions, reachability).
    pub fn start(store: Store, cfg: &LeaderConfig, raft: Option<Arc<RaftNode>>) -> LeaderLoops {
        let (stop, rx) = watch::channel(false);
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(crate::manager::keymanager::run(
            store.clone(),
            cfg.key_rotation,
            rx.clone(),
        )));
        tasks.push(tokio::spawn(orchestrate(
            store.clone(),
            cfg.clock.clone(),
            rx.clone(),
        )));
        tasks.push(tokio::spawn(crate::manager::allocator::run(
            store.clone(),
            rx.clone(),
        )));
        if let Some(raft) = raft {
            tasks.push(tokio::spawn(crate::manager::roles::run(
                raft,
                store.clone(),
                rx.clone(),
            )));
        }
        let driver = Driver::new(store, (cfg.scheduler)());
        let mut srx = rx;
        tasks.push(tokio::spawn(async move {
            let stopped = async move {
                let _ = srx.wait_for(|s| *s).await;
            };
            if let Err(e) = driver.run(stopped).await {
                tracing::error!(error = %e, "scheduler stopped");
            }
        }));
        LeaderLoops { stop, tasks }
    }

    /// Stops the loops and waits for them.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}

impl Drop for LeaderLoops {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn stopped(rx: &watch::Receiver<bool>) -> bool {
    *rx.borrow()
}

/// The orchestrator loop: reconciles every service touched by a change (all of
/// them when nodes or the cluster change), and services whose delayed restarts
/// come due; removes the tasks of deleted services.
async fn orchestrate(store: Store, clock: Arc<dyn Clock>, mut stop: watch::Receiver<bool>) {
    let filter = Filter::kinds([Kind::Service, Kind::Task, Kind::Node, Kind::Cluster]);
    let (view, mut watch) = store.view_and_watch(filter);
    let mut dirty: BTreeSet<Id> = view.list::<Service>().map(|s| s.id.clone()).collect();
    dirty.extend(
        view.list::<Task>()
            .filter(|t| !t.service_id.is_empty())
            .map(|t| t.service_id.clone()),
    );
    let mut history = orchestrator::RunHistory::new();
    for t in view.list::<Task>() {
        history.observe(&t);
    }
    drop(view);
    let mut wake_at: Option<Timestamp> = None;
    loop {
        if stopped(&stop) {
            return;
        }
        if !dirty.is_empty() {
            let view = store.view();
            let now = clock.now();
            let mut plan = orchestrator::Plan::default();
            let mut next_wake: Option<Timestamp> = None;
            for sid in &dirty {
                let p = match view.get::<Service>(sid) {
                    Some(s) => {
                        let mut p = orchestrator::reconcile(&view, &s, now);
                        orchestrator::plan_update(&view, &s, &history, now, &mut p);
                        p
                    }
                    None => orchestrator::remove_service_tasks(&view, sid),
                };
                if let Some(w) = p.wake_at {
                    next_wake = Some(next_wake.map_or(w, |n: Timestamp| n.min(w)));
                }
                plan.create.extend(p.create);
                plan.update.extend(p.update);
                plan.delete.extend(p.delete);
                plan.services.extend(p.services);
            }
            drop(view);
            wake_at = next_wake;
            if plan.is_empty() {
                dirty.clear();
            } else {
                match store.update(|tx| plan.clone().apply(tx)).await {
                    Ok(()) => dirty.clear(),
                    Err(e) => {
                        tracing::debug!(error = %e, "orchestration plan not committed; retrying");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                }
            }
        }
        let sleep = match wake_at {
            Some(w) => w.since(clock.now()).max(Duration::from_millis(1)),
            None => Duration::from_secs(3600),
        };
        tokio::select! {
            e = watch.next() => {
                let Some(events) = with_queued(e, &mut watch) else { return };
                let mut all_services = false;
                for e in events {
                    for c in &e.changes {
                        match c.object.kind() {
                            Kind::Service => {
                                dirty.insert(c.object.id().clone());
                            }
                            Kind::Task => {
                                if let Some(t) = c.object.downcast::<Task>() {
                                    if c.action == swarm_core::Action::Remove {
                                        history.forget(&t.id);
                                    } else {
                                        history.observe(t);
                                    }
                                    if !t.service_id.is_empty() {
                                        dirty.insert(t.service_id.clone());
                                    }
                                }
                                if let Some(old) = c.old.as_ref().and_then(|o| o.downcast::<Task>())
                                    && c.action != swarm_core::Action::Remove
                                {
                                    history.observe(old);
                                }
                            }
                            Kind::Node | Kind::Cluster
                                if c.object.downcast::<Node>().is_none_or(|_| node_change_matters(c)) =>
                            {
                                all_services = true;
                            }
                            _ => {}
                        }
                    }
                }
                if all_services {
                    dirty.extend(store.view().list::<Service>().map(|s| s.id.clone()));
                }
            }
            _ = tokio::time::sleep(sleep) => {
                let view = store.view();
                dirty.extend(view.list::<Service>().map(|s| s.id.clone()));
            }
            _ = stop.changed() => {}
        }
    }
}

/// The event just received and every one already queued behind it, so a burst
/// of commits is handled in one pass; `None` when the store is gone.
fn with_queued(
    first: Option<swarm_core::Event>,
    watch: &mut swarm_core::Watch,
) -> Option<Vec<swarm_core::Event>> {
    let mut events = vec![first?];
    events.extend(watch.drain());
    Some(events)
}

/// Whether a node change can change what the orchestrator wants: state,
/// availability, role or labels (constraints), or the node coming or going.
fn node_change_matters(c: &swarm_core::Change) -> bool {
    let (Some(new), Some(old)) = (
        c.object.downcast::<Node>(),
        c.old.as_ref().and_then(|o| o.downcast::<Node>()),
    ) else {
        return true;
    };
    new.status.state != old.status.state
        || new.spec != old.spec
        || new.role != old.role
        || new
            .description
            .as_ref()
            .map(|d| (&d.platform, &d.engine.labels))
            != old
                .description
                .as_ref()
                .map(|d| (&d.platform, &d.engine.labels))
}

/// Starts the leader loops while this member leads, stops them when it does not,
/// and records who leads in the managers' node objects.
pub(crate) async fn follow_leadership(
    raft: Arc<RaftNode>,
    store: Store,
    node_id: Id,
    cfg: LeaderConfig,
    leading_tx: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let mut leadership = raft.watch_leadership();
    let mut loops: Option<LeaderLoops> = None;
    loop {
        let leading = leadership.borrow_and_update().leader == Some(raft.id());
        leading_tx.send_replace(leading);
        if leading && loops.is_none() {
            tracing::info!(node = %node_id, "leading: starting the orchestrator, allocator and scheduler");
            loops = Some(LeaderLoops::start(store.clone(), &cfg, Some(raft.clone())));
            if let Err(e) = record_leader(&store, raft.id()).await {
                tracing::warn!(error = %e, "could not record the new leader");
            }
        } else if !leading && let Some(l) = loops.take() {
            tracing::info!(node = %node_id, "no longer leading: stopping the leader loops");
            l.stop().await;
        }
        tokio::select! {
            r = leadership.changed() => if r.is_err() { break },
            _ = stop.changed() => if *stop.borrow() { break },
        }
    }
    if let Some(l) = loops.take() {
        l.stop().await;
    }
}

/// Marks the manager with raft ID `raft_id` as the leader in the managers' node
/// objects (`node ls`: MANAGER STATUS), and no other.
async fn record_leader(store: &Store, raft_id: u64) -> swarm_core::Result<()> {
    store
        .update_retrying(|tx| {
            let managers: Vec<_> = tx
                .list::<Node>()
                .filter(|n| n.manager_status.is_some())
                .collect();
            for n in managers {
                let ms = n.manager_status.as_ref().expect("filtered");
                let lead = ms.raft_id == raft_id;
                if ms.leader != lead {
                    let mut n = (*n).clone();
                    if let Some(ms) = n.manager_status.as_mut() {
                        ms.leader = lead;
                    }
                    tx.update(n)?;
                }
            }
            Ok(())
        })
        .await
}

#[cfg(test)]
mod tests;
