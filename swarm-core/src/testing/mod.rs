//! Helpers for tests in this and other crates (feature `testing`): object builders
//! with sensible defaults, a proposer that commits in process
//! ([`LocalProposer`]), and the suite every [`Proposer`](crate::Proposer) must
//! pass ([`proposer_suite`]).

mod proposer;

pub use proposer::{LocalProposer, ProposerFailure, proposer_suite};

use crate::id::Id;
use crate::types::*;

mod eventually;
pub use eventually::Patience;

/// A READY, active worker node named `hostname`, with 4 CPUs and 8 GiB.
pub fn node(id: &str, hostname: &str) -> Node {
    Node {
        id: Id::from(id),
        description: Some(NodeDescription {
            hostname: hostname.to_string(),
            platform: Platform {
                architecture: "x86_64".into(),
                os: "linux".into(),
            },
            resources: Resources {
                nano_cpus: 4_000_000_000,
                memory_bytes: 8 << 30,
                generic: vec![],
            },
            ..Default::default()
        }),
        status: NodeStatus {
            state: NodeState::Ready,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A replicated service named `name` running `image`.
pub fn service(id: &str, name: &str, image: &str, replicas: u64) -> Service {
    Service {
        id: Id::from(id),
        spec: ServiceSpec {
            annotations: Annotations::named(name),
            task: TaskSpec {
                container: ContainerSpec {
                    image: image.into(),
                    ..Default::default()
                },
                ..Default::default()
            },
            mode: ServiceMode::Replicated { replicas },
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A NEW task of `service` in `slot`, desired RUNNING.
pub fn task(id: &str, service: &Service, slot: u64) -> Task {
    Task {
        id: Id::from(id),
        spec: service.spec.task.clone(),
        service_id: service.id.clone(),
        slot,
        annotations: Annotations::named(format!("{}.{}", service.spec.annotations.name, slot)),
        service_annotations: service.spec.annotations.clone(),
        desired_state: TaskState::Running,
        ..Default::default()
    }
}
