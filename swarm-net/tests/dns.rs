//! The embedded DNS resolver over real UDP and TCP sockets on loopback, with a second
//! hickory server started here as the upstream resolver.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use swarm_net::dns::{
    DnsConfig, DnsError, DnsServer, NetworkRecords, Resolution, ServiceRecord, TaskRecord,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// How long a test waits for any one answer before it fails (a hang guard, not a timing
/// assertion).
const WAIT: Duration = Duration::from_secs(10);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn query_bytes(name: &str, qtype: RecordType, edns: bool) -> (u16, Vec<u8>) {
    let id: u16 = rand::random();
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    // `from_ascii` keeps the case (`from_str` lowercases).
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        message.set_edns(e);
    }
    (id, message.to_vec().unwrap())
}

async fn udp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    udp_with(server, name, qtype, false).await
}

async fn udp_with(server: SocketAddr, name: &str, qtype: RecordType, edns: bool) -> Message {
    let (id, bytes) = query_bytes(name, qtype, edns);
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(server).await.unwrap();
    socket.send(&bytes).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let len = tokio::time::timeout(WAIT, socket.recv(&mut buf))
        .await
        .expect("no UDP answer")
        .unwrap();
    let answer = Message::from_vec(&buf[..len]).unwrap();
    assert_eq!(answer.metadata.id, id);
    assert_eq!(answer.metadata.message_type, MessageType::Response);
    answer
}

async fn tcp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let (id, bytes) = query_bytes(name, qtype, false);
    let mut stream = TcpStream::connect(server).await.unwrap();
    stream
        .write_all(&(bytes.len() as u16).to_be_bytes())
        .await
        .unwrap();
    stream.write_all(&bytes).await.unwrap();
    let answer = tokio::time::timeout(WAIT, async {
        let len = stream.read_u16().await.unwrap();
        let mut buf = vec![0u8; usize::from(len)];
        stream.read_exact(&mut buf).await.unwrap();
        Message::from_vec(&buf).unwrap()
    })
    .await
    .expect("no TCP answer");
    assert_eq!(answer.metadata.id, id);
    answer
}

