//! Published UDP ports: a flow table keyed by the client's address; each new
//! flow picks a backend and gets its own upstream socket, whose replies go
//! back to the client from the published port's socket. A flow ends after
//! `udp_idle_timeout` without traffic either way, when its backend leaves the
//! view or its drain deadline passes, or when the port or the mesh closes.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use tokio::net::UdpSocket;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::{
    Inner, LiveBackend, OpenGuard, PortKey, PortSpec, Protocol, Share, Status, Target, header,
};

/// Largest datagram relayed.
pub(crate) const MAX_DATAGRAM: usize = 65535;
/// Most flows one published port (or the peer listener) keeps; datagrams of
/// new clients beyond it are dropped until flows expire.
pub(crate) const MAX_FLOWS: usize = 4096;

/// A non-blocking UDP socket on `addr`.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    let s = std::net::UdpSocket::bind(addr)?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s)
}

/// Where a flow's datagrams go.
pub(crate) enum Upstream {
    /// Straight to a task on this node.
    Local(SocketAddr),
    /// To another node's peer listener, each datagram after this header.
    Remote {
        /// The other node's peer listener.
        peer: SocketAddr,
        /// The hand-over header put before every datagram.
        header: Vec<u8>,
    },
}

pub(crate) struct Flow {
    pub task_id: String,
    socket: UdpSocket,
    /// Remote flows: the peer listener and the header.
    remote: Option<(SocketAddr, Vec<u8>)>,
    epoch: Instant,
    last_ms: AtomicU64,
    kill: Notify,
    /// Closed when the backend leaves the view.
    status: watch::Receiver<Status>,
}

impl Flow {
    fn touch(&self) {
        self.last_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// The backend left the view: the flow must not carry more datagrams.
    pub fn left(&self) -> bool {
        self.status.has_changed().is_err()
    }

    fn last(&self) -> Instant {
        self.epoch + std::time::Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    /// Sends a client's datagram on to the backend (`scratch` holds header + payload).
    pub async fn forward(&self, payload: &[u8], scratch: &mut Vec<u8>) {
        self.touch();
        let r = match &self.remote {
            None => self.socket.send(payload).await,
            Some((peer, header)) => {
                scratch.clear();
                scratch.extend_from_slice(header);
                scratch.extend_from_slice(payload);
                self.socket.send_to(scratch, *peer).await
            }
        };
        if let Err(e) = r {
            tracing::debug!(task = %self.task_id, error = %e, "mesh: udp send to backend failed");
        }
    }
}

/// The flows of one socket, by client address.
#[derive(Clone, Default)]
pub(crate) struct FlowTable {
    map: Arc<Mutex<HashMap<SocketAddr, Arc<Flow>>>>,
}

/// Ends every flow of a table when its socket's loop ends (port closed, mesh stopped).
pub(crate) struct KillOnDrop(pub FlowTable);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for (_, f) in self.0.map.lock().drain() {
            f.kill.notify_one();
        }
    }
}

impl FlowTable {
    pub fn new() -> FlowTable {
        FlowTable::default()
    }

    pub fn get(&self, client: &SocketAddr) -> Option<Arc<Flow>> {
        self.map.lock().get(client).cloned()
    }

    /// Opens a flow for `client` towards `upstream`; replies go to `client` from `reply`.
    pub fn open(
        &self,
        inner: &Arc<Inner>,
        spec: &PortSpec,
        backend: &LiveBackend,
        upstream: Upstream,
        reply: Arc<UdpSocket>,
        client: SocketAddr,
    ) -> io::Result<Arc<Flow>> {
        if self.map.lock().len() >= MAX_FLOWS {
            return Err(io::Error::other("flow table full"));
        }
        let to = match &upstream {
            Upstream::Local(a) => *a,
            Upstream::Remote { peer, .. } => *peer,
        };
        // Hand-overs leave from this node's own address (the one other nodes allow).
        let node_ip = inner.peer_addr.ip();
        let from: IpAddr = match &upstream {
            Upstream::Remote { .. }
                if !node_ip.is_unspecified() && node_ip.is_ipv4() == to.is_ipv4() =>
            {
                node_ip
            }
            _ if to.is_ipv4() => Ipv4Addr::UNSPECIFIED.into(),
            _ => Ipv6Addr::UNSPECIFIED.into(),
        };
        let std_socket = std::net::UdpSocket::bind(SocketAddr::new(from, 0))?;
        std_socket.set_nonblocking(true)?;
        let remote = match upstream {
            Upstream::Local(addr) => {
                std_socket.connect(addr)?;
                None
            }
            Upstream::Remote { peer, header } => Some((peer, header)),
        };
        let epoch = Instant::now();
        let flow = Arc::new(Flow {
            task_id: backend.task_id.clone(),
            socket: UdpSocket::from_std(std_socket)?,
            remote,
            epoch,
            last_ms: AtomicU64::new(0),
            kill: Notify::new(),
            status: backend.status.clone(),
        });
        if let Some(old) = self.map.lock().insert(client, flow.clone()) {
            old.kill.notify_one();
        }
        let open = OpenGuard::new(&spec.open);
        tokio::spawn(run(
            flow.clone(),
            self.clone(),
            reply,
            client,
            super::must_close(backend.status.clone(), inner.stop.subscribe(), true),
            inner.config.udp_idle_timeout,
            open,
        ));
        Ok(flow)
    }

