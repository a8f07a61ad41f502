//! The process runtime: tasks as local processes, the embedded default where there
//! is no Docker.

mod logs;
mod netns;
mod ports;
mod store;
mod sys;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::{Gid, Pid, Uid};
use swarm_core::Timestamp;
use swarm_core::types::{ContainerStatus, Task};
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::runtime::{
    ContainerState, Inspection, LogChunks, LogOptions, Runtime, TaskLabels, has_overlay, stop_grace,
};
use store::{ProcState, Record, TaskDir};

/// PATH of a task that sets none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// How often a task that is not this process's child is checked for exit.
const ADOPTED_POLL: Duration = Duration::from_millis(10);
/// How long an exit waits for the task's output to be stored.
const RELAY_DRAIN: Duration = Duration::from_secs(2);
/// How long a killed task may take to be reaped before `stop` gives up.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs tasks as child processes of the host.
///
/// - The task's `command` followed by its `args` is executed (looked up in the
///   task's `PATH`); the environment is the spec's `env` plus a default `PATH`; the
///   working directory is the spec's `dir`, or the task's own state directory.
/// - `user` (`name`, `uid`, `name:group`, `uid:gid`) is applied with setuid/setgid
///   when the runtime runs as root; otherwise it must name the current user.
/// - Each task leads its own process group; stop signals the whole group and, after
///   the grace period, kills it; when the task's main process exits, what is left of
///   its group is killed, so a removed task leaves no orphans.
/// - stdout and stderr go through named pipes in the task's directory to a relay
///   that stores each line with the time it was read in `stdout.log` and
///   `stderr.log`; [`Runtime::logs`] streams them (merged by time, `tail`,
///   `follow`). While no runtime relays (the agent restarting), a task's output
///   waits in the pipe (64 KiB; then the task's writes block) until a new
///   instance adopts the task and relays again.
/// - A process shares the host's network, so it binds its target ports itself.
///   A host-mode published port equal to its target port is the task's own; any
///   other (a dynamic one, `0`, is picked when the task is created) is reported
///   in [`Inspection::ports`] for the node to forward to the target port
///   ([`Runtime::binds_host_ports`] is `false`).
/// - A task attached to an overlay network (other than ingress) gets, when the
///   runtime runs as root, a network namespace of its own, created at `create`,
///   bind-mounted at `<state dir>/<task id>/netns` (it survives the agent) and
///   reported as [`Inspection::netns`] for the node to attach the overlay
///   interfaces and serve DNS in; `remove` unmounts it. The process starts in
///   it, in a private mount namespace where `/etc/resolv.conf` says
///   `nameserver 127.0.0.11` and `options ndots:0` (Docker's). Such a task may
///   bind any port (its namespace is its own) but is no longer on the host's
///   network: the node (the facade's network plane) also gives it an address
///   on its gateway bridge with the default route there, where the routing
///   mesh reaches it and through which it reaches the node and the outside.
///   Without root, or with no overlay attachment, the task shares the host's
///   network.
/// - The image is recorded (and reported by `inspect`) but not executed; `prepare`
///   never fails for a missing image.
/// - State (pid, start time, exit code) lives in the state directory, so a new
///   instance over the same directory lists the tasks and controls them. Exit codes
///   are recorded by the instance that started the task while its process lives;
///   a task that exits while no instance of this process watches it (the agent
///   restarted as a new process) is reported exited, and `wait` says
///   [`Error::ExitUnknown`].
///
/// Cloning gives another handle on the same runtime.
#[derive(Clone)]
pub struct ProcessRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    /// Tasks this instance created or started, kept in memory so that the hot path
    /// (start, inspect, wait) reads no files. The disk stays the source of truth
    /// for other instances.
    known: Mutex<HashMap<String, Known>>,
    /// Bounds the file and spawn work running at once on the blocking pool: a
    /// node starting hundreds of tasks would otherwise get hundreds of threads
    /// contending for the same directory.
    io: tokio::sync::Semaphore,
    /// Tasks whose output this instance relays to their log files.
    relays: Mutex<std::collections::HashSet<String>>,
}

