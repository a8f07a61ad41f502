//! The node's runtime wrapped with its network plane ([`NetRuntime`]): a task is
//! attached to its overlay networks once it has a namespace and detached before
//! it is removed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use swarm_core::types::{ContainerStatus, Task};
use swarm_runtime::{Inspection, LogChunks, LogOptions, Runtime};
use tonic::async_trait;

use super::NetPlane;

/// A node's runtime with its overlay networks: attaches a task that has a
/// network namespace to its networks after `create` (process runtime) or after
/// `start` (Docker), and detaches it before `remove`. Every other verb is the
/// wrapped runtime's.
pub struct NetRuntime {
    inner: Arc<dyn Runtime>,
    plane: NetPlane,
    /// Tasks created through this wrapper and not attached yet (Docker: until
    /// they start).
    pending: parking_lot::Mutex<HashMap<String, Task>>,
}

impl std::fmt::Debug for NetRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetRuntime")
            .field("runtime", &self.inner.name())
            .field("plane", &self.plane)
            .finish()
    }
}

impl NetRuntime {
    /// `inner` with the overlay networks of `plane`.
    pub fn new(inner: Arc<dyn Runtime>, plane: NetPlane) -> NetRuntime {
        NetRuntime {
            inner,
            plane,
            pending: parking_lot::Mutex::new(HashMap::new()),
        }
    }

    /// Gives an inspected task with no address of its own its address on the
    /// gateway bridge, where the node (its routing mesh) reaches it.
    async fn fill_addr(&self, task_id: &str, i: &mut Inspection) {
        if i.addr.is_none() && i.netns.is_some() {
            i.addr = self.plane.gateway_addr(task_id).await;
        }
    }

    /// Attaches `task` if the runtime gave it a namespace; `Ok(false)` when it has
    /// none (yet, or any more: a Docker container that already exited).
    ///
    /// A Docker container's namespace is named by its process
    /// (`/proc/<pid>/ns/net`): the namespace is opened first, then the runtime
    /// asked again that the task still runs with it, so what is attached is the
    /// task's (not the namespace of a process that took a reused pid), and a
    /// task that ended meanwhile is not failed for it.
    async fn attach_if_ready(&self, task: &Task) -> swarm_runtime::Result<bool> {
        let id = task.id.as_str();
        let Some(netns) = self.inner.inspect(id).await?.netns else {
            return Ok(false);
        };
        let pinned = std::fs::File::open(&netns);
        let still = self.inner.inspect(id).await?.netns;
        let pinned = match pinned {
            Ok(f) if still.as_deref() == Some(netns.as_path()) => f,
            // The task left its namespace (it exited) in between.
            _ if still.is_none() => return Ok(false),
            Ok(_) => {
                return Err(swarm_runtime::Error::StartFailed {
                    message: format!(
                        "the task's namespace moved from {} while attaching it",
                        netns.display()
                    ),
                    rejected: false,
                });
            }
            Err(e) => {
                return Err(swarm_runtime::Error::StartFailed {
                    message: format!("opening the task's namespace {}: {e}", netns.display()),
                    rejected: false,
                });
            }
        };
        let path = PathBuf::from(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&pinned)
        ));
        self.plane.attach(task, &path, true).await.map_err(|e| {
            swarm_runtime::Error::StartFailed {
                message: format!("attaching the task's overlay networks: {e}"),
                rejected: false,
            }
        })?;
        Ok(true)
    }
}

#[async_trait]
impl Runtime for NetRuntime {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn binds_host_ports(&self) -> bool {
        self.inner.binds_host_ports()
    }

    async fn prepare(&self, task: &Task) -> swarm_runtime::Result<()> {
        self.inner.prepare(task).await
    }

    async fn create(&self, task: &Task) -> swarm_runtime::Result<ContainerStatus> {
        let status = self.inner.create(task).await?;
        if !self.plane.enabled() || !swarm_runtime::has_overlay(task) {
            return Ok(status);
        }
        match self.attach_if_ready(task).await {
            Ok(true) => {}
            Ok(false) => {
                self.pending
                    .lock()
                    .insert(task.id.to_string(), task.clone());
            }
            Err(e) => {
                let _ = self.inner.remove(task.id.as_str()).await;
                return Err(e);
            }
        }
        Ok(status)
    }

    async fn start(&self, task_id: &str) -> swarm_runtime::Result<()> {
        self.inner.start(task_id).await?;
        let pending = self.pending.lock().remove(task_id);
        if let Some(task) = pending {
            self.attach_if_ready(&task).await?;
        }
        Ok(())
    }

    async fn wait(&self, task_id: &str) -> swarm_runtime::Result<i32> {
        self.inner.wait(task_id).await
    }

    async fn stop(&self, task_id: &str, grace: Option<Duration>) -> swarm_runtime::Result<()> {
        self.inner.stop(task_id, grace).await
    }

    async fn remove(&self, task_id: &str) -> swarm_runtime::Result<()> {
        self.pending.lock().remove(task_id);
        self.plane.detach(task_id).await;
        self.inner.remove(task_id).await
    }

    async fn inspect(&self, task_id: &str) -> swarm_runtime::Result<Inspection> {
        let mut i = self.inner.inspect(task_id).await?;
        self.fill_addr(task_id, &mut i).await;
        Ok(i)
    }

    async fn list(&self) -> swarm_runtime::Result<Vec<Inspection>> {
        let mut all = self.inner.list().await?;
        for i in &mut all {
            let task_id = i.labels.task_id.clone();
            self.fill_addr(&task_id, i).await;
        }
        Ok(all)
    }

    async fn logs(&self, task_id: &str, options: LogOptions) -> swarm_runtime::Result<LogChunks> {
        self.inner.logs(task_id, options).await
    }
}

#[cfg(test)]
mod tests;
