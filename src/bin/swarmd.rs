//! swarmd: a swarm node that the stock docker CLI drives.
//!
//! ```text
//! swarmd --data-dir /var/lib/swarmd --api-addr tcp://127.0.0.2:2375 \
//!        --advertise-addr 127.0.0.2
//! DOCKER_HOST=tcp://127.0.0.2:2375 docker swarm init --advertise-addr 127.0.0.2
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use swarm::api::{Engine, EngineConfig, MeshSettings, TlsFiles, TlsListener};
use swarm::net::mesh::KernelPath;
use swarm::runtime::{DockerRuntime, ProcessRuntime, PullPolicy, Runtime};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum RuntimeKind {
    /// Containers through the local Docker Engine.
    Docker,
    /// Task commands as local processes.
    Process,
}

/// A Swarm node serving the swarm part of the Docker Engine API.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Where the node keeps its identity, raft log and task state.
    #[arg(long, default_value = "/var/lib/swarmd")]
    data_dir: PathBuf,
    /// Where the Engine API listens: tcp://HOST:PORT, HOST:PORT, or a unix
    /// socket path (unix:///path or /path).
    #[arg(long, default_value = "unix:///var/run/swarmd.sock")]
    api_addr: String,
    /// The runtime tasks run with (default: docker when an engine answers,
    /// else process).
    #[arg(long, value_enum)]
    runtime: Option<RuntimeKind>,
    /// The cluster port to listen on when `swarm init`/`join` keep docker's
    /// default (0.0.0.0:2377).
    #[arg(long)]
    listen_addr: Option<String>,
    /// The address other nodes reach this one on, when the request does not say.
    #[arg(long)]
    advertise_addr: Option<String>,
    /// The address published ports bind on (the routing mesh; default: every
    /// address, as docker).
    #[arg(long, default_value = "0.0.0.0")]
    ingress_addr: std::net::IpAddr,
    /// The port other nodes' routing meshes hand connections over on (TCP and
    /// UDP, on the advertised address; docker swarm needs 7946 open anyway).
    #[arg(long, default_value_t = 7946)]
    mesh_port: u16,
    /// Answers no published port on this node.
    #[arg(long)]
    no_routing_mesh: bool,
    /// Whether published ports may use the kernel data path (nftables NAT over
    /// the node's own tasks; needs CAP_NET_ADMIN and `nft`): `auto` (when it
    /// can, else user space), `off` (always user space) or `require`.
    #[arg(long, default_value = "auto", value_parser = ["auto", "off", "require"])]
    mesh_kernel: String,
    /// How often this node, while it leads, rotates the keys of encrypted
    /// overlay networks, in seconds (Docker: every 12 hours).
    #[arg(long, default_value_t = 12 * 3600, value_parser = clap::value_parser!(u64).range(1..))]
    network_key_rotation: u64,
    /// The host name the node reports.
    #[arg(long)]
    hostname: Option<String>,
    /// Serves the TCP Engine API over TLS (the server's certificate and key:
    /// --tlscert, --tlskey). Implied by --tlsverify.
    #[arg(long)]
    tls: bool,
    /// Serves the TCP Engine API over TLS and requires every client to present
    /// a certificate signed by --tlscacert, as dockerd.
    #[arg(long)]
    tlsverify: bool,
    /// The CA that signs clients' certificates (default: ca.pem in
    /// $DOCKER_CERT_PATH, else ~/.docker).
    #[arg(long)]
    tlscacert: Option<PathBuf>,
    /// The server's TLS certificate (default: cert.pem there).
    #[arg(long)]
    tlscert: Option<PathBuf>,
    /// The server's TLS key (default: key.pem there).
    #[arg(long)]
    tlskey: Option<PathBuf>,
    /// Log filter (tracing's env-filter syntax), e.g. info or swarm=debug.
    #[arg(long, default_value = "info")]
    log_level: String,
}

