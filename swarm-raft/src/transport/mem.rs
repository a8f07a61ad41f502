//! An in-process transport with links that can be cut, for tests.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;
use raft::eraftpb::{Message, MessageType};
use tokio::sync::mpsc;

use super::{Inbox, InboxSender, Transport, snapshot_status, unreachable};

#[derive(Default)]
struct Net {
    inboxes: HashMap<u64, InboxSender>,
    /// Directed links that drop every message.
    cut: HashSet<(u64, u64)>,
}

/// A network of in-process members. Cloning shares the network.
///
/// ```
/// use swarm_raft::MemNetwork;
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let net = MemNetwork::new();
/// let (_t1, _inbox1) = net.join(1);
/// let (_t2, _inbox2) = net.join(2);
/// net.isolate(2); // 2 hears nothing and reaches no one
/// net.heal();
/// # });
/// ```
#[derive(Clone, Default)]
pub struct MemNetwork {
    net: Arc<Mutex<Net>>,
}

impl MemNetwork {
    /// An empty network.
    pub fn new() -> MemNetwork {
        MemNetwork::default()
    }

    /// Connects member `id` (replacing an earlier connection of the same ID):
    /// its transport and inbox.
    pub fn join(&self, id: u64) -> (Arc<MemTransport>, Inbox) {
        let (tx, rx) = mpsc::unbounded_channel();
        self.net.lock().inboxes.insert(id, tx);
        let t = MemTransport {
            id,
            net: self.net.clone(),
        };
        (Arc::new(t), rx)
    }

    /// Disconnects member `id`: messages to it are dropped.
    pub fn leave(&self, id: u64) {
        self.net.lock().inboxes.remove(&id);
    }

    /// Cuts both directions between `a` and `b`.
    pub fn cut(&self, a: u64, b: u64) {
        let mut n = self.net.lock();
        n.cut.insert((a, b));
        n.cut.insert((b, a));
    }

    /// Cuts every link between member `id` and the others.
    pub fn isolate(&self, id: u64) {
        let others: Vec<u64> = self.net.lock().inboxes.keys().copied().collect();
        for o in others.into_iter().filter(|o| *o != id) {
            self.cut(id, o);
        }
    }

    /// Splits the network: no link between a member of `a` and one of `b`.
    pub fn partition(&self, a: &[u64], b: &[u64]) {
        for x in a {
            for y in b {
                self.cut(*x, *y);
            }
        }
    }

    /// Restores every cut link.
    pub fn heal(&self) {
        self.net.lock().cut.clear();
    }
}

/// One member's side of a [`MemNetwork`].
pub struct MemTransport {
    id: u64,
    net: Arc<Mutex<Net>>,
}

impl Transport for MemTransport {
    fn send(&self, msg: Message) {
        let net = self.net.lock();
        let to = msg.to;
        let snapshot = msg.get_msg_type() == MessageType::MsgSnapshot;
        let delivered = !net.cut.contains(&(self.id, to))
            && net.inboxes.get(&to).is_some_and(|tx| tx.send(msg).is_ok());
        let report = match (delivered, snapshot) {
            (true, true) => Some(snapshot_status(self.id, to, true)),
            (false, true) => Some(snapshot_status(self.id, to, false)),
            (false, false) => Some(unreachable(self.id, to)),
            (true, false) => None,
        };
        if let (Some(r), Some(me)) = (report, net.inboxes.get(&self.id)) {
            let _ = me.send(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(from: u64, to: u64) -> Message {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgHeartbeat);
        m.from = from;
        m.to = to;
        m
    }

    #[tokio::test]
    async fn cut_links_drop_and_report() {
        let net = MemNetwork::new();
        let (t1, mut in1) = net.join(1);
        let (_t2, mut in2) = net.join(2);
        t1.send(msg(1, 2));
        assert_eq!(in2.recv().await.unwrap().from, 1);
        net.cut(1, 2);
        t1.send(msg(1, 2));
        let report = in1.recv().await.unwrap();
        assert_eq!(report.get_msg_type(), MessageType::MsgUnreachable);
        assert_eq!(report.from, 2);
        assert!(in2.try_recv().is_err());
        net.heal();
        t1.send(msg(1, 2));
        assert_eq!(in2.recv().await.unwrap().from, 1);
    }
}
