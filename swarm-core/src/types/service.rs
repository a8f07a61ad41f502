//! Services: the desired state of a set of tasks.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::common::{Annotations, Driver, Meta, Platform, ResourceRequirements};
use crate::id::Id;
use crate::time::Timestamp;

/// Kind of mount.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    /// A host path.
    #[default]
    Bind,
    /// A named volume.
    Volume,
    /// A memory-backed filesystem.
    Tmpfs,
    /// A Windows named pipe.
    Npipe,
    /// A cluster volume.
    Cluster,
}

/// A mount into a task's filesystem.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Kind of mount.
    pub r#type: MountType,
    /// Host path or volume name.
    pub source: String,
    /// Path inside the task.
    pub target: String,
    /// Mounted read-only.
    pub readonly: bool,
    /// Bind propagation (`rprivate`, ...), for binds.
    pub bind_propagation: String,
    /// Volume driver and labels, for volumes.
    pub volume_driver: Option<Driver>,
    /// Labels of a volume created for the mount.
    pub volume_labels: BTreeMap<String, String>,
    /// Size limit in bytes, for tmpfs.
    pub tmpfs_size_bytes: i64,
    /// Mode bits, for tmpfs.
    pub tmpfs_mode: u32,
}

/// A container health check (as in a Dockerfile's HEALTHCHECK).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthConfig {
    /// `["NONE"]`, `["CMD", args...]` or `["CMD-SHELL", command]`; empty inherits the image's.
    pub test: Vec<String>,
    /// Time between checks.
    pub interval: Duration,
    /// Time a check may take.
    pub timeout: Duration,
    /// Failures in a row that make the task unhealthy.
    pub retries: i32,
    /// Grace period at start during which failures do not count.
    pub start_period: Duration,
    /// Time between checks during the start period.
    pub start_interval: Duration,
}

/// A secret a task can read, and where.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretReference {
    /// The secret's ID.
    pub secret_id: Id,
    /// The secret's name (as given at create).
    pub secret_name: String,
    /// File name under `/run/secrets/`.
    pub file_name: String,
    /// File owner uid.
    pub uid: String,
    /// File owner gid.
    pub gid: String,
    /// File mode.
    pub mode: u32,
}

/// A config a task can read, and where.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigReference {
    /// The config's ID.
    pub config_id: Id,
    /// The config's name.
    pub config_name: String,
    /// File path inside the task.
    pub file_name: String,
    /// File owner uid.
    pub uid: String,
    /// File owner gid.
    pub gid: String,
    /// File mode.
    pub mode: u32,
}

/// DNS settings of a container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsConfig {
    /// Name servers.
    pub nameservers: Vec<String>,
    /// Search domains.
    pub search: Vec<String>,
    /// resolv.conf options.
    pub options: Vec<String>,
}

/// What to run: the container (or process) of a task.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// Image reference, e.g. `redis:3.0.6`. The process runtime records it only.
    pub image: String,
    /// Container labels.
    pub labels: BTreeMap<String, String>,
    /// Entrypoint override (empty: the image's).
    pub command: Vec<String>,
    /// Arguments to the command.
    pub args: Vec<String>,
    /// Host name inside the container.
    pub hostname: String,
    /// Environment, `KEY=value`.
    pub env: Vec<String>,
    /// Working directory.
    pub dir: String,
    /// User (name or uid, optionally `:group`).
    pub user: String,
    /// Extra groups.
    pub groups: Vec<String>,
    /// Run an init process as PID 1.
    pub init: Option<bool>,
    /// Allocate a TTY.
    pub tty: bool,
    /// Keep stdin open.
    pub open_stdin: bool,
    /// Read-only root filesystem.
    pub read_only: bool,
    /// Signal that stops the task (default SIGTERM).
    pub stop_signal: String,
    /// Mounts.
    pub mounts: Vec<Mount>,
    /// Time between the stop signal and the kill. Default 10 s.
    pub stop_grace_period: Option<Duration>,
    /// Health check.
    pub healthcheck: Option<HealthConfig>,
    /// Extra `/etc/hosts` lines, `IP host...`.
    pub hosts: Vec<String>,
    /// DNS settings.
    pub dns_config: Option<DnsConfig>,
    /// Secrets exposed to the task.
    pub secrets: Vec<SecretReference>,
    /// Configs exposed to the task.
    pub configs: Vec<ConfigReference>,
    /// Kernel parameters.
    pub sysctls: BTreeMap<String, String>,
    /// Capabilities added.
    pub capability_add: Vec<String>,
    /// Capabilities dropped.
    pub capability_drop: Vec<String>,
}

