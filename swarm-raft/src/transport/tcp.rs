//! Raft messages over plain TCP: each message is protobuf bytes split in chunks
//! of at most [`CHUNK`] bytes, each chunk framed as `[len u32 BE][last u8][bytes]`,
//! so a large snapshot streams in pieces. One outgoing connection per peer,
//! re-established with backoff; while a peer is down its messages are dropped
//! and reported unreachable.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{Inbox, InboxSender, Transport, snapshot_status, unreachable};

/// Largest chunk of a message on the wire.
pub const CHUNK: usize = 1 << 20;
/// Largest message accepted (a snapshot included).
const MAX_MESSAGE: usize = 1 << 30;

struct Peer {
    addr: String,
    tx: mpsc::UnboundedSender<Message>,
}

/// A TCP transport: a listener feeding the inbox and a writer task per peer.
/// Dropping it (or [`shutdown`](TcpTransport::shutdown)) stops every task.
pub struct TcpTransport {
    id: u64,
    local: SocketAddr,
    inbox: InboxSender,
    peers: Mutex<HashMap<u64, Peer>>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// The runtime `bind` ran on: writers spawned later (from the member's
    /// driver thread) run there too.
    rt: tokio::runtime::Handle,
}

impl TcpTransport {
    /// Listens on `listen` (port 0 picks one) as member `id`; `peers` maps member
    /// IDs to addresses. Must be called inside a tokio runtime.
    pub async fn bind(
        id: u64,
        listen: &str,
        peers: &HashMap<u64, String>,
    ) -> std::io::Result<(Arc<TcpTransport>, Inbox)> {
        let listener = TcpListener::bind(listen).await?;
        let local = listener.local_addr()?;
        let (inbox, rx) = mpsc::unbounded_channel();
        let (stop, _) = watch::channel(false);
        let t = Arc::new(TcpTransport {
            id,
            local,
            inbox: inbox.clone(),
            peers: Mutex::new(HashMap::new()),
            stop,
            tasks: Mutex::new(Vec::new()),
            rt: tokio::runtime::Handle::current(),
        });
        let accept = tokio::spawn(accept_loop(listener, inbox, t.stop.subscribe()));
        t.tasks.lock().push(accept);
        for (pid, addr) in peers {
            t.set_peer(*pid, Some(addr));
        }
        Ok((t, rx))
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Stops the listener, every connection and every writer.
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
        self.peers.lock().clear();
        for t in self.tasks.lock().drain(..) {
            t.abort();
        }
    }
}

impl Drop for TcpTransport {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Transport for TcpTransport {
    fn send(&self, msg: Message) {
        let to = msg.to;
        let snapshot = msg.get_msg_type() == MessageType::MsgSnapshot;
        let sent = self
            .peers
            .lock()
            .get(&to)
            .is_some_and(|p| p.tx.send(msg).is_ok());
        if !sent {
            let report = if snapshot {
                snapshot_status(self.id, to, false)
            } else {
                unreachable(self.id, to)
            };
            let _ = self.inbox.send(report);
        }
    }

    fn set_peer(&self, id: u64, addr: Option<&str>) {
        if id == self.id {
            return;
        }
        let mut peers = self.peers.lock();
        match addr {
            None => {
                peers.remove(&id);
            }
            Some(a) if peers.get(&id).is_some_and(|p| p.addr == a) => {}
            Some(a) => {
                let (tx, rx) = mpsc::unbounded_channel();
                let w = Writer {
                    me: self.id,
                    peer: id,
                    addr: a.to_string(),
                    inbox: self.inbox.clone(),
                };
                let task = self.rt.spawn(w.run(rx, self.stop.subscribe()));
                let mut tasks = self.tasks.lock();
                tasks.retain(|t| !t.is_finished());
                tasks.push(task);
                peers.insert(
                    id,
                    Peer {
                        addr: a.to_string(),
                        tx,
                    },
                );
            }
        }
    }
}

async fn accept_loop(listener: TcpListener, inbox: InboxSender, mut stop: watch::Receiver<bool>) {
    let mut conns = Vec::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                conns.retain(|c: &JoinHandle<()>| !c.is_finished());
                conns.push(tokio::spawn(read_loop(stream, inbox.clone())));
            }
        }
    }
    for c in conns {
        c.abort();
    }
}

async fn read_loop(stream: TcpStream, inbox: InboxSender) {
    let mut r = tokio::io::BufReader::with_capacity(256 * 1024, stream);
    let mut buf = Vec::new();
    loop {
        let Ok(len) = r.read_u32().await else { return };
        let Ok(last) = r.read_u8().await else { return };
        let len = len as usize;
        if len > CHUNK || buf.len() + len > MAX_MESSAGE {
            tracing::warn!(len, "raft tcp: oversized frame, closing the connection");
            return;
        }
        let start = buf.len();
        buf.resize(start + len, 0);
        if r.read_exact(&mut buf[start..]).await.is_err() {
            return;
        }
        if last == 1 {
            match Message::parse_from_bytes(&buf) {
                Ok(m) => {
                    if inbox.send(m).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "raft tcp: undecodable message, closing the connection");
                    return;
                }
            }
            buf.clear();
        }
    }
}

