//! Streaming a task's log files: read to the end, or follow (tail) until the task
//! has exited and the files are drained.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures::StreamExt;
use tokio::io::AsyncReadExt;

use crate::error::{Error, Result};
use crate::runtime::{LogChunk, LogChunks, LogOptions, LogStream};

/// How often a follower looks for new output.
const POLL: Duration = Duration::from_millis(25);
const CHUNK: usize = 64 * 1024;

/// Tells a follower whether the task has exited (its output is then final).
pub(crate) type Exited = Arc<dyn Fn() -> bool + Send + Sync>;

struct Tail {
    path: PathBuf,
    stream: LogStream,
    file: Option<tokio::fs::File>,
    follow: bool,
    exited: Exited,
    /// The task had exited at the last empty read: the next empty read ends.
    draining: bool,
}

impl Tail {
    async fn next_chunk(&mut self) -> Option<Result<LogChunk>> {
        loop {
            if self.file.is_none() {
                match tokio::fs::File::open(&self.path).await {
                    Ok(f) => self.file = Some(f),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Some(Err(Error::io(
                            format!("opening {}", self.path.display()),
                            e,
                        )));
                    }
                }
            }
            if let Some(file) = &mut self.file {
                let mut buf = BytesMut::with_capacity(CHUNK);
                match file.read_buf(&mut buf).await {
                    Ok(0) => {}
                    Ok(_) => {
                        return Some(Ok(LogChunk {
                            stream: self.stream,
                            data: buf.freeze(),
                        }));
                    }
                    Err(e) => {
                        return Some(Err(Error::io(
                            format!("reading {}", self.path.display()),
                            e,
                        )));
                    }
                }
            }
            if !self.follow || self.draining {
                return None;
            }
            if (self.exited)() {
                // One more read picks up what was written before the exit.
                self.draining = true;
                continue;
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

fn tail(path: PathBuf, stream: LogStream, follow: bool, exited: Exited) -> LogChunks {
    let t = Tail {
        path,
        stream,
        file: None,
        follow,
        exited,
        draining: false,
    };
    futures::stream::unfold(
        t,
        |mut t| async move { t.next_chunk().await.map(|c| (c, t)) },
    )
    .boxed()
}

/// The log stream of a task whose output is in `stdout` and `stderr`. Without
/// `follow`, stdout comes first, then stderr; with it, chunks come as written.
pub(crate) fn stream(
    stdout: PathBuf,
    stderr: PathBuf,
    options: LogOptions,
    exited: Exited,
) -> LogChunks {
    let mut parts = Vec::new();
    if options.stdout {
        parts.push(tail(
            stdout,
            LogStream::Stdout,
            options.follow,
            exited.clone(),
        ));
    }
    if options.stderr {
        parts.push(tail(stderr, LogStream::Stderr, options.follow, exited));
    }
    if options.follow {
        futures::stream::select_all(parts).boxed()
    } else {
        futures::stream::iter(parts).flatten().boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[tokio::test]
    async fn reads_and_follows() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let err = dir.path().join("err");
        std::fs::write(&out, "hello\n").unwrap();
        std::fs::write(&err, "oops\n").unwrap();
        let never: Exited = Arc::new(|| true);
        let all: Vec<_> = stream(out.clone(), err.clone(), LogOptions::default(), never)
            .map(|c| c.unwrap())
            .collect()
            .await;
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].stream, LogStream::Stdout);
        assert_eq!(&all[0].data[..], b"hello\n");
        assert_eq!(&all[1].data[..], b"oops\n");

        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let exited: Exited = Arc::new(move || d.load(Ordering::SeqCst));
        let opts = LogOptions {
            follow: true,
            stderr: false,
            ..Default::default()
        };
        let mut s = stream(out.clone(), err, opts, exited);
        assert_eq!(&s.next().await.unwrap().unwrap().data[..], b"hello\n");
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&out).unwrap();
        f.write_all(b"more\n").unwrap();
        assert_eq!(&s.next().await.unwrap().unwrap().data[..], b"more\n");
        f.write_all(b"last\n").unwrap();
        done.store(true, Ordering::SeqCst);
        assert_eq!(&s.next().await.unwrap().unwrap().data[..], b"last\n");
        assert!(s.next().await.is_none());
    }
}