/// When a task is restarted after it ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartCondition {
    /// Never.
    None,
    /// After a non-zero exit or a rejection.
    OnFailure,
    /// Whenever it ends (the default).
    #[default]
    Any,
}

/// Restart policy of a service's tasks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    /// When to restart.
    pub condition: RestartCondition,
    /// Wait before the restart. Default 5 s.
    pub delay: Duration,
    /// Restarts allowed within `window` (0: no limit).
    pub max_attempts: u64,
    /// Window `max_attempts` counts in (zero: unbounded).
    pub window: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            condition: RestartCondition::Any,
            delay: Duration::from_secs(5),
            max_attempts: 0,
            window: Duration::ZERO,
        }
    }
}

/// A placement preference: spread tasks over the values of a node attribute.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementPreference {
    /// The attribute, e.g. `node.labels.datacenter`.
    pub spread_descriptor: String,
}

/// Where tasks may run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// Constraints such as `node.role==manager` or `node.labels.zone!=b`; all must hold.
    pub constraints: Vec<String>,
    /// Spread preferences, applied in order (nested).
    pub preferences: Vec<PlacementPreference>,
    /// At most this many tasks of the service per node (0: no limit).
    pub max_replicas: u64,
    /// Platforms the image supports (empty: any).
    pub platforms: Vec<Platform>,
}

/// A network a task attaches to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkAttachmentConfig {
    /// Network ID (or name before validation resolves it).
    pub target: String,
    /// Extra DNS names of the task on that network.
    pub aliases: Vec<String>,
    /// Addresses asked for.
    pub addresses: Vec<String>,
    /// Driver options for the attachment.
    pub driver_attachment_opts: BTreeMap<String, String>,
}

/// The template every task of a service is made from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// What to run.
    pub container: ContainerSpec,
    /// Limits and reservations.
    pub resources: Option<ResourceRequirements>,
    /// Restart policy (None: the defaults).
    pub restart: Option<RestartPolicy>,
    /// Placement.
    pub placement: Option<Placement>,
    /// Log driver.
    pub log_driver: Option<Driver>,
    /// Networks to attach to.
    pub networks: Vec<NetworkAttachmentConfig>,
    /// Bumped to redeploy every task without another change (`--force`).
    pub force_update: u64,
}

/// How many tasks a service runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceMode {
    /// A fixed number of tasks, one per slot 1..=replicas.
    Replicated {
        /// Number of tasks.
        replicas: u64,
    },
    /// One task on every eligible node.
    Global,
    /// Tasks that run to completion, `total_completions` in all, at most
    /// `max_concurrent` at a time.
    ReplicatedJob {
        /// Tasks running at once.
        max_concurrent: u64,
        /// Successful completions wanted.
        total_completions: u64,
    },
    /// One run-to-completion task on every eligible node.
    GlobalJob,
}

impl Default for ServiceMode {
    fn default() -> Self {
        ServiceMode::Replicated { replicas: 1 }
    }
}

impl ServiceMode {
    /// Whether tasks run to completion rather than being kept running.
    pub fn is_job(&self) -> bool {
        matches!(
            self,
            ServiceMode::ReplicatedJob { .. } | ServiceMode::GlobalJob
        )
    }

    /// Whether there is one task per node.
    pub fn is_global(&self) -> bool {
        matches!(self, ServiceMode::Global | ServiceMode::GlobalJob)
    }
}

/// What a rolling update does when a task fails.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureAction {
    /// Stop updating (the default).
    #[default]
    Pause,
    /// Keep going.
    Continue,
    /// Return to the previous spec.
    Rollback,
}

/// Whether the old task stops before or after its replacement starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateOrder {
    /// Stop the old task, then start the new one (the default).
    #[default]
    StopFirst,
    /// Start the new task, then stop the old one.
    StartFirst,
}

/// How a rolling update (or a rollback) proceeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpdateConfig {
    /// Tasks updated at once (0: all). Default 1.
    pub parallelism: u64,
    /// Wait between batches. Default 0.
    pub delay: Duration,
    /// On failure: pause (default), continue or rollback.
    pub failure_action: FailureAction,
    /// Time after each batch during which a failure counts. Default 5 s.
    pub monitor: Duration,
    /// Fraction of tasks that may fail before `failure_action` applies. Default 0.
    pub max_failure_ratio: f32,
    /// Stop-first (default) or start-first.
    pub order: UpdateOrder,
}

