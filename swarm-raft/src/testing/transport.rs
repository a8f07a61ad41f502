//! The [`Transport`] suite: what the trait's contract promises, checked on any
//! implementation.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use raft::eraftpb::{Entry, Message, MessageType};

use crate::{Inbox, Transport};

/// What the suite needs from the transport under test.
#[async_trait]
pub trait TransportHarness: Send + Sync {
    /// Member `id` joins the network: its transport, its inbox, and the
    /// address other members reach it at (the suite gives it to their
    /// [`Transport::set_peer`]; `None` for a transport that resolves members
    /// itself). Called in the tokio runtime the suite runs on, once per ID.
    async fn join(&self, id: u64) -> (Arc<dyn Transport>, Inbox, Option<String>);
}

/// A check of [`transport_suite`] that failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("transport check {check} failed: {message}")]
pub struct TransportFailure {
    /// The check: `delivery`, `order`, `unknown_peer`, `dead_peer` or
    /// `driver_thread`.
    pub check: &'static str,
    /// What went wrong.
    pub message: String,
}

/// How long a message may take to arrive on a healthy link.
const DELIVERY: Duration = Duration::from_secs(5);
/// How long the suite listens to make sure nothing (more) arrives.
const QUIET: Duration = Duration::from_millis(200);
/// The longest a `send` may take: it must not wait for the network.
const SEND_LIMIT: Duration = Duration::from_millis(250);
/// The size of the snapshots sent: several of the chunks transports split.
const SNAPSHOT_BYTES: usize = 3 << 20;

/// Runs every check of the [`Transport`] contract on the transport `harness`
/// makes; returns the failures (none: it conforms). Each check uses members of
/// its own (IDs 1–9, 11–19, ...) and drops them when done.
///
/// - `delivery`: messages (a heartbeat, an append with entries, a
///   multi-megabyte snapshot, a response) reach the addressed member unchanged,
///   and no other one;
/// - `order`: on a healthy link, 300 messages arrive, all and in order, across
///   a repeated `set_peer` with the same address;
/// - `unknown_peer`: a message to a member never introduced is dropped,
///   without a panic and at once, and others are still delivered;
/// - `dead_peer`: while one member is gone, messages to it do not block `send`
///   nor delay those to a live member;
/// - `driver_thread`: `set_peer` and `send` called from a thread whose own
///   runtime then blocks (as a member's driver thread does on fsync) still
///   deliver.
///
/// In every check, whatever arrives in a sender's own inbox is a report
/// ([`unreachable`](crate::unreachable), [`snapshot_status`](crate::snapshot_status))
/// about a member it sent to.
///
/// ```
/// use std::sync::Arc;
/// use swarm_raft::testing::{TransportHarness, transport_suite};
/// use swarm_raft::{Inbox, MemNetwork, Transport};
///
/// struct Mem(MemNetwork);
///
/// #[async_trait::async_trait]
/// impl TransportHarness for Mem {
///     async fn join(&self, id: u64) -> (Arc<dyn Transport>, Inbox, Option<String>) {
///         let (transport, inbox) = self.0.join(id);
///         (transport, inbox, None)
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let failures = transport_suite(&Mem(MemNetwork::new())).await;
/// assert!(failures.is_empty(), "{failures:#?}");
/// # }
/// ```
pub async fn transport_suite(harness: &dyn TransportHarness) -> Vec<TransportFailure> {
    let net = |block: u64| Net {
        harness,
        base: 10 * block,
        members: BTreeMap::new(),
        sent: BTreeMap::new(),
    };
    let mut failures = Vec::new();
    let mut record = |check, outcome: Outcome| {
        if let Err(message) = outcome {
            failures.push(TransportFailure { check, message });
        }
    };
    // One statement per check: its members are dropped before the next.
    record("delivery", net(0).delivery().await);
    record("order", net(1).order().await);
    record("unknown_peer", net(2).unknown_peer().await);
    record("dead_peer", net(3).dead_peer().await);
    record("driver_thread", net(4).driver_thread().await);
    failures
}

type Outcome = Result<(), String>;

fn ensure(cond: bool, message: impl FnOnce() -> String) -> Outcome {
    if cond { Ok(()) } else { Err(message()) }
}