/// The addresses of the A/AAAA answers, in answer order.
fn addrs(answer: &Message) -> Vec<IpAddr> {
    answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

fn sorted(mut v: Vec<IpAddr>) -> Vec<IpAddr> {
    v.sort();
    v
}

fn task(name: &str, addr: &str) -> TaskRecord {
    TaskRecord {
        name: name.into(),
        addr: ip(addr),
    }
}

/// Network `net1`: `web` in vip mode (VIP 10.0.1.2, tasks .3 and .4, alias `front`),
/// `db` in dnsrr mode (tasks .5, .6, .7).
fn net1() -> NetworkRecords {
    NetworkRecords {
        services: vec![
            ServiceRecord {
                name: "web".into(),
                aliases: vec!["Front".into()],
                mode: Resolution::Vip(ip("10.0.1.2")),
                tasks: vec![task("web.1.aaa", "10.0.1.3"), task("web.2.bbb", "10.0.1.4")],
            },
            ServiceRecord {
                name: "db".into(),
                aliases: vec![],
                mode: Resolution::Dnsrr,
                tasks: vec![
                    task("db.1.ccc", "10.0.1.5"),
                    task("db.2.ddd", "10.0.1.6"),
                    task("db.3.eee", "10.0.1.7"),
                ],
            },
        ],
    }
}

/// The upstream resolver of the tests: a hickory server that owns `upstream.test.`:
/// `<anything>.upstream.test.` A 192.0.2.7, `big.upstream.test.` 40 A records (more than
/// 512 bytes), NXDOMAIN for everything else. Counts the queries it gets.
struct Upstream {
    queries: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl RequestHandler for Upstream {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        self.queries.fetch_add(1, Ordering::SeqCst);
        let query = request.request_info().unwrap().query.original().clone();
        let zone = Name::from_str("upstream.test.").unwrap();
        let builder = MessageResponseBuilder::from_message_request(request);
        let mut metadata = hickory_proto::op::Metadata::response_from_request(&request.metadata);
        metadata.recursion_available = true;
        let records: Vec<Record> = if !zone.zone_of(query.name()) {
            metadata.response_code = ResponseCode::NXDomain;
            vec![]
        } else if query.name().to_ascii().starts_with("big.") {
            (0..40u8)
                .map(|i| {
                    Record::from_rdata(query.name().clone(), 60, RData::A(A::new(198, 51, 100, i)))
                })
                .collect()
        } else {
            vec![Record::from_rdata(
                query.name().clone(),
                60,
                RData::A(A::new(192, 0, 2, 7)),
            )]
        };
        let message = builder.build(
            metadata,
            records.iter(),
            std::iter::empty(),
            std::iter::empty(),
            std::iter::empty(),
        );
        response.send_response(message).await.unwrap()
    }
}

/// Starts the upstream server on `127.0.0.2` (UDP and TCP on one port).
async fn start_upstream() -> (Server<Upstream>, SocketAddr, Arc<AtomicUsize>) {
    let queries = Arc::new(AtomicUsize::new(0));
    let mut server = Server::new(Upstream {
        queries: queries.clone(),
    });
    loop {
        let udp = UdpSocket::bind("127.0.0.2:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        if let Ok(tcp) = TcpListener::bind(addr).await {
            server.register_socket(udp);
            server.register_listener(tcp, Duration::from_secs(5), 16);
            return (server, addr, queries);
        }
    }
}

fn config(listen: &str, upstream: Vec<SocketAddr>) -> DnsConfig {
    let mut config = DnsConfig::new(listen.parse().unwrap());
    config.upstream = upstream;
    config.ttl = 30;
    config.forward_timeout = Duration::from_millis(500);
    config
}

/// A UDP address nothing listens on (bound, then closed): queries there are refused.
async fn dead_addr() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.3:0").await.unwrap();
    socket.local_addr().unwrap()
}

#[tokio::test]
async fn vip_tasks_and_task_names_over_udp_and_tcp() {
    let dns = DnsServer::start(config("127.0.0.11:0", vec![dead_addr().await]))
        .await
        .unwrap();
    dns.set_network("net1", net1()).unwrap();
    let at = dns.local_addr();
    assert_eq!(at.ip(), ip("127.0.0.11"));

    for answer in [
        udp(at, "web.", RecordType::A).await,
        tcp(at, "web.", RecordType::A).await,
    ] {
        assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
        assert!(answer.metadata.authoritative);
        assert_eq!(addrs(&answer), vec![ip("10.0.1.2")]);
        assert_eq!(answer.answers[0].ttl, 30);
        assert_eq!(answer.answers[0].name, Name::from_str("web.").unwrap());
    }
    let tasks = udp(at, "tasks.web.", RecordType::A).await;
    assert_eq!(sorted(addrs(&tasks)), vec![ip("10.0.1.3"), ip("10.0.1.4")]);
    let one = tcp(at, "web.2.bbb.", RecordType::A).await;
    assert_eq!(addrs(&one), vec![ip("10.0.1.4")]);
    // The alias answers like the name.
    assert_eq!(
        addrs(&udp(at, "front.", RecordType::A).await),
        vec![ip("10.0.1.2")]
    );
    assert_eq!(
        sorted(addrs(&udp(at, "tasks.front.", RecordType::A).await)),
        vec![ip("10.0.1.3"), ip("10.0.1.4")]
    );
    dns.shutdown().await;
}

