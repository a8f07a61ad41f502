//! [`ImageCache`]: any runtime with a node-local set of pulled images.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use swarm_core::types::{ContainerStatus, Task};

use crate::error::{Error, Result};
use crate::runtime::{Inspection, LogChunks, LogOptions, Runtime};

/// `R` on a node that holds only the images [pulled](ImageCache::pull) into it:
/// `prepare` of a task whose image is not there fails with
/// [`Error::NoSuchImage`] (the task is REJECTED `No such image: <image>`), as
/// on a node whose registry does not have the image. Every other verb is `R`'s.
///
/// Images are compared as written in the spec (`busybox` and `busybox:latest`
/// are two images). Clones share the set of images, so a test can pull into
/// the cache a node already runs with.
///
/// ```
/// use std::sync::Arc;
/// use swarm_core::types::Task;
/// use swarm_runtime::testing::{ImageCache, ScriptedRuntime};
/// use swarm_runtime::{Error, Runtime};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let node = Arc::new(ImageCache::new(ScriptedRuntime::new()));
/// let mut task = Task::default();
/// task.spec.container.image = "web:2".into();
/// let refused = node.prepare(&task).await;
/// assert!(matches!(refused, Err(Error::NoSuchImage { image }) if image == "web:2"));
///
/// node.pull("web:2");
/// node.prepare(&task).await.unwrap();
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ImageCache<R> {
    inner: R,
    pulled: Arc<Mutex<BTreeSet<String>>>,
}

impl<R: Runtime> ImageCache<R> {
    /// `inner` with no image pulled yet.
    pub fn new(inner: R) -> ImageCache<R> {
        ImageCache {
            inner,
            pulled: Arc::default(),
        }
    }

    /// Puts `image` on the node (what `docker pull` would do).
    pub fn pull(&self, image: impl Into<String>) {
        self.images().insert(image.into());
    }

    /// Whether `image` was pulled.
    pub fn has(&self, image: &str) -> bool {
        self.images().contains(image)
    }

    /// The wrapped runtime.
    pub fn inner(&self) -> &R {
        &self.inner
    }

    fn images(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.pulled.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl<R: Runtime> Runtime for ImageCache<R> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn binds_host_ports(&self) -> bool {
        self.inner.binds_host_ports()
    }

    async fn prepare(&self, task: &Task) -> Result<()> {
        let image = &task.spec.container.image;
        if !self.has(image) {
            return Err(Error::NoSuchImage {
                image: image.clone(),
            });
        }
        self.inner.prepare(task).await
    }

    async fn create(&self, task: &Task) -> Result<ContainerStatus> {
        self.inner.create(task).await
    }

    async fn start(&self, task_id: &str) -> Result<()> {
        self.inner.start(task_id).await
    }

    async fn wait(&self, task_id: &str) -> Result<i32> {
        self.inner.wait(task_id).await
    }

    async fn stop(&self, task_id: &str, grace: Option<Duration>) -> Result<()> {
        self.inner.stop(task_id, grace).await
    }

    async fn remove(&self, task_id: &str) -> Result<()> {
        self.inner.remove(task_id).await
    }

    async fn inspect(&self, task_id: &str) -> Result<Inspection> {
        self.inner.inspect(task_id).await
    }

    async fn list(&self) -> Result<Vec<Inspection>> {
        self.inner.list().await
    }

    async fn logs(&self, task_id: &str, options: LogOptions) -> Result<LogChunks> {
        self.inner.logs(task_id, options).await
    }
}
