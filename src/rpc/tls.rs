//! TLS plumbing for tonic: a server that accepts TLS connections with our rustls
//! settings and tells each RPC who the peer is, a client connector that dials
//! with our settings, and the role checks RPC handlers use.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use swarm_core::types::NodeRole;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

use crate::pki::{PeerIdentity, peer_identity};

/// What the server knows about the peer of a connection; every request carries
/// it in its extensions.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    /// The remote address.
    pub addr: Option<SocketAddr>,
    /// Who the client certificate names; `None` for a node without one yet (it
    /// may only call the CA service).
    pub identity: Option<PeerIdentity>,
}

/// An accepted TLS connection, for tonic.
pub struct TlsConn {
    stream: tokio_rustls::server::TlsStream<TcpStream>,
    info: PeerInfo,
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts TCP connections on `listener` and completes TLS handshakes with
/// `config` off the accept loop; yields the connections for
/// `tonic::transport::Server::serve_with_incoming`. Failed handshakes are logged
/// and dropped.
pub fn incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
) -> impl Stream<Item = io::Result<TlsConn>> {
    let (tx, rx) = mpsc::channel::<io::Result<TlsConn>>(64);
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            // Stop listening as soon as the server is gone, so the port is
            // free for a restart of this node.
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = tx.closed() => return,
            };
            let (tcp, addr) = match accepted {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, conn_tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let identity = peer_identity(stream.get_ref().1.peer_certificates()).ok();
                        let conn = TlsConn {
                            stream,
                            info: PeerInfo {
                                addr: Some(addr),
                                identity,
                            },
                        };
                        let _ = conn_tx.send(Ok(conn)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(peer = %addr, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(peer = %addr, "TLS handshake timed out"),
                }
            });
            if tx.is_closed() {
                return;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// A lazily connecting channel to `addr` (`host:port`) over TLS with `config`,
/// verifying the server as `server_name` (`swarm-manager` for managers).
pub fn channel(
    addr: &str,
    config: Arc<rustls::ClientConfig>,
    server_name: &str,
) -> Result<Channel, crate::Error> {
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|e| crate::Error::InvalidArgument(format!("server name {server_name:?}: {e}")))?;
    let target = addr.to_string();
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| crate::Error::InvalidArgument(format!("address {addr:?}: {e}")))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(20));
    let connector = TlsConnector::from(config);
    let service = tower::service_fn(move |_uri: tonic::transport::Uri| {
        let (connector, name, target) = (connector.clone(), name.clone(), target.clone());
        async move {
            let tcp = TcpStream::connect(&target).await?;
            let _ = tcp.set_nodelay(true);
            let tls = connector.connect(name, tcp).await?;
            Ok::<_, io::Error>(TokioIo::new(tls))
        }
    });
    Ok(endpoint.connect_with_connector_lazy(service))
}

/// The peer of a request, if it presented a certificate of this swarm.
pub fn peer<T>(req: &Request<T>) -> Option<&PeerIdentity> {
    req.extensions()
        .get::<PeerInfo>()
        .and_then(|p| p.identity.as_ref())
}

/// The peer, which must hold a node certificate of this swarm.
pub fn require_node<T>(req: &Request<T>) -> Result<&PeerIdentity, Status> {
    peer(req)
        .ok_or_else(|| Status::unauthenticated("this call needs a node certificate of this swarm"))
}

/// The peer, which must hold a manager certificate.
pub fn require_manager<T>(req: &Request<T>) -> Result<&PeerIdentity, Status> {
    let p = require_node(req)?;
    if p.role != NodeRole::Manager {
        return Err(Status::permission_denied(format!(
            "permission denied: node {} has a worker certificate and this call needs a manager",
            p.node_id
        )));
    }
    Ok(p)
}

/// Refuses a node that was removed from the swarm (its certificate is
/// blacklisted in the cluster object).
pub fn refuse_removed(view: &swarm_core::Tables, node_id: &swarm_core::Id) -> Result<(), Status> {
    let removed = view.cluster().is_some_and(|c| {
        c.blacklisted_certificates
            .iter()
            .any(|b| b.node_id == *node_id)
    });
    if removed {
        return Err(Status::permission_denied(format!(
            "node {node_id} was removed from the swarm"
        )));
    }
    Ok(())
}

/// Maps an RPC status to the facade's error.
pub fn from_status(s: Status) -> crate::Error {
    use tonic::Code;
    let m = s.message().to_string();
    match s.code() {
        Code::InvalidArgument | Code::Unauthenticated | Code::PermissionDenied => {
            crate::Error::InvalidArgument(m)
        }
        Code::NotFound => crate::Error::Internal(format!("not found: {m}")),
        Code::FailedPrecondition => crate::Error::FailedPrecondition(m),
        Code::Aborted => crate::Error::Conflict(m),
        Code::AlreadyExists => crate::Error::NameConflict(m),
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
            crate::Error::Unavailable(m)
        }
        _ => crate::Error::Internal(format!("{:?}: {m}", s.code())),
    }
}

/// Maps the facade's error to an RPC status.
pub fn to_status(e: crate::Error) -> Status {
    use crate::Error as E;
    match e {
        E::NotFound { .. } => Status::not_found(e.to_string()),
        E::NameConflict(m) => Status::already_exists(m),
        E::InvalidArgument(m) => Status::invalid_argument(m),
        E::Conflict(m) => Status::aborted(m),
        E::FailedPrecondition(m) => Status::failed_precondition(m),
        E::NotLeader { .. } | E::Unavailable(_) => Status::unavailable(e.to_string()),
        E::Internal(m) => Status::internal(m),
    }
}
