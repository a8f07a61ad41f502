//! [`Script`]: what a task of the [`ScriptedRuntime`](super::ScriptedRuntime) does.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use swarm_core::types::Task;

use crate::error::Error;
use crate::runtime::LogStream;

/// Makes the error a scripted call fails with (errors are not `Clone`).
pub(super) type MakeError = Arc<dyn Fn(&Task) -> Error + Send + Sync>;

/// When a started task exits by itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum Exit {
    /// Never: it runs until it is stopped or removed.
    #[default]
    Never,
    /// This long after it started (zero: at once), with this code.
    After(Duration, i32),
    /// Right after the n-th inspection that saw it running, with this code.
    AfterInspections(u32, i32),
}

/// What a task of the [`ScriptedRuntime`](super::ScriptedRuntime) does, from
/// `prepare` to its exit. Built by chaining; [`Script::new`] (the default) is a
/// task that prepares, starts, writes nothing and runs until it is stopped, when
/// it dies of the stop signal (exit code 143, as a process with no SIGTERM
/// handler).
///
/// ```
/// use std::time::Duration;
/// use swarm_runtime::Error;
/// use swarm_runtime::testing::Script;
///
/// // An engine that is restarting twice, then a task that prints and exits 3.
/// let flaky = Script::new()
///     .start_unavailable(2, "engine restarting")
///     .stdout("hello")
///     .exit_after(Duration::from_millis(100), 3);
/// // A task whose image is refused.
/// let refused = Script::new().fail_prepare(|task| Error::NoSuchImage {
///     image: task.spec.container.image.clone(),
/// });
/// # let _ = (flaky, refused);
/// ```
#[derive(Clone)]
pub struct Script {
    pub(super) prepare_error: Option<MakeError>,
    pub(super) start_error: Option<MakeError>,
    pub(super) start_unavailable: u32,
    pub(super) unavailable_message: String,
    pub(super) output: Vec<(LogStream, Bytes)>,
    pub(super) exit: Exit,
    /// The exit code when stopped; `None`: it ignores the stop signal and is
    /// killed when the grace period ends.
    pub(super) stop_code: Option<i32>,
    pub(super) netns: Option<PathBuf>,
}

/// Exit code of a process killed by SIGTERM (128 + 15).
const SIGTERM_EXIT: i32 = 143;

impl Script {
    /// A task that runs until it is stopped and exits 143 when it is.
    pub fn new() -> Script {
        Script {
            prepare_error: None,
            start_error: None,
            start_unavailable: 0,
            unavailable_message: String::new(),
            output: Vec::new(),
            exit: Exit::Never,
            stop_code: Some(SIGTERM_EXIT),
            netns: None,
        }
    }

    /// `prepare` fails, every time, with the error `error` makes of the task
    /// (e.g. [`Error::NoSuchImage`], [`Error::InvalidSpec`]).
    pub fn fail_prepare(
        mut self,
        error: impl Fn(&Task) -> Error + Send + Sync + 'static,
    ) -> Script {
        self.prepare_error = Some(Arc::new(error));
        self
    }

    /// `start` fails, every time, with the error `error` makes of the task
    /// (e.g. [`Error::StartFailed`] for a command that does not exist). Checked
    /// after [`start_unavailable`](Script::start_unavailable).
    pub fn fail_start(mut self, error: impl Fn(&Task) -> Error + Send + Sync + 'static) -> Script {
        self.start_error = Some(Arc::new(error));
        self
    }

    /// The first `times` calls of `start` of each task fail with
    /// [`Error::Unavailable`]`(message)`, a temporary error; the next ones work.
    pub fn start_unavailable(mut self, times: u32, message: impl Into<String>) -> Script {
        self.start_unavailable = times;
        self.unavailable_message = message.into();
        self
    }

    /// The task writes `line` to its stdout when it starts (after the lines
    /// scripted before it); a `\n` is added when it has none.
    pub fn stdout(self, line: impl AsRef<str>) -> Script {
        self.write(LogStream::Stdout, line.as_ref())
    }

    /// The task writes `line` to its stderr when it starts, as
    /// [`stdout`](Script::stdout) does.
    pub fn stderr(self, line: impl AsRef<str>) -> Script {
        self.write(LogStream::Stderr, line.as_ref())
    }

    fn write(mut self, stream: LogStream, line: &str) -> Script {
        let mut line = line.to_string();
        if !line.ends_with('\n') {
            line.push('\n');
        }
        self.output.push((stream, Bytes::from(line)));
        self
    }

    /// The task exits with `code` as soon as it starts: the first look at it
    /// after `start` finds it exited.
    pub fn exit_at_once(self, code: i32) -> Script {
        self.exit_after(Duration::ZERO, code)
    }

    /// The task exits with `code` once `delay` has passed since it started
    /// (tokio's clock: a test with paused time gets there without waiting).
    pub fn exit_after(mut self, delay: Duration, code: i32) -> Script {
        self.exit = Exit::After(delay, code);
        self
    }

    /// The task exits with `code` right after the `n`-th [`inspect`] that saw it
    /// running (n ≥ 1): a task that ends while the node looks at it, e.g. while
    /// it attaches the task's network namespace.
    ///
    /// [`inspect`]: crate::Runtime::inspect
    pub fn exit_after_inspections(mut self, n: u32, code: i32) -> Script {
        self.exit = Exit::AfterInspections(n.max(1), code);
        self
    }

    /// The task handles the stop signal by exiting with `code` at once.
    pub fn on_stop(mut self, code: i32) -> Script {
        self.stop_code = Some(code);
        self
    }

    /// The task ignores the stop signal: `stop` waits the whole grace period,
    /// then kills it (exit code 137), unless it exits by itself first.
    pub fn ignore_stop(mut self) -> Script {
        self.stop_code = None;
        self
    }

    /// While the task runs, [`Inspection::netns`](crate::Inspection::netns)
    /// is `path`, as a Docker container's `/proc/<pid>/ns/net` is.
    pub fn netns(mut self, path: impl Into<PathBuf>) -> Script {
        self.netns = Some(path.into());
        self
    }
}

impl Default for Script {
    /// [`Script::new`].
    fn default() -> Script {
        Script::new()
    }
}

impl fmt::Debug for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Script")
            .field("fails_prepare", &self.prepare_error.is_some())
            .field("fails_start", &self.start_error.is_some())
            .field("start_unavailable", &self.start_unavailable)
            .field("output", &self.output)
            .field("exit", &self.exit)
            .field("stop_code", &self.stop_code)
            .field("netns", &self.netns)
            .finish()
    }
}