fn message(kind: MessageType, from: u64, to: u64) -> Message {
    let mut m = Message::default();
    m.set_msg_type(kind);
    m.from = from;
    m.to = to;
    m.term = 3;
    m
}

fn append(from: u64, to: u64, index: u64) -> Message {
    let mut m = message(MessageType::MsgAppend, from, to);
    m.index = index;
    m.log_term = 3;
    m
}

fn snapshot(from: u64, to: u64) -> Message {
    let mut m = message(MessageType::MsgSnapshot, from, to);
    let s = m.mut_snapshot();
    s.mut_metadata().index = 1000;
    s.mut_metadata().term = 3;
    s.data = (0..SNAPSHOT_BYTES)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<_>>()
        .into();
    m
}

fn is_report(m: &Message) -> bool {
    matches!(
        m.get_msg_type(),
        MessageType::MsgUnreachable | MessageType::MsgSnapStatus
    )
}

/// What a message is, for failure messages (a snapshot's bytes left out).
fn brief(m: &Message) -> String {
    format!(
        "{:?} {}→{} index {}",
        m.get_msg_type(),
        m.from,
        m.to,
        m.index
    )
}

struct Joined {
    transport: Arc<dyn Transport>,
    inbox: Inbox,
    addr: Option<String>,
}

/// The members of one check.
struct Net<'a> {
    harness: &'a dyn TransportHarness,
    base: u64,
    members: BTreeMap<u64, Joined>,
    /// Whom each member sent to: the only members its reports may be about.
    sent: BTreeMap<u64, BTreeSet<u64>>,
}

