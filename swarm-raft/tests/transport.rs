//! The Transport suite on this crate's transports: in-process and TCP.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use swarm_raft::testing::{TransportHarness, transport_suite};
use swarm_raft::{Inbox, MemNetwork, TcpTransport, Transport};

struct Mem(MemNetwork);

#[async_trait]
impl TransportHarness for Mem {
    async fn join(&self, id: u64) -> (Arc<dyn Transport>, Inbox, Option<String>) {
        let (transport, inbox) = self.0.join(id);
        (transport, inbox, None)
    }
}

/// Members on loopback ports of their own, introduced by address.
struct Tcp;

#[async_trait]
impl TransportHarness for Tcp {
    async fn join(&self, id: u64) -> (Arc<dyn Transport>, Inbox, Option<String>) {
        let (transport, inbox) = TcpTransport::bind(id, "127.0.0.1:0", &HashMap::new())
            .await
            .expect("a loopback listener");
        let addr = transport.local_addr().to_string();
        (transport, inbox, Some(addr))
    }
}

#[tokio::test]
async fn the_in_process_transport_keeps_the_contract() {
    let failures = transport_suite(&Mem(MemNetwork::new())).await;
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tcp_transport_keeps_the_contract() {
    let failures = transport_suite(&Tcp).await;
    assert!(failures.is_empty(), "{failures:#?}");
}
