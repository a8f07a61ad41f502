//! The process runtime's log store.
//!
//! ```text
//!   task ── stdout.pipe (FIFO) ──► relay ──► stdout.log   one record per line:
//!        ── stderr.pipe (FIFO) ──► relay ──► stderr.log   "<secs>.<nanos> F|P <bytes>\n"
//! ```
//!
//! A task writes into named pipes; a relay in the runtime reads them and
//! appends each line to the stream's file with the time it was read (`F`: a
//! whole line; `P`: part of a line, written without its newline yet). The task
//! holds its pipes open for reading and writing, so it never gets SIGPIPE while
//! no relay runs (an agent restarting): the pipe buffers, and a new runtime
//! instance opens the pipe and relays again.
//!
//! Reading merges both files by time, keeps the last N lines when asked
//! (`tail`), and then follows the files until the task has exited.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use swarm_core::Timestamp;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::pipe;

use crate::error::{Error, Result};
use crate::runtime::{LogChunk, LogChunks, LogOptions, LogStream};

/// How often a follower looks for new output.
const POLL: Duration = Duration::from_millis(25);
/// Largest read from a pipe; a longer line is stored as several `P` records.
const CHUNK: usize = 16 * 1024;

/// Tells a follower whether the task has exited and its output is all stored.
pub(crate) type Exited = Arc<dyn Fn() -> bool + Send + Sync>;

/// One stored record as a file line (with its newline).
fn record(time: Timestamp, whole: bool, data: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "{}.{:09} {} ",
        time.seconds,
        time.nanos,
        if whole { 'F' } else { 'P' }
    )
    .into_bytes();
    r.extend_from_slice(data);
    r.push(b'\n');
    r
}

/// Reads one stored line back. A line not in the record form (a file an older
/// runtime wrote) is returned as it is, with no time.
fn parse(line: &[u8], stream: LogStream) -> LogChunk {
    let raw = || LogChunk {
        stream,
        data: Bytes::copy_from_slice(line),
        time: None,
    };
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    let mut parts = body.splitn(3, |b| *b == b' ');
    let (Some(time), Some(flag), Some(data)) = (parts.next(), parts.next(), parts.next()) else {
        return raw();
    };
    let Some((secs, nanos)) = std::str::from_utf8(time)
        .ok()
        .and_then(|t| t.split_once('.'))
        .and_then(|(s, n)| Some((s.parse::<i64>().ok()?, n.parse::<u32>().ok()?)))
        .filter(|(_, n)| *n < 1_000_000_000)
    else {
        return raw();
    };
    let mut data = data.to_vec();
    match flag {
        b"F" => data.push(b'\n'),
        b"P" => {}
        _ => return raw(),
    }
    LogChunk {
        stream,
        data: Bytes::from(data),
        time: Some(Timestamp {
            seconds: secs,
            nanos,
        }),
    }
}

/// Copies what the task writes into `pipe` to the file at `path`, one record
/// per line, until every writer has closed the pipe. A failed write is logged
/// and the output dropped: the pipe keeps being drained so the task never
/// blocks on a full disk.
pub(crate) async fn relay(mut pipe: pipe::Receiver, path: PathBuf) {
    let mut file = match tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .await
    {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot store task output");
            None
        }
    };
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "reading task output");
                return;
            }
        };
        let now = Timestamp::now();
        let mut out = Vec::with_capacity(n + 64);
        for line in buf[..n].split_inclusive(|b| *b == b'\n') {
            match line.strip_suffix(b"\n") {
                Some(l) => out.extend(record(now, true, l)),
                None => out.extend(record(now, false, line)),
            }
        }
        // tokio's File finishes a write in the background: flush, so the
        // records are in the file (for readers, and before the exit is
        // recorded) when this returns.
        if let Some(f) = &mut file
            && let Err(e) = async {
                f.write_all(&out).await?;
                f.flush().await
            }
            .await
        {
            tracing::warn!(path = %path.display(), error = %e, "storing task output");
        }
    }
}

/// One stored stream, read record by record.
struct Source {
    path: PathBuf,
    stream: LogStream,
    file: Option<BufReader<tokio::fs::File>>,
    /// A record read only in part (the relay is writing it).
    partial: Vec<u8>,
}