#[tokio::test]
async fn dnsrr_answers_every_task_in_rotating_order() {
    let dns = DnsServer::start(config("127.0.0.12:0", vec![dead_addr().await]))
        .await
        .unwrap();
    dns.set_network("net1", net1()).unwrap();
    let at = dns.local_addr();
    let all = vec![ip("10.0.1.5"), ip("10.0.1.6"), ip("10.0.1.7")];
    let mut firsts = Vec::new();
    for _ in 0..3 {
        let answer = udp(at, "db.", RecordType::A).await;
        assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
        let got = addrs(&answer);
        assert_eq!(sorted(got.clone()), all);
        firsts.push(got[0]);
    }
    // Three answers in a row each lead with a different task.
    assert_eq!(sorted(firsts), all);
    let tasks = tcp(at, "tasks.db.", RecordType::A).await;
    assert_eq!(sorted(addrs(&tasks)), all);
    dns.shutdown().await;
}

#[tokio::test]
async fn names_match_in_any_case_with_or_without_the_dot() {
    let dns = DnsServer::start(config("127.0.0.13:0", vec![dead_addr().await]))
        .await
        .unwrap();
    let mut records = net1();
    records.services[0].name = "Web.".into();
    // A stack's service: underscores are fine in names here.
    records.services[1].name = "Stack_DB".into();
    records.services[1].tasks[0].name = "stack_db.1.ccc".into();
    dns.set_network("net1", records).unwrap();
    let at = dns.local_addr();
    for name in [
        "WEB.",
        "web.",
        "wEb",
        "TASKS.Web.",
        "FRONT.",
        "Web.1.AAA.",
        "stack_db.",
        "Tasks.STACK_DB",
        "Stack_Db.1.CCC.",
    ] {
        let answer = udp(at, name, RecordType::A).await;
        assert_eq!(
            answer.metadata.response_code,
            ResponseCode::NoError,
            "{name}"
        );
        assert!(!addrs(&answer).is_empty(), "{name}");
        // The answer carries the name as asked.
        assert_eq!(
            answer.answers[0].name.to_ascii().trim_end_matches('.'),
            name.trim_end_matches('.'),
        );
    }
    dns.shutdown().await;
}

#[tokio::test]
async fn other_family_and_other_types_are_empty_noerror() {
    let dns = DnsServer::start(config("127.0.0.14:0", vec![dead_addr().await]))
        .await
        .unwrap();
    let mut records = net1();
    records.services.push(ServiceRecord {
        name: "v6".into(),
        aliases: vec![],
        mode: Resolution::Vip(ip("fd00::2")),
        tasks: vec![task("v6.1.fff", "fd00::3")],
    });
    dns.set_network("net1", records).unwrap();
    let at = dns.local_addr();
    let aaaa = udp(at, "web.", RecordType::AAAA).await;
    assert_eq!(aaaa.metadata.response_code, ResponseCode::NoError);
    assert!(aaaa.answers.is_empty());
    for qtype in [
        RecordType::MX,
        RecordType::TXT,
        RecordType::PTR,
        RecordType::SRV,
    ] {
        let other = udp(at, "web.", qtype).await;
        assert_eq!(
            other.metadata.response_code,
            ResponseCode::NoError,
            "{qtype}"
        );
        assert!(other.answers.is_empty(), "{qtype}");
    }
    assert_eq!(
        addrs(&udp(at, "v6.", RecordType::AAAA).await),
        vec![ip("fd00::2")]
    );
    assert_eq!(
        addrs(&udp(at, "tasks.v6.", RecordType::AAAA).await),
        vec![ip("fd00::3")]
    );
    assert!(udp(at, "v6.", RecordType::A).await.answers.is_empty());
    dns.shutdown().await;
}

