//! Host-mode published ports of a process task.
//!
//! A process runs on the host network and binds its target ports itself. A
//! published port equal to the target port is then already answered by the
//! task. Any other published port (or a dynamic one, `0`) is left to the
//! node: the runtime reports it in [`Inspection::ports`](crate::Inspection)
//! and says it does not bind host ports
//! ([`Runtime::binds_host_ports`](crate::Runtime::binds_host_ports)), so the
//! node's routing mesh listens on it and forwards to the task's target port.
//! A dynamic port is picked here, once, when the task is created: a port the
//! system reports free on every address, as Docker picks one for a binding
//! with no host port. It is kept with the task, so an agent that restarts
//! reports the same port.

use std::net::{Ipv4Addr, TcpListener, UdpSocket};

use swarm_core::types::{PortConfig, Protocol, Task};

use crate::error::{Error, Result};
use crate::runtime::host_ports;

/// The host-mode ports of `task` as the node serves them: each with the
/// published port it answers on (dynamic ones picked now).
pub(super) fn bind_plan(task: &Task) -> Result<Vec<PortConfig>> {
    host_ports(task)
        .into_iter()
        .map(|p| {
            if p.target_port == 0 || p.target_port > u32::from(u16::MAX) {
                return Err(Error::InvalidSpec {
                    field: "endpoint.ports.target_port",
                    reason: format!("{} is not a port", p.target_port),
                });
            }
            if p.published_port > u32::from(u16::MAX) {
                return Err(Error::InvalidSpec {
                    field: "endpoint.ports.published_port",
                    reason: format!("{} is not a port", p.published_port),
                });
            }
            if p.published_port == p.target_port {
                return Ok(p);
            }
            if p.protocol == Protocol::Sctp {
                return Err(Error::InvalidSpec {
                    field: "endpoint.ports.published_port",
                    reason: "the process runtime publishes an SCTP port only on its target port"
                        .into(),
                });
            }
            let published_port = match p.published_port {
                0 => u32::from(free_port(p.protocol)?),
                given => given,
            };
            Ok(PortConfig {
                published_port,
                ..p
            })
        })
        .collect()
}

/// A port of `protocol` that nothing uses on any address now.
fn free_port(protocol: Protocol) -> Result<u16> {
    let any = (Ipv4Addr::UNSPECIFIED, 0);
    let port = match protocol {
        Protocol::Udp => UdpSocket::bind(any).and_then(|s| s.local_addr()),
        _ => TcpListener::bind(any).and_then(|s| s.local_addr()),
    }
    .map_err(|e| Error::io("picking a free host port", e))?
    .port();
    Ok(port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_core::types::{Endpoint, PublishMode};

    fn task(ports: &[(Protocol, u32, u32)]) -> Task {
        Task {
            endpoint: Some(Endpoint {
                ports: ports
                    .iter()
                    .map(|&(protocol, published_port, target_port)| PortConfig {
                        protocol,
                        published_port,
                        target_port,
                        publish_mode: PublishMode::Host,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn given_ports_are_kept_and_dynamic_ones_picked() {
        let plan = bind_plan(&task(&[
            (Protocol::Tcp, 18080, 80),
            (Protocol::Tcp, 81, 81),
            (Protocol::Udp, 0, 53),
            (Protocol::Tcp, 0, 80),
        ]))
        .unwrap();
        assert_eq!(plan[0].published_port, 18080);
        assert_eq!(plan[1].published_port, 81);
        for p in &plan[2..] {
            assert_ne!(p.published_port, 0, "a dynamic port is picked: {p:?}");
            assert_ne!(p.published_port, p.target_port);
        }
        let targets: Vec<u32> = plan.iter().map(|p| p.target_port).collect();
        assert_eq!(targets, [80, 81, 53, 80]);
    }

    #[test]
    fn bad_ports_are_refused() {
        for ports in [
            [(Protocol::Tcp, 8080, 0)],
            [(Protocol::Tcp, 8080, 70000)],
            [(Protocol::Tcp, 70000, 80)],
            [(Protocol::Sctp, 8080, 80)],
        ] {
            assert!(
                matches!(bind_plan(&task(&ports)), Err(Error::InvalidSpec { .. })),
                "{ports:?}"
            );
        }
        assert_eq!(
            bind_plan(&task(&[(Protocol::Sctp, 90, 90)])).unwrap().len(),
            1
        );
    }
}
