//! The embedded DNS resolver of a network sandbox: Docker's `127.0.0.11`.
//!
//! One [`DnsServer`] runs per network sandbox (a task's network namespace, or the host
//! when tasks share it), listening on UDP and TCP at the address the caller gives. It
//! answers the names of the swarm's services and tasks and forwards every other name to
//! the host's resolvers.
//!
//! # Which network a query sees
//!
//! A server serves the **union** of the networks its sandbox is attached to, as Docker's
//! resolver does: the caller calls [`DnsServer::set_network`] once for each of those
//! networks (and again whenever their records change), and [`DnsServer::remove_network`]
//! when the sandbox leaves one. A query is not matched to one network: a name defined on
//! several networks answers the addresses from all of them, deduplicated, in network-id
//! order. Each update rebuilds the lookup index and swaps it in whole, so the very next
//! query sees it and no query sees half an update.
//!
//! # Answers
//!
//! | question | answer |
//! |---|---|
//! | `A`/`AAAA` `<service>` or an alias, endpoint mode vip | the service's VIP |
//! | `A`/`AAAA` `<service>` or an alias, endpoint mode dnsrr | every task address, rotated on each answer |
//! | `A`/`AAAA` `tasks.<service>` (or `tasks.<alias>`) | every task address, rotated on each answer |
//! | `A`/`AAAA` a task name (`web.1.<task id>`) | that task's address |
//! | any other type for one of those names, or the other address family | NOERROR with no records |
//! | `PTR` for a VIP or a task address | the service name or the task name |
//! | anything else | forwarded upstream; SERVFAIL if no upstream answers |
//!
//! Names match whatever their case, with or without the trailing dot. Local answers carry
//! [`DnsConfig::ttl`] and the authoritative flag. Forwarded queries go to the upstream
//! resolvers one after the other (UDP, then TCP if the answer was truncated, or TCP when
//! the client used TCP), each for at most [`DnsConfig::forward_timeout`]; SERVFAIL and
//! REFUSED from one move on to the next. At most [`DnsConfig::max_concurrent_forwards`]
//! queries are forwarded at once; past that, SERVFAIL at once.
//!
//! Malformed packets never panic: shorter than a DNS header they are dropped; otherwise
//! hickory answers FORMERR (as it does for a message with no or several questions), and
//! an opcode other than QUERY gets NOTIMP.
//!
//! # Logging
//!
//! The server logs through `tracing`: this module at `debug` per query, hickory's server
//! (`hickory_server`) at `info` per query; a daemon usually filters the latter to `warn`.
//!
//! ```no_run
//! use swarm_net::dns::{DnsConfig, DnsServer, NetworkRecords, Resolution, ServiceRecord, TaskRecord};
//!
//! # async fn demo() -> Result<(), swarm_net::dns::DnsError> {
//! let server = DnsServer::start(DnsConfig::new("127.0.0.11:53".parse().unwrap())).await?;
//! server.set_network(
//!     "net1",
//!     NetworkRecords {
//!         services: vec![ServiceRecord {
//!             name: "web".into(),
//!             aliases: vec![],
//!             mode: Resolution::Vip("10.0.1.2".parse().unwrap()),
//!             tasks: vec![TaskRecord { name: "web.1.x1".into(), addr: "10.0.1.3".parse().unwrap() }],
//!         }],
//!     },
//! )?;
//! // `web` now resolves to 10.0.1.2, `tasks.web` and `web.1.x1` to 10.0.1.3.
//! server.shutdown().await;
//! # Ok(()) }
//! ```

mod forward;
mod handler;
mod records;

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use arc_swap::ArcSwap;
use hickory_server::Server;
use parking_lot::Mutex;
use tokio::net::{TcpListener, UdpSocket};
use tracing::{debug, info, warn};

pub use records::{NetworkRecords, Resolution, ServiceRecord, TaskRecord};

use forward::{Forwarder, parse_resolv_conf, points_at_us};
use handler::Handler;
use records::{Index, validate};

/// The TTL of local answers by default, in seconds: Docker's resolver uses 600 too.
pub const DEFAULT_TTL: u32 = 600;

/// How long one upstream gets to answer a forwarded query by default.
pub const DEFAULT_FORWARD_TIMEOUT: Duration = Duration::from_secs(2);

/// How many queries are forwarded upstream at once by default (Docker's resolver has the
/// same limit).
pub const DEFAULT_MAX_CONCURRENT_FORWARDS: usize = 100;

/// How long a TCP client may stay idle between two queries before the server closes it.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Answers queued per TCP connection.
const TCP_RESPONSE_BUFFER: usize = 32;

/// How many times [`DnsServer::start`] looks for a port free for both UDP and TCP when
/// the configured port is 0.
const PORT_ATTEMPTS: usize = 16;

