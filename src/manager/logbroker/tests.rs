use std::time::Duration;

use futures::StreamExt;
use swarm_core::Id;
use swarm_core::testing::Patience;
use swarm_core::types::NodeRole;
use tokio::net::TcpListener;

use super::*;
use crate::pki::{
    MANAGER_OU, NodeIdentity, RootCa, client_config, cluster_server_config, test_identity,
};
use crate::rpc::proto::logs_client::LogsClient;
use crate::rpc::tls::{channel, incoming};

fn identity(ca: &RootCa, node: &str, role: NodeRole) -> NodeIdentity {
    test_identity(ca, node, role, &Id::from("c1"))
}

fn line(request_id: u64, task: &str, data: &str) -> LogMessage {
    LogMessage {
        request_id,
        task_id: task.into(),
        stream: 1,
        data: data.as_bytes().to_vec(),
        done: true,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_node_publishes_only_the_lines_it_was_asked_for() {
    let ca = RootCa::generate().unwrap();
    let manager = identity(&ca, "m1", NodeRole::Manager);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let broker = LogBroker::new();
    let router = tonic::transport::Server::builder().add_service(broker.clone().server());
    let tls = cluster_server_config(&ca, &manager).unwrap();
    let server = tokio::spawn(async move {
        let _ = router.serve_with_incoming(incoming(listener, tls)).await;
    });
    let client = |node: &str| {
        let id = identity(&ca, node, NodeRole::Worker);
        LogsClient::new(channel(&addr, client_config(&ca, &id).unwrap(), MANAGER_OU).unwrap())
    };
    let (mut n1, mut n2) = (client("n1"), client("n2"));

    let mut requests = n1.subscribe(Empty {}).await.unwrap().into_inner();
    Patience::within(Duration::from_secs(10))
        .until("n1's subscription", || {
            broker.inner.nodes.lock().contains_key(&Id::from("n1"))
        })
        .await;
    let query = LogsQuery {
        stdout: true,
        stderr: true,
        ..Default::default()
    };
    let mut lines = Box::pin(broker.logs(vec![(Id::from("t1"), Id::from("n1"))], query));
    let req = requests.next().await.unwrap().unwrap();
    assert_eq!(req.task_ids, ["t1"]);

    // Another node cannot answer for n1's task, nor n1 for a task not asked.
    let forged = futures::stream::iter(vec![line(req.request_id, "t1", "forged\n")]);
    let s = n2.publish(forged).await.unwrap_err();
    assert_eq!(s.code(), tonic::Code::PermissionDenied, "{s}");
    let other = futures::stream::iter(vec![line(req.request_id, "t9", "other\n")]);
    let s = n1.publish(other).await.unwrap_err();
    assert_eq!(s.code(), tonic::Code::PermissionDenied, "{s}");

    // The node asked, for the task asked: its line reaches the client, alone.
    let real = futures::stream::iter(vec![line(req.request_id, "t1", "hello\n")]);
    n1.publish(real).await.unwrap();
    let got = lines.next().await.unwrap();
    assert_eq!(
        (got.task_id.as_str(), got.node_id.as_str(), &got.data[..]),
        ("t1", "n1", &b"hello\n"[..])
    );
    assert!(lines.next().await.is_none(), "the task's output is done");
    server.abort();
}
