//! Services and tasks: create, inspect, list, update, scale, remove; task queries.

use std::sync::Arc;

use swarm_core::types::{
    JobStatus, Service, ServiceMode, ServiceSpec, Task, TaskState, UpdateState, UpdateStatus,
    Version,
};
use swarm_core::{Id, Kind, StoreObject};

use super::nodes::label_matches;
use super::validate::validate_service_spec;
use super::{Control, existing};
use crate::error::{Error, Result};
use crate::manager::orchestrator;

/// Filters of `docker service ls`.
#[derive(Clone, Debug, Default)]
pub struct ServiceFilter {
    /// IDs or ID prefixes.
    pub ids: Vec<String>,
    /// Names or name prefixes.
    pub names: Vec<String>,
    /// `KEY` or `KEY=VALUE` labels.
    pub labels: Vec<String>,
    /// `replicated` or `global` (job modes count as their kind).
    pub global: Option<bool>,
}

/// Filters of `docker service ps` / `GET /tasks`.
#[derive(Clone, Debug, Default)]
pub struct TaskFilter {
    /// Service IDs or names.
    pub services: Vec<String>,
    /// Node IDs or names.
    pub nodes: Vec<String>,
    /// Desired states.
    pub desired_states: Vec<TaskState>,
}

impl Control {
    /// Creates a service (`docker service create`). The spec is validated and the
    /// name must be free.
    pub async fn create_service(&self, spec: ServiceSpec) -> Result<Arc<Service>> {
        let view = self.store.view();
        validate_service_spec(&view, &spec)?;
        crate::manager::allocator::check_ports(&view, &spec, None)?;
        drop(view);
        let is_job = spec.mode.is_job();
        let service = Service {
            spec,
            spec_version: Some(Version { index: 1 }),
            ..Default::default()
        };
        Ok(self
            .store
            .update(|tx| {
                let mut s = service.clone();
                if is_job {
                    s.job_status = Some(JobStatus {
                        job_iteration: Version { index: 0 },
                        last_execution: Some(tx.now()),
                    });
                }
                tx.create(s)
            })
            .await?)
    }

    /// How far a job service's current run has got: completed and running
    /// tasks against the completions wanted.
    pub fn job_progress(&self, id_or_name: &str) -> Result<orchestrator::JobProgress> {
        let view = self.store.view();
        let service = view.resolve::<Service>(id_or_name)?;
        if !service.spec.mode.is_job() {
            return Err(Error::InvalidArgument(format!(
                "{}: not a job service",
                service.spec.annotations.name
            )));
        }
        Ok(orchestrator::job_progress(&view, &service))
    }

    /// A service by ID, unique ID prefix or name.
    pub fn inspect_service(&self, id_or_name: &str) -> Result<Arc<Service>> {
        Ok(self.store.view().resolve::<Service>(id_or_name)?)
    }

    /// Services matching `filter`, sorted by name.
    pub fn list_services(&self, filter: &ServiceFilter) -> Vec<Arc<Service>> {
        let view = self.store.view();
        let mut v: Vec<Arc<Service>> = view
            .list::<Service>()
            .filter(|s| {
                let name = &s.spec.annotations.name;
                (filter.ids.is_empty() || filter.ids.iter().any(|p| s.id.starts_with(p.as_str())))
                    && (filter.names.is_empty()
                        || filter.names.iter().any(|p| name.starts_with(p.as_str())))
                    && filter
                        .labels
                        .iter()
                        .all(|l| label_matches(&s.spec.annotations.labels, l))
                    && filter.global.is_none_or(|g| s.spec.mode.is_global() == g)
            })
            .collect();
        v.sort_by(|a, b| a.spec.annotations.name.cmp(&b.spec.annotations.name));
        v
    }

    /// Replaces a service's spec (`docker service update`); the old spec is kept
    /// for rollback. `version` is the service version the caller read: the
    /// update applies when the spec has not changed since (writes of the
    /// swarm's own — update status, endpoint allocation — do not matter), else
    /// it is a `Conflict`. The mode's kind (replicated, global, job) cannot
    /// change.
    ///
    /// The update status is cleared, so the updater starts over: tasks whose
    /// template differs from the new spec are replaced as its `UpdateConfig`
    /// says. A paused update resumes when the task template did not change (the
    /// tutorial's `docker service update redis`): it goes on from where it
    /// stopped, its failure count and start time reset. A job service starts a
    /// new iteration.
    pub async fn update_service(
        &self,
        id_or_name: &str,
        version: u64,
        spec: ServiceSpec,
    ) -> Result<Arc<Service>> {
        let view = self.store.view();
        let current = view.resolve::<Service>(id_or_name)?;
        validate_service_spec(&view, &spec)?;
        crate::manager::allocator::check_ports(&view, &spec, Some(&current.id))?;
        if std::mem::discriminant(&current.spec.mode) != std::mem::discriminant(&spec.mode) {
            return Err(Error::InvalidArgument(
                "service mode change is not allowed".into(),
            ));
        }
        // Read at or after the last spec change: what the swarm wrote into the
        // service since (update or job status, endpoint allocation) is kept,
        // not refused. A spec change since the read is out of sequence.
        current.check_spec_read(version)?;
        let id = current.id.clone();
        drop(view);
        Ok(self
            .store
            .update_retrying(|tx| {
                let current = existing::<Service>(tx, &id)?;
                current.check_spec_read(version)?;
                let mut s = (*current).clone();
                s.previous_spec = Some(s.spec.clone());
                s.previous_spec_version = s.spec_version;
                s.spec_version = Some(Version {
                    index: s.spec_version.map_or(1, |v| v.index + 1),
                });
                // An update paused by failures resumes when the service is
                // updated again with the same task template: its remaining slots
                // (none, if the failed ones recovered on their own) are updated
                // and it completes.
                let resumed = match s.update_status.as_ref().map(|u| u.state) {
                    Some(UpdateState::Paused) if spec.task == s.spec.task => {
                        Some(UpdateState::Updating)
                    }
                    Some(UpdateState::RollbackPaused) if spec.task == s.spec.task => {
                        Some(UpdateState::RollbackStarted)
                    }
                    _ => None,
                };
                s.spec = spec.clone();
                s.update_status = resumed.map(|state| UpdateStatus {
                    state,
                    started_at: Some(tx.now()),
                    completed_at: None,
                    message: match state {
                        UpdateState::Updating => "update in progress",
                        _ => "rollback in progress",
                    }
                    .into(),
                });
                if let Some(js) = &mut s.job_status {
                    js.job_iteration.index += 1;
                    js.last_execution = Some(tx.now());
                }
                tx.update(s)
            })
            .await?)
    }