impl Default for UpdateConfig {
    fn default() -> Self {
        UpdateConfig {
            parallelism: 1,
            delay: Duration::ZERO,
            failure_action: FailureAction::Pause,
            monitor: Duration::from_secs(5),
            max_failure_ratio: 0.0,
            order: UpdateOrder::StopFirst,
        }
    }
}

/// How a service is reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResolutionMode {
    /// One virtual IP balanced over the tasks (the default).
    #[default]
    Vip,
    /// DNS round robin over task addresses.
    Dnsrr,
}

/// Transport protocol of a published port.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP (the default).
    #[default]
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        })
    }
}

/// Where a port is published.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishMode {
    /// On every node, through the routing mesh (the default).
    #[default]
    Ingress,
    /// Only on the nodes running a task, straight to it.
    Host,
}

/// A port a service exposes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortConfig {
    /// Optional name.
    pub name: String,
    /// Protocol.
    pub protocol: Protocol,
    /// Port inside the task.
    pub target_port: u32,
    /// Port on the nodes (0: picked from 30000–32767).
    pub published_port: u32,
    /// Ingress or host.
    pub publish_mode: PublishMode,
}

/// How the service is exposed, as the user asked.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointSpec {
    /// VIP or DNS round robin.
    pub mode: ResolutionMode,
    /// Published ports.
    pub ports: Vec<PortConfig>,
}

/// A service's virtual IP on one network.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualIp {
    /// The network.
    pub network_id: Id,
    /// The address in CIDR form, e.g. `10.0.0.5/24`.
    pub addr: String,
}

/// How the service is exposed, as allocated.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The spec it was allocated from.
    pub spec: Option<EndpointSpec>,
    /// Ports with their published ports filled in.
    pub ports: Vec<PortConfig>,
    /// Virtual IPs, one per network.
    pub virtual_ips: Vec<VirtualIp>,
}

/// State of a rolling update.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateState {
    /// No update known.
    #[default]
    Unknown,
    /// Updating.
    Updating,
    /// Paused after failures.
    Paused,
    /// Finished.
    Completed,
    /// Rolling back.
    RollbackStarted,
    /// Rollback paused after failures.
    RollbackPaused,
    /// Rollback finished.
    RollbackCompleted,
}

/// Progress of a rolling update.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateStatus {
    /// State.
    pub state: UpdateState,
    /// When it started.
    pub started_at: Option<Timestamp>,
    /// When it ended.
    pub completed_at: Option<Timestamp>,
    /// Human-readable detail, e.g. `update completed`.
    pub message: String,
}

/// Progress of a job service.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStatus {
    /// Which run of the job this is (bumped on each update of the job).
    pub job_iteration: Version,
    /// When the current run started.
    pub last_execution: Option<Timestamp>,
}

use super::common::Version;

/// What the user gives for a service.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// Name (unique) and labels.
    pub annotations: Annotations,
    /// The task template.
    pub task: TaskSpec,
    /// Replicated, global or job.
    pub mode: ServiceMode,
    /// Rolling update settings (None: the defaults).
    pub update: Option<UpdateConfig>,
    /// Rollback settings (None: the defaults).
    pub rollback: Option<UpdateConfig>,
    /// How the service is exposed.
    pub endpoint: Option<EndpointSpec>,
}

/// A service.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Service {
    /// The service ID.
    pub id: Id,
    /// Version and times.
    pub meta: Meta,
    /// Current spec.
    pub spec: ServiceSpec,
    /// Version of `spec` (bumped on each spec change; tasks record it).
    pub spec_version: Option<Version>,
    /// The spec before the last update, for rollback.
    pub previous_spec: Option<ServiceSpec>,
    /// Version of `previous_spec`.
    pub previous_spec_version: Option<Version>,
    /// Allocated endpoint.
    pub endpoint: Option<Endpoint>,
    /// Rolling update progress.
    pub update_status: Option<UpdateStatus>,
    /// Job progress.
    pub job_status: Option<JobStatus>,
    /// Removal requested; waits for tasks to go.
    pub pending_delete: bool,
    /// The store version at which `spec` (or `pending_delete`) last changed,
    /// kept by the store, as [`Node::spec_version`](super::Node::spec_version)
    /// is: a spec update read at this version or later loses nothing, whatever
    /// the swarm wrote since (update or job status, endpoint allocation). Not
    /// `spec_version`, the spec's own counter that tasks record.
    #[serde(default)]
    pub spec_index: u64,
}
