//! `GET /services/{id}/logs` and `GET /tasks/{id}/logs`: task output from the
//! nodes, in Docker's multiplexed stream (an 8-byte header per frame: stream
//! 1 = stdout, 2 = stderr, then the length), each line prefixed with the
//! details the CLI reads to print `web.1.<task>@node1 | ...`.

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use swarm_core::types::{Service, Task};
use swarm_runtime::LogStream;

use super::http::{ApiResult, Params, Shared, flag};
use super::{API_VERSION, ApiError};
use crate::manager::logbroker::{LogLine, LogsQuery};

/// One frame of Docker's multiplexed stream.
fn frame(stream: LogStream, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(8 + payload.len());
    b.put_u8(if stream == LogStream::Stderr { 2 } else { 1 });
    b.put_bytes(0, 3);
    b.put_u32(payload.len() as u32);
    b.put_slice(payload);
    b.freeze()
}

/// `tail=`: a count of lines, or `all` (also empty or negative, as docker
/// takes them).
fn tail(q: &std::collections::HashMap<String, String>) -> Result<Option<usize>, ApiError> {
    let Some(v) = q.get("tail").map(|v| v.trim()) else {
        return Ok(None);
    };
    if v.is_empty() || v.eq_ignore_ascii_case("all") {
        return Ok(None);
    }
    match v.parse::<i64>() {
        Ok(n) if n < 0 => Ok(None),
        Ok(n) => Ok(Some(usize::try_from(n).unwrap_or(usize::MAX))),
        Err(_) => Err(ApiError::bad_request(format!(
            "invalid tail value {v:?}: a number of lines or \"all\""
        ))),
    }
}

/// The frames of one piece of output: a frame per line, each prefixed as
/// asked (the time the task's node got it — the manager's receive time when
/// the runtime keeps none — then the task's details).
fn frames(l: &LogLine, service: &str, timestamps: bool, details: bool) -> Bytes {
    let mut out = BytesMut::new();
    let time = l
        .time
        .unwrap_or_else(swarm_core::Timestamp::now)
        .to_string();
    for line in l.data.split_inclusive(|b| *b == b'\n') {
        let mut p = Vec::with_capacity(line.len() + 128);
        if timestamps {
            p.extend_from_slice(time.as_bytes());
            p.push(b' ');
        }
        if details {
            p.extend_from_slice(
                format!(
                    "com.docker.swarm.node.id={},com.docker.swarm.service.id={},com.docker.swarm.task.id={} ",
                    l.node_id, service, l.task_id
                )
                .as_bytes(),
            );
        }
        p.extend_from_slice(line);
        out.extend_from_slice(&frame(l.stream, &p));
    }
    out.freeze()
}

async fn stream_logs(
    e: &super::Engine,
    tasks: Vec<std::sync::Arc<Task>>,
    q: &std::collections::HashMap<String, String>,
) -> ApiResult {
    let broker = {
        let node = e.node.read().await;
        match node.as_ref() {
            Some(n) => n.log_broker().await,
            None => None,
        }
    }
    .ok_or_else(ApiError::not_a_manager)?;
    let (stdout, stderr) = (flag(q, "stdout"), flag(q, "stderr"));
    if !stdout && !stderr {
        return Err(ApiError::bad_request(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let (timestamps, details) = (flag(q, "timestamps"), flag(q, "details"));
    let tail = tail(q)?;
    let services: std::collections::HashMap<_, _> = tasks
        .iter()
        .map(|t| (t.id.clone(), t.service_id.to_string()))
        .collect();
    let wanted = tasks
        .iter()
        .filter(|t| !t.node_id.is_empty())
        .map(|t| (t.id.clone(), t.node_id.clone()))
        .collect();
    let lines = broker.logs(
        wanted,
        LogsQuery {
            follow: flag(q, "follow"),
            stdout,
            stderr,
            tail,
        },
    );
    let body = lines.map(move |l| {
        let svc = services.get(&l.task_id).cloned().unwrap_or_default();
        Ok::<_, Infallible>(frames(&l, &svc, timestamps, details))
    });
    Ok((
        [
            ("API-Version", API_VERSION),
            ("Content-Type", "application/vnd.docker.multiplexed-stream"),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

pub(super) async fn service_logs(
    State(e): Shared,
    Path(id): Path<String>,
    Query(q): Params,
) -> ApiResult {
    let control = e.control().await?;
    let view = control.store().view();
    let s = view.resolve::<Service>(&id).map_err(crate::Error::from)?;
    let tasks: Vec<_> = view.tasks_by_service(&s.id).collect();
    drop(view);
    stream_logs(&e, tasks, &q).await
}

pub(super) async fn task_logs(
    State(e): Shared,
    Path(id): Path<String>,
    Query(q): Params,
) -> ApiResult {
    let control = e.control().await?;
    let t = control.inspect_task(&id)?;
    stream_logs(&e, vec![t], &q).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_docker_headers_and_details() {
        let l = LogLine {
            task_id: "t1".into(),
            node_id: "n1".into(),
            stream: LogStream::Stderr,
            data: Bytes::from_static(b"a\nbc\n"),
            time: None,
        };
        let f = frames(&l, "s1", false, true);
        let first = b"com.docker.swarm.node.id=n1,com.docker.swarm.service.id=s1,com.docker.swarm.task.id=t1 a\n";
        assert_eq!(&f[..8], &[2, 0, 0, 0, 0, 0, 0, first.len() as u8]);
        assert_eq!(&f[8..8 + first.len()], first);
        let rest = &f[8 + first.len()..];
        assert_eq!(rest[0], 2);
        assert!(rest.ends_with(b" bc\n"));
    }

    #[test]
    fn lines_carry_the_time_their_node_got_them() {
        let at = swarm_core::Timestamp {
            seconds: 1_700_000_000,
            nanos: 5,
        };
        let l = LogLine {
            task_id: "t1".into(),
            node_id: "n1".into(),
            stream: LogStream::Stdout,
            data: Bytes::from_static(b"x\n"),
            time: Some(at),
        };
        let f = frames(&l, "s1", true, false);
        assert_eq!(&f[8..], b"2023-11-14T22:13:20.000000005Z x\n");
    }

    #[test]
    fn tail_takes_counts_and_all() {
        let q = |v: &str| std::collections::HashMap::from([("tail".to_string(), v.to_string())]);
        assert_eq!(tail(&Default::default()).unwrap(), None);
        assert_eq!(tail(&q("all")).unwrap(), None);
        assert_eq!(tail(&q("")).unwrap(), None);
        assert_eq!(tail(&q("-1")).unwrap(), None);
        assert_eq!(tail(&q("0")).unwrap(), Some(0));
        assert_eq!(tail(&q("25")).unwrap(), Some(25));
        assert!(tail(&q("ten")).is_err());
    }
}
