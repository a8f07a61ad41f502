//! Networks: `POST /networks/create` into a [`NetworkSpec`], and a network as
//! `GET /networks` shows it.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use swarm_core::types::*;

use super::values::time;
use crate::api::ApiError;

/// `POST /networks/create`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkCreate {
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

/// The network a create request asks for; only swarm-scoped networks are
/// made here.
pub fn network_spec(r: NetworkCreate) -> Result<NetworkSpec, ApiError> {
    if r.scope
        .as_deref()
        .is_some_and(|s| !s.is_empty() && s != "swarm")
    {
        return Err(ApiError::bad_request(format!(
            "this node only creates swarm-scoped networks (got scope {:?})",
            r.scope.unwrap_or_default()
        )));
    }
    Ok(NetworkSpec {
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
        ipam: r.ipam.map(ipam_options),
        attachable: r.attachable.unwrap_or_default(),
        ingress: r.ingress.unwrap_or_default(),
        config_from: r.config_from.and_then(|c| c.network).unwrap_or_default(),
    })
}

fn ipam_options(i: Ipam) -> IpamOptions {
    IpamOptions {
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
    }
}

/// A network as `GET /networks` shows it.
pub fn network_json(n: &Network) -> Value {
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
