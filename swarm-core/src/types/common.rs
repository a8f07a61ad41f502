//! Pieces shared by several objects: meta, annotations, drivers, platforms, resources.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// The version of a stored object: the index (the raft index in a replicated store)
/// of the batch that last changed it. An update must carry the version it read.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Version {
    /// The index of the last change.
    pub index: u64,
}

/// Bookkeeping every stored object carries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// The index of the batch that last changed the object (set by the store).
    pub version: Version,
    /// When the object was created (stamped by the writer, not the state machine).
    pub created_at: Timestamp,
    /// When the object last changed.
    pub updated_at: Timestamp,
}

/// A name and labels, as on every user-facing spec.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Annotations {
    /// Human-readable name. Unique (case-insensitively) among services, networks,
    /// secrets and configs.
    pub name: String,
    /// Free-form key/value labels.
    pub labels: BTreeMap<String, String>,
}

impl Annotations {
    /// Annotations with just a name.
    pub fn named(name: impl Into<String>) -> Annotations {
        Annotations {
            name: name.into(),
            labels: BTreeMap::new(),
        }
    }
}

/// A named driver with options (network, IPAM, log, secret drivers).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Driver {
    /// Driver name, e.g. `overlay`, `default`, `json-file`.
    pub name: String,
    /// Driver-specific options.
    pub options: BTreeMap<String, String>,
}

/// An operating system and CPU architecture, as in an image manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Platform {
    /// CPU architecture, e.g. `x86_64`, `amd64`, `aarch64`.
    pub architecture: String,
    /// Operating system, e.g. `linux`.
    pub os: String,
}

/// A generic (named) resource, such as GPUs: either a discrete count or a set of
/// named values.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GenericResource {
    /// `kind` resources counted by number, e.g. `gpu=2`.
    Discrete {
        /// Resource kind.
        kind: String,
        /// How many.
        value: i64,
    },
    /// One named instance of a resource kind, e.g. `gpu=GPU-3a2f`.
    Named {
        /// Resource kind.
        kind: String,
        /// The instance name.
        value: String,
    },
}

impl GenericResource {
    /// The resource kind.
    pub fn kind(&self) -> &str {
        match self {
            GenericResource::Discrete { kind, .. } | GenericResource::Named { kind, .. } => kind,
        }
    }
}

/// An amount of compute resources.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// CPU in units of 1e-9 CPUs (1 CPU = 1_000_000_000).
    pub nano_cpus: i64,
    /// Memory in bytes.
    pub memory_bytes: i64,
    /// Generic resources.
    pub generic: Vec<GenericResource>,
}

/// Limits (enforced by the runtime) and reservations (used by the scheduler).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceRequirements {
    /// Upper bounds the runtime enforces.
    pub limits: Option<Resources>,
    /// What the scheduler sets aside on the chosen node.
    pub reservations: Option<Resources>,
}
