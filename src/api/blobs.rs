//! `/secrets` and `/configs`: list, inspect, create, update and remove. The
//! two share their endpoints' shape ([`Blob`] says which); configs show their
//! data, secrets never do.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::convert::{BlobSpec, blob_json, strict};
use super::http::Update;
use super::http::{
    ApiResult, Params, Shared, check_filters, created, empty, filters, matches_filters, ok,
};

/// Secrets and configs share their endpoints' shape; configs show their data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Blob {
    /// `/secrets`.
    Secret,
    /// `/configs`.
    Config,
}

pub(super) async fn list(kind: Blob, State(e): Shared, Query(q): Params) -> ApiResult {
    let control = e.control().await?;
    let f = filters(&q)?;
    check_filters(&f, &["id", "name", "label", "names"])?;
    let v: Vec<Value> = match kind {
        Blob::Secret => control
            .list_secrets()
            .iter()
            .filter(|s| matches_filters(&f, &s.id, &s.spec.annotations))
            .map(|s| blob_json(&s.id, &s.meta, &s.spec.annotations, None))
            .collect(),
        Blob::Config => control
            .list_configs()
            .iter()
            .filter(|c| matches_filters(&f, &c.id, &c.spec.annotations))
            .map(|c| blob_json(&c.id, &c.meta, &c.spec.annotations, Some(&c.spec.data)))
            .collect(),
    };
    ok(json!(v))
}

pub(super) async fn inspect(kind: Blob, State(e): Shared, Path(id): Path<String>) -> ApiResult {
    let control = e.control().await?;
    ok(match kind {
        Blob::Secret => {
            let s = control.inspect_secret(&id)?;
            blob_json(&s.id, &s.meta, &s.spec.annotations, None)
        }
        Blob::Config => {
            let c = control.inspect_config(&id)?;
            blob_json(&c.id, &c.meta, &c.spec.annotations, Some(&c.spec.data))
        }
    })
}

pub(super) async fn create(kind: Blob, State(e): Shared, body: Bytes) -> ApiResult {
    let control = e.control().await?;
    let spec = strict::<BlobSpec>(&body)?;
    let id = match kind {
        Blob::Secret => control.create_secret(spec.secret_spec()?).await?.id.clone(),
        Blob::Config => control.create_config(spec.config_spec()?).await?.id.clone(),
    };
    created(json!({"ID": id.as_str()}))
}

pub(super) async fn update(kind: Blob, u: Update) -> ApiResult {
    let Update {
        control,
        id,
        version,
        body,
        ..
    } = u;
    let spec = strict::<BlobSpec>(&body)?;
    match kind {
        Blob::Secret => control
            .update_secret(&id, version, spec.secret_spec()?)
            .await
            .map(drop)?,
        Blob::Config => control
            .update_config(&id, version, spec.config_spec()?)
            .await
            .map(drop)?,
    }
    empty(StatusCode::OK)
}

pub(super) async fn remove(kind: Blob, State(e): Shared, Path(id): Path<String>) -> ApiResult {
    let control = e.control().await?;
    match kind {
        Blob::Secret => control.remove_secret(&id).await?,
        Blob::Config => control.remove_config(&id).await?,
    }
    empty(StatusCode::NO_CONTENT)
}