/// Blocking operations (task creation, start, removal) one runtime runs at once.
const IO_PARALLELISM: usize = 2;

#[derive(Clone)]
struct Known {
    record: Arc<Record>,
    child: Option<Child>,
}

/// A task process this instance started (its parent).
#[derive(Clone)]
struct Child {
    state: ProcState,
    /// Exit code and time, once reaped.
    exit: watch::Receiver<Option<(i32, Timestamp)>>,
}

impl ProcessRuntime {
    /// A runtime keeping its state under `state_dir` (created when missing). Tasks
    /// already recorded there are adopted.
    pub fn new(state_dir: impl Into<PathBuf>) -> Result<ProcessRuntime> {
        let dir = state_dir.into();
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        Ok(ProcessRuntime {
            inner: Arc::new(Inner {
                dir,
                known: Mutex::new(HashMap::new()),
                io: tokio::sync::Semaphore::new(IO_PARALLELISM),
                relays: Mutex::new(Default::default()),
            }),
        })
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.inner.dir
    }

    fn task_dir(&self, task_id: &str) -> Result<TaskDir> {
        TaskDir::new(&self.inner.dir, task_id)
    }

    /// Runs blocking file and process work on tokio's blocking pool, at most
    /// [`IO_PARALLELISM`] at a time, so the async workers (which carry every
    /// node's RPC in an embedded swarm) are never held up by a slow file system.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let _permit = self
            .inner
            .io
            .acquire()
            .await
            .map_err(|_| Error::Unavailable("the runtime is closed".into()))?;
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| Error::Unavailable(format!("runtime worker failed: {e}")))?
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<String, Known>> {
        self.inner.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn child(&self, task_id: &str) -> Option<Child> {
        self.known().get(task_id).and_then(|k| k.child.clone())
    }

    /// Starts relaying the task's output pipes to its log files, unless this
    /// instance does already. Returns what ends when both pipes are drained
    /// (`None` when this instance relays already, or the task has no pipes).
    fn relay(&self, task_id: &str, td: &TaskDir) -> Result<Option<tokio::task::JoinHandle<()>>> {
        {
            let mut relays = self.inner.relays.lock().unwrap_or_else(|e| e.into_inner());
            if !relays.insert(task_id.to_string()) {
                return Ok(None);
            }
        }
        let forget = |me: &ProcessRuntime| {
            me.inner
                .relays
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(task_id);
        };
        let mut pipes = Vec::new();
        if !td.pipe_paths().iter().all(|p| p.exists()) {
            // Started by a runtime that had the task write its files itself:
            // there is nothing to relay.
            forget(self);
            return Ok(None);
        }
        for (fifo, log) in td
            .pipe_paths()
            .into_iter()
            .zip([td.stdout_path(), td.stderr_path()])
        {
            match tokio::net::unix::pipe::OpenOptions::new().open_receiver(&fifo) {
                Ok(p) => pipes.push((p, log)),
                Err(e) => {
                    forget(self);
                    return Err(Error::io(format!("opening {}", fifo.display()), e));
                }
            }
        }
        let (me, task) = (self.clone(), task_id.to_string());
        Ok(Some(tokio::spawn(async move {
            futures::future::join_all(pipes.into_iter().map(|(p, log)| logs::relay(p, log))).await;
            me.inner
                .relays
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&task);
        })))
    }

    /// The task's record: from memory, else from its directory.
    fn record(&self, task_id: &str, td: &TaskDir) -> Result<Arc<Record>> {
        if let Some(k) = self.known().get(task_id) {
            return Ok(k.record.clone());
        }
        td.read_record(task_id).map(Arc::new)
    }

    /// The task's process state: from memory for this instance's children, else
    /// from its directory.
    fn proc_state(&self, td: &TaskDir, task_id: &str) -> Result<Option<ProcState>> {
        match self.child(task_id) {
            Some(child) => {
                let mut state = child.state.clone();
                if let Some((code, at)) = *child.exit.borrow() {
                    state.exit_code = Some(code);
                    state.finished_at = Some(at);
                }
                Ok(Some(state))
            }
            None => td.read_state(),
        }
    }

    fn check_spec(task: &Task) -> Result<Option<(Uid, Gid)>> {
        let c = &task.spec.container;
        if c.command.is_empty() && c.args.is_empty() {
            return Err(Error::InvalidSpec {
                field: "container.command",
                reason: "the process runtime needs a command to run".into(),
            });
        }
        sys::parse_signal(&c.stop_signal)?;
        if c.user.is_empty() {
            return Ok(None);
        }
        let (uid, gid) = sys::resolve_user(&c.user)?;
        if Uid::effective().is_root() {
            Ok(Some((uid, gid)))
        } else if uid == Uid::effective() {
            Ok(None)
        } else {
            Err(Error::InvalidSpec {
                field: "container.user",
                reason: format!("cannot run as {:?}: the runtime is not root", c.user),
            })
        }
    }

    /// Waits for a task this instance did not start: polls /proc, then reads the
    /// exit code its parent may have recorded.
    async fn wait_adopted(&self, task_id: &str, td: &TaskDir) -> Result<i32> {
        loop {
            let state = td.read_state()?.ok_or_else(|| Error::not_found(task_id))?;
            if let Some(code) = state.exit_code {
                return Ok(code);
            }
            if !sys::is_alive(state.pid, state.start_ticks) {
                // The parent (an earlier instance in this process) may be about to
                // record the code: give it a moment.
                for _ in 0..20 {
                    tokio::time::sleep(ADOPTED_POLL).await;
                    if let Some(code) = td.read_state()?.and_then(|s| s.exit_code) {
                        return Ok(code);
                    }
                }
                return Err(Error::ExitUnknown {
                    task_id: task_id.to_string(),
                });
            }
            tokio::time::sleep(ADOPTED_POLL).await;
        }
    }

    fn signal_group(state: &ProcState, signal: Signal) -> Result<()> {
        if state.exit_code.is_some() || !sys::is_alive(state.pid, state.start_ticks) {
            return Ok(());
        }
        match killpg(Pid::from_raw(state.pid), signal) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(e) => Err(Error::io(
                format!("signalling process group {}", state.pid),
                e.into(),
            )),
        }
    }

    /// Creates the task's directory and record (blocking file writes).
    fn create_blocking(
        &self,
        task_id: String,
        td: TaskDir,
        record: Record,
    ) -> Result<ContainerStatus> {
        if td.exists() {
            return Err(Error::AlreadyExists { task_id });
        }
        std::fs::create_dir_all(&td.root)
            .map_err(|e| Error::io(format!("creating {}", td.root.display()), e))?;
        if let Some(path) = &record.netns {
            let made = netns::create(path).and_then(|()| {
                std::fs::write(td.resolv_conf_path(), netns::RESOLV_CONF).map_err(|e| {
                    Error::io(format!("writing {}", td.resolv_conf_path().display()), e)
                })
            });
            if let Err(e) = made {
                let _ = netns::remove(path);
                let _ = std::fs::remove_dir_all(&td.root);
                return Err(e);
            }
        }
        td.write_record(&record)?;
        self.known().insert(
            task_id.clone(),
            Known {
                record: Arc::new(record),
                child: None,
            },
        );
        Ok(ContainerStatus {
            container_id: task_id,
            pid: 0,
            exit_code: 0,
        })
    }

    /// Starts the task's process (blocking: file writes and the spawn; run off the
    /// async workers).
    fn start_blocking(&self, task_id: &str) -> Result<()> {
        let td = self.task_dir(task_id)?;
        let record = self.record(task_id, &td)?;
        if self.child(task_id).is_some() || td.read_state()?.is_some() {
            return Ok(());
        }
        let (program, args) = record.argv.split_first().ok_or(Error::InvalidSpec {
            field: "container.command",
            reason: "empty".into(),
        })?;
        let env: Vec<(&str, &str)> = record
            .env
            .iter()
            .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
            .collect();
        let path = env
            .iter()
            .rev()
            .find(|(k, _)| *k == "PATH")
            .map_or(DEFAULT_PATH, |(_, v)| v);
        let cwd = if record.dir.is_empty() {
            td.root.as_path()
        } else {
            Path::new(&record.dir)
        };
        let not_found = || Error::StartFailed {
            message: format!("exec: {program:?}: executable file not found in $PATH"),
            rejected: false,
        };
        let resolved = sys::find_program(program, path, cwd).ok_or_else(not_found)?;
        // The task holds its pipes open for reading too, so a write never meets
        // a pipe without readers (SIGPIPE) while no relay runs.
        let mut outputs = Vec::new();
        for fifo in td.pipe_paths() {
            match nix::unistd::mkfifo(
                &fifo,
                nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
            ) {
                Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                Err(e) => return Err(Error::io(format!("creating {}", fifo.display()), e.into())),
            }
            outputs.push(
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&fifo)
                    .map_err(|e| Error::io(format!("opening {}", fifo.display()), e))?,
            );
        }
        let (stdout, stderr) = (outputs.remove(0), outputs.remove(0));
        let mut cmd = tokio::process::Command::new(&resolved);
        cmd.arg0(program)
            .args(args)
            .env_clear()
            .env("PATH", DEFAULT_PATH)
            .envs(env.iter().copied())
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0);
        let user = if !record.user.is_empty() && Uid::effective().is_root() {
            Some(sys::resolve_user(&record.user)?)
        } else {
            None
        };
        if let Some(path) = &record.netns {
            // Namespaces first, then the user: an unprivileged user could not
            // join them. Everything is opened and encoded before the fork.
            let entry = netns::Entry::open(path, &td.resolv_conf_path())?;
            let ids = user.map(|(u, g)| (u.as_raw(), g.as_raw()));
            // SAFETY: the hook only makes async-signal-safe system calls.
            unsafe {
                cmd.pre_exec(move || {
                    entry.enter()?;
                    if let Some((uid, gid)) = ids
                        && (libc::setgroups(0, std::ptr::null()) != 0
                            || libc::setgid(gid) != 0
                            || libc::setuid(uid) != 0)
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        } else if let Some((uid, gid)) = user {
            // As root, std also drops the supplementary groups before setuid.
            cmd.uid(uid.as_raw()).gid(gid.as_raw());
        }
        // The relay opens its read ends while our write ends still hold the
        // pipes open: a task that writes and exits before the relay would
        // otherwise take its output with it (a FIFO drops what is in it when
        // the last descriptor closes). If the spawn fails, our ends close and
        // the relay ends with nothing.
        let relay = match self.relay(task_id, &td) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(task = task_id, error = %e, "task output not relayed");
                None
            }
        };
        let mut child = cmd.spawn().map_err(|e| Error::StartFailed {
            message: match e.kind() {
                std::io::ErrorKind::NotFound => {
                    format!("exec: {program:?}: executable file not found in $PATH")
                }
                _ => format!("exec: {program:?}: {e}"),
            },
            rejected: false,
        })?;
        // Our copies of the pipes' write ends close here: the relay sees the end
        // of the output when the task's group has closed them.
        drop(cmd);
        let pid = child.id().map(|p| p as i32).unwrap_or(0);
        let start_ticks = sys::proc_stat(pid).map(|s| s.start_ticks).unwrap_or(0);
        let state = ProcState {
            pid,
            start_ticks,
            started_at: Timestamp::now(),
            exit_code: None,
            finished_at: None,
        };
        td.write_state(&state)?;
        let (tx, rx) = watch::channel(None);
        self.known().insert(
            task_id.to_string(),
            Known {
                record: record.clone(),
                child: Some(Child {
                    state: state.clone(),
                    exit: rx,
                }),
            },
        );
        let task = task_id.to_string();
        // The reaper outlives this handle: it records the exit even if the runtime
        // is dropped (and a new instance adopts the task).
        tokio::spawn(async move {
            let code = match child.wait().await {
                Ok(status) => sys::exit_code(status),
                Err(e) => {
                    tracing::warn!(task = %task, error = %e, "waiting for task process");
                    255
                }
            };
            // The rest of the group dies with the task. The leader is reaped, but its
            // pid cannot be reused while group members remain.
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            // The exit is recorded once the output is stored, so whoever sees
            // the task exited reads all of it. A process that left the group
            // and kept the pipes open does not hold the exit back for long.
            if let Some(relay) = relay {
                let _ = tokio::time::timeout(RELAY_DRAIN, relay).await;
            }
            let mut done = state;
            let finished_at = Timestamp::now();
            done.exit_code = Some(code);
            done.finished_at = Some(finished_at);
            if td.root.exists()
                && let Err(e) = td.write_state(&done)
            {
                tracing::warn!(task = %task, error = %e, "recording task exit");
            }
            let _ = tx.send(Some((code, finished_at)));
        });
        Ok(())
    }

    fn inspect_dir(&self, task_id: &str, td: &TaskDir) -> Result<Inspection> {
        let record = self.record(task_id, td)?;
        let ours = self.child(task_id).is_some();
        let state = self.proc_state(td, task_id)?;
        let (state_kind, exit_code, pid) = match &state {
            None => (ContainerState::Created, None, 0),
            Some(s) if s.exit_code.is_some() => (ContainerState::Exited, s.exit_code, 0),
            // A child of ours runs until it is reaped.
            Some(s) if ours || sys::is_alive(s.pid, s.start_ticks) => {
                if !ours && let Err(e) = self.relay(task_id, td) {
                    // An adopted task: its output waits in its pipes for us.
                    tracing::warn!(task = task_id, error = %e, "task output not relayed");
                }
                (ContainerState::Running, None, s.pid)
            }
            Some(_) => (ContainerState::Exited, None, 0),
        };
        let ports = if state_kind == ContainerState::Running {
            record.ports.clone()
        } else {
            Vec::new()
        };
        Ok(Inspection {
            labels: record.labels.clone(),
            image: record.image.clone(),
            state: state_kind,
            exit_code,
            container: ContainerStatus {
                container_id: task_id.to_string(),
                pid,
                exit_code: exit_code.unwrap_or(0),
            },
            ports,
            started_at: state.as_ref().map(|s| s.started_at),
            finished_at: state.and_then(|s| s.finished_at),
            addr: None,
            netns: record.netns.clone(),
        })
    }
}

