//! The reference runtime: containers on a Docker Engine, through its HTTP API.
//!
//! A task on an overlay network runs on Docker's default bridge (its `eth0`)
//! with 127.0.0.11 as its DNS server (when this process runs as root, as a node
//! must to attach overlays; else Docker's resolver) and a label that makes
//! [`Inspection::netns`] report `/proc/<pid>/ns/net` while it runs: the node
//! attaches the overlay's interfaces and serves the DNS there once the container
//! started (Docker gives no hook before its process runs), so its first moments
//! run without them.

mod spec;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, ListContainersOptions, LogsOptions,
    RemoveContainerOptions, StopContainerOptions, WaitContainerOptions,
};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use swarm_core::Id;
use swarm_core::types::{ContainerStatus, Task};

use crate::error::{Error, Result};
use crate::runtime::{
    Inspection, LABEL_NODE_ID, LABEL_TASK_ID, LogChunk, LogChunks, LogOptions, LogStream, Runtime,
    container_name,
};

/// When [`DockerRuntime::prepare`](Runtime::prepare) pulls an image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PullPolicy {
    /// Never pull: an image that is not on the node is missing.
    Never,
    /// Pull only when the image is not on the node (the default).
    #[default]
    Missing,
    /// Always try to pull; a failed pull is fine when the image is on the node.
    Always,
}

/// How long a pull may take before it counts as failed, by default.
pub const DEFAULT_PULL_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs tasks as containers on a Docker Engine.
///
/// Containers are named `<service>.<slot>.<task id>` (`<service>.<node id>.<task id>`
/// for global services) and labelled `com.docker.swarm.{service.id, service.name,
/// task.id, task.name, node.id}`, as in Docker's swarm mode; the engine's restart
/// policy is off (the orchestrator restarts tasks). The task's `command` replaces
/// the image's entrypoint and `args` its cmd; env, working directory, user, hostname,
/// bind/volume/tmpfs mounts, CPU and memory limits, stop signal and grace period
/// and host-mode published ports are applied.
///
/// Cloning gives another handle on the same runtime.
#[derive(Clone)]
pub struct DockerRuntime {
    docker: Docker,
    node_id: Option<Id>,
    pull: PullPolicy,
    pull_timeout: Duration,
    /// Task ID → container ID, for tasks created or listed through this handle.
    ids: Arc<Mutex<HashMap<String, String>>>,
}

impl DockerRuntime {
    /// Connects to the engine named by `DOCKER_HOST` (default: the local unix
    /// socket) and negotiates the API version with it.
    pub async fn connect() -> Result<DockerRuntime> {
        let docker = Docker::connect_with_defaults().map_err(map_err)?;
        let docker = docker.negotiate_version().await.map_err(map_err)?;
        Ok(DockerRuntime::with_client(docker))
    }

    /// A runtime over an existing client (its API version already negotiated).
    pub fn with_client(docker: Docker) -> DockerRuntime {
        DockerRuntime {
            docker,
            node_id: None,
            pull: PullPolicy::default(),
            pull_timeout: DEFAULT_PULL_TIMEOUT,
            ids: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Lists only the containers of this node (label `com.docker.swarm.node.id`),
    /// for engines shared by several nodes.
    pub fn with_node_id(mut self, node_id: Id) -> DockerRuntime {
        self.node_id = Some(node_id);
        self
    }

    /// Sets when images are pulled.
    pub fn with_pull_policy(mut self, policy: PullPolicy) -> DockerRuntime {
        self.pull = policy;
        self
    }

    /// Sets how long a pull may take.
    pub fn with_pull_timeout(mut self, timeout: Duration) -> DockerRuntime {
        self.pull_timeout = timeout;
        self
    }

    /// The client, for callers that need more of the engine.
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    fn remember(&self, task_id: &str, container_id: &str) {
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        ids.insert(task_id.to_string(), container_id.to_string());
    }

    fn forget(&self, task_id: &str) {
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        ids.remove(task_id);
    }

    /// The container of a task: remembered, else found by its task ID label.
    async fn container(&self, task_id: &str) -> Result<String> {
        if let Some(id) = self
            .ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(task_id)
        {
            return Ok(id.clone());
        }
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{LABEL_TASK_ID}={task_id}")],
        )]);
        let found = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(map_err)?;
        let id = found
            .into_iter()
            .find_map(|c| c.id)
            .ok_or_else(|| Error::not_found(task_id))?;
        self.remember(task_id, &id);
        Ok(id)
    }

    async fn image_present(&self, image: &str) -> Result<bool> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if status_of(&e) == Some(404) => Ok(false),
            Err(e) => Err(map_err(e)),
        }
    }

    async fn pull(&self, image: &str) -> Result<()> {
        let (repo, tag) = split_image(image);
        let options = CreateImageOptions {
            from_image: Some(repo.to_string()),
            tag: Some(tag.to_string()),
            ..Default::default()
        };
        let pull = self
            .docker
            .create_image(Some(options), None, None)
            .try_for_each(|_| async { Ok(()) });
        match tokio::time::timeout(self.pull_timeout, pull).await {
            Ok(r) => r.map_err(map_err),
            Err(_) => Err(Error::Unavailable(format!(
                "pulling {image}: no answer in {:?}",
                self.pull_timeout
            ))),
        }
    }
}

