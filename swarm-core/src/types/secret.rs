//! Secrets and configs: named blobs handed to tasks.

use serde::{Deserialize, Serialize};

use super::common::{Annotations, Driver, Meta};
use crate::id::Id;

/// What the user gives for a secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretSpec {
    /// Name (unique) and labels.
    pub annotations: Annotations,
    /// The secret bytes (empty when a driver provides them).
    pub data: Vec<u8>,
    /// Templating driver, if any.
    pub templating: Option<Driver>,
    /// External secret driver, if any.
    pub driver: Option<Driver>,
}

/// A secret: data only tasks that reference it can read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret {
    /// The secret ID.
    pub id: Id,
    /// Version and times.
    pub meta: Meta,
    /// What the user gave.
    pub spec: SecretSpec,
    /// Whether the swarm made it for its own use.
    pub internal: bool,
}

/// What the user gives for a config.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigSpec {
    /// Name (unique) and labels.
    pub annotations: Annotations,
    /// The config bytes.
    pub data: Vec<u8>,
    /// Templating driver, if any.
    pub templating: Option<Driver>,
}

/// A config: non-secret data mounted into tasks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// The config ID.
    pub id: Id,
    /// Version and times.
    pub meta: Meta,
    /// What the user gave.
    pub spec: ConfigSpec,
}
