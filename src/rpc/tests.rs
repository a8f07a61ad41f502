use std::time::Duration;

use swarm_core::types::{ClusterSpec, Node, NodeRole};
use swarm_core::{Id, Store};
use swarm_raft::{Message, MessageType, Transport};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::ca::join;
use super::proto::RaftFrame;
use super::proto::raft_client::RaftClient;
use super::raft::{RaftService, RpcTransport};
use super::tls::{channel, incoming};
use crate::manager::ca::CaService;
use crate::manager::control::{Control, Rotate};
use crate::pki::{
    MANAGER_OU, NodeIdentity, RootCa, client_config, cluster_server_config, new_key_and_csr,
};

struct Manager {
    addr: String,
    ca: RootCa,
    control: Control,
    identity: NodeIdentity,
    raft_inbox: mpsc::UnboundedReceiver<Message>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Manager {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn identity(ca: &RootCa, node: &str, role: NodeRole, cluster: &Id) -> NodeIdentity {
    let (key, csr) = new_key_and_csr().unwrap();
    let cert = ca
        .issue(
            &csr,
            &Id::from(node),
            role,
            cluster,
            Duration::from_secs(3600),
        )
        .unwrap();
    NodeIdentity::from_pem(&key, &cert).unwrap()
}

/// A manager serving the CA and raft services on a loopback port.
async fn manager() -> Manager {
    let ca = RootCa::generate().unwrap();
    let control = Control::new(Store::new());
    let cluster = control
        .init_cluster(ClusterSpec::default(), &ca)
        .await
        .unwrap();
    let identity = identity(&ca, "manager-1", NodeRole::Manager, &cluster.id);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (inbox_tx, raft_inbox) = mpsc::unbounded_channel();
    let tls = cluster_server_config(&ca, &identity).unwrap();
    let router = tonic::transport::Server::builder()
        .add_service(super::proto::ca_server::CaServer::new(CaService::new(
            ca.clone(),
            control.store().clone(),
        )))
        .add_service(RaftService::new(inbox_tx, Default::default()).server());
    let server = tokio::spawn(async move {
        let _ = router.serve_with_incoming(incoming(listener, tls)).await;
    });
    Manager {
        addr,
        ca,
        control,
        identity,
        raft_inbox,
        server,
    }
}

#[tokio::test]
async fn a_worker_joins_with_the_worker_token() {
    let m = manager().await;
    let tokens = m.control.join_tokens().unwrap();
    let joined = join(&m.addr, &tokens.worker, "worker-host", "127.0.0.9:2377")
        .await
        .unwrap();
    assert_eq!(joined.identity.peer.role, NodeRole::Worker);
    assert_eq!(
        joined.identity.peer.cluster_id,
        m.control.cluster().unwrap().id
    );
    assert_eq!(joined.ca.digest(), m.ca.digest());
    let node = m
        .control
        .store()
        .view()
        .get::<Node>(&joined.identity.peer.node_id)
        .unwrap();
    assert_eq!(node.name(), "worker-host");
    assert_eq!(node.role, NodeRole::Worker);
    let manager = join(&m.addr, &tokens.manager, "mgr-host", "")
        .await
        .unwrap();
    assert_eq!(manager.identity.peer.role, NodeRole::Manager);
}

#[tokio::test]
async fn wrong_rotated_and_foreign_tokens_are_refused() {
    let m = manager().await;
    let tokens = m.control.join_tokens().unwrap();
    // Right CA, wrong secret.
    let forged = m.ca.new_join_token();
    let err = join(&m.addr, &forged, "h", "").await.unwrap_err();
    assert!(
        err.to_string()
            .contains("not a current worker or manager token"),
        "{err}"
    );
    // Rotated away.
    m.control
        .rotate_join_tokens(
            Rotate {
                worker: true,
                manager: false,
            },
            &m.ca,
        )
        .await
        .unwrap();
    let err = join(&m.addr, &tokens.worker, "h", "").await.unwrap_err();
    assert!(err.to_string().contains("rotated"), "{err}");
    // Another swarm's token: the CA shown does not match it.
    let other = RootCa::generate().unwrap().new_join_token();
    let err = join(&m.addr, &other, "h", "").await.unwrap_err();
    assert!(
        err.to_string()
            .contains("does not match the swarm's root CA"),
        "{err}"
    );
    // Malformed.
    assert!(
        join(&m.addr, "SWMTKN-1-nope", "h", "")
            .await
            .unwrap_err()
            .to_string()
            .contains("invalid join token")
    );
    // Nobody joined.
    let nodes = m.control.store().view().count::<Node>();
    assert_eq!(nodes, 0);
}

fn raft_message(to: u64, from: u64) -> Message {
    let mut msg = Message::default();
    msg.set_msg_type(MessageType::MsgHeartbeat);
    msg.to = to;
    msg.from = from;
    msg.term = 7;
    msg
}

#[tokio::test]
async fn raft_messages_flow_between_managers_and_workers_are_refused() {
    let mut m = manager().await;
    let cluster = m.control.cluster().unwrap().id.clone();

    // A worker certificate cannot speak raft.
    let worker = identity(&m.ca, "worker-9", NodeRole::Worker, &cluster);
    let ch = channel(&m.addr, client_config(&m.ca, &worker).unwrap(), MANAGER_OU).unwrap();
    let frames = futures::stream::iter(vec![RaftFrame {
        chunk: vec![],
        last: true,
    }]);
    let status = RaftClient::new(ch).send(frames).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status}");

    // Another manager's transport delivers, in order.
    let peer = identity(&m.ca, "manager-2", NodeRole::Manager, &cluster);
    let (own_tx, mut own_rx) = mpsc::unbounded_channel();
    let transport = RpcTransport::new(2, own_tx, client_config(&m.ca, &peer).unwrap());
    transport.set_peer(1, Some(&m.addr));
    for _ in 0..3 {
        transport.send(raft_message(1, 2));
    }
    for _ in 0..3 {
        let got = tokio::time::timeout(Duration::from_secs(10), m.raft_inbox.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((got.to, got.from, got.term), (1, 2, 7));
    }
    // An unknown peer is reported unreachable to the sender itself.
    transport.send(raft_message(3, 2));
    let report = tokio::time::timeout(Duration::from_secs(10), own_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.get_msg_type(), MessageType::MsgUnreachable);
    assert_eq!(report.from, 3);
    let _ = &m.identity;
}

#[tokio::test]
async fn large_raft_messages_are_split_and_reassembled() {
    let mut m = manager().await;
    let cluster = m.control.cluster().unwrap().id.clone();
    let peer = identity(&m.ca, "manager-2", NodeRole::Manager, &cluster);
    let (own_tx, _own_rx) = mpsc::unbounded_channel();
    let transport = RpcTransport::new(2, own_tx, client_config(&m.ca, &peer).unwrap());
    transport.set_peer(1, Some(&m.addr));
    let mut big = raft_message(1, 2);
    big.set_msg_type(MessageType::MsgSnapshot);
    big.mut_snapshot().set_data(vec![7u8; 3 << 20].into());
    transport.send(big);
    let got = tokio::time::timeout(Duration::from_secs(20), m.raft_inbox.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.get_snapshot().get_data().len(), 3 << 20);
}
