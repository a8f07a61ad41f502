//! [`ScriptedRuntime`]: a runtime of scripted tasks, held in memory.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use swarm_core::types::{ContainerStatus, Task};
use swarm_core::{Clock, SystemClock, Timestamp};
use tokio::sync::watch;
use tokio::time::Instant;

use super::script::{Exit, Script};
use crate::error::{Error, Result};
use crate::runtime::{
    ContainerState, Inspection, LogChunk, LogChunks, LogOptions, LogStream, Runtime, TaskLabels,
    host_ports, stop_grace,
};

/// Exit code of a task killed with SIGKILL (128 + 9).
const SIGKILL_EXIT: i32 = 137;

type Matcher = Arc<dyn Fn(&Task) -> bool + Send + Sync>;

/// A runtime whose tasks do what their [`Script`] says, with no process or
/// container behind them.
///
/// By default it behaves like a real runtime: `create` holds the task (CREATED),
/// `start` runs it (RUNNING, with a pid) until it is stopped, removed or its
/// scripted exit comes; `wait` returns the exit code once it exited (waiting
/// meanwhile, also for a task not started yet); `stop` sends the stop
/// signal (the task exits 143 unless scripted otherwise) and returns once the
/// task has exited; `remove` forgets it; `inspect` and `list` report what is
/// held, with the task's labels, image and host-mode ports (while it runs);
/// `logs` returns the lines the script wrote, [`Error::NotFound`] for a task it
/// does not hold. Verbs are idempotent as the [`Runtime`] contract asks (`start`
/// of a task that exited leaves it exited, as the process runtime does).
///
/// Each task follows a [`Script`], chosen when the task is prepared and again
/// when it is created: the one given for its task ID ([`task`](Self::task)),
/// else the first [`matching`](Self::matching) one, else the one for its image
/// ([`image`](Self::image)), else the default ([`otherwise`](Self::otherwise),
/// [`Script::new`] unless set). Clones share the tasks and the scripts, as two
/// instances of a runtime on the same node do (an agent that restarted); scripts
/// added later apply to tasks created later.
///
/// Times: `started_at`, `finished_at` and log line times come from the
/// [`clock`](Self::clock) (the system clock unless set); scripted delays and
/// stop grace periods run on tokio's clock, so a test with paused time does not
/// wait for them.
///
/// ```
/// use swarm_core::types::{Task, TaskState};
/// use swarm_core::{Id, ManualClock, Timestamp};
/// use swarm_runtime::testing::{Script, ScriptedRuntime};
/// use swarm_runtime::{Error, Runtime, drive};
/// use tokio::sync::watch;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let runtime = ScriptedRuntime::new()
///     .image("redis:3.0.7", Script::new().fail_prepare(|task| Error::NoSuchImage {
///         image: task.spec.container.image.clone(),
///     }))
///     .task("flaky", Script::new().start_unavailable(2, "engine restarting").exit_at_once(3));
///
/// let task = |id: &str, image: &str| {
///     let mut t = Task { id: Id::from(id), desired_state: TaskState::Running, ..Default::default() };
///     t.spec.container.image = image.into();
///     t
/// };
/// let clock = ManualClock::new(Timestamp::ZERO);
/// let (_desired, rx) = watch::channel(TaskState::Running);
///
/// // A missing image rejects the task; two temporary errors are retried.
/// let done = drive(&runtime, &clock, task("t1", "redis:3.0.7"), rx.clone(), |_| {}).await;
/// assert_eq!(done.status.err, "No such image: redis:3.0.7");
/// let done = drive(&runtime, &clock, task("flaky", "busybox"), rx.clone(), |_| {}).await;
/// assert_eq!(done.status.err, "task: non-zero exit (3)");
///
/// // Unscripted tasks run until they are stopped.
/// let t3 = task("t3", "busybox");
/// runtime.create(&t3).await.unwrap();
/// runtime.start("t3").await.unwrap();
/// runtime.stop("t3", None).await.unwrap();
/// assert_eq!(runtime.wait("t3").await.unwrap(), 143);
/// # }
/// ```
#[derive(Clone)]
pub struct ScriptedRuntime {
    shared: Arc<Shared>,
}

