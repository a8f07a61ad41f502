//! The [`Runtime`] trait and the values it trades in.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use swarm_core::Id;
use swarm_core::Timestamp;
use swarm_core::types::{ContainerStatus, PortConfig, PublishMode, Task};

use crate::error::{Error, Result};

/// Label carrying the service ID on everything a runtime runs.
pub const LABEL_SERVICE_ID: &str = "com.docker.swarm.service.id";
/// Label carrying the service name.
pub const LABEL_SERVICE_NAME: &str = "com.docker.swarm.service.name";
/// Label carrying the task ID.
pub const LABEL_TASK_ID: &str = "com.docker.swarm.task.id";
/// Label carrying the task name (`<service>.<slot>` or `<service>.<node id>`).
pub const LABEL_TASK_NAME: &str = "com.docker.swarm.task.name";
/// Label carrying the node ID.
pub const LABEL_NODE_ID: &str = "com.docker.swarm.node.id";

/// The grace period between the stop signal and SIGKILL when the spec sets none
/// (Docker's default).
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);

/// Who a task held by a runtime belongs to. Runtimes store it with the task (as
/// container labels, or in the process runtime's state directory) so that an agent
/// that restarts can tell, from [`Runtime::list`], which of its tasks still run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskLabels {
    /// The task ID.
    pub task_id: Id,
    /// The task name, e.g. `web.1`.
    pub task_name: String,
    /// The service ID (empty for a task without a service).
    pub service_id: Id,
    /// The service name.
    pub service_name: String,
    /// The node ID.
    pub node_id: Id,
}

impl TaskLabels {
    /// The labels of a task.
    pub fn of(task: &Task) -> TaskLabels {
        TaskLabels {
            task_id: task.id.clone(),
            task_name: task_name(task),
            service_id: task.service_id.clone(),
            service_name: task.service_annotations.name.clone(),
            node_id: task.node_id.clone(),
        }
    }

    /// The `com.docker.swarm.*` labels.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        [
            (LABEL_TASK_ID, self.task_id.to_string()),
            (LABEL_TASK_NAME, self.task_name.clone()),
            (LABEL_SERVICE_ID, self.service_id.to_string()),
            (LABEL_SERVICE_NAME, self.service_name.clone()),
            (LABEL_NODE_ID, self.node_id.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Reads the labels back; `None` when there is no task ID label (not a task).
    pub fn from_map<'a>(
        labels: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Option<Self> {
        let mut out = TaskLabels::default();
        for (k, v) in labels {
            match k.as_str() {
                LABEL_TASK_ID => out.task_id = Id::from(v.as_str()),
                LABEL_TASK_NAME => out.task_name = v.clone(),
                LABEL_SERVICE_ID => out.service_id = Id::from(v.as_str()),
                LABEL_SERVICE_NAME => out.service_name = v.clone(),
                LABEL_NODE_ID => out.node_id = Id::from(v.as_str()),
                _ => {}
            }
        }
        (!out.task_id.is_empty()).then_some(out)
    }
}

/// The task's name: its annotation when set, else `<service>.<slot>` (replicated)
/// or `<service>.<node id>` (global, slot 0).
pub fn task_name(task: &Task) -> String {
    if !task.annotations.name.is_empty() {
        return task.annotations.name.clone();
    }
    let service = &task.service_annotations.name;
    if task.slot > 0 {
        format!("{service}.{}", task.slot)
    } else {
        format!("{service}.{}", task.node_id)
    }
}

/// The container name Docker's swarm mode gives a task: `<service>.<slot>.<task id>`,
/// or `<service>.<node id>.<task id>` for a global service.
pub fn container_name(task: &Task) -> String {
    let service = &task.service_annotations.name;
    let prefix = if service.is_empty() {
        "task"
    } else {
        service.as_str()
    };
    if task.slot > 0 {
        format!("{prefix}.{}.{}", task.slot, task.id)
    } else {
        format!("{prefix}.{}.{}", task.node_id, task.id)
    }
}

/// The host-mode published ports a task asks for (from its endpoint).
pub fn host_ports(task: &Task) -> Vec<PortConfig> {
    let Some(endpoint) = &task.endpoint else {
        return Vec::new();
    };
    let ports = match &endpoint.spec {
        Some(spec) if endpoint.ports.is_empty() => &spec.ports,
        _ => &endpoint.ports,
    };
    ports
        .iter()
        .filter(|p| p.publish_mode == PublishMode::Host)
        .cloned()
        .collect()
}

/// The stop grace period of a task: its spec's, or [`DEFAULT_STOP_GRACE`].
pub fn stop_grace(task: &Task) -> Duration {
    task.spec
        .container
        .stop_grace_period
        .unwrap_or(DEFAULT_STOP_GRACE)
}

/// Where a task held by a runtime stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    /// Created, never started.
    Created,
    /// Running.
    Running,
    /// Exited; the exit code is in [`Inspection::exit_code`] when known.
    Exited,
}

