//! Networks, secrets and configs of the Engine API: what `docker network
//! create -d overlay`, `docker secret create`, `docker config create` and
//! `docker stack deploy` call.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use swarm_core::types::*;

use super::convert::{strict, time};
use super::handlers::{
    ApiResult, Params, Shared, check_filters, empty, filters, ok, version_param,
};
use super::{API_VERSION, ApiError};

/// `POST /networks/create`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NetworkCreate {
    name: Option<String>,
    check_duplicate: Option<bool>,
    driver: Option<String>,
    scope: Option<String>,
    internal: Option<bool>,
    attachable: Option<bool>,
    ingress: Option<bool>,
    config_only: Option<bool>,
    config_from: Option<ConfigFrom>,
    #[serde(rename = "IPAM")]
    ipam: Option<Ipam>,
    #[serde(rename = "EnableIPv4")]
    enable_ipv4: Option<bool>,
    #[serde(rename = "EnableIPv6")]
    enable_ipv6: Option<bool>,
    options: Option<HashMap<String, String>>,
    labels: Option<HashMap<String, String>>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ConfigFrom {
    network: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Ipam {
    driver: Option<String>,
    config: Option<Vec<IpamPool>>,
    options: Option<HashMap<String, String>>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct IpamPool {
    subnet: Option<String>,
    #[serde(rename = "IPRange")]
    ip_range: Option<String>,
    gateway: Option<String>,
    auxiliary_addresses: Option<HashMap<String, String>>,
}

/// `POST /secrets/create`, `POST /configs/create` and their updates.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BlobSpec {
    name: Option<String>,
    labels: Option<HashMap<String, String>>,
    data: Option<String>,
    driver: Option<Value>,
    templating: Option<Value>,
}

impl BlobSpec {
    fn parts(self, what: &str) -> Result<(Annotations, Vec<u8>), ApiError> {
        let data = match self.data.filter(|d| !d.is_empty()) {
            None => Vec::new(),
            Some(d) => base64::engine::general_purpose::STANDARD
                .decode(d.trim())
                .map_err(|e| ApiError::bad_request(format!("{what}: Data is not base64: {e}")))?,
        };
        if self.driver.as_ref().is_some_and(|d| !d.is_null()) {
            return Err(ApiError::bad_request(format!(
                "{what}: external {what} drivers are not supported"
            )));
        }
        Ok((
            Annotations {
                name: self.name.unwrap_or_default(),
                labels: self.labels.unwrap_or_default().into_iter().collect(),
            },
            data,
        ))
    }
}

fn network_json(n: &Network) -> Value {
    let ipam = n
        .ipam
        .clone()
        .or_else(|| n.spec.ipam.clone())
        .unwrap_or_default();
    let mut options = n.spec.driver_config.options.clone();
    if let Some(d) = &n.driver_state {
        options.extend(d.options.clone());
    }
    json!({
        "Name": n.spec.annotations.name,
        "Id": n.id.as_str(),
        "Created": time(n.meta.created_at),
        "Scope": "swarm",
        "Driver": n.spec.driver_config.name,
        "EnableIPv4": true,
        "EnableIPv6": n.spec.ipv6_enabled,
        "IPAM": {
            "Driver": if ipam.driver.name.is_empty() { "default".to_string() } else { ipam.driver.name.clone() },
            "Options": ipam.driver.options,
            "Config": ipam.configs.iter().map(|c| {
                let mut v = json!({"Subnet": c.subnet});
                if !c.gateway.is_empty() { v["Gateway"] = json!(c.gateway); }
                if !c.range.is_empty() { v["IPRange"] = json!(c.range); }
                v
            }).collect::<Vec<_>>(),
        },
        "Internal": n.spec.internal,
        "Attachable": n.spec.attachable,
        "Ingress": n.spec.ingress,
        "ConfigFrom": {"Network": n.spec.config_from},
        "ConfigOnly": false,
        "Containers": {},
        "Options": options,
        "Labels": n.spec.annotations.labels,
    })
}

fn blob_json(
    id: &str,
    meta: &swarm_core::types::Meta,
    a: &Annotations,
    data: Option<&[u8]>,
) -> Value {
    let mut spec = json!({"Name": a.name, "Labels": a.labels});
    if let Some(d) = data {
        spec["Data"] = json!(base64::engine::general_purpose::STANDARD.encode(d));
    }
    json!({
        "ID": id,
        "Version": {"Index": meta.version.index},
        "CreatedAt": time(meta.created_at),
        "UpdatedAt": time(meta.updated_at),
        "Spec": spec,
    })
}

fn created(v: Value) -> ApiResult {
    Ok((
        StatusCode::CREATED,
        [("API-Version", API_VERSION)],
        axum::Json(v),
    )
        .into_response())
}

/// Keeps the objects whose name or ID prefix matches the filters.
fn keep(
    f: &HashMap<String, Vec<String>>,
    id: &str,
    name: &str,
    labels: &std::collections::BTreeMap<String, String>,
) -> bool {
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

pub(super) async fn networks_list(State(e): Shared, Query(q): Params) -> ApiResult {
    let control = e.control().await?;
    let f = filters(&q)?;
    check_filters(
        &f,
        &["id", "name", "label", "driver", "scope", "type", "dangling"],
    )?;
    let drivers = f.get("driver").cloned().unwrap_or_default();
    let v: Vec<Value> = control
        .list_networks()
        .iter()
        .filter(|n| {
            keep(
                &f,
                &n.id,
                &n.spec.annotations.name,
                &n.spec.annotations.labels,
            )
        })
        .filter(|n| drivers.is_empty() || drivers.contains(&n.spec.driver_config.name))
        .map(|n| network_json(n))
        .collect();
    ok(json!(v))
}

pub(super) async fn network_inspect(State(e): Shared, Path(id): Path<String>) -> ApiResult {
    let control = e.control().await?;
    let n = control.inspect_network(&id)?;
    let mut v = network_json(&n);
    if n.spec.driver_config.name == "overlay" || n.spec.ingress {
        let peers: Vec<Value> = control
            .network_peers(&n)
            .into_iter()
            .map(|(name, ip)| json!({"Name": name, "IP": ip}))
            .collect();
        v["Peers"] = json!(peers);
    }
    ok(v)
}

pub(super) async fn network_create(State(e): Shared, body: Bytes) -> ApiResult {
    let control = e.control().await?;
    let r: NetworkCreate = strict(&body)?;
    if r.scope
        .as_deref()
        .is_some_and(|s| !s.is_empty() && s != "swarm")
    {
        return Err(ApiError::bad_request(format!(
            "this node only creates swarm-scoped networks (got scope {:?})",
            r.scope.unwrap_or_default()
        )));
    }
    let ipam = r.ipam.map(|i| IpamOptions {
        driver: Driver {
            name: i.driver.unwrap_or_default(),
            options: i.options.unwrap_or_default().into_iter().collect(),
        },
        configs: i
            .config
            .unwrap_or_default()
            .into_iter()
            .map(|c| IpamConfig {
                family: AddressFamily::Ipv4,
                subnet: c.subnet.unwrap_or_default(),
                range: c.ip_range.unwrap_or_default(),
                gateway: c.gateway.unwrap_or_default(),
                reserved: c
                    .auxiliary_addresses
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
            })
            .collect(),
    });
    let spec = NetworkSpec {
        annotations: Annotations {
            name: r.name.unwrap_or_default(),
            labels: r.labels.unwrap_or_default().into_iter().collect(),
        },
        driver_config: Driver {
            name: r.driver.unwrap_or_default(),
            options: r.options.unwrap_or_default().into_iter().collect(),
        },
        ipv6_enabled: r.enable_ipv6.unwrap_or_default(),
        internal: r.internal.unwrap_or_default(),
        ipam,
        attachable: r.attachable.unwrap_or_default(),
        ingress: r.ingress.unwrap_or_default(),
        config_from: r.config_from.and_then(|c| c.network).unwrap_or_default(),
    };
    let n = control.create_network(spec).await?;
    created(json!({"Id": n.id.as_str(), "Warning": ""}))
}

pub(super) async fn network_remove(State(e): Shared, Path(id): Path<String>) -> ApiResult {
    let control = e.control().await?;
    control.remove_network(&id).await?;
    empty(StatusCode::NO_CONTENT)
}

/// Secrets and configs share their endpoints' shape; configs show their data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Blob {
    /// `/secrets`.
    Secret,
    /// `/configs`.
    Config,
}

impl Blob {
    fn what(self) -> &'static str {
        match self {
            Blob::Secret => "secret",
            Blob::Config => "config",
        }
    }
}