/// Errors of the DNS resolver.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    /// The listen address could not be bound (in use, not local, no permission for a port
    /// below 1024, ...). Nothing was started.
    #[error("DNS server cannot listen on {addr} ({protocol}): {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// `udp` or `tcp`.
        protocol: &'static str,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// The sockets given to [`DnsServer::start_with_sockets`] cannot be served: not bound
    /// to the same address, or not usable by tokio. Nothing was started.
    #[error("DNS server cannot serve the given sockets: {reason}")]
    Sockets {
        /// What is wrong with them.
        reason: String,
    },
    /// A name in the records given to [`DnsServer::set_network`] is not a valid DNS name.
    /// The network's records were left as they were.
    #[error("network {network}: invalid DNS name {name:?}: {reason}")]
    InvalidName {
        /// The network the records were for.
        network: String,
        /// The name at fault.
        name: String,
        /// Why it is refused.
        reason: String,
    },
}

/// How a [`DnsServer`] listens and forwards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsConfig {
    /// Where to listen, on UDP and TCP alike. Port 0 picks a port free for both; see
    /// [`DnsServer::local_addr`].
    pub listen: SocketAddr,
    /// The resolvers that answer the names the swarm does not own, tried in order. Empty:
    /// the `nameserver` lines of [`DnsConfig::resolv_conf`]. Either way an upstream that is
    /// this server itself (same address, or loopback at our port when listening on every
    /// address) is skipped, so a sandbox whose resolv.conf points at us does not loop.
    pub upstream: Vec<SocketAddr>,
    /// The resolv.conf read when [`DnsConfig::upstream`] is empty, once, at start
    /// (`/etc/resolv.conf` by default). A missing file means no upstream: other names get
    /// SERVFAIL.
    pub resolv_conf: PathBuf,
    /// The TTL of local answers, in seconds ([`DEFAULT_TTL`]).
    pub ttl: u32,
    /// How long one upstream gets to answer before the next is tried
    /// ([`DEFAULT_FORWARD_TIMEOUT`]).
    pub forward_timeout: Duration,
    /// How many queries may be forwarded upstream at once; one more gets SERVFAIL at once
    /// ([`DEFAULT_MAX_CONCURRENT_FORWARDS`]; 0 forwards nothing). Local answers are not
    /// limited.
    pub max_concurrent_forwards: usize,
}

impl DnsConfig {
    /// Listens on `listen`, forwards to the nameservers of `/etc/resolv.conf`, with the
    /// default TTL and forward timeout.
    pub fn new(listen: SocketAddr) -> Self {
        DnsConfig {
            listen,
            upstream: Vec::new(),
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            ttl: DEFAULT_TTL,
            forward_timeout: DEFAULT_FORWARD_TIMEOUT,
            max_concurrent_forwards: DEFAULT_MAX_CONCURRENT_FORWARDS,
        }
    }
}

/// A running embedded DNS server; see the [module docs](self) for what it answers.
///
/// Dropping it stops it as [`DnsServer::shutdown`] does, without waiting.
pub struct DnsServer {
    local_addr: SocketAddr,
    upstream: Vec<SocketAddr>,
    networks: Mutex<BTreeMap<String, NetworkRecords>>,
    index: Arc<ArcSwap<Index>>,
    server: tokio::sync::Mutex<Option<Server<Handler>>>,
}

