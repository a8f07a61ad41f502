//! The resolver answering inside a network namespace of its own at Docker's address,
//! `127.0.0.11:53`, while it runs (and forwards) from the test's namespace: how a sandbox
//! gets its resolver. Needs root (CAP_SYS_ADMIN and the `ip` tool); skips otherwise.

use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::str::FromStr;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use nix::sched::{CloneFlags, unshare};
use swarm_net::dns::{DnsConfig, DnsServer, NetworkRecords, Resolution, ServiceRecord, TaskRecord};

const WAIT: Duration = Duration::from_secs(10);

/// Sockets made inside a fresh network namespace: the server's UDP and TCP on
/// 127.0.0.11:53, and a client UDP socket. The namespace lives as long as they do.
struct Sandbox {
    server_udp: std::net::UdpSocket,
    server_tcp: std::net::TcpListener,
    client: std::net::UdpSocket,
}

/// Enters a new network namespace on a thread of its own (the test's threads stay where
/// they are), brings its loopback up and binds there. `Err` says why it cannot.
fn sandbox() -> Result<Sandbox, String> {
    std::thread::spawn(|| {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| format!("unshare(CLONE_NEWNET): {e}"))?;
        // A child inherits the namespace of the thread that forks it.
        let status = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .map_err(|e| format!("ip: {e}"))?;
        if !status.success() {
            return Err(format!("ip link set lo up: {status}"));
        }
        let at: SocketAddr = "127.0.0.11:53".parse().unwrap();
        Ok(Sandbox {
            server_udp: std::net::UdpSocket::bind(at).map_err(|e| e.to_string())?,
            server_tcp: std::net::TcpListener::bind(at).map_err(|e| e.to_string())?,
            client: std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?,
        })
    })
    .join()
    .map_err(|_| "the namespace thread panicked".to_owned())?
}

fn ask(client: &std::net::UdpSocket, name: &str) -> Message {
    let id: u16 = rand::random();
    let mut query = Message::new(id, MessageType::Query, OpCode::Query);
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    client
        .send_to(&query.to_vec().unwrap(), "127.0.0.11:53")
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let (len, _) = client
        .recv_from(&mut buf)
        .expect("no answer from 127.0.0.11:53");
    let answer = Message::from_vec(&buf[..len]).unwrap();
    assert_eq!(answer.metadata.id, id);
    answer
}

fn addrs(answer: &Message) -> Vec<IpAddr> {
    answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_at_127_0_0_11_inside_a_namespace_and_forwards_from_the_host() {
    let sandbox = match sandbox() {
        Ok(sandbox) => sandbox,
        Err(reason) => {
            println!("skipped: no network namespace for the test ({reason}); needs root");
            return;
        }
    };
    // The upstream lives in the test's namespace, where the sandbox cannot reach it: only
    // the server, which forwards from here, can.
    let upstream = tokio::net::UdpSocket::bind("127.0.0.6:0").await.unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((len, from)) = upstream.recv_from(&mut buf).await {
            let Ok(query) = Message::from_vec(&buf[..len]) else {
                continue;
            };
            let mut reply = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
            for q in &query.queries {
                reply.add_query(q.clone());
                reply.add_answer(Record::from_rdata(
                    q.name().clone(),
                    60,
                    RData::A(A::new(192, 0, 2, 9)),
                ));
            }
            let _ = upstream.send_to(&reply.to_vec().unwrap(), from).await;
        }
    });

    let mut config = DnsConfig::new("127.0.0.11:53".parse().unwrap());
    config.upstream = vec![upstream_addr];
    let dns =
        DnsServer::start_with_sockets(sandbox.server_udp, sandbox.server_tcp, config).unwrap();
    dns.set_network(
        "net1",
        NetworkRecords {
            services: vec![ServiceRecord {
                name: "web".into(),
                aliases: vec![],
                mode: Resolution::Vip("10.0.1.2".parse().unwrap()),
                tasks: vec![TaskRecord {
                    name: "web.1.aaa".into(),
                    addr: "10.0.1.3".parse().unwrap(),
                }],
            }],
        },
    )
    .unwrap();

    let client = sandbox.client;
    client.set_read_timeout(Some(WAIT)).unwrap();
    let answers = tokio::task::spawn_blocking(move || {
        let answers = (
            ask(&client, "web."),
            ask(&client, "tasks.web."),
            ask(&client, "outside.example."),
        );
        // The sandbox itself cannot reach the upstream: nothing listens there in its
        // namespace (the kernel refuses at once), so the answer above came through us.
        client.connect(upstream_addr).unwrap();
        client.send(b"not even a query").unwrap();
        let refused = client.recv(&mut [0u8; 512]).unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
        answers
    })
    .await
    .unwrap();
    assert_eq!(
        addrs(&answers.0),
        vec![IpAddr::from_str("10.0.1.2").unwrap()]
    );
    assert_eq!(
        addrs(&answers.1),
        vec![IpAddr::from_str("10.0.1.3").unwrap()]
    );
    assert_eq!(answers.2.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        addrs(&answers.2),
        vec![IpAddr::from_str("192.0.2.9").unwrap()]
    );
    dns.shutdown().await;
}
