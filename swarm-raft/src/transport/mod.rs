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
/// Every implementor guarantees the following; `swarm_raft::testing::transport_suite`
/// (feature `testing`) checks each point on an implementation.
///
/// - **Delivery.** A message sent to a member that is up and known to the
///   transport reaches that member's inbox unchanged, and no other inbox:
///   messages of any size raft produces, a snapshot of many megabytes included.
/// - **Order.** On a healthy link (both members up, nothing cut), messages from
///   one member to another all arrive, in the order they were sent, as long as
///   the transport's queue for that peer has room. A repeated
///   [`set_peer`](Transport::set_peer) with the same address changes nothing.
/// - **Never blocks, never fails.** `send` returns at once (it queues or drops,
///   it never waits for the network) and does not panic, whatever `msg.to` is:
///   a message that cannot be delivered (a member that is down, unknown or
///   never introduced, a full queue) is dropped. Raft tolerates lost,
///   duplicated and reordered messages.
/// - **Isolation.** A member that is down or unreachable does not delay
///   messages to the others.
/// - **Reports.** To let the leader notice quickly, a transport that fails to
///   deliver may put an [`unreachable()`] report (or, for a snapshot, a
///   [`snapshot_status`] report) about that peer into the sender's own inbox;
///   the member steps those reports. Besides the messages sent to a member,
///   they are all its transport puts into its inbox.
/// - **Threads.** Both methods are called from the member's driver thread,
///   which runs its own single-threaded runtime and blocks on fsync: delivery
///   must not depend on that thread. Do not block in them, and spawn any task
///   onto a runtime handle captured beforehand, not with `tokio::spawn`.
pub trait Transport: Send + Sync + 'static {
    /// Sends `msg` to member `msg.to`.
    fn send(&self, msg: Message);

    /// Learns the address of member `id` (`None`: forget it). Called when a
    /// membership change carrying an address is applied, and at start for every
    /// known member, so often with an address already known: that changes
    /// nothing. Transports that resolve members another way ignore it.
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
