//! The object model, with SwarmKit's semantics and names close to the Docker
//! Engine API's.

mod cluster;
mod common;
mod network;
mod node;
mod secret;
mod service;
mod task;

pub use cluster::*;
pub use common::*;
pub use network::*;
pub use node::*;
pub use secret::*;
pub use service::*;
pub use task::*;
