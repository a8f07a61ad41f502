//! Which path goes to which endpoint, and serving them: the one place that
//! knows every endpoint module.

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::routing::{get, post};

use super::blobs::{self, Blob};
use super::{ApiError, Engine, MAX_BODY};
use super::{containers, logs, networks, nodes, services, swarm, system, tasks};

impl Engine {
    /// The HTTP routes (unversioned and `/v1.xx/` paths alike).
    pub fn router(self: Arc<Self>) -> Router {
        routes().with_state(self)
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
}

/// Every route.
fn routes() -> Router<Arc<Engine>> {
    Router::new()
        .route("/_ping", get(system::ping).head(system::ping))
        .route("/version", get(system::version))
        .route("/info", get(system::info))
        .route("/swarm", get(swarm::inspect))
        .route("/swarm/init", post(swarm::init))
        .route("/swarm/join", post(swarm::join))
        .route("/swarm/leave", post(swarm::leave))
        .route("/swarm/update", post(swarm::update))
        .route("/swarm/unlockkey", get(swarm::unlock_key))
        .route("/nodes", get(nodes::list))
        .route("/nodes/{id}", get(nodes::inspect).delete(nodes::remove))
        .route("/nodes/{id}/update", post(nodes::update))
        .route("/services", get(services::list))
        .route("/services/create", post(services::create))
        .route(
            "/services/{id}",
            get(services::inspect).delete(services::remove),
        )
        .route("/services/{id}/update", post(services::update))
        .route("/services/{id}/logs", get(logs::service_logs))
        .route("/tasks/{id}/logs", get(logs::task_logs))
        .route("/tasks", get(tasks::list))
        .route("/tasks/{id}", get(tasks::inspect))
        .route("/distribution/{*name}", get(system::distribution))
        .route("/containers/json", get(containers::list))
        .route("/networks", get(networks::list))
        .route("/networks/create", post(networks::create))
        .route(
            "/networks/{id}",
            get(networks::inspect).delete(networks::remove),
        )
        .merge(blob_routes("/secrets", Blob::Secret))
        .merge(blob_routes("/configs", Blob::Config))
        .fallback(|| async { ApiError::not_found("page not found") })
        .layer(DefaultBodyLimit::max(MAX_BODY))
}

/// The five endpoints of secrets or configs under `base`.
fn blob_routes(base: &str, kind: Blob) -> Router<Arc<Engine>> {
    Router::new()
        .route(base, get(move |s, q| blobs::list(kind, s, q)))
        .route(
            &format!("{base}/create"),
            post(move |s, b| blobs::create(kind, s, b)),
        )
        .route(
            &format!("{base}/{{id}}"),
            get(move |s, p| blobs::inspect(kind, s, p))
                .delete(move |s, p| blobs::remove(kind, s, p)),
        )
        .route(
            &format!("{base}/{{id}}/update"),
            post(move |u| blobs::update(kind, u)),
        )
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
