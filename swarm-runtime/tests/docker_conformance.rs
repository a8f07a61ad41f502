//! The conformance suite on the Docker runtime, against the engine of this machine
//! (DOCKER_HOST or the local socket), with an image built locally by
//! `scripts/build-test-image.sh` (no registry). Skips, saying why, where no engine
//! answers or the image cannot be built.

mod docker_common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use swarm_runtime::conformance::{Check, Harness, run};
use swarm_runtime::{DockerRuntime, PullPolicy, Runtime};

use docker_common::{PREFIX, TEST_IMAGE, engine};

struct DockerHarness;

#[async_trait]
impl Harness for DockerHarness {
    async fn runtime(&self) -> Arc<dyn Runtime> {
        let rt = DockerRuntime::connect()
            .await
            .expect("engine answered before");
        Arc::new(
            rt.with_pull_policy(PullPolicy::Missing)
                .with_pull_timeout(Duration::from_secs(5)),
        )
    }

    fn image(&self) -> String {
        TEST_IMAGE.into()
    }

    fn missing_image(&self) -> Option<String> {
        // A registry on a closed loopback port: the pull is refused at once, and no
        // traffic leaves the machine.
        Some("127.0.0.1:1/swarm-test/missing:1".into())
    }

    fn prefix(&self) -> String {
        PREFIX.into()
    }
}

async fn check(check: Check) {
    if engine().await.is_none() {
        return;
    }
    if let Err(failure) = run(&DockerHarness, check).await {
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