impl std::fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsServer")
            .field("local_addr", &self.local_addr)
            .field("upstream", &self.upstream)
            .field("networks", &self.networks.lock().keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl DnsServer {
    /// Binds UDP and TCP on `config.listen` and starts answering, with no network yet
    /// (every name is forwarded until [`DnsServer::set_network`]).
    ///
    /// Must run inside a tokio runtime, which then runs the server. The sockets are
    /// created in the network namespace of the calling thread; to serve inside a sandbox's
    /// namespace, create them there and use [`DnsServer::start_with_sockets`]. Fails with
    /// [`DnsError::Bind`] when either socket cannot be bound; nothing is left running then.
    pub async fn start(config: DnsConfig) -> Result<DnsServer, DnsError> {
        let (udp, tcp) = bind(config.listen).await?;
        Self::serve(udp, tcp, config)
    }

    /// Starts answering on sockets the caller bound, both to the same address;
    /// `config.listen` is ignored ([`DnsServer::local_addr`] is the sockets' address).
    ///
    /// This is how a server answers inside a network sandbox the way Docker's does: bind
    /// `127.0.0.11` (UDP and TCP) on a thread that entered the sandbox's namespace, hand
    /// the sockets here, and the server runs on this runtime; forwarded queries then leave
    /// from this process's own namespace, where the host's resolvers are reachable.
    ///
    /// Must run inside a tokio runtime. Fails with [`DnsError::Sockets`] when the sockets
    /// are not bound to one address or cannot be made non-blocking.
    pub fn start_with_sockets(
        udp: std::net::UdpSocket,
        tcp: std::net::TcpListener,
        config: DnsConfig,
    ) -> Result<DnsServer, DnsError> {
        let sockets_error = |reason: String| DnsError::Sockets { reason };
        let udp_addr = udp
            .local_addr()
            .map_err(|e| sockets_error(format!("UDP socket: {e}")))?;
        let tcp_addr = tcp
            .local_addr()
            .map_err(|e| sockets_error(format!("TCP listener: {e}")))?;
        if udp_addr != tcp_addr {
            return Err(sockets_error(format!(
                "UDP socket on {udp_addr} but TCP listener on {tcp_addr}"
            )));
        }
        let into_tokio = || -> io::Result<(UdpSocket, TcpListener)> {
            udp.set_nonblocking(true)?;
            tcp.set_nonblocking(true)?;
            Ok((UdpSocket::from_std(udp)?, TcpListener::from_std(tcp)?))
        };
        let (udp, tcp) = into_tokio().map_err(|e| sockets_error(e.to_string()))?;
        Self::serve(udp, tcp, config)
    }

    fn serve(udp: UdpSocket, tcp: TcpListener, config: DnsConfig) -> Result<DnsServer, DnsError> {
        let local_addr = udp.local_addr().map_err(|source| DnsError::Bind {
            addr: config.listen,
            protocol: "udp",
            source,
        })?;
        let configured = if config.upstream.is_empty() {
            match std::fs::read_to_string(&config.resolv_conf) {
                Ok(text) => parse_resolv_conf(&text),
                Err(error) => {
                    warn!(path = %config.resolv_conf.display(), %error, "no resolv.conf: names outside the swarm will get SERVFAIL");
                    Vec::new()
                }
            }
        } else {
            config.upstream.clone()
        };
        let upstream: Vec<SocketAddr> = configured
            .into_iter()
            .filter(|up| {
                let ours = points_at_us(*up, local_addr);
                if ours {
                    info!(%up, "upstream resolver is this server itself: skipped");
                }
                !ours
            })
            .collect();
        let index = Arc::new(ArcSwap::from_pointee(Index::default()));
        let handler = Handler {
            index: index.clone(),
            ttl: config.ttl,
            forwarder: Forwarder::new(
                upstream.clone(),
                config.forward_timeout,
                config.max_concurrent_forwards,
            ),
            rotation: AtomicUsize::new(0),
        };
        let mut server = Server::new(handler);
        server.register_socket(udp);
        server.register_listener(tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
        info!(%local_addr, ?upstream, "DNS server started");
        Ok(DnsServer {
            local_addr,
            upstream,
            networks: Mutex::new(BTreeMap::new()),
            index,
            server: tokio::sync::Mutex::new(Some(server)),
        })
    }

    /// The address the server answers on (UDP and TCP), with the port it got.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The upstream resolvers forwarded to, in order, after loop filtering.
    pub fn upstream(&self) -> &[SocketAddr] {
        &self.upstream
    }

    /// Replaces the records of one network: what tasks on that network can resolve. The
    /// next query sees them.
    ///
    /// Fails with [`DnsError::InvalidName`] when a name is not a valid DNS name; the
    /// network then keeps the records it had.
    pub fn set_network(&self, network_id: &str, records: NetworkRecords) -> Result<(), DnsError> {
        validate(network_id, &records)?;
        let mut networks = self.networks.lock();
        networks.insert(network_id.to_owned(), records);
        let index = Index::build(&networks);
        debug!(network_id, names = index.len(), "DNS records replaced");
        self.index.store(Arc::new(index));
        Ok(())
    }

    /// Forgets the records of one network (the sandbox left it). Unknown ids are ignored.
    pub fn remove_network(&self, network_id: &str) {
        let mut networks = self.networks.lock();
        if networks.remove(network_id).is_some() {
            self.index.store(Arc::new(Index::build(&networks)));
        }
    }

    /// Stops answering and waits until the sockets are closed. Queries in flight are
    /// dropped. Calling it again does nothing.
    pub async fn shutdown(&self) {
        let server = self.server.lock().await.take();
        if let Some(mut server) = server {
            if let Err(error) = server.shutdown_gracefully().await {
                warn!(local_addr = %self.local_addr, %error, "DNS server stopped with an error");
            }
            info!(local_addr = %self.local_addr, "DNS server stopped");
        }
    }
}

/// Binds UDP then TCP on the same address; with port 0, retries until one port is free
/// for both.
async fn bind(listen: SocketAddr) -> Result<(UdpSocket, TcpListener), DnsError> {
    let bind_error = |protocol, source| DnsError::Bind {
        addr: listen,
        protocol,
        source,
    };
    let attempts = if listen.port() == 0 { PORT_ATTEMPTS } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        let udp = UdpSocket::bind(listen)
            .await
            .map_err(|e| bind_error("udp", e))?;
        let addr = udp.local_addr().map_err(|e| bind_error("udp", e))?;
        match TcpListener::bind(addr).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(error) => last = Some(error),
        }
    }
    Err(bind_error(
        "tcp",
        last.unwrap_or_else(|| io::Error::other("no attempt made")),
    ))
}