/// The TLS files of the Engine API, when --tls or --tlsverify asks for TLS.
fn tls_files(args: &Args) -> Option<TlsFiles> {
    if !args.tls && !args.tlsverify {
        return None;
    }
    let dir = std::env::var_os("DOCKER_CERT_PATH")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))
        .unwrap_or_default();
    let or_default = |given: &Option<PathBuf>, name: &str| given.clone().unwrap_or(dir.join(name));
    Some(TlsFiles {
        cert: or_default(&args.tlscert, "cert.pem"),
        key: or_default(&args.tlskey, "key.pem"),
        client_ca: args
            .tlsverify
            .then(|| or_default(&args.tlscacert, "ca.pem")),
    })
}

async fn runtime(args: &Args) -> anyhow::Result<Arc<dyn Runtime>> {
    let process = || -> anyhow::Result<Arc<dyn Runtime>> {
        Ok(Arc::new(
            ProcessRuntime::new(args.data_dir.join("runtime"))
                .context("starting the process runtime")?,
        ))
    };
    match args.runtime {
        Some(RuntimeKind::Process) => process(),
        Some(RuntimeKind::Docker) => Ok(Arc::new(
            DockerRuntime::connect()
                .await
                .context("no Docker Engine answers")?
                .with_pull_policy(PullPolicy::Missing),
        )),
        None => match DockerRuntime::connect().await {
            Ok(d) => Ok(Arc::new(d.with_pull_policy(PullPolicy::Missing))),
            Err(e) => {
                tracing::info!(error = %e, "no Docker Engine: tasks run as processes");
                process()
            }
        },
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&args.log_level)
                .with_context(|| format!("invalid --log-level {:?}", args.log_level))?,
        )
        .with_writer(std::io::stderr)
        .init();
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let cfg = EngineConfig {
        data_dir: args.data_dir.clone(),
        listen_addr: args.listen_addr.clone(),
        advertise_addr: args.advertise_addr.clone(),
        hostname: args.hostname.clone().unwrap_or_else(swarm::hostname),
        runtime: runtime(&args).await?,
        tick_interval: Duration::from_millis(100),
        network_key_rotation: Duration::from_secs(args.network_key_rotation),
        routing_mesh: (!args.no_routing_mesh).then_some(MeshSettings {
            ingress_ip: args.ingress_addr,
            peer_port: args.mesh_port,
            kernel: match args.mesh_kernel.as_str() {
                "off" => KernelPath::Off,
                "require" => KernelPath::Require,
                _ => KernelPath::Auto,
            },
        }),
    };
    let engine = Engine::start(cfg).await.context("starting the node")?;
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    let api = args.api_addr.as_str();
    let unix_path = api
        .strip_prefix("unix://")
        .or_else(|| api.starts_with('/').then_some(api));
    if let Some(path) = unix_path {
        let _ = std::fs::remove_file(path);
        let listener =
            tokio::net::UnixListener::bind(path).with_context(|| format!("listening on {path}"))?;
        tracing::info!(socket = path, "Engine API listening");
        engine.clone().serve(listener, shutdown).await?;
    } else {
        let addr = api.strip_prefix("tcp://").unwrap_or(api);
        if addr.is_empty() {
            bail!("--api-addr is empty");
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        match tls_files(&args) {
            Some(files) => {
                let config = swarm::api::tls_server_config(&files)?;
                let verify = if files.client_ca.is_some() {
                    "client certificates required"
                } else {
                    "no client certificates"
                };
                tracing::info!(addr, verify, "Engine API listening over TLS");
                let listener = TlsListener::new(listener, config)?;
                engine.clone().serve(listener, shutdown).await?;
            }
            None => {
                if !listener.local_addr()?.ip().is_loopback() {
                    tracing::warn!(
                        addr,
                        "Engine API on plain TCP: anyone who reaches this address controls the node and reads its join tokens; use --tlsverify"
                    );
                }
                tracing::info!(addr, "Engine API listening");
                engine.clone().serve(listener, shutdown).await?;
            }
        }
    }
    engine.shutdown().await;
    Ok(())
}
