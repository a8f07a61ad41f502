//! The Engine API of swarmd under the docker CLI's heaviest reads: median
//! latency of `GET /services`, `GET /tasks?filters=...` over a service of 10k
//! tasks, and `POST /services/create`, over real HTTP on loopback against a
//! single-manager swarm.
//!
//! `cargo bench --bench engine_api`; with `-- --test` a small run (200 tasks).
//! The 10k tasks stay PENDING (their constraint matches no node), so the
//! figures measure the API and the store, not a runtime.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use swarm::api::{Engine, EngineConfig};
use swarm::runtime::ProcessRuntime;

fn request(addr: &str, method: &str, path: &str, body: &str) -> (u16, usize) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).ok();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read");
    let head = String::from_utf8_lossy(&out[..out.len().min(32)]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, out.len())
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn measure(
    name: &str,
    iters: usize,
    mut f: impl FnMut(usize) -> (u16, usize),
) -> (Duration, Duration) {
    let mut times = Vec::with_capacity(iters);
    let mut bytes = 0;
    for i in 0..iters {
        let t = Instant::now();
        let (status, n) = f(i);
        times.push(t.elapsed());
        assert!((200..300).contains(&status), "{name}: HTTP {status}");
        bytes = n;
    }
    let (p50, p90) = (percentile(&mut times, 0.5), percentile(&mut times, 0.9));
    println!("{name:<58} median {p50:>10.2?}  p90 {p90:>10.2?}  ({bytes} bytes)");
    (p50, p90)
}

fn main() {
    let test = std::env::args().any(|a| a == "--test");
    let (tasks, iters) = if test { (200, 3) } else { (10_000, 50) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = rt.block_on(async {
        Engine::start(EngineConfig {
            data_dir: dir.path().to_path_buf(),
            listen_addr: Some("127.0.0.1:0".into()),
            advertise_addr: None,
            hostname: "bench".into(),
            runtime: Arc::new(ProcessRuntime::new(dir.path().join("runtime")).expect("runtime")),
            tick_interval: Duration::from_millis(100),
            routing_mesh: None,
            network_key_rotation: swarm::DEFAULT_KEY_ROTATION,
        })
        .await
        .expect("engine")
    });
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("listen");
    let addr = listener.local_addr().expect("addr").to_string();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(engine.clone().serve(listener, async {
        let _ = stop_rx.await;
    }));

    let (s, _) = request(
        &addr,
        "POST",
        "/v1.47/swarm/init",
        r#"{"ListenAddr":"127.0.0.1:0"}"#,
    );
    assert_eq!(s, 200, "swarm init");
    let big = format!(
        r#"{{"Name":"big","TaskTemplate":{{"ContainerSpec":{{"Image":"busybox","Args":["sleep","600"]}},"Placement":{{"Constraints":["node.labels.bench==none"]}}}},"Mode":{{"Replicated":{{"Replicas":{tasks}}}}}}}"#
    );
    let (s, _) = request(&addr, "POST", "/v1.47/services/create", &big);
    assert_eq!(s, 201, "service create");
    let t = Instant::now();
    let filter = "/v1.47/tasks?filters=%7B%22service%22%3A%7B%22big%22%3Atrue%7D%7D";
    loop {
        let (_, n) = request(&addr, "GET", filter, "");
        // Each task is well over 500 bytes of JSON.
        if n > tasks * 500 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(120), "tasks created");
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("{tasks} tasks of one service (pending), single manager, API over loopback HTTP");
    measure("GET /services?status=true", iters, |_| {
        request(&addr, "GET", "/v1.47/services?status=true", "")
    });
    measure(
        &format!("GET /tasks?filters={{\"service\":{{\"big\":true}}}} ({tasks})"),
        iters,
        |_| request(&addr, "GET", filter, ""),
    );
    measure(
        "GET /tasks?filters={\"desired-state\":{\"running\":true}}",
        iters,
        |_| {
            request(
                &addr,
                "GET",
                "/v1.47/tasks?filters=%7B%22desired-state%22%3A%7B%22running%22%3Atrue%7D%7D",
                "",
            )
        },
    );
    measure("POST /services/create (0 replicas)", iters, |i| {
        let body = format!(
            r#"{{"Name":"s{i}","TaskTemplate":{{"ContainerSpec":{{"Image":"busybox"}}}},"Mode":{{"Replicated":{{"Replicas":0}}}}}}"#
        );
        request(&addr, "POST", "/v1.47/services/create", &body)
    });
    let _ = stop_tx.send(());
    rt.block_on(async {
        let _ = server.await;
        engine.shutdown().await;
    });
}
