//! Queries per second of the embedded DNS resolver on loopback: local answers over UDP
//! and TCP, and names forwarded to an upstream hickory server started here, beside that
//! same upstream asked directly.
//!
//! `cargo bench -p swarm-net --bench dns`; with `-- --test` a small run that only checks
//! the answers. Each line: `CLIENTS` concurrent clients, each sending its queries one
//! after the other (a query waits for the previous answer); queries per second over the
//! whole run, and per-query latency percentiles.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use hickory_proto::op::{Message, MessageType, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use swarm_net::dns::{DnsConfig, DnsServer, NetworkRecords, Resolution, ServiceRecord, TaskRecord};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

const CLIENTS: usize = 16;

/// The upstream: `A 192.0.2.7` for any name.
struct Upstream;

#[async_trait::async_trait]
impl RequestHandler for Upstream {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        let records: Vec<Record> = match request.request_info() {
            Ok(info) => vec![Record::from_rdata(
                info.query.original().name().clone(),
                60,
                RData::A(A::new(192, 0, 2, 7)),
            )],
            Err(_) => {
                metadata.response_code = ResponseCode::FormErr;
                vec![]
            }
        };
        let message = MessageResponseBuilder::from_message_request(request).build(
            metadata,
            records.iter(),
            [],
            [],
            [],
        );
        match response.send_response(message).await {
            Ok(info) => info,
            Err(error) => panic!("upstream could not answer: {error}"),
        }
    }
}

fn query(name: &str, id: u16) -> Result<Vec<u8>> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name)?, RecordType::A));
    Ok(message.to_vec()?)
}

fn check(answer: &[u8], id: u16) -> Result<()> {
    let message = Message::from_vec(answer)?;
    ensure!(message.metadata.id == id, "answer to another query");
    ensure!(
        message.metadata.response_code == ResponseCode::NoError && !message.answers.is_empty(),
        "bad answer: {:?}",
        message.metadata.response_code
    );
    Ok(())
}

/// One client over UDP: `count` queries for `name`, one after the other.
async fn udp_client(server: SocketAddr, name: String, count: usize) -> Result<Vec<Duration>> {
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    socket.connect(server).await?;
    let mut buf = vec![0u8; 4096];
    let mut times = Vec::with_capacity(count);
    for i in 0..count {
        let id = i as u16;
        let packet = query(&name, id)?;
        let start = Instant::now();
        socket.send(&packet).await?;
        let len = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf))
            .await
            .context("no answer in 5 s")??;
        times.push(start.elapsed());
        check(&buf[..len], id)?;
    }
    Ok(times)
}

/// One client over one TCP connection: `count` queries for `name`, one after the other.
async fn tcp_client(server: SocketAddr, name: String, count: usize) -> Result<Vec<Duration>> {
    let mut stream = TcpStream::connect(server).await?;
    stream.set_nodelay(true)?;
    let mut times = Vec::with_capacity(count);
    for i in 0..count {
        let id = i as u16;
        let packet = query(&name, id)?;
        let mut framed = (packet.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&packet);
        let start = Instant::now();
        stream.write_all(&framed).await?;
        let len = stream.read_u16().await?;
        let mut buf = vec![0u8; usize::from(len)];
        stream.read_exact(&mut buf).await?;
        times.push(start.elapsed());
        check(&buf, id)?;
    }
    Ok(times)
}

async fn run(
    label: &str,
    server: SocketAddr,
    name: &str,
    tcp: bool,
    per_client: usize,
) -> Result<()> {
    let start = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let name = name.to_owned();
        clients.push(tokio::spawn(async move {
            if tcp {
                tcp_client(server, name, per_client).await
            } else {
                udp_client(server, name, per_client).await
            }
        }));
    }
    let mut times = Vec::new();
    for client in clients {
        times.extend(client.await??);
    }
    let elapsed = start.elapsed();
    times.sort();
    let pct = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    println!(
        "{label:<44} {:>8.0} q/s   p50 {:>8.1?}   p99 {:>8.1?}   ({} queries)",
        times.len() as f64 / elapsed.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        times.len()
    );
    Ok(())
}

fn records() -> NetworkRecords {
    let tasks = (0..10u8)
        .map(|i| TaskRecord {
            name: format!("web.{i}.task{i}"),
            addr: [10, 0, 1, 10 + i].into(),
        })
        .collect::<Vec<_>>();
    NetworkRecords {
        services: vec![
            ServiceRecord {
                name: "web".into(),
                aliases: vec![],
                mode: Resolution::Vip([10, 0, 1, 2].into()),
                tasks: tasks.clone(),
            },
            ServiceRecord {
                name: "db".into(),
                aliases: vec![],
                mode: Resolution::Dnsrr,
                tasks: tasks
                    .into_iter()
                    .map(|mut t| {
                        t.name = t.name.replace("web", "db");
                        t
                    })
                    .collect(),
            },
        ],
    }
}

async fn bench(per_client: usize) -> Result<()> {
    // The upstream, on 127.0.0.32.
    let mut upstream = Server::new(Upstream);
    let udp = UdpSocket::bind("127.0.0.32:0").await?;
    let upstream_addr = udp.local_addr()?;
    let Ok(tcp) = TcpListener::bind(upstream_addr).await else {
        bail!("port {upstream_addr} taken for TCP; run again");
    };
    upstream.register_socket(udp);
    upstream.register_listener(tcp, Duration::from_secs(5), 64);

    let mut config = DnsConfig::new("127.0.0.31:0".parse()?);
    config.upstream = vec![upstream_addr];
    let dns = Arc::new(DnsServer::start(config).await?);
    dns.set_network("net1", records())?;
    let at = dns.local_addr();

    run("local, vip name, UDP", at, "web.", false, per_client).await?;
    run(
        "local, dnsrr name (10 tasks), UDP",
        at,
        "db.",
        false,
        per_client,
    )
    .await?;
    run(
        "local, vip name, TCP (1 connection/client)",
        at,
        "web.",
        true,
        per_client,
    )
    .await?;
    run(
        "forwarded to loopback upstream, UDP",
        at,
        "www.example.test.",
        false,
        per_client,
    )
    .await?;
    run(
        "the upstream asked directly, UDP",
        upstream_addr,
        "www.example.test.",
        false,
        per_client,
    )
    .await?;

    dns.shutdown().await;
    upstream.shutdown_gracefully().await?;
    Ok(())
}

fn main() -> Result<()> {
    let test_mode = std::env::args().any(|a| a == "--test");
    let per_client = if test_mode { 20 } else { 5_000 };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    println!(
        "DNS resolver on loopback, {CLIENTS} clients x {per_client} queries, 2 worker threads"
    );
    runtime.block_on(bench(per_client))
}
