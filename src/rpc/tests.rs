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
use crate::pki::test_identity as identity;
use crate::pki::{MANAGER_OU, NodeIdentity, RootCa, client_config, cluster_server_config};

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
        .add_service(
            RaftService::new(inbox_tx, Default::default(), control.store().clone()).server(),
        );
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

/// Records manager `node` in `m`'s store: a raft member with `raft_id`, or
/// (`None`) a manager not in the group yet.
async fn add_manager(m: &Manager, node: &str, raft_id: Option<u64>) {
    let n = Node {
        id: Id::from(node),
        role: NodeRole::Manager,
        spec: swarm_core::types::NodeSpec {
            desired_role: NodeRole::Manager,
            ..Default::default()
        },
        manager_status: raft_id.map(|raft_id| swarm_core::types::ManagerStatus {
            raft_id,
            addr: format!("127.0.0.1:{raft_id}"),
            ..Default::default()
        }),
        ..Default::default()
    };
    m.control
        .store()
        .update(|tx| tx.create(n).map(drop))
        .await
        .unwrap();
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
    add_manager(&m, "manager-2", Some(2)).await;
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
    add_manager(&m, "manager-2", Some(2)).await;
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

/// Sends one heartbeat as raft member `from` with `peer`'s certificate; the
/// status of the call.
async fn heartbeat(m: &Manager, peer: &NodeIdentity, from: u64, term: u64) -> tonic::Status {
    let mut msg = raft_message(1, from);
    msg.term = term;
    let ch = channel(&m.addr, client_config(&m.ca, peer).unwrap(), MANAGER_OU).unwrap();
    let frames = futures::stream::iter(vec![RaftFrame {
        chunk: protobuf::Message::write_to_bytes(&msg).unwrap(),
        last: true,
    }]);
    match RaftClient::new(ch).send(frames).await {
        Ok(_) => tonic::Status::ok(""),
        Err(s) => s,
    }
}

#[tokio::test]
async fn only_current_raft_members_speak_raft_and_only_as_themselves() {
    let mut m = manager().await;
    let cluster = m.control.cluster().unwrap().id.clone();
    add_manager(&m, "manager-2", Some(2)).await;
    add_manager(&m, "manager-3", Some(3)).await;
    add_manager(&m, "manager-4", None).await;
    let cert = |node: &str| identity(&m.ca, node, NodeRole::Manager, &cluster);
    let (m2, m3, m4) = (cert("manager-2"), cert("manager-3"), cert("manager-4"));

    // A member, as itself: delivered.
    assert_eq!(heartbeat(&m, &m2, 2, 7).await.code(), tonic::Code::Ok);
    let got = m.raft_inbox.recv().await.unwrap();
    assert_eq!((got.from, got.term), (2, 7));
    // A member posing as another: refused.
    let s = heartbeat(&m, &m2, 3, 7).await;
    assert_eq!(s.code(), tonic::Code::PermissionDenied, "{s}");
    // A manager joining the group: any raft ID nobody else holds.
    assert_eq!(heartbeat(&m, &m4, 40, 7).await.code(), tonic::Code::Ok);
    assert_eq!(m.raft_inbox.recv().await.unwrap().from, 40);
    let s = heartbeat(&m, &m4, 3, 7).await;
    assert_eq!(s.code(), tonic::Code::PermissionDenied, "{s}");
    // A manager certificate of a node the swarm does not know.
    let stranger = cert("manager-9");
    let s = heartbeat(&m, &stranger, 9, 7).await;
    assert_eq!(s.code(), tonic::Code::PermissionDenied, "{s}");

    // manager-3 demoted (the leader took it out of the group and recorded
    // it), then removed: its certificate still says manager, and is refused
    // on every raft call; a huge term never reaches raft.
    let store = m.control.store().clone();
    store
        .update(|tx| {
            let mut n = (*tx.get::<Node>(&Id::from("manager-3")).unwrap()).clone();
            n.spec.desired_role = NodeRole::Worker;
            n.role = NodeRole::Worker;
            n.manager_status = None;
            tx.update(n).map(drop)
        })
        .await
        .unwrap();
    let s = heartbeat(&m, &m3, 3, 1_000_001).await;
    assert_eq!(s.code(), tonic::Code::PermissionDenied, "demoted: {s}");
    m.control.remove_node("manager-3", true).await.unwrap();
    let s = heartbeat(&m, &m3, 3, 1_000_001).await;
    assert_eq!(s.code(), tonic::Code::PermissionDenied, "removed: {s}");
    let ch = channel(&m.addr, client_config(&m.ca, &m3).unwrap(), MANAGER_OU).unwrap();
    let s = RaftClient::new(ch.clone())
        .members(super::proto::Empty {})
        .await
        .unwrap_err();
    assert_eq!(s.code(), tonic::Code::PermissionDenied, "members: {s}");
    let s = RaftClient::new(ch)
        .join(super::proto::JoinRaftRequest {
            raft_id: 3,
            addr: "127.0.0.1:3".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), tonic::Code::PermissionDenied, "join: {s}");
    assert!(
        m.raft_inbox.try_recv().is_err(),
        "nothing but the two accepted heartbeats reached raft"
    );
}
