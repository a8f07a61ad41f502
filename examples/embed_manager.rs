//! The smallest Rust service that embeds a Swarm manager: it starts (or restarts,
//! from its data directory) a one-manager swarm that runs tasks itself with the
//! process runtime, prints the join command for workers, runs a service, and
//! stops on Ctrl-C.
//!
//! `cargo run --example embed_manager -- /tmp/swarm-demo 127.0.0.1:2377`

use std::sync::Arc;

use anyhow::Result;
use swarm::core::types::*;
use swarm::runtime::ProcessRuntime;
use swarm::{Manager, ManagerConfig};

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let data_dir = args.next().unwrap_or_else(|| "/tmp/swarm-embed".into());
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:2377".into());

    let runtime = Arc::new(ProcessRuntime::new(format!("{data_dir}/runtime"))?);
    let manager = Manager::start(ManagerConfig::new(&data_dir, &listen).runtime(runtime)).await?;
    let control = manager.control();
    println!(
        "manager {} listening on {}",
        manager.node_id(),
        manager.addr()
    );
    println!("workers join with token {}", control.join_tokens()?.worker);

    if control.inspect_service("ticker").is_err() {
        control
            .create_service(ServiceSpec {
                annotations: Annotations::named("ticker"),
                task: TaskSpec {
                    container: ContainerSpec {
                        image: "busybox".into(),
                        command: vec![
                            "/bin/sh".into(),
                            "-c".into(),
                            "while true; do date; sleep 5; done".into(),
                        ],
                        ..Default::default()
                    },
                    ..Default::default()
                },
                mode: ServiceMode::Replicated { replicas: 2 },
                ..Default::default()
            })
            .await?;
    }
    println!(
        "service ticker created; Ctrl-C to stop (its tasks keep running and are adopted on restart)"
    );
    tokio::signal::ctrl_c().await?;
    manager.shutdown().await;
    Ok(())
}