impl std::fmt::Debug for DockerRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerRuntime")
            .field("node_id", &self.node_id)
            .field("pull", &self.pull)
            .finish()
    }
}

/// Splits an image reference into repository and tag (or digest) for a pull;
/// the tag defaults to `latest`.
fn split_image(image: &str) -> (&str, &str) {
    if let Some((repo, digest)) = image.split_once('@') {
        return (repo, digest);
    }
    let last = image.rfind('/').map_or(0, |i| i + 1);
    match image[last..].rfind(':') {
        Some(i) => (&image[..last + i], &image[last + i + 1..]),
        None => (image, "latest"),
    }
}

fn status_of(e: &bollard::errors::Error) -> Option<u16> {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// Maps a client error: transport failures are [`Error::Unavailable`], engine
/// answers are [`Error::Engine`].
fn map_err(e: bollard::errors::Error) -> Error {
    use bollard::errors::Error as B;
    match e {
        B::DockerResponseServerError {
            status_code,
            message,
        } => Error::Engine {
            status: status_code,
            message,
        },
        B::RequestTimeoutError
        | B::IOError { .. }
        | B::HyperResponseError { .. }
        | B::HttpClientError { .. }
        | B::SocketNotFoundError(_) => Error::Unavailable(e.to_string()),
        other => Error::Engine {
            status: 0,
            message: other.to_string(),
        },
    }
}

/// Maps an error about one task's container: a 404 is [`Error::NotFound`].
fn task_err(task_id: &str, e: bollard::errors::Error) -> Error {
    match status_of(&e) {
        Some(404) => Error::not_found(task_id),
        _ => map_err(e),
    }
}

#[async_trait]
impl Runtime for DockerRuntime {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn prepare(&self, task: &Task) -> Result<()> {
        let image = task.spec.container.image.as_str();
        spec::container_config(task)?;
        let present = self.image_present(image).await?;
        if present && self.pull != PullPolicy::Always {
            return Ok(());
        }
        if self.pull == PullPolicy::Never {
            return Err(Error::NoSuchImage {
                image: image.to_string(),
            });
        }
        match self.pull(image).await {
            Ok(()) => Ok(()),
            Err(e) if present => {
                tracing::info!(image, error = %e, "pull failed; using the local image");
                Ok(())
            }
            Err(e) => {
                tracing::info!(image, error = %e, "pull failed and the image is not local");
                Err(Error::NoSuchImage {
                    image: image.to_string(),
                })
            }
        }
    }

    async fn create(&self, task: &Task) -> Result<ContainerStatus> {
        let body = spec::container_config(task)?;
        let options = CreateContainerOptions {
            name: Some(container_name(task)),
            ..Default::default()
        };
        let created = self
            .docker
            .create_container(Some(options), body)
            .await
            .map_err(|e| match status_of(&e) {
                Some(409) => Error::AlreadyExists {
                    task_id: task.id.to_string(),
                },
                Some(404) => Error::NoSuchImage {
                    image: task.spec.container.image.clone(),
                },
                Some(400) => Error::StartFailed {
                    message: map_err(e).to_string(),
                    rejected: true,
                },
                _ => map_err(e),
            })?;
        self.remember(&task.id, &created.id);
        Ok(ContainerStatus {
            container_id: created.id,
            pid: 0,
            exit_code: 0,
        })
    }

    async fn start(&self, task_id: &str) -> Result<()> {
        let id = self.container(task_id).await?;
        match self.docker.start_container(&id, None).await {
            Ok(()) => Ok(()),
            Err(e) if status_of(&e) == Some(304) => Ok(()),
            Err(e) if status_of(&e) == Some(404) => Err(Error::not_found(task_id)),
            Err(bollard::errors::Error::DockerResponseServerError { message, .. }) => {
                Err(Error::StartFailed {
                    message,
                    rejected: false,
                })
            }
            Err(e) => Err(map_err(e)),
        }
    }

    async fn wait(&self, task_id: &str) -> Result<i32> {
        let id = self.container(task_id).await?;
        let options = WaitContainerOptions {
            condition: "not-running".into(),
        };
        let mut waits = self.docker.wait_container(&id, Some(options));
        match waits.next().await {
            Some(Ok(r)) => Ok(r.status_code as i32),
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => {
                Ok(code as i32)
            }
            Some(Err(e)) => Err(task_err(task_id, e)),
            None => Err(Error::Unavailable(
                "wait stream ended without a status".into(),
            )),
        }
    }

    async fn stop(&self, task_id: &str, grace: Option<Duration>) -> Result<()> {
        let id = self.container(task_id).await?;
        // The engine counts in whole seconds; without a grace it uses the one set at
        // create (the spec's).
        let options = StopContainerOptions {
            t: grace.map(|g| g.as_secs_f64().ceil() as i32),
            signal: None,
        };
        match self.docker.stop_container(&id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if status_of(&e) == Some(304) => Ok(()),
            Err(e) => Err(task_err(task_id, e)),
        }
    }

    async fn remove(&self, task_id: &str) -> Result<()> {
        let id = self.container(task_id).await?;
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            link: false,
        };
        let r = self.docker.remove_container(&id, Some(options)).await;
        self.forget(task_id);
        r.map_err(|e| task_err(task_id, e))
    }

    async fn inspect(&self, task_id: &str) -> Result<Inspection> {
        let id = self.container(task_id).await?;
        match self.docker.inspect_container(&id, None).await {
            Ok(resp) => Ok(spec::inspection(resp)),
            Err(e) => {
                self.forget(task_id);
                Err(task_err(task_id, e))
            }
        }
    }

    async fn list(&self) -> Result<Vec<Inspection>> {
        let mut labels = vec![LABEL_TASK_ID.to_string()];
        if let Some(node) = &self.node_id {
            labels.push(format!("{LABEL_NODE_ID}={node}"));
        }
        let found = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(HashMap::from([("label".to_string(), labels)])),
                ..Default::default()
            }))
            .await
            .map_err(map_err)?;
        let mut out = Vec::with_capacity(found.len());
        for c in found {
            let Some(id) = c.id else { continue };
            match self.docker.inspect_container(&id, None).await {
                Ok(resp) => {
                    let i = spec::inspection(resp);
                    self.remember(&i.labels.task_id, &id);
                    out.push(i);
                }
                // Removed between the list and the inspect.
                Err(e) if status_of(&e) == Some(404) => {}
                Err(e) => return Err(map_err(e)),
            }
        }
        Ok(out)
    }

    async fn logs(&self, task_id: &str, options: LogOptions) -> Result<LogChunks> {
        let id = self.container(task_id).await?;
        let opts = LogsOptions {
            follow: options.follow,
            stdout: options.stdout,
            stderr: options.stderr,
            // Docker prefixes each line with the time its daemon got it.
            timestamps: true,
            tail: options.tail.map_or_else(|| "all".into(), |n| n.to_string()),
            ..Default::default()
        };
        let task = task_id.to_string();
        let stream = self
            .docker
            .logs(&id, Some(opts))
            .filter_map(move |item| {
                let out = match item {
                    Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
                        Some(Ok(timed(LogStream::Stdout, message)))
                    }
                    Ok(LogOutput::StdErr { message }) => {
                        Some(Ok(timed(LogStream::Stderr, message)))
                    }
                    Ok(LogOutput::StdIn { .. }) => None,
                    Err(e) => Some(Err(task_err(&task, e))),
                };
                futures::future::ready(out)
            })
            .boxed();
        Ok(stream)
    }
}

