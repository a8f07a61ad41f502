//! The conformance suite on the process runtime.

use std::sync::Arc;

use async_trait::async_trait;
use swarm_runtime::conformance::{Check, Harness, run};
use swarm_runtime::{ProcessRuntime, Runtime};

struct ProcessHarness {
    dir: tempfile::TempDir,
}

#[async_trait]
impl Harness for ProcessHarness {
    async fn runtime(&self) -> Arc<dyn Runtime> {
        Arc::new(ProcessRuntime::new(self.dir.path()).expect("state dir"))
    }

    fn image(&self) -> String {
        "swarm-test/busybox:1".into()
    }

    fn missing_image(&self) -> Option<String> {
        None
    }

    fn prefix(&self) -> String {
        "swt-proc".into()
    }
}

async fn check(check: Check) {
    let harness = ProcessHarness {
        dir: tempfile::tempdir().expect("tempdir"),
    };
    if let Err(failure) = run(&harness, check).await {
        panic!("{failure}");
    }
}

macro_rules! checks {
    ($($name:ident => $check:expr),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            check($check).await;
        }
    )*};
}

checks! {
    lifecycle => Check::Lifecycle,
    exit_codes => Check::ExitCodes,
    stop_within_grace => Check::StopWithinGrace,
    kill_after_grace => Check::KillAfterGrace,
    logs => Check::Logs,
    adopt => Check::Adopt,
    desired_shutdown => Check::DesiredShutdown,
    missing_image => Check::MissingImage,
    bad_command => Check::BadCommand,
}
