//! Consensus for Swarm managers on tikv's `raft` crate.
//!
//! Not yet built: the durable log, snapshots, membership changes, proposal
//! forwarding and linearizable reads land with the swarm-raft issue. The store
//! in `swarm-core` is the state machine this crate will feed.
#![deny(missing_docs)]