impl std::fmt::Debug for ProcessRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessRuntime")
            .field("state_dir", &self.inner.dir)
            .finish()
    }
}

#[async_trait]
impl Runtime for ProcessRuntime {
    fn name(&self) -> &'static str {
        "process"
    }

    fn binds_host_ports(&self) -> bool {
        false
    }

    async fn prepare(&self, task: &Task) -> Result<()> {
        self.task_dir(&task.id)?;
        Self::check_spec(task).map(|_| ())
    }

    async fn create(&self, task: &Task) -> Result<ContainerStatus> {
        Self::check_spec(task)?;
        let td = self.task_dir(&task.id)?;
        let c = &task.spec.container;
        let ports = ports::bind_plan(task)?;
        let record = Record {
            labels: TaskLabels::of(task),
            image: c.image.clone(),
            argv: c.command.iter().chain(&c.args).cloned().collect(),
            env: c.env.clone(),
            dir: c.dir.clone(),
            user: c.user.clone(),
            stop_signal: c.stop_signal.clone(),
            stop_grace: stop_grace(task),
            ports,
            netns: (has_overlay(task) && Uid::effective().is_root()).then(|| td.netns_path()),
        };
        let me = self.clone();
        let task_id = task.id.to_string();
        self.blocking(move || me.create_blocking(task_id, td, record))
            .await
    }

    async fn start(&self, task_id: &str) -> Result<()> {
        let me = self.clone();
        let task_id = task_id.to_string();
        self.blocking(move || me.start_blocking(&task_id)).await
    }

    async fn wait(&self, task_id: &str) -> Result<i32> {
        let td = self.task_dir(task_id)?;
        if let Some(mut child) = self.child(task_id) {
            let exit = child
                .exit
                .wait_for(|c| c.is_some())
                .await
                .map_err(|_| Error::Unavailable("task reaper stopped".into()))?;
            return Ok(exit.map_or(255, |(code, _)| code));
        }
        if !td.exists() {
            return Err(Error::not_found(task_id));
        }
        self.wait_adopted(task_id, &td).await
    }

    async fn stop(&self, task_id: &str, grace: Option<Duration>) -> Result<()> {
        let td = self.task_dir(task_id)?;
        let record = self.record(task_id, &td)?;
        let Some(state) = self.proc_state(&td, task_id)? else {
            return Ok(());
        };
        let signal = sys::parse_signal(&record.stop_signal)?;
        Self::signal_group(&state, signal)?;
        let grace = grace.unwrap_or(record.stop_grace);
        if tokio::time::timeout(grace, self.wait(task_id))
            .await
            .is_ok()
        {
            return Ok(());
        }
        tracing::debug!(task = task_id, "grace period over; killing");
        Self::signal_group(&state, Signal::SIGKILL)?;
        match tokio::time::timeout(KILL_TIMEOUT, self.wait(task_id)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(Error::ExitUnknown { .. })) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Unavailable(format!(
                "task {task_id} survived SIGKILL for {KILL_TIMEOUT:?}"
            ))),
        }
    }

    async fn remove(&self, task_id: &str) -> Result<()> {
        let td = self.task_dir(task_id)?;
        if !td.root.exists() {
            return Err(Error::not_found(task_id));
        }
        if let Some(state) = self.proc_state(&td, task_id)?
            && state.exit_code.is_none()
            && sys::is_alive(state.pid, state.start_ticks)
        {
            self.stop(task_id, Some(Duration::ZERO)).await?;
        }
        self.known().remove(task_id);
        self.blocking(move || {
            netns::remove(&td.netns_path())?;
            std::fs::remove_dir_all(&td.root)
                .map_err(|e| Error::io(format!("removing {}", td.root.display()), e))
        })
        .await
    }

    async fn inspect(&self, task_id: &str) -> Result<Inspection> {
        let td = self.task_dir(task_id)?;
        self.inspect_dir(task_id, &td)
    }

    async fn list(&self) -> Result<Vec<Inspection>> {
        let entries = std::fs::read_dir(&self.inner.dir)
            .map_err(|e| Error::io(format!("listing {}", self.inner.dir.display()), e))?;
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(task_id) = name.to_str() else {
                continue;
            };
            let Ok(td) = self.task_dir(task_id) else {
                continue;
            };
            match self.inspect_dir(task_id, &td) {
                Ok(i) => out.push(i),
                Err(Error::NotFound { .. }) => {}
                Err(e) => tracing::warn!(task = task_id, error = %e, "skipping unreadable task"),
            }
        }
        Ok(out)
    }

    async fn logs(&self, task_id: &str, options: LogOptions) -> Result<LogChunks> {
        let td = self.task_dir(task_id)?;
        if !td.exists() {
            return Err(Error::not_found(task_id));
        }
        let exited_td = td.clone();
        let exited = Arc::new(move || match exited_td.read_state() {
            Ok(Some(s)) => s.exit_code.is_some() || !sys::is_alive(s.pid, s.start_ticks),
            Ok(None) => false,
            Err(_) => true,
        });
        Ok(logs::stream(
            td.stdout_path(),
            td.stderr_path(),
            options,
            exited,
        ))
    }
}