#[tokio::test]
async fn ptr_for_vips_and_tasks() {
    let (mut upstream, upstream_addr, _) = start_upstream().await;
    let dns = DnsServer::start(config("127.0.0.15:0", vec![upstream_addr]))
        .await
        .unwrap();
    dns.set_network("net1", net1()).unwrap();
    let at = dns.local_addr();
    let ptr = |answer: &Message| -> Vec<String> {
        answer
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::PTR(p) => Some(p.0.to_ascii()),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        ptr(&udp(at, "2.1.0.10.in-addr.arpa.", RecordType::PTR).await),
        ["web."]
    );
    assert_eq!(
        ptr(&tcp(at, "6.1.0.10.IN-ADDR.ARPA.", RecordType::PTR).await),
        ["db.2.ddd."]
    );
    // An address the swarm does not own goes upstream (which has no such name).
    let unknown = udp(at, "9.9.0.10.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(unknown.metadata.response_code, ResponseCode::NXDomain);
    dns.shutdown().await;
    upstream.shutdown_gracefully().await.unwrap();
}

#[tokio::test]
async fn set_network_is_seen_by_the_next_query_and_remove_network_forgets() {
    let (mut upstream, upstream_addr, upstream_queries) = start_upstream().await;
    let dns = DnsServer::start(config("127.0.0.16:0", vec![upstream_addr]))
        .await
        .unwrap();
    let at = dns.local_addr();
    // No network yet: `web` is not ours, so upstream answers (NXDOMAIN).
    let before = udp(at, "web.", RecordType::A).await;
    assert_eq!(before.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(upstream_queries.load(Ordering::SeqCst), 1);

    dns.set_network("net1", net1()).unwrap();
    assert_eq!(
        addrs(&udp(at, "web.", RecordType::A).await),
        vec![ip("10.0.1.2")]
    );

    let mut scaled = net1();
    scaled.services[0].tasks = vec![task("web.3.zzz", "10.0.1.9")];
    scaled.services[1].mode = Resolution::Vip(ip("10.0.1.8"));
    dns.set_network("net1", scaled).unwrap();
    assert_eq!(
        addrs(&udp(at, "tasks.web.", RecordType::A).await),
        vec![ip("10.0.1.9")]
    );
    assert_eq!(
        addrs(&udp(at, "db.", RecordType::A).await),
        vec![ip("10.0.1.8")]
    );
    let gone = udp(at, "web.1.aaa.", RecordType::A).await;
    assert_eq!(gone.metadata.response_code, ResponseCode::NXDomain);

    // A second network: the union answers both.
    dns.set_network(
        "net2",
        NetworkRecords {
            services: vec![ServiceRecord {
                name: "cache".into(),
                aliases: vec![],
                mode: Resolution::Dnsrr,
                tasks: vec![task("cache.1.q", "10.0.2.3")],
            }],
        },
    )
    .unwrap();
    assert_eq!(
        addrs(&udp(at, "cache.", RecordType::A).await),
        vec![ip("10.0.2.3")]
    );
    assert_eq!(
        addrs(&udp(at, "web.", RecordType::A).await),
        vec![ip("10.0.1.2")]
    );

    // A bad name is refused and changes nothing.
    let mut bad = net1();
    bad.services[0].name = "no..way".into();
    assert!(matches!(
        dns.set_network("net1", bad),
        Err(DnsError::InvalidName { .. })
    ));
    assert_eq!(
        addrs(&udp(at, "tasks.web.", RecordType::A).await),
        vec![ip("10.0.1.9")]
    );

    dns.remove_network("net1");
    let removed = udp(at, "web.", RecordType::A).await;
    assert_eq!(removed.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(
        addrs(&udp(at, "cache.", RecordType::A).await),
        vec![ip("10.0.2.3")]
    );
    dns.shutdown().await;
    upstream.shutdown_gracefully().await.unwrap();
}

#[tokio::test]
async fn other_names_are_forwarded_upstream() {
    let (mut upstream, upstream_addr, upstream_queries) = start_upstream().await;
    // The first upstream never answers, the second is down, the third answers.
    let silent = UdpSocket::bind("127.0.0.4:0").await.unwrap();
    let dns = DnsServer::start(config(
        "127.0.0.17:0",
        vec![
            silent.local_addr().unwrap(),
            dead_addr().await,
            upstream_addr,
        ],
    ))
    .await
    .unwrap();
    dns.set_network("net1", net1()).unwrap();
    let at = dns.local_addr();

    let answer = udp(at, "www.upstream.test.", RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert!(!answer.metadata.authoritative);
    assert_eq!(addrs(&answer), vec![ip("192.0.2.7")]);
    let over_tcp = tcp(at, "Mail.Upstream.Test.", RecordType::A).await;
    assert_eq!(addrs(&over_tcp), vec![ip("192.0.2.7")]);
    let missing = udp(at, "nowhere.example.", RecordType::A).await;
    assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
    // The upstream truncates 40 records over UDP (512 bytes without EDNS): the resolver
    // asks again over TCP and the client, which accepts 1232 bytes, gets them all.
    let big = udp_with(at, "big.upstream.test.", RecordType::A, true).await;
    assert!(!big.metadata.truncation);
    assert_eq!(addrs(&big).len(), 40);
    // ...while a client without EDNS gets a truncated answer and can retry over TCP.
    let small = udp(at, "big.upstream.test.", RecordType::A).await;
    assert!(small.metadata.truncation);
    assert_eq!(
        addrs(&tcp(at, "big.upstream.test.", RecordType::A).await).len(),
        40
    );
    // Local names never reach upstream.
    let seen = upstream_queries.load(Ordering::SeqCst);
    udp(at, "web.", RecordType::A).await;
    assert_eq!(upstream_queries.load(Ordering::SeqCst), seen);
    dns.shutdown().await;
    upstream.shutdown_gracefully().await.unwrap();
}

#[tokio::test]
async fn no_upstream_answering_means_servfail() {
    let dns = DnsServer::start(config("127.0.0.18:0", vec![dead_addr().await]))
        .await
        .unwrap();
    let at = dns.local_addr();
    for answer in [
        udp(at, "www.upstream.test.", RecordType::A).await,
        tcp(at, "www.upstream.test.", RecordType::A).await,
    ] {
        assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
        assert!(answer.answers.is_empty());
    }
    // An upstream that stays silent: SERVFAIL once the forward timeout passes.
    let silent = UdpSocket::bind("127.0.0.4:0").await.unwrap();
    let dns2 = DnsServer::start(config("127.0.0.18:0", vec![silent.local_addr().unwrap()]))
        .await
        .unwrap();
    let answer = udp(dns2.local_addr(), "www.upstream.test.", RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
    dns.shutdown().await;
    dns2.shutdown().await;
}

#[tokio::test]
async fn malformed_packets_are_ignored_and_the_server_keeps_answering() {
    // The test runtime runs the server's tasks on this thread: count the panics here (a
    // panicking task would not stop the server, so answering alone would not show it).
    static PANICS: AtomicUsize = AtomicUsize::new(0);
    let me = std::thread::current().id();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().id() == me {
            PANICS.fetch_add(1, Ordering::SeqCst);
        }
        previous(info);
    }));
    let dns = DnsServer::start(config("127.0.0.19:0", vec![dead_addr().await]))
        .await
        .unwrap();
    dns.set_network("net1", net1()).unwrap();
    let at = dns.local_addr();

    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(at).await.unwrap();
    let (_, valid) = query_bytes("web.", RecordType::A, false);
    let mut garbage: Vec<Vec<u8>> = vec![
        vec![],
        vec![0xff; 5],
        (0..=255u8).collect(),
        valid[..valid.len() - 3].to_vec(), // a question cut short
    ];
    // A header announcing 5 questions, followed by nothing.
    let mut five = valid[..12].to_vec();
    five[5] = 5;
    garbage.push(five);
    // Zero questions.
    let mut none = valid[..12].to_vec();
    none[5] = 0;
    garbage.push(none);
    // A response, not a query.
    let mut response = valid.clone();
    response[2] |= 0x80;
    garbage.push(response);
    // And 300 copies of valid queries (PTR, EDNS) with random bytes changed, from a fixed
    // seed: most parse as something odd; none may bring the server down.
    let mut rng = StdRng::seed_from_u64(9);
    let (_, ptr) = query_bytes("3.1.0.10.in-addr.arpa.", RecordType::PTR, true);
    for i in 0..300 {
        let mut packet = if i % 2 == 0 {
            valid.clone()
        } else {
            ptr.clone()
        };
        for _ in 0..rng.random_range(1..4) {
            let at = rng.random_range(0..packet.len());
            packet[at] = rng.random();
        }
        if rng.random_bool(0.2) {
            packet.truncate(rng.random_range(0..packet.len()));
        }
        garbage.push(packet);
    }
    for packet in &garbage {
        socket.send(packet).await.unwrap();
    }
    // Over TCP: a frame of garbage, then a frame longer than what follows, then close.
    let mut stream = TcpStream::connect(at).await.unwrap();
    stream.write_all(&[0, 4, 1, 2, 3, 4]).await.unwrap();
    stream.write_all(&[0xff, 0xff, 1]).await.unwrap();
    drop(stream);
    for packet in garbage.iter().skip(7).take(20) {
        let mut stream = TcpStream::connect(at).await.unwrap();
        stream
            .write_all(&(packet.len() as u16).to_be_bytes())
            .await
            .unwrap();
        stream.write_all(packet).await.unwrap();
    }

    // A valid query after all of that, on the same socket: once its answer is back, every
    // datagram before it has been read and its handler started.
    let (id, last) = query_bytes("web.", RecordType::A, false);
    socket.send(&last).await.unwrap();
    let mut buf = vec![0u8; 65535];
    loop {
        let len = tokio::time::timeout(WAIT, socket.recv(&mut buf))
            .await
            .expect("no answer to the valid query after the garbage")
            .unwrap();
        if Message::from_vec(&buf[..len]).is_ok_and(|m| m.metadata.id == id) {
            break;
        }
    }
    // Still answering, on both transports.
    assert_eq!(
        addrs(&udp(at, "web.", RecordType::A).await),
        vec![ip("10.0.1.2")]
    );
    assert_eq!(
        addrs(&tcp(at, "web.", RecordType::A).await),
        vec![ip("10.0.1.2")]
    );
    dns.shutdown().await;
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "a handler panicked");
}

#[tokio::test]
async fn upstream_from_resolv_conf_skips_ourselves() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resolv.conf");
    std::fs::write(
        &path,
        "search swarm\nnameserver 192.0.2.1\nnameserver 127.0.0.1\nnameserver ::1\n",
    )
    .unwrap();
    let mut cfg = config("0.0.0.0:0", vec![]);
    cfg.resolv_conf = path;
    let dns = DnsServer::start(cfg).await.unwrap();
    // Listening on a random port: none of the port-53 servers is us.
    assert_eq!(
        dns.upstream(),
        &[
            "192.0.2.1:53".parse().unwrap(),
            "127.0.0.1:53".parse().unwrap(),
            "[::1]:53".parse().unwrap()
        ]
    );
    dns.shutdown().await;

    // An upstream that is the server itself (a sandbox's resolv.conf pointing at us) is
    // skipped, or every forwarded query would loop.
    let dns = DnsServer::start(config("127.0.0.20:0", vec![]))
        .await
        .unwrap();
    let me = dns.local_addr();
    dns.shutdown().await;
    let cfg = config(&me.to_string(), vec![me, "192.0.2.1:53".parse().unwrap()]);
    let dns = DnsServer::start(cfg).await.unwrap();
    assert_eq!(
        dns.upstream(),
        &["192.0.2.1:53".parse::<SocketAddr>().unwrap()]
    );
    dns.shutdown().await;
}

