//! One raft member over loopback TCP, for multi-process tests and benches.
//!
//! ```text
//! raft-member --id 1 --dir /tmp/m1 --listen 127.0.0.1:7001 \
//!     --peers 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003 \
//!     [--tick-ms 100] [--writes N --concurrency C --prefix p1]
//! ```
//!
//! Prints `LEADER <id> <term>` on every leadership change and, for each write
//! acknowledged by raft (applied locally), `ACK <name>`; `DONE` after N writes.
//! Runs until killed.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use swarm_core::Store;
use swarm_core::types::{Annotations, RaftConfig, Service, ServiceSpec};
use swarm_raft::{Config, RaftNode, Start, TcpTransport};

struct Args {
    id: u64,
    dir: String,
    listen: String,
    peers: BTreeMap<u64, String>,
    tick_ms: u64,
    writes: usize,
    concurrency: usize,
    prefix: String,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        id: 0,
        dir: String::new(),
        listen: String::new(),
        peers: BTreeMap::new(),
        tick_ms: 100,
        writes: 0,
        concurrency: 1,
        prefix: "w".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = |v: &str| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--id" => a.id = num(&v)?,
            "--dir" => a.dir = v,
            "--listen" => a.listen = v,
            "--tick-ms" => a.tick_ms = num(&v)?,
            "--writes" => a.writes = num(&v)? as usize,
            "--concurrency" => a.concurrency = num(&v)?.max(1) as usize,
            "--prefix" => a.prefix = v,
            "--peers" => {
                for p in v.split(',') {
                    let (id, addr) = p.split_once('=').ok_or(format!("bad peer {p}"))?;
                    a.peers.insert(num(id)?, addr.to_string());
                }
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if a.id == 0 || a.dir.is_empty() || a.listen.is_empty() {
        return Err("--id, --dir and --listen are required".into());
    }
    Ok(a)
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[tokio::main]
async fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("raft-member: {e}");
            std::process::exit(2);
        }
    };
    let mut cfg = Config::new(args.id, &args.dir, &RaftConfig::default());
    cfg.tick_interval = Duration::from_millis(args.tick_ms);
    let peers: HashMap<u64, String> = args.peers.clone().into_iter().collect();
    let (transport, inbox) = match TcpTransport::bind(args.id, &args.listen, &peers).await {
        Ok(t) => t,
        Err(e) => {
            eprintln!("raft-member: cannot listen on {}: {e}", args.listen);
            std::process::exit(1);
        }
    };
    let store = Store::new();
    let start = Start::NewCluster(args.peers.clone());
    let node = match RaftNode::start(cfg, store.clone(), transport, inbox, start) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("raft-member: {e}");
            std::process::exit(1);
        }
    };
    let mut leader = node.watch_leadership();
    tokio::spawn(async move {
        loop {
            let l = *leader.borrow_and_update();
            if let Some(id) = l.leader {
                say(&format!("LEADER {id} {}", l.term));
            }
            if leader.changed().await.is_err() {
                return;
            }
        }
    });
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut writers = Vec::new();
    for _ in 0..args.concurrency {
        let (store, next, prefix, total) = (
            store.clone(),
            next.clone(),
            args.prefix.clone(),
            args.writes,
        );
        writers.push(tokio::spawn(async move {
            loop {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if k >= total {
                    return;
                }
                let name = format!("{prefix}-{k}");
                let svc = Service {
                    spec: ServiceSpec {
                        annotations: Annotations::named(&name),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                // An unacknowledged write is simply not reported; move on.
                if store.update(|tx| tx.create(svc)).await.is_ok() {
                    say(&format!("ACK {name}"));
                }
            }
        }));
    }
    for w in writers {
        let _ = w.await;
    }
    if args.writes > 0 {
        say("DONE");
    }
    std::future::pending::<()>().await;
}
