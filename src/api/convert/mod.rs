//! Docker Engine API JSON ↔ the object model, a file per object.
//!
//! Requests are parsed into bollard's models of the Engine API (Docker's field
//! names, checked field by field: see [`strict`]); answers are written with
//! Docker's field names directly, so every field the docker CLI reads is there
//! in the shape it expects.
//!
//! | file | what |
//! |---|---|
//! | `strict.rs` | request bodies parsed strictly |
//! | `values.rs` | times, durations, counts, label maps, enum strings |
//! | `swarm.rs` | init and join requests, the swarm spec, the cluster |
//! | `node.rs` | nodes |
//! | `service.rs` | services: mode, update and rollback configs, endpoint |
//! | `task_spec.rs` | a service's task template: container, restart, placement, resources |
//! | `task.rs` | tasks, and the cache `GET /tasks` writes through |
//! | `network.rs` | networks |
//! | `blob.rs` | secrets and configs |

mod blob;
mod network;
mod node;
mod service;
mod strict;
mod swarm;
mod task;
mod task_spec;
mod values;

pub use blob::{BlobSpec, blob_json};
pub use network::{NetworkCreate, network_json, network_spec};
pub use node::{node_json, node_spec};
pub use service::{ServiceCounts, service_json, service_spec};
pub use strict::strict;
pub use swarm::{InitRequest, JoinRequest, cluster_json, refuse_unsupported_init, swarm_spec};
pub use task::{TaskJsonCache, task_json};
