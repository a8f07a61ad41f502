//! Task logs across the swarm (`docker service logs`, `docker logs` of a task).
//!
//! ```text
//!   every node ── Logs.Subscribe ──► every manager's LogBroker   (requests down)
//!   every node ── Logs.Publish   ──► the manager that asked      (output up)
//!   API on any manager ─► LogBroker::logs(tasks) ─► one request per node
//! ```
//!
//! Nodes subscribe at every manager they know, and follow that list as the
//! swarm changes it (a worker's session gets it from the dispatcher, a manager
//! reads its store), so whichever manager a client talks to — one promoted
//! after the node joined included — reaches the nodes directly. A node reads its runtime's logs for the
//! tasks asked and streams them back, tagged with the request.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::StreamExt;
use parking_lot::Mutex;
use swarm_core::{Id, Timestamp};
use swarm_runtime::LogStream;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use crate::rpc::proto::logs_server::{Logs, LogsServer};
use crate::rpc::proto::{Empty, LogMessage, LogRequest};
use crate::rpc::tls::require_node;

/// One piece of a task's output, as a client gets it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// The task.
    pub task_id: Id,
    /// The node it ran on.
    pub node_id: Id,
    /// stdout or stderr.
    pub stream: LogStream,
    /// The bytes (whole lines when the task wrote whole lines).
    pub data: Bytes,
    /// When the task's node got them (its clock), when its runtime keeps it.
    pub time: Option<Timestamp>,
}

/// Requests a client may make.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogsQuery {
    /// Keep streaming until the tasks exit.
    pub follow: bool,
    /// Include stdout.
    pub stdout: bool,
    /// Include stderr.
    pub stderr: bool,
    /// Only the last N lines of each task so far (then, with `follow`, what
    /// comes); `None` is everything.
    pub tail: Option<usize>,
}

type Answer = mpsc::Sender<std::result::Result<LogMessage, Status>>;

/// A request sent to a node, waiting for its output.
struct Waiting {
    /// Where the output goes.
    answer: Answer,
    /// The node asked: the only one whose lines are taken.
    node: Id,
    /// The tasks asked for: the only ones whose lines are taken.
    tasks: std::collections::HashSet<String>,
}

/// The manager side: which nodes listen, and which requests wait for output.
#[derive(Clone, Default)]
pub struct LogBroker {
    inner: Arc<BrokerInner>,
}

#[derive(Default)]
struct BrokerInner {
    next: AtomicU64,
    nodes: Mutex<HashMap<Id, mpsc::Sender<LogRequest>>>,
    waiting: Mutex<HashMap<u64, Waiting>>,
}

impl std::fmt::Debug for LogBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogBroker")
            .field("nodes", &self.inner.nodes.lock().len())
            .finish()
    }
}

impl LogBroker {
    /// A broker with no node yet.
    pub fn new() -> LogBroker {
        LogBroker::default()
    }

    /// The tonic server for this broker.
    pub(crate) fn server(self) -> LogsServer<LogBroker> {
        LogsServer::new(self)
    }

