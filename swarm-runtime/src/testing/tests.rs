use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use swarm_core::types::Task;
use swarm_core::{Id, ManualClock, Timestamp};

use super::*;
use crate::conformance::{Harness, run_all};
use crate::{ContainerState, Error, LogOptions, LogStream, Runtime};

/// What the conformance suite's `/bin/sh -c` scripts do, as scripts.
fn conformance_scripts() -> ScriptedRuntime {
    fn script_has(needle: &'static str) -> impl Fn(&Task) -> bool + Send + Sync {
        move |t| t.spec.container.args.iter().any(|a| a.contains(needle))
    }
    fn script_is(script: &'static str) -> impl Fn(&Task) -> bool + Send + Sync {
        move |t| t.spec.container.args == [script]
    }
    let no_such_command = |t: &Task| Error::StartFailed {
        message: format!(
            "exec: {:?}: executable file not found in $PATH",
            t.spec.container.command[0]
        ),
        rejected: true,
    };
    ScriptedRuntime::new()
        .matching(
            |t| (t.spec.container.command.first()).is_some_and(|c| c.starts_with("/nonexistent/")),
            Script::new().fail_start(no_such_command),
        )
        .matching(
            script_has("trap '' TERM"),
            Script::new().stdout("ready").ignore_stop(),
        )
        .matching(
            script_has("trap 'echo bye; exit 0' TERM"),
            Script::new().stdout("ready").on_stop(0),
        )
        .matching(
            script_has("trap 'exit 0' TERM"),
            Script::new().stdout("ready").on_stop(0),
        )
        .matching(
            script_has("echo out1; echo err1 >&2"),
            (Script::new().stdout("out1").stderr("err1"))
                .stdout("out2")
                .stderr("err2")
                .exit_after(Duration::from_millis(300), 0),
        )
        .matching(script_is("exit 0"), Script::new().exit_at_once(0))
        .matching(script_is("exit 3"), Script::new().exit_at_once(3))
        .otherwise(Script::new().fail_start(|t| Error::InvalidSpec {
            field: "container.args",
            reason: format!("no script for {:?}", t.spec.container.args),
        }))
}

/// A node's runtime `R`; every instance the suite asks for shares its tasks.
struct Node<R> {
    runtime: R,
    missing_image: Option<String>,
}

#[async_trait]
impl<R: Runtime + Clone + 'static> Harness for Node<R> {
    async fn runtime(&self) -> Arc<dyn Runtime> {
        Arc::new(self.runtime.clone())
    }
    fn image(&self) -> String {
        "swarm-test/busybox:1".into()
    }
    fn missing_image(&self) -> Option<String> {
        self.missing_image.clone()
    }
}

fn assert_conforms(failures: Vec<crate::conformance::Failure>) {
    let failures: Vec<String> = failures.iter().map(|f| f.to_string()).collect();
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test]
async fn the_scripted_runtime_conforms() {
    let node = Node {
        runtime: conformance_scripts(),
        missing_image: None,
    };
    assert_conforms(run_all(&node).await);
}

#[tokio::test]
async fn the_image_cache_conforms() {
    let cache = ImageCache::new(conformance_scripts());
    cache.pull("swarm-test/busybox:1");
    let node = Node {
        runtime: cache,
        missing_image: Some("swarm-test/not-pulled:1".into()),
    };
    assert_conforms(run_all(&node).await);
}

fn task(id: &str, image: &str) -> Task {
    let mut t = Task {
        id: Id::from(id),
        ..Default::default()
    };
    t.spec.container.image = image.into();
    t
}