/// A line docker sent with `timestamps`: its RFC 3339 time, a space, the
/// output. A line without a time prefix is kept whole, with no time.
fn timed(stream: LogStream, message: Bytes) -> LogChunk {
    let time = message
        .iter()
        .position(|b| *b == b' ')
        .and_then(|i| Some((i, std::str::from_utf8(&message[..i]).ok()?)))
        .and_then(|(i, t)| Some((i, t.parse::<swarm_core::Timestamp>().ok()?)));
    match time {
        Some((i, t)) => LogChunk {
            stream,
            data: message.slice(i + 1..),
            time: Some(t),
        },
        None => LogChunk {
            stream,
            data: message,
            time: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docker_line_times() {
        let c = timed(
            LogStream::Stderr,
            Bytes::from_static(b"2023-11-14T22:13:20.000000005Z oops: a b\n"),
        );
        assert_eq!(&c.data[..], b"oops: a b\n");
        assert_eq!(
            c.time.map(|t| (t.seconds, t.nanos)),
            Some((1_700_000_000, 5))
        );
        let plain = timed(LogStream::Stdout, Bytes::from_static(b"no time here\n"));
        assert_eq!(
            (&plain.data[..], plain.time),
            (&b"no time here\n"[..], None)
        );
    }

    #[test]
    fn splits_image_references() {
        assert_eq!(split_image("redis"), ("redis", "latest"));
        assert_eq!(split_image("redis:3.0.7"), ("redis", "3.0.7"));
        assert_eq!(
            split_image("127.0.0.1:5000/a/b"),
            ("127.0.0.1:5000/a/b", "latest")
        );
        assert_eq!(
            split_image("127.0.0.1:5000/a/b:1"),
            ("127.0.0.1:5000/a/b", "1")
        );
        assert_eq!(split_image("a@sha256:00"), ("a", "sha256:00"));
    }
}
