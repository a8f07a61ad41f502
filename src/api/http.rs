//! What every endpoint shares: the engine as handler state, query parameters
//! (filters, flags, the object version) and answers with Docker's headers.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use swarm_core::types::Annotations;

use super::{API_VERSION, ApiError, Engine};
use crate::Control;

/// The engine, as every handler gets it.
pub(super) type Shared = State<Arc<Engine>>;
/// What a handler answers.
pub(super) type ApiResult = Result<Response, ApiError>;
/// The query parameters.
pub(super) type Params = Query<HashMap<String, String>>;

/// 200 with `v`.
pub(super) fn ok(v: Value) -> ApiResult {
    Ok(([("API-Version", API_VERSION)], Json(v)).into_response())
}

/// 201 with `v`.
pub(super) fn created(v: Value) -> ApiResult {
    Ok((StatusCode::CREATED, [("API-Version", API_VERSION)], Json(v)).into_response())
}

/// `status` with no body.
pub(super) fn empty(status: StatusCode) -> ApiResult {
    Ok((status, [("API-Version", API_VERSION)]).into_response())
}

/// `filters={"key":{"value":true}}` (or the old `{"key":["value"]}`).
pub(super) fn filters(
    q: &HashMap<String, String>,
) -> Result<HashMap<String, Vec<String>>, ApiError> {
    let Some(raw) = q.get("filters").filter(|f| !f.is_empty()) else {
        return Ok(HashMap::new());
    };
    let v: Value = serde_json::from_str(raw)
        .map_err(|e| ApiError::bad_request(format!("invalid filters {raw:?}: {e}")))?;
    let Value::Object(m) = v else {
        return Err(ApiError::bad_request(format!("invalid filters {raw:?}")));
    };
    let mut out = HashMap::new();
    for (k, v) in m {
        let values: Vec<String> = match v {
            Value::Object(o) => o.into_iter().map(|(k, _)| k).collect(),
            Value::Array(a) => a
                .into_iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            _ => return Err(ApiError::bad_request(format!("invalid filter {k:?}"))),
        };
        out.insert(k, values);
    }
    Ok(out)
}

/// Refuses a filter not in `allowed`.
pub(super) fn check_filters(
    f: &HashMap<String, Vec<String>>,
    allowed: &[&str],
) -> Result<(), ApiError> {
    match f.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(ApiError::bad_request(format!("invalid filter '{k}'"))),
        None => Ok(()),
    }
}

/// Whether an object matches the `id` (prefix), `name` (part) and `label`
/// (`key` or `key=value`) filters.
pub(super) fn matches_filters(f: &HashMap<String, Vec<String>>, id: &str, a: &Annotations) -> bool {
    let (name, labels) = (&a.name, &a.labels);
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    let ids = get("id");
    let names = get("name");
    let want_labels = get("label");
    (ids.is_empty() || ids.iter().any(|i| id.starts_with(i.as_str())))
        && (names.is_empty() || names.iter().any(|n| name.contains(n.as_str())))
        && want_labels.iter().all(|l| match l.split_once('=') {
            Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
            None => labels.contains_key(l),
        })
}

/// A boolean parameter: `1` or `true` (any case).
pub(super) fn flag(q: &HashMap<String, String>, name: &str) -> bool {
    q.get(name)
        .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// The `version` parameter of an update: the object version it was read at.
pub(super) fn version_param(q: &HashMap<String, String>) -> Result<u64, ApiError> {
    let v = q
        .get("version")
        .ok_or_else(|| ApiError::bad_request("the version parameter is required"))?;
    v.parse()
        .map_err(|_| ApiError::bad_request(format!("invalid version {v:?}")))
}

/// What every update endpoint (`POST /{kind}/{id}/update?version=N`) takes,
/// checked in Docker's order: the path, the query and the body, then this node
/// is a manager (503), then the version the client read is given (400).
pub(super) struct Update {
    /// The manager's control API.
    pub control: Control,
    /// The object's ID or name, from the path.
    pub id: String,
    /// The object version the client read (`?version=`).
    pub version: u64,
    /// The other query parameters.
    pub query: HashMap<String, String>,
    /// The request body.
    pub body: Bytes,
}

impl FromRequest<Arc<Engine>> for Update {
    type Rejection = Response;

    async fn from_request(req: Request, engine: &Arc<Engine>) -> Result<Update, Response> {
        let (mut parts, body) = req.into_parts();
        let Path(id) = Path::<String>::from_request_parts(&mut parts, engine)
            .await
            .map_err(IntoResponse::into_response)?;
        let Query(query) = Params::from_request_parts(&mut parts, engine)
            .await
            .map_err(IntoResponse::into_response)?;
        let body = Bytes::from_request(Request::from_parts(parts, body), engine)
            .await
            .map_err(IntoResponse::into_response)?;
        let control = engine
            .control()
            .await
            .map_err(IntoResponse::into_response)?;
        let version = version_param(&query).map_err(IntoResponse::into_response)?;
        Ok(Update {
            control,
            id,
            version,
            query,
            body,
        })
    }
}