pub(super) async fn blobs_list(kind: Blob, State(e): Shared, Query(q): Params) -> ApiResult {
    let control = e.control().await?;
    let f = filters(&q)?;
    check_filters(&f, &["id", "name", "label", "names"])?;
    let v: Vec<Value> = match kind {
        Blob::Secret => control
            .list_secrets()
            .iter()
            .filter(|s| {
                keep(
                    &f,
                    &s.id,
                    &s.spec.annotations.name,
                    &s.spec.annotations.labels,
                )
            })
            .map(|s| blob_json(&s.id, &s.meta, &s.spec.annotations, None))
            .collect(),
        Blob::Config => control
            .list_configs()
            .iter()
            .filter(|c| {
                keep(
                    &f,
                    &c.id,
                    &c.spec.annotations.name,
                    &c.spec.annotations.labels,
                )
            })
            .map(|c| blob_json(&c.id, &c.meta, &c.spec.annotations, Some(&c.spec.data)))
            .collect(),
    };
    ok(json!(v))
}

pub(super) async fn blob_inspect(
    kind: Blob,
    State(e): Shared,
    Path(id): Path<String>,
) -> ApiResult {
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

pub(super) async fn blob_create(kind: Blob, State(e): Shared, body: Bytes) -> ApiResult {
    let control = e.control().await?;
    let (annotations, data) = strict::<BlobSpec>(&body)?.parts(kind.what())?;
    let id = match kind {
        Blob::Secret => {
            let spec = SecretSpec {
                annotations,
                data,
                ..Default::default()
            };
            control.create_secret(spec).await?.id.clone()
        }
        Blob::Config => {
            let spec = ConfigSpec {
                annotations,
                data,
                ..Default::default()
            };
            control.create_config(spec).await?.id.clone()
        }
    };
    created(json!({"ID": id.as_str()}))
}

pub(super) async fn blob_update(
    kind: Blob,
    State(e): Shared,
    Path(id): Path<String>,
    Query(q): Params,
    body: Bytes,
) -> ApiResult {
    let control = e.control().await?;
    let version = version_param(&q)?;
    let (annotations, data) = strict::<BlobSpec>(&body)?.parts(kind.what())?;
    match kind {
        Blob::Secret => {
            let spec = SecretSpec {
                annotations,
                data,
                ..Default::default()
            };
            control.update_secret(&id, version, spec).await.map(drop)?
        }
        Blob::Config => {
            let spec = ConfigSpec {
                annotations,
                data,
                ..Default::default()
            };
            control.update_config(&id, version, spec).await.map(drop)?
        }
    }
    empty(StatusCode::OK)
}

pub(super) async fn blob_remove(kind: Blob, State(e): Shared, Path(id): Path<String>) -> ApiResult {
    let control = e.control().await?;
    match kind {
        Blob::Secret => control.remove_secret(&id).await?,
        Blob::Config => control.remove_config(&id).await?,
    }
    empty(StatusCode::NO_CONTENT)
}
