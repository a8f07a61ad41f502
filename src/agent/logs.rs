//! The node side of task logs: a node subscribes at every manager's log broker
//! ([`crate::manager::logbroker`]) and answers the requests it is sent from its
//! runtime, streaming each task's output back to the manager that asked.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use swarm_runtime::{LogOptions, LogStream, Runtime};
use tokio::sync::{mpsc, watch};

use crate::error::{Error, Result};
use crate::pki::{MANAGER_OU, NodeIdentity, RootCa, client_config};
use crate::rpc::proto::logs_client::LogsClient;
use crate::rpc::proto::{Empty, LogMessage, LogRequest};
use crate::rpc::tls::channel;

/// The node side: listens at every manager in `managers` (re-read each
/// round) and answers log requests from `runtime`, until `stop`.
pub async fn serve_node(
    managers: impl Fn() -> Vec<String> + Send + 'static,
    ca: RootCa,
    identity: NodeIdentity,
    runtime: Arc<dyn Runtime>,
    stop: watch::Receiver<bool>,
) {
    let tls = match client_config(&ca, &identity) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "logs: no TLS settings");
            return;
        }
    };
    let mut running: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    let mut stop_rx = stop.clone();
    loop {
        for m in managers() {
            let alive = running.get(&m).is_some_and(|h| !h.is_finished());
            if !alive {
                let (tls, rt, stop) = (tls.clone(), runtime.clone(), stop.clone());
                let addr = m.clone();
                running.insert(
                    m,
                    tokio::spawn(async move {
                        if let Err(e) = listen(&addr, tls, rt, stop).await {
                            tracing::debug!(manager = %addr, error = %e, "logs: subscription ended");
                        }
                    }),
                );
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop_rx.changed() => break,
        }
    }
    for (_, h) in running {
        h.abort();
    }
}

async fn listen(
    addr: &str,
    tls: Arc<rustls::ClientConfig>,
    runtime: Arc<dyn Runtime>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let ch = channel(addr, tls, MANAGER_OU)?;
    let mut requests = LogsClient::new(ch.clone())
        .subscribe(Empty {})
        .await
        .map_err(crate::rpc::tls::from_status)?
        .into_inner();
    loop {
        let req = tokio::select! {
            r = requests.next() => r,
            _ = stop.changed() => return Ok(()),
        };
        let Some(req) = req else {
            return Err(Error::Unavailable(format!(
                "{addr} closed the subscription"
            )));
        };
        let req = req.map_err(crate::rpc::tls::from_status)?;
        tokio::spawn(answer(ch.clone(), runtime.clone(), req));
    }
}

/// Streams the output of every task in `req` back to the manager.
async fn answer(ch: tonic::transport::Channel, runtime: Arc<dyn Runtime>, req: LogRequest) {
    let (tx, rx) = mpsc::channel::<LogMessage>(256);
    let id = req.request_id;
    let opts = LogOptions {
        follow: req.follow,
        stdout: req.stdout,
        stderr: req.stderr,
        tail: req.tail.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
    };
    for task in req.task_ids {
        let (tx, runtime) = (tx.clone(), runtime.clone());
        tokio::spawn(async move {
            let error = match runtime.logs(&task, opts).await {
                Ok(mut chunks) => {
                    let mut error = String::new();
                    while let Some(c) = chunks.next().await {
                        match c {
                            Ok(c) => {
                                let m = LogMessage {
                                    request_id: id,
                                    task_id: task.clone(),
                                    stream: if c.stream == LogStream::Stderr { 2 } else { 1 },
                                    data: c.data.to_vec(),
                                    done: false,
                                    error: String::new(),
                                    time_seconds: c.time.map_or(0, |t| t.seconds),
                                    time_nanos: c.time.map_or(0, |t| t.nanos),
                                };
                                if tx.send(m).await.is_err() {
                                    return;
                                }
                            }
                            Err(e) => {
                                error = e.to_string();
                                break;
                            }
                        }
                    }
                    error
                }
                Err(e) => e.to_string(),
            };
            let _ = tx
                .send(LogMessage {
                    request_id: id,
                    task_id: task,
                    done: true,
                    error,
                    ..Default::default()
                })
                .await;
        });
    }
    drop(tx);
    let out = tokio_stream::wrappers::ReceiverStream::new(rx);
    if let Err(s) = LogsClient::new(ch).publish(out).await {
        tracing::debug!(error = %s.message(), "logs: publishing stopped");
    }
}