async fn launch(rt: &dyn Runtime, t: &Task) {
    rt.prepare(t).await.unwrap();
    rt.create(t).await.unwrap();
    rt.start(&t.id).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn tasks_run_until_stopped_and_report_honest_states() {
    let clock = Arc::new(ManualClock::new(Timestamp::ZERO));
    let rt = ScriptedRuntime::new().clock(clock.clone());
    let t = task("t1", "busybox");
    rt.create(&t).await.unwrap();
    let i = rt.inspect("t1").await.unwrap();
    assert_eq!(
        (i.state, i.container.pid, i.started_at),
        (ContainerState::Created, 0, None)
    );
    clock.advance(Duration::from_secs(1));
    rt.start("t1").await.unwrap();
    let i = rt.inspect("t1").await.unwrap();
    assert_eq!(i.state, ContainerState::Running);
    assert!(i.container.pid > 0);
    assert_eq!(
        i.started_at,
        Some(Timestamp::ZERO.add(Duration::from_secs(1)))
    );
    // Still running a minute later: nothing scripted its end.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(rt.list().await.unwrap()[0].state, ContainerState::Running);
    let waiter = tokio::spawn({
        let rt = rt.clone();
        async move { rt.wait("t1").await }
    });
    rt.stop("t1", None).await.unwrap();
    assert_eq!(waiter.await.unwrap().unwrap(), 143, "died of SIGTERM");
    let i = rt.inspect("t1").await.unwrap();
    assert_eq!(
        (i.state, i.exit_code, i.container.pid),
        (ContainerState::Exited, Some(143), 0)
    );
    rt.start("t1").await.unwrap();
    assert_eq!(
        rt.inspect("t1").await.unwrap().state,
        ContainerState::Exited
    );
    rt.remove("t1").await.unwrap();
    assert!(matches!(rt.wait("t1").await, Err(Error::NotFound { .. })));
    assert!(matches!(rt.remove("t1").await, Err(Error::NotFound { .. })));
    assert!(rt.list().await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn scripted_exits_and_stops() {
    let rt = ScriptedRuntime::new()
        .task("late", Script::new().exit_after(Duration::from_secs(5), 2))
        .task("stubborn", Script::new().ignore_stop());
    launch(&rt, &task("late", "x")).await;
    let began = tokio::time::Instant::now();
    assert_eq!(rt.wait("late").await.unwrap(), 2);
    assert_eq!(began.elapsed(), Duration::from_secs(5));

    let t = task("stubborn", "x");
    launch(&rt, &t).await;
    let began = tokio::time::Instant::now();
    rt.stop("stubborn", Some(Duration::from_secs(3)))
        .await
        .unwrap();
    assert_eq!(
        began.elapsed(),
        Duration::from_secs(3),
        "the whole grace period"
    );
    assert_eq!(rt.wait("stubborn").await.unwrap(), 137);
}

#[tokio::test]
async fn scripts_by_task_then_matching_then_image() {
    let rt = ScriptedRuntime::new()
        .image("img", Script::new().exit_at_once(1))
        .matching(|t| t.slot == 7, Script::new().exit_at_once(7))
        .task("mine", Script::new().exit_at_once(2));
    let mut seven = task("seven", "img");
    seven.slot = 7;
    for (t, code) in [
        (task("mine", "img"), 2),
        (seven, 7),
        (task("other", "img"), 1),
    ] {
        launch(&rt, &t).await;
        assert_eq!(rt.wait(&t.id).await.unwrap(), code, "{}", t.id);
    }
}

#[tokio::test]
async fn start_fails_as_often_as_scripted_per_task() {
    let rt =
        ScriptedRuntime::new().otherwise(Script::new().start_unavailable(2, "engine restarting"));
    for id in ["a", "b"] {
        rt.create(&task(id, "x")).await.unwrap();
        for _ in 0..2 {
            let e = rt.start(id).await.unwrap_err();
            assert!(e.is_temporary());
            assert_eq!(e.to_string(), "runtime unavailable: engine restarting");
        }
        rt.start(id).await.unwrap();
    }
}

#[tokio::test]
async fn a_task_that_ends_while_inspected_reports_its_netns_only_while_running() {
    let rt = ScriptedRuntime::new().otherwise(
        Script::new()
            .netns("/proc/4242/ns/net")
            .exit_after_inspections(1, 0),
    );
    let t = task("t", "x");
    rt.create(&t).await.unwrap();
    assert_eq!(rt.inspect("t").await.unwrap().netns, None, "created");
    rt.start("t").await.unwrap();
    let first = rt.inspect("t").await.unwrap();
    assert_eq!(first.state, ContainerState::Running);
    assert_eq!(first.netns.as_deref(), Some("/proc/4242/ns/net".as_ref()));
    let second = rt.inspect("t").await.unwrap();
    assert_eq!((second.state, second.netns), (ContainerState::Exited, None));
    assert_eq!(rt.wait("t").await.unwrap(), 0);
}

#[tokio::test]
async fn logs_are_the_scripted_lines() {
    let rt = ScriptedRuntime::new().otherwise(
        Script::new()
            .stdout("one")
            .stderr("two\n")
            .exit_after(Duration::from_millis(50), 0),
    );
    let unknown = rt.logs("nope", LogOptions::default()).await;
    assert!(matches!(unknown, Err(Error::NotFound { .. })));

    // Followed from before the start: the lines, then the end at the exit.
    rt.create(&task("t", "x")).await.unwrap();
    let follow = LogOptions {
        follow: true,
        ..Default::default()
    };
    let followed = rt.logs("t", follow).await.unwrap();
    rt.start("t").await.unwrap();
    let chunks: Vec<_> = followed.map(|c| c.unwrap()).collect().await;
    let got: Vec<_> = chunks.iter().map(|c| (c.stream, &c.data[..])).collect();
    assert_eq!(
        got,
        [
            (LogStream::Stdout, &b"one\n"[..]),
            (LogStream::Stderr, b"two\n")
        ]
    );

    let stderr_only = LogOptions {
        stdout: false,
        ..Default::default()
    };
    let tail = LogOptions {
        tail: Some(1),
        ..Default::default()
    };
    for (options, want) in [(stderr_only, "two\n"), (tail, "two\n")] {
        let chunks: Vec<_> = rt.logs("t", options).await.unwrap().collect().await;
        assert_eq!(chunks.len(), 1);
        assert_eq!(&chunks[0].as_ref().unwrap().data[..], want.as_bytes());
    }
}

#[tokio::test]
async fn the_image_cache_refuses_images_not_pulled() {
    let node = ImageCache::new(ScriptedRuntime::new());
    let t = task("t", "web:2");
    let e = node.prepare(&t).await.unwrap_err();
    assert_eq!(e.to_string(), "No such image: web:2");
    assert_eq!(e.task_state(), swarm_core::types::TaskState::Rejected);
    let clone = node.clone();
    clone.pull("web:2");
    assert!(node.has("web:2") && !node.has("web:1"));
    launch(&node, &t).await;
    assert_eq!(node.inner().list().await.unwrap().len(), 1);
}
