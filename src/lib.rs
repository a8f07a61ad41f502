//! Swarm: Docker swarm mode rebuilt in Rust as an embeddable library.
//!
//! This facade crate gathers the layers; each is its own crate and can be used
//! alone:
//!
//! | crate | what it holds |
//! |---|---|
//! | [`core`] (`swarm-core`) | the object model and the replicated state machine (store) |
//! | [`raft`] (`swarm-raft`) | consensus for the managers |
//! | [`sched`] (`swarm-sched`) | the `Scheduler` trait and the default spread scheduler |
//! | [`runtime`] (`swarm-runtime`) | the `Runtime` trait, Docker and process runtimes |
//! | [`net`] (`swarm-net`) | IPAM, routing mesh, service discovery, overlays |
//!
//! Here: [`Manager`] (a manager embedded in a Rust service), [`Worker`], and
//! [`Node`] (either, following `node promote` / `node demote`).
//!
//! ```
//! use swarm::core::{Store, types::*};
//!
//! let store = Store::new();
//! store.update_local(|tx| tx.create(Node { id: "n1".into(), ..Default::default() })).unwrap();
//! assert_eq!(store.view().count::<Node>(), 1);
//! ```
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