    fn remove(&self, client: &SocketAddr, flow: &Arc<Flow>) {
        let mut map = self.map.lock();
        if map.get(client).is_some_and(|f| Arc::ptr_eq(f, flow)) {
            map.remove(client);
        }
    }
}

/// Carries a flow's replies back to its client until the flow ends.
async fn run(
    flow: Arc<Flow>,
    table: FlowTable,
    reply: Arc<UdpSocket>,
    client: SocketAddr,
    closed: impl std::future::Future<Output = ()>,
    idle: std::time::Duration,
    _open: OpenGuard,
) {
    tokio::pin!(closed);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        tokio::select! {
            r = flow.socket.recv_from(&mut buf) => match r {
                Ok((n, from)) => {
                    if let Some((peer, _)) = &flow.remote
                        && from.port() != peer.port()
                    {
                        continue;
                    }
                    flow.touch();
                    if let Err(e) = reply.send_to(&buf[..n], client).await {
                        tracing::debug!(%client, error = %e, "mesh: udp reply to client failed");
                    }
                }
                // An ICMP error for an earlier datagram (backend port closed): keep the flow.
                Err(e) => tracing::debug!(%client, error = %e, "mesh: udp receive from backend failed"),
            },
            _ = tokio::time::sleep_until(flow.last() + idle) => {
                if flow.last() + idle <= Instant::now() {
                    tracing::debug!(%client, task = %flow.task_id, "mesh: udp flow idle, closed");
                    break;
                }
            }
            _ = &mut closed => break,
            _ = flow.kill.notified() => break,
        }
    }
    table.remove(&client, &flow);
}

/// Serves the clients of one published UDP port until aborted: on the port's
/// own socket (`Share::All`) or on its internal one, where the kernel path
/// sends the remote backends' share (`Share::Remote`).
pub(crate) async fn serve(inner: Arc<Inner>, key: PortKey, socket: Arc<UdpSocket>, share: Share) {
    let flows = FlowTable::new();
    let _kill = KillOnDrop(flows.clone());
    let destination = SocketAddr::new(inner.config.ingress_ip, key.port);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut scratch = Vec::with_capacity(MAX_DATAGRAM);
    let mut next = 0usize;
    loop {
        let (n, client) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(port = key.port, error = %e, "mesh: udp receive failed");
                continue;
            }
        };
        if let Some(flow) = flows.get(&client)
            && !flow.left()
        {
            flow.forward(&buf[..n], &mut scratch).await;
            continue;
        }
        let Some(spec) = inner.specs.load().get(&key).cloned() else {
            continue;
        };
        let start = next;
        next = next.wrapping_add(1);
        let Some(backend) = spec.pick(share, start).next() else {
            tracing::debug!(%client, port = key.port, "mesh: udp datagram dropped: no active backend");
            continue;
        };
        let upstream = match backend.target {
            Target::Local(addr) => Upstream::Local(addr),
            Target::Remote { peer } => Upstream::Remote {
                peer,
                header: header::encode(
                    Protocol::Udp,
                    client,
                    destination,
                    Some((&backend.task_id, key.port, spec.target_port)),
                ),
            },
        };
        match flows.open(&inner, &spec, backend, upstream, socket.clone(), client) {
            Ok(flow) => {
                tracing::debug!(%client, task = %backend.task_id, port = key.port, "mesh: udp flow");
                flow.forward(&buf[..n], &mut scratch).await;
            }
            Err(e) => {
                tracing::warn!(%client, port = key.port, error = %e, "mesh: cannot open a udp flow")
            }
        }
    }
}