impl Net<'_> {
    /// Member `base + n` joins, unintroduced.
    async fn join(&mut self, n: u64) -> u64 {
        let id = self.base + n;
        let (transport, inbox, addr) = self.harness.join(id).await;
        self.members.insert(
            id,
            Joined {
                transport,
                inbox,
                addr,
            },
        );
        id
    }

    /// `to` learns `about`'s address.
    fn introduce(&self, to: u64, about: u64) {
        let addr = self.members[&about].addr.as_deref();
        if addr.is_some() {
            self.members[&to].transport.set_peer(about, addr);
        }
    }

    /// Every member learns every other's address.
    fn introduce_all(&self) {
        for a in self.members.keys() {
            for b in self.members.keys().filter(|b| *b != a) {
                self.introduce(*a, *b);
            }
        }
    }

    /// Sends through `msg.from`'s transport: within [`SEND_LIMIT`], no panic.
    fn send(&mut self, msg: Message) -> Outcome {
        let (from, what) = (msg.from, brief(&msg));
        self.sent.entry(from).or_default().insert(msg.to);
        let transport = self.members[&from].transport.clone();
        let began = Instant::now();
        let sent = catch_unwind(AssertUnwindSafe(|| transport.send(msg)));
        let took = began.elapsed();
        ensure(sent.is_ok(), || format!("send of {what} panicked"))?;
        ensure(took <= SEND_LIMIT, || {
            format!("send of {what} blocked for {took:?}")
        })
    }

    /// The next message for `id` within `within` (`None`: none came), the
    /// reports in its inbox checked on the way.
    async fn next(&mut self, id: u64, within: Duration) -> Result<Option<Message>, String> {
        let deadline = tokio::time::Instant::now() + within;
        let sent_to = self.sent.get(&id).cloned().unwrap_or_default();
        let inbox = &mut self.members.get_mut(&id).expect("a member").inbox;
        loop {
            let m = match tokio::time::timeout_at(deadline, inbox.recv()).await {
                Err(_) => return Ok(None),
                Ok(None) => return Err(format!("member {id}'s inbox closed")),
                Ok(Some(m)) => m,
            };
            if !is_report(&m) {
                return Ok(Some(m));
            }
            ensure(m.to == id && sent_to.contains(&m.from), || {
                format!(
                    "member {id} got a report {} about a member it never sent to",
                    brief(&m)
                )
            })?;
        }
    }

    /// The next message for `id`, which must be `want`.
    async fn expect(&mut self, id: u64, want: &Message) -> Outcome {
        match self.next(id, DELIVERY).await? {
            Some(got) if got == *want => Ok(()),
            Some(got) => Err(format!(
                "member {id} got {} where {} was due",
                brief(&got),
                brief(want)
            )),
            None => Err(format!(
                "{} did not arrive within {DELIVERY:?}",
                brief(want)
            )),
        }
    }

    /// Nothing (but reports) arrives for `id` for a while.
    async fn quiet(&mut self, id: u64) -> Outcome {
        match self.next(id, QUIET).await? {
            None => Ok(()),
            Some(m) => Err(format!("member {id} got {} not sent to it", brief(&m))),
        }
    }

    async fn delivery(&mut self) -> Outcome {
        let (a, b, c) = (self.join(1).await, self.join(2).await, self.join(3).await);
        self.introduce_all();
        let mut heartbeat = message(MessageType::MsgHeartbeat, a, b);
        heartbeat.commit = 7;
        let mut entries = append(a, b, 41);
        for i in 0..2u64 {
            let e = Entry {
                index: 42 + i,
                term: 3,
                data: format!("entry {i}").into_bytes().into(),
                ..Default::default()
            };
            entries.mut_entries().push(e);
        }
        let sent = [heartbeat, entries, snapshot(a, b)];
        for m in &sent {
            self.send(m.clone())?;
        }
        for m in &sent {
            self.expect(b, m).await?;
        }
        let mut response = message(MessageType::MsgHeartbeatResponse, b, a);
        response.commit = 7;
        self.send(response.clone())?;
        self.expect(a, &response).await?;
        self.quiet(c).await?;
        self.quiet(b).await
    }

    async fn order(&mut self) -> Outcome {
        let (a, b) = (self.join(1).await, self.join(2).await);
        self.introduce_all();
        for i in 1..=300 {
            if i == 151 {
                // Learning the same addresses again changes nothing.
                self.introduce_all();
            }
            self.send(append(a, b, i))?;
        }
        for i in 1..=300 {
            self.expect(b, &append(a, b, i)).await?;
        }
        self.quiet(b).await
    }

    async fn unknown_peer(&mut self) -> Outcome {
        let (a, b) = (self.join(1).await, self.join(2).await);
        self.introduce_all();
        let stranger = self.base + 9;
        self.send(message(MessageType::MsgHeartbeat, a, stranger))?;
        self.send(snapshot(a, stranger))?;
        let m = append(a, b, 1);
        self.send(m.clone())?;
        self.expect(b, &m).await?;
        self.quiet(a).await
    }

    async fn dead_peer(&mut self) -> Outcome {
        let (a, b, c) = (self.join(1).await, self.join(2).await, self.join(3).await);
        self.introduce_all();
        // `c` goes away: its transport and inbox are dropped.
        self.members.remove(&c);
        for i in 1..=100 {
            self.send(message(MessageType::MsgHeartbeat, a, c))?;
            if i % 25 == 0 {
                self.send(snapshot(a, c))?;
            }
            self.send(append(a, b, i))?;
        }
        let began = Instant::now();
        for i in 1..=100 {
            self.expect(b, &append(a, b, i)).await?;
        }
        ensure(began.elapsed() < DELIVERY, || {
            format!(
                "messages to a live member took {:?} while another was down",
                began.elapsed()
            )
        })?;
        self.quiet(a).await
    }

    async fn driver_thread(&mut self) -> Outcome {
        let (a, b) = (self.join(1).await, self.join(2).await);
        self.introduce(b, a);
        // `a` learns `b` and sends to it from a thread with a runtime of its
        // own, which then blocks until `b` got the message (or gave up).
        let transport = self.members[&a].transport.clone();
        let addr = self.members[&b].addr.clone();
        let m = append(a, b, 1);
        self.sent.entry(a).or_default().insert(b);
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let sent = m.clone();
        let driver = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("a runtime for the driver thread: {e}"))?;
            rt.block_on(async {
                if addr.is_some() {
                    transport.set_peer(b, addr.as_deref());
                }
                transport.send(sent);
            });
            // Blocked, as on fsync: nothing spawned on `rt` runs now.
            let _ = done_rx.recv_timeout(DELIVERY * 2);
            drop(rt);
            Ok::<(), String>(())
        });
        let outcome = self.expect(b, &m).await;
        let _ = done_tx.send(());
        let joined = tokio::task::spawn_blocking(move || driver.join())
            .await
            .map_err(|e| format!("joining the driver thread: {e}"))?;
        match joined {
            Ok(r) => r?,
            Err(_) => return Err("set_peer or send panicked on the driver thread".into()),
        }
        outcome
    }
}
