//! Published TCP ports: accept, pick a backend, connect (directly or through
//! the peer node's mesh), relay.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;

use super::header;
use super::relay::relay;
use super::{Inner, LiveBackend, OpenGuard, PortKey, PortSpec, Protocol, Share, Status, Target};

/// At most this many backends are tried for one client connection.
pub(crate) const MAX_ATTEMPTS: usize = 3;
/// Time allowed to connect to a backend (and, for a hand-over, for the peer's answer).
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Peer answer: connected to the task, bytes follow.
pub(crate) const ACK_OK: u8 = 0;
/// Peer answer: the task is not a local, active backend of that port there.
pub(crate) const ACK_UNKNOWN: u8 = 1;
/// Peer answer: the task did not accept the connection.
pub(crate) const ACK_UNREACHABLE: u8 = 2;

/// A non-blocking listener on `addr` (bound at once, so errors are the caller's).
pub(crate) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let l = std::net::TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    TcpListener::from_std(l)
}

/// Accepts the clients of one published port until aborted: on the port's own
/// listener (`Share::All`) or on its internal one, where the kernel path sends
/// the remote backends' share (`Share::Remote`).
pub(crate) async fn serve(inner: Arc<Inner>, key: PortKey, listener: TcpListener, share: Share) {
    let mut next = 0usize;
    loop {
        let (stream, client) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!(port = key.port, error = %e, "mesh: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(spec) = inner.specs.load().get(&key).cloned() else {
            continue;
        };
        let start = next;
        next = next.wrapping_add(1);
        tokio::spawn(client_connection(
            inner.clone(),
            spec,
            stream,
            client,
            start,
            share,
        ));
    }
}

async fn client_connection(
    inner: Arc<Inner>,
    spec: Arc<PortSpec>,
    mut stream: TcpStream,
    client: SocketAddr,
    start: usize,
    share: Share,
) {
    let _open = OpenGuard::new(&spec.open);
    let _ = stream.set_nodelay(true);
    // Redirected to the internal listener: the address the client asked for.
    let local = match share {
        Share::All => stream.local_addr(),
        Share::Remote => original_destination(&stream).or_else(|_| stream.local_addr()),
    };
    let Ok(local) = local else {
        return;
    };
    for backend in spec.pick(share, start).take(MAX_ATTEMPTS) {
        match connect(&spec, backend, client, local, inner.peer_addr.ip()).await {
            Ok(mut upstream) => {
                tracing::debug!(%client, task = %backend.task_id, port = spec.key.port, "mesh: connection");
                pump(&inner, &mut stream, &mut upstream, backend.status.clone()).await;
                return;
            }
            Err(e) => {
                tracing::warn!(%client, task = %backend.task_id, target = ?backend.target, error = %e, "mesh: backend unreachable, trying the next");
            }
        }
    }
    tracing::warn!(%client, port = spec.key.port, "mesh: no backend reachable, closing the client");
}

/// Connects to a backend, directly or through its node's peer listener, and
/// sends what must precede the client's bytes.
async fn connect(
    spec: &PortSpec,
    backend: &LiveBackend,
    client: SocketAddr,
    local: SocketAddr,
    node_ip: IpAddr,
) -> io::Result<TcpStream> {
    let attempt = async {
        match backend.target {
            Target::Local(addr) => {
                let mut s = TcpStream::connect(addr).await?;
                let _ = s.set_nodelay(true);
                if spec.proxy_protocol {
                    s.write_all(&header::encode(Protocol::Tcp, client, local, None))
                        .await?;
                }
                Ok(s)
            }
            Target::Remote { peer } => {
                let mut s = connect_from(node_ip, peer).await?;
                let _ = s.set_nodelay(true);
                let h = header::encode(
                    Protocol::Tcp,
                    client,
                    local,
                    Some((&backend.task_id, spec.key.port, spec.target_port)),
                );
                s.write_all(&h).await?;
                match s.read_u8().await? {
                    ACK_OK => Ok(s),
                    ACK_UNKNOWN => Err(io::Error::other(format!(
                        "peer {peer} does not run task {} for this port",
                        backend.task_id
                    ))),
                    code => Err(io::Error::other(format!(
                        "peer {peer} could not reach task {} (code {code})",
                        backend.task_id
                    ))),
                }
            }
        }
    };
    tokio::time::timeout(CONNECT_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
}

/// Connects to another node's peer listener from this node's own address
/// (the one the other nodes allow), unless it is unspecified.
async fn connect_from(node_ip: IpAddr, to: SocketAddr) -> io::Result<TcpStream> {
    let socket = if to.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if !node_ip.is_unspecified() && node_ip.is_ipv4() == to.is_ipv4() {
        no_port_at_bind(&socket);
        socket.bind(SocketAddr::new(node_ip, 0))?;
    }
    socket.connect(to).await
}

/// Lets the kernel pick the source port at connect time, for the whole
/// 4-tuple, instead of at bind time: otherwise every hand-over in TIME_WAIT
/// holds one of the node's ephemeral ports for every destination, and a busy
/// node runs out (and bind slows down long before).
#[cfg(target_os = "linux")]
fn no_port_at_bind(socket: &TcpSocket) {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: setsockopt on an open socket with a pointer to an int and its size.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}

#[cfg(not(target_os = "linux"))]
fn no_port_at_bind(_socket: &TcpSocket) {}

/// The destination a NATed (redirected) connection had before NAT:
/// SO_ORIGINAL_DST, IPv4.
#[cfg(target_os = "linux")]
fn original_destination(stream: &TcpStream) -> io::Result<SocketAddr> {
    use std::os::fd::AsRawFd;
    // SAFETY: an all-zero sockaddr_in is a valid value.
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: getsockopt on an open socket writes at most `len` bytes into `addr`.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_IP,
            libc::SO_ORIGINAL_DST,
            (&mut addr as *mut libc::sockaddr_in).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let ip = std::net::Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr));
    Ok(SocketAddr::new(ip.into(), u16::from_be(addr.sin_port)))
}

#[cfg(not(target_os = "linux"))]
fn original_destination(stream: &TcpStream) -> io::Result<SocketAddr> {
    stream.local_addr()
}

/// Relays until both sides are done, the backend's drain deadline passes or
/// the mesh stops.
pub(crate) async fn pump(
    inner: &Inner,
    client: &mut TcpStream,
    backend: &mut TcpStream,
    status: watch::Receiver<Status>,
) {
    let zero_copy = inner.zero_copy.load(Ordering::Relaxed);
    tokio::select! {
        r = relay(client, backend, zero_copy) => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "mesh: connection ended with an error");
            }
        }
        _ = super::must_close(status, inner.stop.subscribe(), false) => {
            tracing::debug!("mesh: connection closed (backend drained or mesh stopped)");
        }
    }
}
