//! The swarm part of the Docker Engine API, served over the library, so the
//! stock `docker` CLI drives a Swarm node (`swarmd`).
//!
//! ```text
//!   docker CLI ── HTTP (tcp or unix socket) ──► Engine (axum router)
//!        /v1.47/... ─► strip the version ─► handler ─► Node ─► Control API
//! ```
//!
//! Answers use Docker's JSON field names and its error shape
//! (`{"message": ...}` with 400/404/409/500/503).

mod containers;
mod convert;
mod handlers;
mod logs;
mod objects;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use swarm_core::types::NodeRole;
use swarm_runtime::Runtime;
use tokio::sync::RwLock;

pub use convert::{ServiceCounts, strict};

use crate::error::Error;
use crate::manager::control::Control;
use crate::node::Node;

/// The Engine API version this server speaks (Docker 27's).
pub const API_VERSION: &str = "1.47";
/// The oldest API version a client may ask for.
pub const MIN_API_VERSION: &str = "1.24";
/// The largest request body accepted.
pub const MAX_BODY: usize = 4 << 20;

/// An error as the Engine API answers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The message (`{"message": ...}`).
    pub message: String,
}

impl ApiError {
    /// 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// 404 with `message`.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }

    /// 503: this node is not in a swarm.
    pub fn not_in_swarm() -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.".into(),
        }
    }

    /// 503: this node is a worker.
    pub fn not_a_manager() -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. Please run this command on a manager node or promote the current node to a manager.".into(),
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        let status = match &e {
            Error::NotFound { .. } => StatusCode::NOT_FOUND,
            Error::NameConflict(_) => StatusCode::CONFLICT,
            Error::InvalidArgument(_) => StatusCode::BAD_REQUEST,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::FailedPrecondition(_) => StatusCode::BAD_REQUEST,
            Error::NotLeader { .. } | Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let message = match e {
            Error::NameConflict(m)
            | Error::InvalidArgument(m)
            | Error::Conflict(m)
            | Error::FailedPrecondition(m)
            | Error::Unavailable(m)
            | Error::Internal(m) => m,
            other => other.to_string(),
        };
        ApiError { status, message }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            [("API-Version", API_VERSION)],
            axum::Json(serde_json::json!({ "message": self.message })),
        )
            .into_response()
    }
}

/// How the Engine API runs its node.
#[derive(Clone)]
pub struct EngineConfig {
    /// The node's data directory.
    pub data_dir: PathBuf,
    /// The cluster port to listen on when the request does not say
    /// (`docker swarm init` sends `0.0.0.0:2377`).
    pub listen_addr: Option<String>,
    /// The address to advertise when the request does not say.
    pub advertise_addr: Option<String>,
    /// The host name the node reports.
    pub hostname: String,
    /// The runtime the node runs tasks with.
    pub runtime: Arc<dyn Runtime>,
    /// Raft tick interval.
    pub tick_interval: Duration,
    /// The node's routing mesh: published ports listen on `ingress_ip`, other
    /// nodes hand connections over on `peer_port` of the advertised address.
    /// `None`: published ports are not answered on this node.
    pub routing_mesh: Option<MeshSettings>,
    /// How often the node, while it leads, rotates the keys of encrypted overlay
    /// networks ([`DEFAULT_KEY_ROTATION`](crate::manager::keymanager::DEFAULT_KEY_ROTATION)
    /// as Docker).
    pub network_key_rotation: Duration,
}

/// Where swarmd's routing mesh listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MeshSettings {
    /// The address published ports bind on (docker: every address).
    pub ingress_ip: std::net::IpAddr,
    /// The port of the mesh's peer listener (TCP and UDP) on the node's
    /// advertised address; 0 picks one.
    pub peer_port: u16,
    /// Whether published ports may use the kernel data path (nftables).
    pub kernel: swarm_net::mesh::KernelPath,
}

impl Default for MeshSettings {
    /// Published ports on every address; peers on port 7946, the port docker
    /// swarm already needs open between nodes.
    fn default() -> MeshSettings {
        MeshSettings {
            ingress_ip: std::net::Ipv4Addr::UNSPECIFIED.into(),
            peer_port: 7946,
            kernel: swarm_net::mesh::KernelPath::Auto,
        }
    }
}

impl std::fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineConfig")
            .field("data_dir", &self.data_dir)
            .field("listen_addr", &self.listen_addr)
            .field("advertise_addr", &self.advertise_addr)
            .field("hostname", &self.hostname)
            .finish_non_exhaustive()
    }
}

/// The Engine API over one node (in a swarm or not yet).
pub struct Engine {
    cfg: EngineConfig,
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
        let dir = crate::state::DataDir::open(&cfg.data_dir)?;
        let node = if dir.has_node() {
            let saved = dir.load_addrs();
            let addrs = crate::state::SavedAddrs {
                listen_addr: cfg.listen_addr.clone().or(saved.listen_addr),
                advertise_addr: cfg.advertise_addr.clone().or(saved.advertise_addr),
                data_path_addr: saved.data_path_addr,
            };
            Some(Node::start(handlers::manager_config(&cfg, &addrs)).await?)
        } else {
            None
        };
        Ok(Arc::new(Engine {
            cfg,
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

    /// The HTTP routes (unversioned and `/v1.xx/` paths alike).
    pub fn router(self: Arc<Self>) -> Router {
        handlers::routes().with_state(self)
    }

    /// Serves the API on `listener` until `shutdown` resolves.
    pub async fn serve<L>(
        self: Arc<Self>,
        listener: L,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()>
    where
        L: axum::serve::Listener,
        L::Addr: std::fmt::Debug,
    {
        use axum::ServiceExt;
        use tower::Layer;
        let app = tower::util::MapRequestLayer::new(strip_version).layer(self.router());
        axum::serve(listener, ServiceExt::<Request>::into_make_service(app))
            .with_graceful_shutdown(shutdown)
            .await
    }

    /// Stops the node (its tasks keep running; a restart adopts them).
    pub async fn shutdown(&self) {
        if let Some(n) = self.node.write().await.take() {
            n.shutdown().await;
        }
    }
}

/// `/v1.47/services` → `/services`: every version is served the same way.
fn strip_version(mut req: Request) -> Request {
    let path = req.uri().path();
    if let Some(rest) = path.strip_prefix("/v")
        && let Some(slash) = rest.find('/')
        && rest[..slash]
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.')
    {
        let mut parts = req.uri().clone().into_parts();
        let new_path = &rest[slash..];
        let pq = match req.uri().query() {
            Some(q) => format!("{new_path}?{q}"),
            None => new_path.to_string(),
        };
        if let Ok(pq) = pq.parse() {
            parts.path_and_query = Some(pq);
            if let Ok(uri) = axum::http::Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    }
    req
}