impl Source {
    /// The next whole record, or `None` at the end of what is stored now.
    async fn next(&mut self) -> Result<Option<LogChunk>> {
        if self.file.is_none() {
            match tokio::fs::File::open(&self.path).await {
                Ok(f) => self.file = Some(BufReader::new(f)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(Error::io(format!("opening {}", self.path.display()), e)),
            }
        }
        let Some(file) = &mut self.file else {
            return Ok(None);
        };
        file.read_until(b'\n', &mut self.partial)
            .await
            .map_err(|e| Error::io(format!("reading {}", self.path.display()), e))?;
        if self.partial.last() != Some(&b'\n') {
            return Ok(None);
        }
        let line = std::mem::take(&mut self.partial);
        Ok(Some(parse(&line, self.stream)))
    }
}

/// Reading state: the sources, the record each has ready, what is left to
/// hand out of the history, and whether the follow phase runs.
struct Reader {
    sources: Vec<Source>,
    heads: Vec<Option<LogChunk>>,
    history: VecDeque<LogChunk>,
    /// The history is read (into `history` with a tail, else handed out as
    /// merged).
    caught_up: bool,
    tail: Option<usize>,
    follow: bool,
    exited: Exited,
    /// The task had exited at the last empty round: the next empty round ends.
    draining: bool,
}

impl Reader {
    /// The earliest of the sources' next records (by time; a record without
    /// time goes first), or `None` when every source is at its end.
    async fn merged(&mut self) -> Result<Option<LogChunk>> {
        for (i, s) in self.sources.iter_mut().enumerate() {
            if self.heads[i].is_none() {
                self.heads[i] = s.next().await?;
            }
        }
        let first = (0..self.heads.len())
            .filter(|i| self.heads[*i].is_some())
            .min_by_key(|i| self.heads[*i].as_ref().map(|c| c.time));
        Ok(first.and_then(|i| self.heads[i].take()))
    }

    /// Reads the whole history keeping its last `n` lines.
    async fn read_tail(&mut self, n: usize) -> Result<()> {
        let mut lines = 0usize;
        while let Some(c) = self.merged().await? {
            if c.data.ends_with(b"\n") {
                lines += 1;
            }
            self.history.push_back(c);
            while lines > n {
                let Some(gone) = self.history.pop_front() else {
                    break;
                };
                if gone.data.ends_with(b"\n") {
                    lines -= 1;
                }
            }
        }
        Ok(())
    }

