//! The scheduler of Swarm: assigns PENDING tasks to nodes.
//!
//! Not yet built: the `Scheduler` trait, the node filters and the default spread
//! strategy land with the swarm-sched issue.
#![deny(missing_docs)]