#[tokio::test]
async fn binding_a_used_address_is_a_clear_error() {
    let dns = DnsServer::start(config("127.0.0.21:0", vec![]))
        .await
        .unwrap();
    let err = DnsServer::start(config(&dns.local_addr().to_string(), vec![]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DnsError::Bind { addr, .. } if addr == dns.local_addr()),
        "{err}"
    );
    assert!(err.to_string().contains("cannot listen"), "{err}");
    dns.shutdown().await;
    // Shutting down twice is harmless.
    dns.shutdown().await;
}

#[tokio::test]
async fn forwarding_past_the_limit_fails_at_once() {
    // The upstream is this test's own socket: it answers when the test says so.
    let upstream = UdpSocket::bind("127.0.0.5:0").await.unwrap();
    let mut cfg = config("127.0.0.22:0", vec![upstream.local_addr().unwrap()]);
    cfg.forward_timeout = WAIT;
    cfg.max_concurrent_forwards = 1;
    let dns = DnsServer::start(cfg).await.unwrap();
    let at = dns.local_addr();

    let first = tokio::spawn(async move { udp(at, "one.upstream.test.", RecordType::A).await });
    // Once upstream holds the first query, the one slot is taken...
    let mut buf = vec![0u8; 65535];
    let (len, from) = tokio::time::timeout(WAIT, upstream.recv_from(&mut buf))
        .await
        .expect("the first query never reached upstream")
        .unwrap();
    let forwarded = Message::from_vec(&buf[..len]).unwrap();
    // ...so a second outside name fails at once, while a local name is still answered.
    let second = udp(at, "two.upstream.test.", RecordType::A).await;
    assert_eq!(second.metadata.response_code, ResponseCode::ServFail);
    dns.set_network("net1", net1()).unwrap();
    assert_eq!(
        addrs(&udp(at, "web.", RecordType::A).await),
        vec![ip("10.0.1.2")]
    );

    // Upstream answers the first one, which gets through.
    let mut reply = Message::new(forwarded.metadata.id, MessageType::Response, OpCode::Query);
    reply.metadata.recursion_available = true;
    reply.add_query(forwarded.queries[0].clone());
    reply.add_answer(Record::from_rdata(
        forwarded.queries[0].name().clone(),
        60,
        RData::A(A::new(192, 0, 2, 8)),
    ));
    upstream
        .send_to(&reply.to_vec().unwrap(), from)
        .await
        .unwrap();
    let first = first.await.unwrap();
    assert_eq!(first.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addrs(&first), vec![ip("192.0.2.8")]);
    // The slot is free again.
    let third = tokio::spawn(async move { udp(at, "three.upstream.test.", RecordType::A).await });
    let (len, _) = tokio::time::timeout(WAIT, upstream.recv_from(&mut buf))
        .await
        .expect("the third query never reached upstream")
        .unwrap();
    assert_eq!(
        Message::from_vec(&buf[..len]).unwrap().queries[0]
            .name()
            .to_ascii(),
        "three.upstream.test."
    );
    // Its client is not waited for: upstream never answers it.
    third.abort();
    dns.shutdown().await;
}