struct Writer {
    me: u64,
    peer: u64,
    addr: String,
    inbox: InboxSender,
}

impl Writer {
    fn report(&self, msg: &Message) {
        let r = if msg.get_msg_type() == MessageType::MsgSnapshot {
            snapshot_status(self.me, self.peer, false)
        } else {
            unreachable(self.me, self.peer)
        };
        let _ = self.inbox.send(r);
    }

    async fn run(self, mut rx: mpsc::UnboundedReceiver<Message>, mut stop: watch::Receiver<bool>) {
        let mut conn: Option<BufWriter<TcpStream>> = None;
        let mut backoff = Duration::from_millis(10);
        let mut next_try = Instant::now();
        let mut frame = Vec::new();
        loop {
            let msg = tokio::select! {
                _ = stop.changed() => return,
                m = rx.recv() => match m { Some(m) => m, None => return },
            };
            if conn.is_none() {
                if Instant::now() < next_try {
                    self.report(&msg);
                    continue;
                }
                match tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(&self.addr))
                    .await
                {
                    Ok(Ok(s)) => {
                        let _ = s.set_nodelay(true);
                        conn = Some(BufWriter::with_capacity(256 * 1024, s));
                        backoff = Duration::from_millis(10);
                    }
                    _ => {
                        next_try = Instant::now() + backoff;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        self.report(&msg);
                        continue;
                    }
                }
            }
            let Some(w) = conn.as_mut() else { continue };
            // Write this message and whatever else is queued, then flush once.
            let mut batch = vec![msg];
            while batch.len() < 4096 {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            let mut failed = false;
            for m in &batch {
                frame.clear();
                if m.write_to_vec(&mut frame).is_err() {
                    continue;
                }
                if write_chunks(w, &frame).await.is_err() {
                    failed = true;
                    break;
                }
            }
            if !failed && w.flush().await.is_err() {
                failed = true;
            }
            if failed {
                tracing::debug!(peer = self.peer, addr = %self.addr, "raft tcp: connection lost");
                conn = None;
                next_try = Instant::now() + backoff;
                for m in &batch {
                    self.report(m);
                }
            } else {
                for m in batch
                    .iter()
                    .filter(|m| m.get_msg_type() == MessageType::MsgSnapshot)
                {
                    let _ = self.inbox.send(snapshot_status(self.me, m.to, true));
                }
            }
        }
    }
}

async fn write_chunks(w: &mut BufWriter<TcpStream>, bytes: &[u8]) -> std::io::Result<()> {
    let mut chunks = bytes.chunks(CHUNK).peekable();
    if bytes.is_empty() {
        w.write_u32(0).await?;
        return w.write_u8(1).await;
    }
    while let Some(c) = chunks.next() {
        w.write_u32(c.len() as u32).await?;
        w.write_u8(u8::from(chunks.peek().is_none())).await?;
        w.write_all(c).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn delivers_large_messages_in_chunks_and_reconnects() {
        let (a, _in_a) = TcpTransport::bind(1, "127.0.0.1:0", &HashMap::new())
            .await
            .unwrap();
        let (b, mut in_b) = TcpTransport::bind(2, "127.0.0.1:0", &HashMap::new())
            .await
            .unwrap();
        a.set_peer(2, Some(&b.local_addr().to_string()));
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgSnapshot);
        m.from = 1;
        m.to = 2;
        m.mut_snapshot().data = vec![7u8; 3 * CHUNK + 5].into();
        a.send(m.clone());
        let got = in_b.recv().await.unwrap();
        assert_eq!(got.get_snapshot().data.len(), 3 * CHUNK + 5);
        assert_eq!(got, m);

        // The receiver restarts on the same port: the sender reconnects.
        let addr = b.local_addr().to_string();
        drop(b);
        drop(in_b);
        let (b2, mut in_b2) = loop {
            if let Ok(x) = TcpTransport::bind(2, &addr, &HashMap::new()).await {
                break x;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let mut hb = Message::default();
        hb.set_msg_type(MessageType::MsgHeartbeat);
        hb.from = 1;
        hb.to = 2;
        let got = loop {
            a.send(hb.clone());
            if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(50), in_b2.recv()).await
            {
                break m;
            }
        };
        assert_eq!(got.get_msg_type(), MessageType::MsgHeartbeat);
        b2.shutdown();
    }
}
