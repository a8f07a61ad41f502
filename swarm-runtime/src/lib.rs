//! Runtimes for Swarm workers: the `Runtime` trait, a Docker Engine runtime and a
//! process runtime.
//!
//! Not yet built: lands with the swarm-runtime issue.
#![deny(missing_docs)]