struct Shared {
    config: Mutex<Config>,
    tasks: Mutex<BTreeMap<String, Held>>,
    /// Bumped whenever a held task changes state, for `wait` and followed logs.
    changes: watch::Sender<u64>,
    next_pid: AtomicI32,
}

struct Config {
    tasks: HashMap<String, Script>,
    matching: Vec<(Matcher, Script)>,
    images: HashMap<String, Script>,
    otherwise: Script,
    clock: Arc<dyn Clock>,
}

impl Config {
    fn script(&self, task: &Task) -> Script {
        if let Some(s) = self.tasks.get(task.id.as_str()) {
            return s.clone();
        }
        if let Some((_, s)) = self.matching.iter().find(|(m, _)| m(task)) {
            return s.clone();
        }
        let image = &task.spec.container.image;
        self.images.get(image).unwrap_or(&self.otherwise).clone()
    }
}

/// A task the runtime holds.
struct Held {
    task: Task,
    script: Script,
    state: ContainerState,
    exit_code: Option<i32>,
    pid: i32,
    started_at: Option<Timestamp>,
    finished_at: Option<Timestamp>,
    /// When a scripted [`Exit::After`] is due, once started.
    exit_due: Option<Instant>,
    /// Inspections that saw it running.
    inspections: u32,
    /// `start` calls still to fail with `Unavailable`.
    unavailable: u32,
    output: Vec<LogChunk>,
}

impl Held {
    fn exit(&mut self, code: i32, now: Timestamp) {
        self.state = ContainerState::Exited;
        self.exit_code = Some(code);
        self.pid = 0;
        self.finished_at = Some(now);
        self.exit_due = None;
    }

    /// Ends the task if its scripted exit is due; whether it did.
    fn settle(&mut self, now: Timestamp) -> bool {
        match (self.exit_due, self.script.exit) {
            (Some(due), Exit::After(_, code)) if Instant::now() >= due => {
                self.exit(code, now);
                true
            }
            _ => false,
        }
    }

