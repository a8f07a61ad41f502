//! The cluster RPC: gRPC (tonic) over mutual TLS between nodes.
//!
//! Room: transport only — the TLS listener and channels ([`tls`]), raft's
//! transport ([`raft`]), the dispatcher session's messages ([`dispatch`]) and the
//! CA service's clients ([`ca`]: join, renew, role watch). The services behind
//! them live in [`crate::manager`]. Uses [`crate::pki`], [`crate::views`] (the
//! view types the session carries) and [`crate::error`].
//!
//! tonic was picked over a hand-made framing because it gives HTTP/2 streams
//! (raft message streams, dispatcher sessions), deadlines, status codes and
//! connection management for free, and it takes our own rustls settings: the
//! server accepts TLS connections itself ([`tls::incoming`]) and hands tonic each
//! connection with the peer's identity read from its certificate, so every RPC
//! can be authorised by role.

pub(crate) mod ca;
pub(crate) mod dispatch;
pub(crate) mod raft;
pub(crate) mod tls;

/// Generated code of `proto/swarm.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("swarm.rpc.v1");
}

#[cfg(test)]
mod tests;
