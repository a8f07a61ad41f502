//! Secrets and configs ("blobs": a name, labels and data): their create and
//! update bodies, and how `GET /secrets` and `GET /configs` show them (a
//! secret's data never leaves the swarm; a config's does).

use std::collections::HashMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use swarm_core::types::{Annotations, ConfigSpec, Meta, SecretSpec};

use super::values::time;
use crate::api::ApiError;

/// `POST /secrets/create`, `POST /configs/create` and their updates.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BlobSpec {
    name: Option<String>,
    labels: Option<HashMap<String, String>>,
    data: Option<String>,
    driver: Option<Value>,
    templating: Option<Value>,
}

impl BlobSpec {
    /// The secret the body describes.
    pub fn secret_spec(self) -> Result<SecretSpec, ApiError> {
        let (annotations, data) = self.parts("secret")?;
        Ok(SecretSpec {
            annotations,
            data,
            ..Default::default()
        })
    }

    /// The config the body describes.
    pub fn config_spec(self) -> Result<ConfigSpec, ApiError> {
        let (annotations, data) = self.parts("config")?;
        Ok(ConfigSpec {
            annotations,
            data,
            ..Default::default()
        })
    }

    /// The name and labels, and the data decoded; `what` (`secret`,
    /// `config`) names the object in errors.
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

/// A secret or config as the Engine API shows it; `data` is a config's.
pub fn blob_json(id: &str, meta: &Meta, a: &Annotations, data: Option<&[u8]>) -> Value {
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
