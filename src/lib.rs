//! Swarm: Docker swarm mode rebuilt in Rust as an embeddable library.
//!
//! A Rust service links this crate and runs a full swarm manager or worker
//! in-process, plugs in its own container runtime or scheduler, and drives the
//! swarm through a typed control API; the `swarmd` binary serves the same
//! library to the stock `docker` CLI ([`api`]).
//!
//! # Embedding, step by step
//!
//! **A manager** ([`Manager`], configured by [`ManagerConfig`]) founds a swarm
//! (`docker swarm init`) or restarts the one in its data directory, and runs
//! tasks through a [`runtime::Runtime`] when given one:
//!
//! ```no_run
//! use std::sync::Arc;
//! use swarm::{Manager, ManagerConfig, runtime::ProcessRuntime};
//!
//! # async fn demo() -> swarm::Result<()> {
//! let runtime = Arc::new(ProcessRuntime::new("/var/lib/app/swarm/runtime").unwrap());
//! let manager = Manager::start(
//!     ManagerConfig::new("/var/lib/app/swarm", "0.0.0.0:2377").runtime(runtime),
//! )
//! .await?;
//! println!("workers join with {}", manager.control().join_tokens()?.worker);
//! # Ok(()) }
//! ```
//!
//! **A worker** ([`Worker`], [`WorkerConfig`]) joins with a token once, then
//! comes back as the same node from its data directory. **A node** ([`Node`])
//! is either, following `docker node promote` / `demote` as the swarm decides.
//!
//! **The control API** ([`Control`]): services, tasks, nodes, networks,
//! secrets, configs and the swarm's settings, validated as Docker validates
//! them. It runs over any [`core::Store`], so it can be tried without a network:
//!
//! ```
//! use swarm::core::{Store, types::*};
//! use swarm::{Control, RootCa, TaskFilter};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let control = Control::new(Store::new());
//! control.init_cluster(ClusterSpec::default(), &RootCa::generate().unwrap()).await.unwrap();
//! let spec = ServiceSpec {
//!     annotations: Annotations::named("web"),
//!     task: TaskSpec {
//!         container: ContainerSpec { image: "nginx".into(), ..Default::default() },
//!         ..Default::default()
//!     },
//!     mode: ServiceMode::Replicated { replicas: 3 },
//!     ..Default::default()
//! };
//! let web = control.create_service(spec).await.unwrap();
//! assert_eq!(web.spec.annotations.name, "web");
//! // No leader runs on this bare store, so no task exists yet.
//! assert!(control.list_tasks(&TaskFilter::default()).unwrap().is_empty());
//! # });
//! ```
//!
//! **Your own runtime or scheduler**: implement [`runtime::Runtime`] (and run
//! its conformance suite) or [`sched::Scheduler`], and give it to
//! [`ManagerConfig::runtime`] / [`ManagerConfig::scheduler`]; your own overlay
//! networks through an [`OverlayFactory`] ([`ManagerConfig::overlay`]). **Time**
//! comes from [`ManagerConfig::clock`] / [`WorkerConfig::clock`].
//!
//! # The layers
//!
//! Each layer is its own crate, re-exported here, and can be used alone:
//!
//! | crate | what it holds |
//! |---|---|
//! | [`core`] (`swarm-core`) | the object model and the replicated state machine (store) |
//! | [`raft`] (`swarm-raft`) | consensus for the managers |
//! | [`sched`] (`swarm-sched`) | the `Scheduler` trait and the default spread scheduler |
//! | [`runtime`] (`swarm-runtime`) | the `Runtime` trait, Docker and process runtimes |
//! | [`net`] (`swarm-net`) | IPAM, routing mesh, service discovery, overlays |
//!
//! Inside this crate the code is in rooms (`manager`, `agent`, `views`, `api`,
//! `rpc`): see ARCHITECTURE.md in the repository.
#![deny(missing_docs)]

mod agent;
pub mod api;
mod error;
mod manager;
mod node;
mod pki;
mod rpc;
mod state;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod views;

pub use agent::mesh::RoutingMeshConfig;
pub use agent::netplane::{KernelOverlay, OverlayFactory};
pub use agent::worker::{Worker, WorkerConfig};
pub use error::{Error, Result};
pub use manager::control::{
    Control, NetworkConfig, NodeFilter, Rotate, ServiceFilter, SwarmInfo, TaskFilter,
};
pub use manager::keymanager::DEFAULT_KEY_ROTATION;
pub use manager::leader::SchedulerFactory;
pub use manager::logbroker::{LogBroker, LogLine, LogsQuery};
pub use manager::{Manager, ManagerConfig};
pub use node::Node;
pub use pki::{CaError, RootCa};
pub use state::hostname;
pub use views::ingress::PROXY_PROTOCOL_LABEL;

pub use swarm_core as core;
pub use swarm_net as net;
pub use swarm_raft as raft;
pub use swarm_runtime as runtime;
pub use swarm_sched as sched;

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
