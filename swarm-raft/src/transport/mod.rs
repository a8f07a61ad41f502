//! How raft messages travel between members.
//!
//! A [`Transport`] sends; incoming messages arrive on an [`Inbox`] handed to
//! [`RaftNode::start`](crate::RaftNode::start). Two implementations ship here:
//! [`MemNetwork`] (in-process, with links that tests can cut) and [`TcpTransport`]
//! (length-prefixed protobuf over TCP). The facade implements the trait over the
//! cluster's mutual-TLS connections.

mod mem;
mod tcp;

pub use mem::{MemNetwork, MemTransport};
pub use tcp::TcpTransport;

use raft::eraftpb::{Message, MessageType};
use tokio::sync::mpsc;

/// Incoming raft messages for one member, in arrival order.
pub type Inbox = mpsc::UnboundedReceiver<Message>;

/// The sending side of an [`Inbox`].
pub type InboxSender = mpsc::UnboundedSender<Message>;

/// Sends raft messages to other members.
///
/// # Contract
/// `send` must not block and must not fail: raft tolerates lost, duplicated and
/// reordered messages, so a message that cannot be delivered is dropped. To let
/// the leader notice quickly, a transport that fails to deliver may put a
/// [`unreachable()`] report (or, for a snapshot, a [`snapshot_status`] report) into
/// the sender's own inbox; the member steps those reports. Messages from one
/// member to another should keep their order on a healthy link.
///
/// Both methods are called from the member's driver thread, which runs its own
/// single-threaded runtime and blocks on fsync: do not block in them, and spawn
/// any task onto a runtime handle captured beforehand, not with `tokio::spawn`.
pub trait Transport: Send + Sync + 'static {
    /// Sends `msg` to member `msg.to`.
    fn send(&self, msg: Message);

    /// Learns the address of member `id` (`None`: forget it). Called when a
    /// membership change carrying an address is applied, and at start for every
    /// known member. Transports that resolve members another way ignore it.
    fn set_peer(&self, id: u64, addr: Option<&str>) {
        let _ = (id, addr);
    }
}

/// A report for member `to`'s own inbox: `peer` could not be reached.
pub fn unreachable(to: u64, peer: u64) -> Message {
    let mut m = Message::default();
    m.set_msg_type(MessageType::MsgUnreachable);
    m.to = to;
    m.from = peer;
    m
}

/// A report for member `to`'s own inbox: the snapshot sent to `peer` was
/// delivered (`delivered`) or lost.
pub fn snapshot_status(to: u64, peer: u64, delivered: bool) -> Message {
    let mut m = Message::default();
    m.set_msg_type(MessageType::MsgSnapStatus);
    m.to = to;
    m.from = peer;
    m.reject = !delivered;
    m
}