    fn inspection(&self) -> Inspection {
        let running = self.state == ContainerState::Running;
        Inspection {
            labels: TaskLabels::of(&self.task),
            image: self.task.spec.container.image.clone(),
            state: self.state,
            exit_code: self.exit_code,
            container: ContainerStatus {
                container_id: self.task.id.to_string(),
                pid: self.pid,
                exit_code: self.exit_code.unwrap_or(0),
            },
            ports: if running {
                host_ports(&self.task)
            } else {
                Vec::new()
            },
            started_at: self.started_at,
            finished_at: self.finished_at,
            addr: None,
            netns: if running {
                self.script.netns.clone()
            } else {
                None
            },
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn wanted(options: LogOptions, chunk: &LogChunk) -> bool {
    match chunk.stream {
        LogStream::Stdout => options.stdout,
        LogStream::Stderr => options.stderr,
    }
}

impl Shared {
    fn now(&self) -> Timestamp {
        let clock = lock(&self.config).clock.clone();
        clock.now()
    }

    fn notify(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Runs `f` on the held task `task_id`, its due exit applied first.
    fn with<T>(&self, task_id: &str, f: impl FnOnce(&mut Held, Timestamp) -> T) -> Result<T> {
        let now = self.now();
        let mut tasks = lock(&self.tasks);
        let held = tasks
            .get_mut(task_id)
            .ok_or_else(|| Error::not_found(task_id))?;
        if held.settle(now) {
            self.notify();
        }
        Ok(f(held, now))
    }

    /// Until the task has exited: its exit code. [`Error::NotFound`] when it is
    /// (or gets) removed first.
    async fn exited(&self, task_id: &str) -> Result<i32> {
        let mut changes = self.changes.subscribe();
        loop {
            let due = self.with(task_id, |h, _| match (h.state, h.exit_code) {
                (ContainerState::Exited, Some(code)) => Ok(code),
                _ => Err(h.exit_due),
            })?;
            match due {
                Ok(code) => return Ok(code),
                Err(due) => changed(&mut changes, due).await,
            }
        }
    }
}

/// Until a held task changes, or `due` (a scripted exit) comes.
async fn changed(changes: &mut watch::Receiver<u64>, due: Option<Instant>) {
    match due {
        Some(due) => {
            tokio::select! {
                _ = changes.changed() => {}
                _ = tokio::time::sleep_until(due) => {}
            }
        }
        // The sender lives as long as the runtime the caller holds.
        None => {
            let _ = changes.changed().await;
        }
    }
}

impl Default for ScriptedRuntime {
    fn default() -> Self {
        ScriptedRuntime::new()
    }
}

impl ScriptedRuntime {
    /// A runtime holding no task, whose tasks follow [`Script::new`].
    pub fn new() -> ScriptedRuntime {
        ScriptedRuntime {
            shared: Arc::new(Shared {
                config: Mutex::new(Config {
                    tasks: HashMap::new(),
                    matching: Vec::new(),
                    images: HashMap::new(),
                    otherwise: Script::new(),
                    clock: Arc::new(SystemClock),
                }),
                tasks: Mutex::new(BTreeMap::new()),
                changes: watch::channel(0).0,
                next_pid: AtomicI32::new(1000),
            }),
        }
    }

    /// The task with ID `task_id` follows `script`.
    pub fn task(self, task_id: impl Into<String>, script: Script) -> ScriptedRuntime {
        lock(&self.shared.config)
            .tasks
            .insert(task_id.into(), script);
        self
    }

    /// Tasks for which `matches` holds follow `script` (unless scripted by task
    /// ID, or by an earlier `matching`).
    pub fn matching(
        self,
        matches: impl Fn(&Task) -> bool + Send + Sync + 'static,
        script: Script,
    ) -> ScriptedRuntime {
        lock(&self.shared.config)
            .matching
            .push((Arc::new(matches), script));
        self
    }

    /// Tasks of image `image` (the spec's reference, compared as written)
    /// follow `script` unless scripted otherwise.
    pub fn image(self, image: impl Into<String>, script: Script) -> ScriptedRuntime {
        lock(&self.shared.config)
            .images
            .insert(image.into(), script);
        self
    }

    /// Tasks scripted by nothing else follow `script`.
    pub fn otherwise(self, script: Script) -> ScriptedRuntime {
        lock(&self.shared.config).otherwise = script;
        self
    }

    /// Times reported (start, finish, log lines) come from `clock`.
    pub fn clock(self, clock: Arc<dyn Clock>) -> ScriptedRuntime {
        lock(&self.shared.config).clock = clock;
        self
    }

    fn script(&self, task: &Task) -> Script {
        lock(&self.shared.config).script(task)
    }
}

impl fmt::Debug for ScriptedRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tasks: Vec<String> = lock(&self.shared.tasks).keys().cloned().collect();
        f.debug_struct("ScriptedRuntime")
            .field("tasks", &tasks)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Runtime for ScriptedRuntime {
    fn name(&self) -> &'static str {
        "scripted"
    }

    async fn prepare(&self, task: &Task) -> Result<()> {
        match self.script(task).prepare_error {
            Some(error) => Err(error(task)),
            None => Ok(()),
        }
    }

    async fn create(&self, task: &Task) -> Result<ContainerStatus> {
        let script = self.script(task);
        let mut tasks = lock(&self.shared.tasks);
        if tasks.contains_key(task.id.as_str()) {
            return Err(Error::AlreadyExists {
                task_id: task.id.to_string(),
            });
        }
        let held = Held {
            task: task.clone(),
            unavailable: script.start_unavailable,
            script,
            state: ContainerState::Created,
            exit_code: None,
            pid: 0,
            started_at: None,
            finished_at: None,
            exit_due: None,
            inspections: 0,
            output: Vec::new(),
        };
        let container = held.inspection().container;
        tasks.insert(task.id.to_string(), held);
        drop(tasks);
        self.shared.notify();
        Ok(container)
    }

    async fn start(&self, task_id: &str) -> Result<()> {
        let next_pid = &self.shared.next_pid;
        let started = self.shared.with(task_id, |h, now| {
            if h.state != ContainerState::Created {
                return Ok(());
            }
            if h.unavailable > 0 {
                h.unavailable -= 1;
                return Err(Error::Unavailable(h.script.unavailable_message.clone()));
            }
            if let Some(error) = &h.script.start_error {
                return Err(error(&h.task));
            }
            h.state = ContainerState::Running;
            h.pid = next_pid.fetch_add(1, Ordering::Relaxed);
            h.started_at = Some(now);
            h.output = (h.script.output.iter())
                .map(|(stream, data)| LogChunk {
                    stream: *stream,
                    data: data.clone(),
                    time: Some(now),
                })
                .collect();
            if let Exit::After(delay, _) = h.script.exit {
                h.exit_due = Some(Instant::now() + delay);
            }
            Ok(())
        })?;
        self.shared.notify();
        started
    }

    async fn wait(&self, task_id: &str) -> Result<i32> {
        self.shared.exited(task_id).await
    }

    async fn stop(&self, task_id: &str, grace: Option<Duration>) -> Result<()> {
        let ignored = self.shared.with(task_id, |h, now| {
            if h.state != ContainerState::Running {
                return None;
            }
            match h.script.stop_code {
                Some(code) => {
                    h.exit(code, now);
                    None
                }
                None => Some(grace.unwrap_or_else(|| stop_grace(&h.task))),
            }
        })?;
        self.shared.notify();
        let Some(grace) = ignored else {
            return Ok(());
        };
        // The task ignores the signal: it is killed when the grace period
        // ends, unless it exits (or is removed) first.
        if tokio::time::timeout(grace, self.shared.exited(task_id))
            .await
            .is_err()
        {
            self.shared.with(task_id, |h, now| {
                if h.state == ContainerState::Running {
                    h.exit(SIGKILL_EXIT, now);
                }
            })?;
            self.shared.notify();
        }
        Ok(())
    }

    async fn remove(&self, task_id: &str) -> Result<()> {
        let removed = lock(&self.shared.tasks).remove(task_id);
        self.shared.notify();
        removed.map(drop).ok_or_else(|| Error::not_found(task_id))
    }

    async fn inspect(&self, task_id: &str) -> Result<Inspection> {
        let (inspection, ended) = self.shared.with(task_id, |h, now| {
            let inspection = h.inspection();
            let mut ended = false;
            if let (ContainerState::Running, Exit::AfterInspections(n, code)) =
                (h.state, h.script.exit)
            {
                h.inspections += 1;
                if h.inspections >= n {
                    h.exit(code, now);
                    ended = true;
                }
            }
            (inspection, ended)
        })?;
        if ended {
            self.shared.notify();
        }
        Ok(inspection)
    }

    async fn list(&self) -> Result<Vec<Inspection>> {
        let now = self.shared.now();
        let mut tasks = lock(&self.shared.tasks);
        let mut settled = false;
        let all = (tasks.values_mut())
            .map(|h| {
                settled |= h.settle(now);
                h.inspection()
            })
            .collect();
        drop(tasks);
        if settled {
            self.shared.notify();
        }
        Ok(all)
    }

    async fn logs(&self, task_id: &str, options: LogOptions) -> Result<LogChunks> {
        let changes = self.shared.changes.subscribe();
        let (backlog, next) = self.shared.with(task_id, |h, _| {
            let mut lines: Vec<LogChunk> = (h.output.iter())
                .filter(|c| wanted(options, c))
                .cloned()
                .collect();
            if let Some(n) = options.tail {
                lines.drain(..lines.len().saturating_sub(n));
            }
            (lines, h.output.len())
        })?;
        let backlog = futures::stream::iter(backlog.into_iter().map(Ok));
        if !options.follow {
            return Ok(backlog.boxed());
        }
        // Then what the task writes (when it starts), until it exits or is removed.
        let state = (self.shared.clone(), task_id.to_string(), next, changes);
        let rest = futures::stream::unfold(
            state,
            move |(shared, id, mut next, mut changes)| async move {
                loop {
                    let step = shared.with(&id, |h, _| {
                        while let Some(c) = h.output.get(next) {
                            next += 1;
                            if wanted(options, c) {
                                return Ok(c.clone());
                            }
                        }
                        Err((h.state == ContainerState::Exited, h.exit_due))
                    });
                    match step {
                        Ok(Ok(chunk)) => return Some((Ok(chunk), (shared, id, next, changes))),
                        Ok(Err((false, due))) => changed(&mut changes, due).await,
                        Ok(Err((true, _))) | Err(_) => return None,
                    }
                }
            },
        );
        Ok(backlog.chain(rest).boxed())
    }
}
