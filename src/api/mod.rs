//! The swarm part of the Docker Engine API, served over the library, so the
//! stock `docker` CLI drives a Swarm node (`swarmd`).
//!
//! This room turns HTTP requests into calls on one [`Node`] and answers in
//! Docker's JSON. It may use `node` (the node it serves), `manager::control`
//! (the typed Control API every endpoint calls) and `manager::logbroker`
//! (task logs), `agent::mesh` (the routing mesh settings it hands the node)
//! and `state` (the data directory and its saved addresses); nothing uses it
//! but swarmd and the public surface.
//!
//! ```text
//!   docker CLI ── HTTP (tcp or unix socket) ──► Engine (axum router)
//!        /v1.47/... ─► strip the version ─► handler ─► Node ─► Control API
//! ```
//!
//! Answers use Docker's JSON field names and its error shape
//! (`{"message": ...}` with 400/404/409/500/503).
//!
//! | file | job |
//! |---|---|
//! | `mod.rs` | [`Engine`]: the node it serves, brought back after a restart |
//! | `config.rs` | [`EngineConfig`], [`MeshSettings`], the node's manager settings |
//! | `error.rs` | [`ApiError`] and the status of each library error |
//! | `http.rs` | what every endpoint shares: state, query parameters, answers |
//! | `router.rs` | which path goes to which endpoint; serving them |
//! | `system.rs` | `/_ping`, `/version`, `/info` |
//! | `swarm.rs` | `/swarm`: init, join, leave, inspect, update |
//! | `nodes.rs`, `services.rs`, `tasks.rs`, `networks.rs` | their endpoints |
//! | `blobs.rs` | `/secrets` and `/configs` |
//! | `logs.rs` | service and task logs |
//! | `containers.rs` | `/containers/json`: the node's tasks as `docker ps` shows them |
//! | `convert/` | Engine API JSON ↔ the object model |
//! | `tls.rs` | TLS over TCP, as dockerd's `--tls` / `--tlsverify` |

mod blobs;
mod config;
mod containers;
mod convert;
mod error;
mod http;
mod logs;
mod networks;
mod nodes;
mod router;
mod services;
mod swarm;
mod system;
mod tasks;
mod tls;

use std::sync::Arc;

use swarm_core::types::NodeRole;
use tokio::sync::RwLock;

pub use config::{EngineConfig, MeshSettings};
pub use error::ApiError;
pub use tls::{TlsFiles, TlsListener, server_config as tls_server_config};

use crate::manager::control::Control;
use crate::node::Node;
use crate::state::{DataDir, SavedAddrs};

/// The Engine API version this server speaks (Docker 27's).
pub const API_VERSION: &str = "1.47";
/// The oldest API version a client may ask for.
pub const MIN_API_VERSION: &str = "1.24";
/// The largest request body accepted.
pub const MAX_BODY: usize = 4 << 20;

/// The Engine API over one node (in a swarm or not yet); [`Engine::router`]
/// and [`Engine::serve`] answer HTTP with it. This is what `swarmd` runs:
///
/// ```no_run
/// use std::sync::Arc;
/// use std::time::Duration;
/// use swarm::api::{Engine, EngineConfig};
/// use swarm::runtime::ProcessRuntime;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let engine = Engine::start(EngineConfig {
///     data_dir: "/var/lib/swarmd".into(),
///     listen_addr: None,
///     advertise_addr: None,
///     hostname: swarm::hostname(),
///     runtime: Arc::new(ProcessRuntime::new("/var/lib/swarmd/runtime")?),
///     tick_interval: Duration::from_millis(100),
///     routing_mesh: None,
///     network_key_rotation: swarm::DEFAULT_KEY_ROTATION,
/// })
/// .await?;
/// // `DOCKER_HOST=tcp://127.0.0.1:2375 docker swarm init` now works.
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:2375").await?;
/// engine.clone().serve(listener, std::future::pending()).await?;
/// # Ok(()) }
/// ```
pub struct Engine {
    cfg: EngineConfig,
    data: DataDir,
    node: RwLock<Option<Node>>,
    tasks_json: convert::TaskJsonCache,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine over `cfg.data_dir`: the node saved there comes back (it
    /// rejoins its swarm); else the node is outside any swarm until `swarm init`
    /// or `swarm join`.
    pub async fn start(cfg: EngineConfig) -> crate::Result<Arc<Engine>> {
        let data = DataDir::open(&cfg.data_dir)?;
        let node = if data.has_node() {
            // swarmd's own flags win over what the init or join saved.
            let saved = data.load_addrs();
            let addrs = SavedAddrs {
                listen_addr: cfg.listen_addr.clone().or(saved.listen_addr),
                advertise_addr: cfg.advertise_addr.clone().or(saved.advertise_addr),
                data_path_addr: saved.data_path_addr,
            };
            Some(Node::start(cfg.manager_config(&addrs)).await?)
        } else {
            None
        };
        Ok(Arc::new(Engine {
            cfg,
            data,
            node: RwLock::new(node),
            tasks_json: Default::default(),
        }))
    }

    /// The control API, or the error docker shows outside a swarm or on a worker.
    async fn control(&self) -> Result<Control, ApiError> {
        let node = self.node.read().await;
        let Some(n) = node.as_ref() else {
            return Err(ApiError::not_in_swarm());
        };
        if n.role() != NodeRole::Manager {
            return Err(ApiError::not_a_manager());
        }
        n.control().await.ok_or_else(ApiError::not_a_manager)
    }

    /// Stops the node (its tasks keep running; a restart adopts them).
    pub async fn shutdown(&self) {
        if let Some(n) = self.node.write().await.take() {
            n.shutdown().await;
        }
    }
}