/// What [`Runtime::inspect`] and [`Runtime::list`] report about one task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inspection {
    /// Whose task this is.
    pub labels: TaskLabels,
    /// The image the task was created with.
    pub image: String,
    /// Where it stands.
    pub state: ContainerState,
    /// The exit code once it exited, if the runtime knows it.
    pub exit_code: Option<i32>,
    /// Container ID (or the process runtime's handle), pid (0 when not running)
    /// and exit code, as a task status carries them.
    pub container: ContainerStatus,
    /// Host-mode published ports with the host port they answer on (a
    /// dynamic one as picked), bound by the runtime or, when it does not bind
    /// them ([`Runtime::binds_host_ports`]), left to the node.
    pub ports: Vec<PortConfig>,
    /// When it started.
    pub started_at: Option<Timestamp>,
    /// When it exited.
    pub finished_at: Option<Timestamp>,
    /// The task's own IP address while it runs, where the node's routing mesh
    /// reaches its target ports: a container's address on its network. `None`
    /// for a task on the host network (the process runtime): the mesh then
    /// reaches it on the node's loopback address.
    pub addr: Option<std::net::IpAddr>,
    /// The task's own network namespace, where the node attaches its overlay
    /// networks: a named namespace the process runtime created for a task on
    /// an overlay network (from `create` on, until `remove`), or
    /// `/proc/<pid>/ns/net` of a running Docker container on one. `None`: the
    /// task has no overlay attachment, or shares the host's network.
    pub netns: Option<std::path::PathBuf>,
}

/// Whether the task is attached to an overlay network other than the routing
/// mesh's ingress network: such a task gets a network namespace of its own
/// where the runtime can give it one (see [`Inspection::netns`]).
pub fn has_overlay(task: &Task) -> bool {
    task.networks.iter().any(|a| {
        !a.network.spec.ingress
            && matches!(a.network.spec.driver_config.name.as_str(), "" | "overlay")
            && !a.addresses.is_empty()
    })
}

/// Which output a log chunk came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LogStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// A piece of a task's output: one line (with its `\n`), or the part of a line
/// written so far when the task wrote no newline yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogChunk {
    /// stdout or stderr.
    pub stream: LogStream,
    /// The bytes, as written.
    pub data: Bytes,
    /// When the node got them from the task (its clock), when the runtime
    /// keeps it.
    pub time: Option<Timestamp>,
}

/// What [`Runtime::logs`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogOptions {
    /// Keep streaming new output until the task exits.
    pub follow: bool,
    /// Include stdout.
    pub stdout: bool,
    /// Include stderr.
    pub stderr: bool,
    /// Only the last N lines written so far (of the streams asked, together),
    /// then what follows; `None` is everything.
    pub tail: Option<usize>,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            follow: false,
            stdout: true,
            stderr: true,
            tail: None,
        }
    }
}

/// A stream of log chunks. It ends when the output ends: at once without
/// `follow`, when the task has exited and its output is drained with it.
pub type LogChunks = BoxStream<'static, Result<LogChunk>>;

/// A container runtime: runs tasks on one node.
///
/// The verbs follow a task's life: [`prepare`](Runtime::prepare) (the image),
/// [`create`](Runtime::create), [`start`](Runtime::start), [`wait`](Runtime::wait),
/// [`stop`](Runtime::stop), [`remove`](Runtime::remove). Tasks are named by task ID
/// after `create`. The agent does not call the verbs in order itself: it hands the
/// runtime to [`advance`](crate::advance) / [`drive`](crate::drive), the task state
/// machine every runtime shares.
///
/// # Contract for implementors
/// - Every call is idempotent where the task already is where the call leads:
///   `prepare` twice, `start` of a running task, `stop` of an exited one succeed.
/// - `create` stores [`TaskLabels`] with the task, so that a new instance on the
///   same node (after the agent restarts) lists it in [`list`](Runtime::list) and
///   controls it with every other verb.
/// - `wait` is cancel safe: dropping its future leaves the task running.
/// - `stop` sends the task's stop signal (SIGTERM by default) and kills it when the
///   grace period ends; it returns once the task has exited.
/// - `remove` kills what still runs and leaves nothing behind (no container, no
///   process of the task's group, no state).
/// - Errors say whether a retry may help ([`Error::is_temporary`]) and which state
///   they put the task in ([`Error::task_state`]); a missing image is
///   [`Error::NoSuchImage`]. No call panics on a bad spec: it is an error.
#[async_trait]
pub trait Runtime: Send + Sync {
    /// A short name for logs (`docker`, `process`).
    fn name(&self) -> &'static str;

