//! The checks themselves.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use swarm_core::types::{Annotations, Task, TaskState};
use swarm_core::{Id, SystemClock, Timestamp};
use tokio::sync::watch;

use super::{Check, Harness};
use crate::error::Error;
use crate::runtime::{ContainerState, LogOptions, LogStream, Runtime};

type Outcome = Result<(), String>;

fn ensure(cond: bool, message: impl FnOnce() -> String) -> Outcome {
    if cond { Ok(()) } else { Err(message()) }
}

fn call<T>(what: &str, r: crate::Result<T>) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {e}"))
}

pub(super) struct Ctx<'a> {
    pub harness: &'a dyn Harness,
    pub check: Check,
    pub runtime: Arc<dyn Runtime>,
    pub made: Vec<Id>,
}

impl Ctx<'_> {
    /// A task running `/bin/sh -c script`, with a unique ID.
    fn task(&mut self, script: &str, grace: Duration) -> Task {
        let prefix = self.harness.prefix();
        let unique = Id::generate();
        let id = Id::from(format!("{prefix}-{}-{}", self.check.slug(), &unique[..12]));
        let mut t = Task {
            id: id.clone(),
            service_id: Id::from(format!("{prefix}-svc")),
            node_id: Id::from(format!("{prefix}-node")),
            slot: 1,
            service_annotations: Annotations::named(format!("{prefix}-{}", self.check.slug())),
            desired_state: TaskState::Running,
            ..Default::default()
        };
        let c = &mut t.spec.container;
        c.image = self.harness.image();
        c.command = vec!["/bin/sh".into(), "-c".into()];
        c.args = vec![script.into()];
        c.env = vec!["CONFORMANCE=1".into()];
        c.stop_grace_period = Some(grace);
        self.made.push(id);
        t
    }

    /// prepare + create + start.
    async fn launch(&self, task: &Task) -> Outcome {
        call("prepare", self.runtime.prepare(task).await)?;
        call("create", self.runtime.create(task).await)?;
        call("start", self.runtime.start(&task.id).await)
    }

    /// Runs a task through the shared state machine until it ends.
    async fn drive(&self, task: Task) -> Task {
        let (_tx, rx) = watch::channel(TaskState::Running);
        crate::drive(self.runtime.as_ref(), &SystemClock, task, rx, |_| {}).await
    }

    /// The task's output so far, per stream.
    async fn output(&self, task_id: &str, follow: bool) -> Result<(String, String), String> {
        let opts = LogOptions {
            follow,
            ..Default::default()
        };
        let mut chunks = call("logs", self.runtime.logs(task_id, opts).await)?;
        let (mut out, mut err) = (String::new(), String::new());
        while let Some(chunk) = chunks.next().await {
            let chunk = call("log stream", chunk)?;
            let text = String::from_utf8_lossy(&chunk.data);
            match chunk.stream {
                LogStream::Stdout => out.push_str(&text),
                LogStream::Stderr => err.push_str(&text),
            }
        }
        Ok((out, err))
    }

    /// Waits until the task printed `ready` (its signal handlers are in place).
    async fn ready(&self, task_id: &str) -> Outcome {
        let deadline = Instant::now() + Duration::from_secs(20);
        if let Err(Error::Unsupported(_)) = self.runtime.logs(task_id, LogOptions::default()).await
        {
            // No logs to watch: give the shell time to set its traps.
            tokio::time::sleep(Duration::from_millis(500)).await;
            return Ok(());
        }
        while !self.output(task_id, false).await?.0.contains("ready") {
            ensure(Instant::now() < deadline, || {
                "task never printed ready".into()
            })?;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    pub async fn body(&mut self) -> Outcome {
        match self.check {
            Check::Lifecycle => self.lifecycle().await,
            Check::ExitCodes => self.exit_codes().await,
            Check::StopWithinGrace => self.stop_within_grace().await,
            Check::KillAfterGrace => self.kill_after_grace().await,
            Check::Logs => self.logs().await,
            Check::Adopt => self.adopt().await,
            Check::DesiredShutdown => self.desired_shutdown().await,
            Check::MissingImage => self.missing_image().await,
            Check::BadCommand => self.bad_command().await,
        }
    }

    async fn lifecycle(&mut self) -> Outcome {
        let task = self.task(
            "trap 'exit 0' TERM; echo ready; while :; do sleep 0.05; done",
            Duration::from_secs(10),
        );
        let rt = self.runtime.clone();
        call("prepare", rt.prepare(&task).await)?;
        let created = call("create", rt.create(&task).await)?;
        ensure(!created.container_id.is_empty(), || {
            "create gave no container id".into()
        })?;
        let dup = rt.create(&task).await;
        ensure(matches!(dup, Err(Error::AlreadyExists { .. })), || {
            format!("second create: want AlreadyExists, got {dup:?}")
        })?;
        let i = call("inspect", rt.inspect(&task.id).await)?;
        ensure(i.state == ContainerState::Created, || {
            format!("after create: {:?}", i.state)
        })?;
        call("start", rt.start(&task.id).await)?;
        call("second start", rt.start(&task.id).await)?;
        let i = call("inspect", rt.inspect(&task.id).await)?;
        ensure(i.state == ContainerState::Running, || {
            format!("after start: {:?}", i.state)
        })?;
        ensure(i.container.pid > 0, || "running task has no pid".into())?;
        ensure(i.labels.task_id == task.id, || {
            format!("labels: {:?}", i.labels)
        })?;
        ensure(i.labels.service_id == task.service_id, || {
            format!("labels: {:?}", i.labels)
        })?;
        ensure(i.labels.node_id == task.node_id, || {
            format!("labels: {:?}", i.labels)
        })?;
        ensure(i.image == task.spec.container.image, || {
            format!("image: {}", i.image)
        })?;
        let listed = call("list", rt.list().await)?;
        ensure(listed.iter().any(|l| l.labels.task_id == task.id), || {
            "list does not show the running task".into()
        })?;
        self.ready(&task.id).await?;
        call("stop", rt.stop(&task.id, None).await)?;
        call("second stop", rt.stop(&task.id, None).await)?;
        let code = call("wait", rt.wait(&task.id).await)?;
        ensure(code == 0, || {
            format!("exit code after TERM handler: {code}")
        })?;
        let i = call("inspect", rt.inspect(&task.id).await)?;
        ensure(
            i.state == ContainerState::Exited && i.exit_code == Some(0),
            || format!("after stop: {:?} {:?}", i.state, i.exit_code),
        )?;
        call("remove", rt.remove(&task.id).await)?;
        let gone = rt.inspect(&task.id).await;
        ensure(matches!(gone, Err(Error::NotFound { .. })), || {
            format!("inspect after remove: {gone:?}")
        })?;
        let listed = call("list", rt.list().await)?;
        ensure(!listed.iter().any(|l| l.labels.task_id == task.id), || {
            "list still shows the removed task".into()
        })
    }

    async fn exit_codes(&mut self) -> Outcome {
        let ok = self.task("exit 0", Duration::from_secs(1));
        let done = self.drive(ok).await;
        ensure(done.status.state == TaskState::Complete, || {
            format!("exit 0: {:?} {:?}", done.status.state, done.status.err)
        })?;
        let bad = self.task("exit 3", Duration::from_secs(1));
        let done = self.drive(bad).await;
        ensure(done.status.state == TaskState::Failed, || {
            format!("exit 3: state {:?}", done.status.state)
        })?;
        ensure(done.status.err == "task: non-zero exit (3)", || {
            format!("exit 3: err {:?}", done.status.err)
        })?;
        let code = done.status.container_status.map(|c| c.exit_code);
        ensure(code == Some(3), || {
            format!("exit 3: container status {code:?}")
        })
    }

    async fn stop_within_grace(&mut self) -> Outcome {
        let task = self.task(
            "trap 'echo bye; exit 0' TERM; echo ready; while :; do sleep 0.05; done",
            Duration::from_secs(30),
        );
        self.launch(&task).await?;
        self.ready(&task.id).await?;
        call("stop", self.runtime.stop(&task.id, None).await)?;
        let code = call("wait", self.runtime.wait(&task.id).await)?;
        ensure(code == 0, || {
            format!("want the handler's exit 0, got {code} (killed?)")
        })
    }

    async fn kill_after_grace(&mut self) -> Outcome {
        let grace = Duration::from_secs(1);
        let task = self.task(
            "trap '' TERM; echo ready; while :; do sleep 0.05; done",
            grace,
        );
        self.launch(&task).await?;
        self.ready(&task.id).await?;
        let began = Instant::now();
        call("stop", self.runtime.stop(&task.id, Some(grace)).await)?;
        let took = began.elapsed();
        ensure(took >= grace.mul_f32(0.9), || {
            format!("killed after {took:?}, before the grace period")
        })?;
        let code = call("wait", self.runtime.wait(&task.id).await)?;
        ensure(code == 137, || format!("want 137 (SIGKILL), got {code}"))
    }

    async fn logs(&mut self) -> Outcome {
        let script = "echo out1; echo err1 >&2; sleep 0.3; echo out2; echo err2 >&2";
        let task = self.task(script, Duration::from_secs(1));
        let launched = Timestamp::now();
        self.launch(&task).await?;
        let (out, err) = self.output(&task.id, true).await?;
        ensure(out == "out1\nout2\n", || format!("followed stdout {out:?}"))?;
        ensure(err == "err1\nerr2\n", || format!("followed stderr {err:?}"))?;
        let code = call("wait", self.runtime.wait(&task.id).await)?;
        ensure(code == 0, || format!("exit {code}"))?;
        let (out, err) = self.output(&task.id, false).await?;
        ensure(out == "out1\nout2\n" && err == "err1\nerr2\n", || {
            format!("logs after exit: {out:?} {err:?}")
        })?;
        // The last two lines of both streams together; times, where the
        // runtime keeps them, lie between the launch and now.
        let opts = LogOptions {
            tail: Some(2),
            ..Default::default()
        };
        let chunks: Vec<_> = call("logs", self.runtime.logs(&task.id, opts).await)?
            .collect()
            .await;
        let mut lines = Vec::new();
        for c in chunks {
            let c = call("log stream", c)?;
            if let Some(t) = c.time {
                ensure(launched <= t && t <= Timestamp::now(), || {
                    format!("line time {t} outside the task's life")
                })?;
            }
            lines.push(String::from_utf8_lossy(&c.data).into_owned());
        }
        lines.sort();
        ensure(lines == ["err2\n", "out2\n"], || {
            format!("tail 2: {lines:?}")
        })
    }

    async fn adopt(&mut self) -> Outcome {
        let task = self.task(
            "trap 'exit 0' TERM; echo ready; while :; do sleep 0.05; done",
            Duration::from_secs(10),
        );
        self.launch(&task).await?;
        self.ready(&task.id).await?;
        // The agent restarts: a new instance knows only what the node holds.
        self.runtime = self.harness.runtime().await;
        let rt = self.runtime.clone();
        let listed = call("list", rt.list().await)?;
        let found = listed.iter().find(|l| l.labels.task_id == task.id);
        let Some(found) = found else {
            return Err("the new instance does not list the running task".into());
        };
        ensure(found.state == ContainerState::Running, || {
            format!("listed as {:?}", found.state)
        })?;
        ensure(
            found.labels.service_id == task.service_id && found.labels.node_id == task.node_id,
            || format!("labels: {:?}", found.labels),
        )?;
        call("stop", rt.stop(&task.id, None).await)?;
        let code = call("wait", rt.wait(&task.id).await)?;
        ensure(code == 0, || format!("exit code {code}"))?;
        call("remove", rt.remove(&task.id).await)?;
        let listed = call("list", rt.list().await)?;
        ensure(!listed.iter().any(|l| l.labels.task_id == task.id), || {
            "removed task still listed".into()
        })
    }

    async fn desired_shutdown(&mut self) -> Outcome {
        let task = self.task(
            "trap 'exit 0' TERM; while :; do sleep 0.05; done",
            Duration::from_secs(10),
        );
        let (tx, rx) = watch::channel(TaskState::Running);
        let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
        let runtime = self.runtime.clone();
        let driver = tokio::spawn(async move {
            crate::drive(runtime.as_ref(), &SystemClock, task, rx, move |s| {
                let _ = seen_tx.send(s.state);
            })
            .await
        });
        let mut states = Vec::new();
        while let Some(state) = seen.recv().await {
            states.push(state);
            if state >= TaskState::Running {
                break;
            }
        }
        let want = [
            TaskState::Accepted,
            TaskState::Preparing,
            TaskState::Ready,
            TaskState::Starting,
            TaskState::Running,
        ];
        ensure(states == want, || {
            format!("states {states:?}, want {want:?}")
        })?;
        let _ = tx.send(TaskState::Shutdown);
        let done = driver.await.map_err(|e| format!("driver: {e}"))?;
        ensure(done.status.state == TaskState::Shutdown, || {
            format!("state {:?} {:?}", done.status.state, done.status.err)
        })?;
        let i = call("inspect", self.runtime.inspect(&done.id).await)?;
        ensure(i.state == ContainerState::Exited, || {
            format!("after shutdown: {:?}", i.state)
        })
    }

    async fn missing_image(&mut self) -> Outcome {
        let mut task = self.task("exit 0", Duration::from_secs(1));
        match self.harness.missing_image() {
            Some(image) => {
                task.spec.container.image = image.clone();
                let direct = self.runtime.prepare(&task).await;
                ensure(matches!(&direct, Err(Error::NoSuchImage { .. })), || {
                    format!("prepare: want NoSuchImage, got {direct:?}")
                })?;
                let done = self.drive(task).await;
                ensure(done.status.state == TaskState::Rejected, || {
                    format!("state {:?}", done.status.state)
                })?;
                let want = format!("No such image: {image}");
                ensure(done.status.err == want, || {
                    format!("err {:?}, want {want:?}", done.status.err)
                })
            }
            None => {
                task.spec.container.image = "swarm-conformance/not-an-image:1".into();
                let id = task.id.clone();
                let done = self.drive(task).await;
                ensure(done.status.state == TaskState::Complete, || {
                    format!("state {:?} {:?}", done.status.state, done.status.err)
                })?;
                let i = call("inspect", self.runtime.inspect(&id).await)?;
                ensure(i.image == "swarm-conformance/not-an-image:1", || {
                    format!("image not recorded: {:?}", i.image)
                })
            }
        }
    }

    async fn bad_command(&mut self) -> Outcome {
        let mut task = self.task("exit 0", Duration::from_secs(1));
        let exe = "/nonexistent/swarm-no-such-binary";
        task.spec.container.command = vec![exe.into()];
        task.spec.container.args.clear();
        let done = self.drive(task).await;
        ensure(
            matches!(done.status.state, TaskState::Failed | TaskState::Rejected),
            || format!("state {:?}", done.status.state),
        )?;
        ensure(done.status.err.contains(exe), || {
            format!("error does not name the command: {:?}", done.status.err)
        })
    }
}