#[tokio::test]
async fn serves_sockets_bound_by_the_caller() {
    // As a caller would after binding inside a sandbox's network namespace.
    let udp_socket = std::net::UdpSocket::bind("127.0.0.23:0").unwrap();
    let addr = udp_socket.local_addr().unwrap();
    let Ok(listener) = std::net::TcpListener::bind(addr) else {
        println!("skipped: TCP port {addr} already taken by another program");
        return;
    };
    let dns =
        DnsServer::start_with_sockets(udp_socket, listener, config("127.0.0.1:1", vec![])).unwrap();
    assert_eq!(dns.local_addr(), addr);
    dns.set_network("net1", net1()).unwrap();
    assert_eq!(
        addrs(&udp(addr, "web.", RecordType::A).await),
        vec![ip("10.0.1.2")]
    );
    assert_eq!(
        addrs(&tcp(addr, "web.", RecordType::A).await),
        vec![ip("10.0.1.2")]
    );
    dns.shutdown().await;

    // Sockets on two different addresses are refused.
    let udp_socket = std::net::UdpSocket::bind("127.0.0.23:0").unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.24:0").unwrap();
    let err = DnsServer::start_with_sockets(udp_socket, listener, config("127.0.0.1:1", vec![]))
        .unwrap_err();
    assert!(matches!(err, DnsError::Sockets { .. }), "{err}");
}
