//! The peer listener: where other nodes' meshes hand over connections (TCP)
//! and datagrams (UDP) for tasks that run on this node. Only the allowed
//! source addresses (the swarm's nodes) are served; every hand-over must name
//! a task that this node's view has as an active local backend of that port.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use super::header::{self, HandOver, HeaderError};
use super::tcp::{ACK_OK, ACK_UNKNOWN, ACK_UNREACHABLE, CONNECT_TIMEOUT};
use super::udp::{FlowTable, KillOnDrop, Upstream};
use super::{Inner, MeshError, PortKey, Protocol};

/// Time a peer has to send its whole hand-over header.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds TCP and UDP on one port (when the port is 0, one free for both).
pub(crate) fn bind(addr: SocketAddr) -> Result<(TcpListener, UdpSocket), MeshError> {
    let mut attempts = 0;
    loop {
        let tcp = super::tcp::bind(addr).map_err(|source| MeshError::PeerListen {
            protocol: Protocol::Tcp,
            addr,
            source,
        })?;
        let bound = tcp.local_addr().map_err(|source| MeshError::PeerListen {
            protocol: Protocol::Tcp,
            addr,
            source,
        })?;
        match super::udp::bind(bound) {
            Ok(udp) => return Ok((tcp, udp)),
            Err(e) if addr.port() == 0 && attempts < 20 => {
                tracing::debug!(%bound, error = %e, "mesh: udp peer port taken, picking another");
                attempts += 1;
            }
            Err(source) => {
                return Err(MeshError::PeerListen {
                    protocol: Protocol::Udp,
                    addr: bound,
                    source,
                });
            }
        }
    }
}

/// Accepts hand-overs until aborted.
pub(crate) async fn serve_tcp(inner: Arc<Inner>, listener: TcpListener) {
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "mesh: peer accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if !inner.peers.load().contains(&from.ip()) {
            tracing::warn!(%from, "mesh: hand-over refused: source is not a swarm node");
            continue;
        }
        tokio::spawn(hand_over(inner.clone(), stream, from));
    }
}

async fn read_header(s: &mut TcpStream) -> Result<HandOver, io::Error> {
    let bad = |e: HeaderError| io::Error::new(io::ErrorKind::InvalidData, e);
    let mut buf = vec![0u8; header::FIXED_LEN];
    s.read_exact(&mut buf).await?;
    let len = header::body_len(&buf).map_err(bad)?;
    buf.resize(header::FIXED_LEN + len, 0);
    s.read_exact(&mut buf[header::FIXED_LEN..]).await?;
    let (h, _) = header::decode(&buf).map_err(bad)?;
    h.hand_over().map_err(bad)
}

async fn hand_over(inner: Arc<Inner>, mut stream: TcpStream, from: SocketAddr) {
    let ho = match tokio::time::timeout(HEADER_TIMEOUT, read_header(&mut stream)).await {
        Ok(Ok(ho)) if ho.protocol == Protocol::Tcp => ho,
        Ok(Ok(_)) => {
            tracing::warn!(%from, "mesh: hand-over refused: UDP header on the TCP peer listener");
            return;
        }
        Ok(Err(e)) => {
            tracing::warn!(%from, error = %e, "mesh: hand-over refused: bad header");
            return;
        }
        Err(_) => {
            tracing::warn!(%from, "mesh: hand-over refused: no header in time");
            return;
        }
    };
    let key = PortKey {
        protocol: Protocol::Tcp,
        port: ho.published_port,
    };
    let Some((spec, backend, addr)) = inner.find_local(key, ho.target_port, &ho.task_id) else {
        tracing::warn!(%from, task = %ho.task_id, port = ho.published_port, "mesh: hand-over refused: task is not an active local backend of this port here");
        let _ = stream.write_all(&[ACK_UNKNOWN]).await;
        return;
    };
    let _open = super::OpenGuard::new(&spec.open);
    let connect = async {
        let mut s = TcpStream::connect(addr).await?;
        let _ = s.set_nodelay(true);
        if spec.proxy_protocol {
            let h = header::encode(Protocol::Tcp, ho.client, ho.destination, None);
            s.write_all(&h).await?;
        }
        io::Result::Ok(s)
    };
    let mut upstream = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::warn!(%from, task = %ho.task_id, %addr, error = %e, "mesh: hand-over: task unreachable");
            let _ = stream.write_all(&[ACK_UNREACHABLE]).await;
            return;
        }
        Err(_) => {
            tracing::warn!(%from, task = %ho.task_id, %addr, "mesh: hand-over: task connect timed out");
            let _ = stream.write_all(&[ACK_UNREACHABLE]).await;
            return;
        }
    };
    if stream.write_all(&[ACK_OK]).await.is_err() {
        return;
    }
    let _ = stream.set_nodelay(true);
    tracing::debug!(%from, client = %ho.client, task = %ho.task_id, "mesh: hand-over accepted");
    super::tcp::pump(&inner, &mut stream, &mut upstream, backend.status).await;
}

/// Serves UDP hand-overs until aborted: each datagram carries a header, then
/// the client's payload. A flow is keyed by the sending node's socket (one per
/// client flow there); replies go back to that socket without a header.
pub(crate) async fn serve_udp(inner: Arc<Inner>, socket: Arc<UdpSocket>) {
    let flows = FlowTable::new();
    let _kill = KillOnDrop(flows.clone());
    let mut buf = vec![0u8; super::udp::MAX_DATAGRAM];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "mesh: peer udp receive failed");
                continue;
            }
        };
        if !inner.peers.load().contains(&from.ip()) {
            tracing::debug!(%from, "mesh: udp hand-over dropped: source is not a swarm node");
            continue;
        }
        let (ho, used) =
            match header::decode(&buf[..n]).and_then(|(h, used)| Ok((h.hand_over()?, used))) {
                Ok((ho, used)) if ho.protocol == Protocol::Udp => (ho, used),
                Ok(_) => continue,
                Err(e) => {
                    tracing::debug!(%from, error = %e, "mesh: udp hand-over dropped: bad header");
                    continue;
                }
            };
        let payload = &buf[used..n];
        if let Some(flow) = flows.get(&from)
            && flow.task_id == ho.task_id
            && !flow.left()
        {
            flow.forward(payload, &mut Vec::new()).await;
            continue;
        }
        let key = PortKey {
            protocol: Protocol::Udp,
            port: ho.published_port,
        };
        let Some((spec, backend, addr)) = inner.find_local(key, ho.target_port, &ho.task_id) else {
            tracing::debug!(%from, task = %ho.task_id, "mesh: udp hand-over dropped: task is not an active local backend here");
            continue;
        };
        match flows.open(
            &inner,
            &spec,
            &backend,
            Upstream::Local(addr),
            socket.clone(),
            from,
        ) {
            Ok(flow) => flow.forward(payload, &mut Vec::new()).await,
            Err(e) => {
                tracing::warn!(%from, task = %ho.task_id, error = %e, "mesh: udp hand-over: cannot open a flow")
            }
        }
    }
}