    /// The output of `tasks` (task, node), merged as it arrives. A task whose
    /// node is not connected to this manager yields an error line on stderr.
    pub fn logs(
        &self,
        tasks: Vec<(Id, Id)>,
        query: LogsQuery,
    ) -> impl futures::Stream<Item = LogLine> + Send + 'static {
        let (tx, rx) = mpsc::channel::<std::result::Result<LogMessage, Status>>(256);
        let mut by_node: HashMap<Id, Vec<Id>> = HashMap::new();
        for (task, node) in &tasks {
            by_node.entry(node.clone()).or_default().push(task.clone());
        }
        let node_of: HashMap<Id, Id> = tasks.into_iter().collect();
        let mut pending = 0usize;
        let mut ids = Vec::new();
        let mut missing = Vec::new();
        for (node, task_ids) in by_node {
            let sub = self.inner.nodes.lock().get(&node).cloned();
            let Some(sub) = sub else {
                missing.extend(task_ids.into_iter().map(|t| (t, node.clone())));
                continue;
            };
            let id = self.inner.next.fetch_add(1, Ordering::Relaxed) + 1;
            let waiting = Waiting {
                answer: tx.clone(),
                node: node.clone(),
                tasks: task_ids.iter().map(|t| t.to_string()).collect(),
            };
            self.inner.waiting.lock().insert(id, waiting);
            pending += task_ids.len();
            let req = LogRequest {
                request_id: id,
                task_ids: task_ids.iter().map(|t| t.to_string()).collect(),
                follow: query.follow,
                stdout: query.stdout,
                stderr: query.stderr,
                tail: query.tail.map(|n| n as u64),
            };
            if sub.try_send(req).is_err() {
                self.inner.waiting.lock().remove(&id);
                pending -= task_ids.len();
                missing.extend(task_ids.into_iter().map(|t| (t, node.clone())));
            } else {
                ids.push(id);
            }
        }
        drop(tx);
        let broker = self.inner.clone();
        let errors = futures::stream::iter(missing.into_iter().map(|(task, node)| LogLine {
            data: Bytes::from(format!(
                "error from daemon in stream: node {node} is not connected to this manager\n"
            )),
            task_id: task,
            node_id: node,
            stream: LogStream::Stderr,
            time: None,
        }));
        let state = (rx, node_of, pending, 0usize);
        let lines =
            futures::stream::unfold(state, |(mut rx, node_of, pending, mut done)| async move {
                loop {
                    if done >= pending {
                        return None;
                    }
                    let Ok(m) = rx.recv().await? else {
                        continue;
                    };
                    let task_id = Id::from(m.task_id.as_str());
                    let node_id = node_of.get(&task_id).cloned().unwrap_or_default();
                    if m.done {
                        done += 1;
                    }
                    let line = if !m.error.is_empty() {
                        LogLine {
                            task_id,
                            node_id,
                            stream: LogStream::Stderr,
                            data: Bytes::from(format!(
                                "error from daemon in stream: {}\n",
                                m.error
                            )),
                            time: None,
                        }
                    } else if m.data.is_empty() {
                        continue;
                    } else {
                        LogLine {
                            task_id,
                            node_id,
                            stream: if m.stream == 2 {
                                LogStream::Stderr
                            } else {
                                LogStream::Stdout
                            },
                            data: Bytes::from(m.data),
                            time: (m.time_seconds != 0 || m.time_nanos != 0).then_some(Timestamp {
                                seconds: m.time_seconds,
                                nanos: m.time_nanos,
                            }),
                        }
                    };
                    return Some((line, (rx, node_of, pending, done)));
                }
            });
        let cleanup = Cleanup { broker, ids };
        errors.chain(lines).map(move |l| {
            let _ = &cleanup;
            l
        })
    }
}

/// Forgets a client's requests when its stream is dropped.
struct Cleanup {
    broker: Arc<BrokerInner>,
    ids: Vec<u64>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let mut w = self.broker.waiting.lock();
        for id in &self.ids {
            w.remove(id);
        }
    }
}

/// The stream a node's subscription gets.
pub type RequestStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = std::result::Result<LogRequest, Status>> + Send>>;

#[tonic::async_trait]
impl Logs for LogBroker {
    type SubscribeStream = RequestStream;

    async fn subscribe(
        &self,
        req: Request<Empty>,
    ) -> std::result::Result<Response<Self::SubscribeStream>, Status> {
        let node = require_node(&req)?.node_id.clone();
        let (tx, rx) = mpsc::channel(64);
        self.inner.nodes.lock().insert(node.clone(), tx);
        tracing::debug!(node = %node, "node listens for log requests");
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok),
        )))
    }

    async fn publish(
        &self,
        req: Request<Streaming<LogMessage>>,
    ) -> std::result::Result<Response<Empty>, Status> {
        let node = require_node(&req)?.node_id.clone();
        let mut stream = req.into_inner();
        while let Some(m) = stream.next().await {
            let m = m?;
            let answer = {
                let waiting = self.inner.waiting.lock();
                match waiting.get(&m.request_id) {
                    // Only the node asked, and only for the tasks asked: a
                    // node cannot put lines in another's output.
                    Some(w) if w.node != node || !w.tasks.contains(&m.task_id) => {
                        return Err(Status::permission_denied(format!(
                            "permission denied: node {node} was not asked for the logs of task {}",
                            m.task_id
                        )));
                    }
                    w => w.map(|w| w.answer.clone()),
                }
            };
            match answer {
                // The client went away: tell the node to stop.
                None => return Err(Status::cancelled("nobody waits for these logs")),
                Some(a) => {
                    if a.send(Ok(m)).await.is_err() {
                        return Err(Status::cancelled("nobody waits for these logs"));
                    }
                }
            }
        }
        Ok(Response::new(Empty {}))
    }
}

#[cfg(test)]
mod tests;