    /// Rolls a service back to its previous spec (`docker service rollback`),
    /// replacing its tasks as its `RollbackConfig` says. Fails with
    /// `FailedPrecondition` when there is no previous spec.
    pub async fn rollback_service(&self, id_or_name: &str) -> Result<Arc<Service>> {
        let id = self.inspect_service(id_or_name)?.id.clone();
        let r = self
            .store
            .update_retrying(|tx| {
                let current = existing::<Service>(tx, &id)?;
                let mut s = (*current).clone();
                let Some(previous) = s.previous_spec.take() else {
                    return Err(swarm_core::Error::InvalidArgument(format!(
                        "service {} does not have a previous spec",
                        s.spec.annotations.name
                    )));
                };
                let previous_version = s.previous_spec_version.take();
                s.previous_spec = Some(std::mem::replace(&mut s.spec, previous));
                s.previous_spec_version = std::mem::replace(&mut s.spec_version, previous_version);
                s.update_status = Some(UpdateStatus {
                    state: UpdateState::RollbackStarted,
                    started_at: Some(tx.now()),
                    completed_at: None,
                    message: "manually requested rollback".into(),
                });
                tx.update(s)
            })
            .await;
        r.map_err(|e| match e {
            swarm_core::Error::InvalidArgument(m) => Error::FailedPrecondition(m),
            e => e.into(),
        })
    }

    /// Sets the replica count of a replicated service (`docker service scale`).
    pub async fn scale_service(&self, id_or_name: &str, replicas: u64) -> Result<Arc<Service>> {
        let current = self.inspect_service(id_or_name)?;
        let mut spec = current.spec.clone();
        match &mut spec.mode {
            ServiceMode::Replicated { replicas: r } => *r = replicas,
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "{}: scale can only be used with replicated mode",
                    current.spec.annotations.name
                )));
            }
        }
        self.update_service(&current.id, current.meta.version.index, spec)
            .await
    }

    /// Removes a service (`docker service rm`): the service goes at once and its
    /// tasks are marked for removal, so every node shuts them down.
    pub async fn remove_service(&self, id_or_name: &str) -> Result<()> {
        let service = self.inspect_service(id_or_name)?;
        self.store
            .update_retrying(|tx| {
                existing::<Service>(tx, &service.id)?;
                let plan = orchestrator::remove_service_tasks(tx, &service.id);
                tx.delete::<Service>(&service.id)?;
                plan.apply(tx)
            })
            .await?;
        Ok(())
    }

    /// Tasks matching `filter`, by service name, slot, then newest first.
    pub fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<Arc<Task>>> {
        let view = self.store.view();
        let resolve_all = |names: &[String], kind: Kind| -> Result<Vec<Id>> {
            names
                .iter()
                .map(|n| match kind {
                    Kind::Service => view.resolve::<Service>(n).map(|s| s.id.clone()),
                    _ => view
                        .resolve::<swarm_core::types::Node>(n)
                        .map(|s| s.id.clone()),
                })
                .collect::<std::result::Result<_, _>>()
                .map_err(Error::from)
        };
        let services = resolve_all(&filter.services, Kind::Service)?;
        let nodes = resolve_all(&filter.nodes, Kind::Node)?;
        let candidates: Vec<Arc<Task>> = if !services.is_empty() {
            services
                .iter()
                .flat_map(|s| view.tasks_by_service(s))
                .collect()
        } else if !nodes.is_empty() {
            nodes.iter().flat_map(|n| view.tasks_by_node(n)).collect()
        } else {
            view.list::<Task>().collect()
        };
        let mut tasks: Vec<Arc<Task>> = candidates
            .into_iter()
            .filter(|t| nodes.is_empty() || nodes.contains(&t.node_id))
            .filter(|t| {
                filter.desired_states.is_empty() || filter.desired_states.contains(&t.desired_state)
            })
            .collect();
        // docker service ps: by service and slot (global tasks: by node),
        // the newest task of a slot first, its history below.
        fn key(t: &Task) -> (&str, u64, &str, std::cmp::Reverse<swarm_core::Timestamp>) {
            let node = if t.slot == 0 { t.node_id.as_str() } else { "" };
            (
                t.service_annotations.name.as_str(),
                t.slot,
                node,
                std::cmp::Reverse(t.meta.created_at),
            )
        }
        // Borrowed keys: a listing of 10k tasks allocates nothing to sort.
        tasks.sort_by(|a, b| key(a).cmp(&key(b)));
        Ok(tasks)
    }

    /// A task by ID or unique ID prefix.
    pub fn inspect_task(&self, id: &str) -> Result<Arc<Task>> {
        Ok(self.store.view().resolve::<Task>(id)?)
    }
}