    async fn next_chunk(&mut self) -> Option<Result<LogChunk>> {
        if !self.caught_up {
            if let Some(n) = self.tail {
                if let Err(e) = self.read_tail(n).await {
                    return Some(Err(e));
                }
                self.caught_up = true;
            } else {
                match self.merged().await {
                    Ok(Some(c)) => return Some(Ok(c)),
                    Ok(None) => self.caught_up = true,
                    Err(e) => return Some(Err(e)),
                }
            }
        }
        if let Some(c) = self.history.pop_front() {
            return Some(Ok(c));
        }
        if !self.follow {
            return None;
        }
        loop {
            match self.merged().await {
                Ok(Some(c)) => return Some(Ok(c)),
                Ok(None) => {}
                Err(e) => return Some(Err(e)),
            }
            if self.draining {
                return None;
            }
            if (self.exited)() {
                // One more round picks up what was stored before the exit.
                self.draining = true;
                continue;
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// The log stream of a task whose output is stored in `stdout` and `stderr`:
/// both merged by time, the last `tail` lines when asked, then (with `follow`)
/// what comes until the task has exited.
pub(crate) fn stream(
    stdout: PathBuf,
    stderr: PathBuf,
    options: LogOptions,
    exited: Exited,
) -> LogChunks {
    let mut sources = Vec::new();
    for (wanted, path, stream) in [
        (options.stdout, stdout, LogStream::Stdout),
        (options.stderr, stderr, LogStream::Stderr),
    ] {
        if wanted {
            sources.push(Source {
                path,
                stream,
                file: None,
                partial: Vec::new(),
            });
        }
    }
    let r = Reader {
        heads: vec![None; sources.len()],
        sources,
        history: VecDeque::new(),
        caught_up: false,
        tail: options.tail,
        follow: options.follow,
        exited,
        draining: false,
    };
    futures::stream::unfold(
        r,
        |mut r| async move { r.next_chunk().await.map(|c| (c, r)) },
    )
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn at(seconds: i64) -> Timestamp {
        Timestamp { seconds, nanos: 7 }
    }

    fn texts(chunks: &[LogChunk]) -> Vec<String> {
        chunks
            .iter()
            .map(|c| String::from_utf8_lossy(&c.data).into_owned())
            .collect()
    }

    async fn all(s: LogChunks) -> Vec<LogChunk> {
        s.map(|c| c.unwrap()).collect().await
    }

    #[test]
    fn records_read_back_with_their_time() {
        let r = record(at(5), true, b"a b");
        assert_eq!(r, b"5.000000007 F a b\n");
        let c = parse(&r, LogStream::Stdout);
        assert_eq!(&c.data[..], b"a b\n");
        assert_eq!(c.time, Some(at(5)));
        let p = parse(&record(at(5), false, b"par"), LogStream::Stderr);
        assert_eq!((&p.data[..], p.stream), (&b"par"[..], LogStream::Stderr));
        // An older plain file: the line as it is, no time.
        for old in [
            &b"hello\n"[..],
            b"x.y F z\n",
            b"1.2 Q z\n",
            b"1.9999999999 F z\n",
        ] {
            let c = parse(old, LogStream::Stdout);
            assert_eq!((&c.data[..], c.time), (old, None));
        }
    }

    #[tokio::test]
    async fn merges_by_time_and_keeps_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (out, err) = (dir.path().join("out"), dir.path().join("err"));
        let mut o = record(at(1), true, b"one");
        o.extend(record(at(3), false, b"thr"));
        o.extend(record(at(3), true, b"ee"));
        o.extend(record(at(4), true, b"four"));
        std::fs::write(&out, o).unwrap();
        std::fs::write(&err, record(at(2), true, b"two")).unwrap();
        let done: Exited = Arc::new(|| true);
        let every = all(stream(
            out.clone(),
            err.clone(),
            LogOptions::default(),
            done.clone(),
        ))
        .await;
        assert_eq!(texts(&every), ["one\n", "two\n", "thr", "ee\n", "four\n"]);
        assert_eq!(every[1].stream, LogStream::Stderr);
        assert_eq!(every[1].time, Some(at(2)));
        let tail = |n| LogOptions {
            tail: Some(n),
            ..Default::default()
        };
        let last2 = all(stream(out.clone(), err.clone(), tail(2), done.clone())).await;
        assert_eq!(texts(&last2), ["thr", "ee\n", "four\n"]);
        let none = all(stream(out.clone(), err.clone(), tail(0), done.clone())).await;
        assert!(none.is_empty());
        let more = all(stream(out.clone(), err.clone(), tail(99), done.clone())).await;
        assert_eq!(more.len(), 5);
        let only_err = LogOptions {
            stdout: false,
            tail: Some(1),
            ..Default::default()
        };
        assert_eq!(
            texts(&all(stream(out, err, only_err, done)).await),
            ["two\n"]
        );
    }

    #[tokio::test]
    async fn tails_then_follows_until_exit() {
        let dir = tempfile::tempdir().unwrap();
        let (out, err) = (dir.path().join("out"), dir.path().join("err"));
        let mut o = record(at(1), true, b"old");
        o.extend(record(at(2), true, b"recent"));
        std::fs::write(&out, o).unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let exited: Exited = Arc::new(move || d.load(Ordering::SeqCst));
        let opts = LogOptions {
            follow: true,
            tail: Some(1),
            ..Default::default()
        };
        let mut s = stream(out.clone(), err, opts, exited);
        assert_eq!(&s.next().await.unwrap().unwrap().data[..], b"recent\n");
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&out).unwrap();
        // A record written in two pieces comes out whole.
        let r = record(at(3), true, b"more");
        f.write_all(&r[..4]).unwrap();
        f.flush().unwrap();
        f.write_all(&r[4..]).unwrap();
        assert_eq!(&s.next().await.unwrap().unwrap().data[..], b"more\n");
        f.write_all(&record(at(4), true, b"last")).unwrap();
        done.store(true, Ordering::SeqCst);
        assert_eq!(&s.next().await.unwrap().unwrap().data[..], b"last\n");
        assert!(s.next().await.is_none());
    }

    #[tokio::test]
    async fn the_relay_stores_lines_with_times() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("p");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let writer = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&fifo)
            .unwrap();
        let reader = pipe::OpenOptions::new().open_receiver(&fifo).unwrap();
        let log = dir.path().join("out");
        let before = Timestamp::now();
        let relay = tokio::spawn(relay(reader, log.clone()));
        use std::io::Write;
        (&writer).write_all(b"a\nb\npart").unwrap();
        drop(writer);
        relay.await.unwrap();
        let after = Timestamp::now();
        let done: Exited = Arc::new(|| true);
        let got = all(stream(
            log,
            dir.path().join("none"),
            LogOptions::default(),
            done,
        ))
        .await;
        assert_eq!(texts(&got), ["a\n", "b\n", "part"]);
        for c in &got {
            let t = c.time.unwrap();
            assert!(before <= t && t <= after);
        }
    }
}