    /// Makes sure the task can be created: the image is present (pulled when
    /// needed) and the spec is valid for this runtime.
    async fn prepare(&self, task: &Task) -> Result<()>;

    /// Creates the task without starting it. Fails with [`Error::AlreadyExists`]
    /// when a task with this ID exists.
    async fn create(&self, task: &Task) -> Result<ContainerStatus>;

    /// Starts a created task.
    async fn start(&self, task_id: &str) -> Result<()>;

    /// Waits for the task to exit and returns its exit code (128 + N when killed by
    /// signal N). Returns at once for a task that already exited.
    async fn wait(&self, task_id: &str) -> Result<i32>;

    /// Sends the stop signal, waits up to `grace` (the spec's grace period when
    /// `None`) and then kills. Returns once the task has exited.
    async fn stop(&self, task_id: &str, grace: Option<Duration>) -> Result<()>;

    /// Kills the task if it runs and removes every trace of it.
    async fn remove(&self, task_id: &str) -> Result<()>;

    /// Reports one task.
    async fn inspect(&self, task_id: &str) -> Result<Inspection>;

    /// Every task this runtime holds on this node, running or not.
    async fn list(&self) -> Result<Vec<Inspection>>;

    /// Whether the runtime makes a task's host-mode published ports answer by
    /// itself, as Docker does with its port bindings (the default). When
    /// `false`, the node forwards each published port the task reports in
    /// [`Inspection::ports`] to the task's address ([`Inspection::addr`], the
    /// node's loopback when `None`) and target port, except a port the task
    /// binds itself: on the host network (`addr` is `None`) with the
    /// published port equal to the target port.
    fn binds_host_ports(&self) -> bool {
        true
    }

    /// The task's output. Optional: the default says [`Error::Unsupported`].
    async fn logs(&self, task_id: &str, options: LogOptions) -> Result<LogChunks> {
        let _ = (task_id, options);
        Err(Error::Unsupported("logs"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_core::types::{Annotations, Endpoint, Protocol};

    fn task(slot: u64) -> Task {
        Task {
            id: Id::from("t1"),
            service_id: Id::from("s1"),
            node_id: Id::from("n1"),
            slot,
            service_annotations: Annotations::named("web"),
            ..Default::default()
        }
    }

    #[test]
    fn names_follow_docker() {
        assert_eq!(container_name(&task(2)), "web.2.t1");
        assert_eq!(container_name(&task(0)), "web.n1.t1");
        assert_eq!(task_name(&task(2)), "web.2");
        assert_eq!(task_name(&task(0)), "web.n1");
    }

    #[test]
    fn labels_round_trip() {
        let labels = TaskLabels::of(&task(3));
        let map = labels.to_map();
        assert_eq!(map[LABEL_SERVICE_NAME], "web");
        assert_eq!(map[LABEL_TASK_NAME], "web.3");
        assert_eq!(TaskLabels::from_map(&map), Some(labels));
        assert_eq!(TaskLabels::from_map(&BTreeMap::new()), None);
    }

    #[test]
    fn host_ports_only() {
        let mut t = task(1);
        let port = |mode| PortConfig {
            protocol: Protocol::Tcp,
            target_port: 80,
            published_port: 8080,
            publish_mode: mode,
            ..Default::default()
        };
        t.endpoint = Some(Endpoint {
            ports: vec![port(PublishMode::Host), port(PublishMode::Ingress)],
            ..Default::default()
        });
        assert_eq!(host_ports(&t), vec![port(PublishMode::Host)]);
        assert_eq!(stop_grace(&t), DEFAULT_STOP_GRACE);
    }
}
