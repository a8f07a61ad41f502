//! The scheduler of Swarm: decides which node runs each PENDING task.
//!
//! - [`Scheduler`] is the extension point: given a read-only [`NodeView`] and a
//!   batch of pending tasks it returns a [`Plan`] (placements, and a reason for
//!   every task it cannot place). It only proposes.
//! - [`Driver`] is the loop a manager's leader runs: it builds the view once from
//!   the store, keeps it current from store events (each O(log nodes), never a
//!   rescan), hands queued tasks to the scheduler, validates the plan with the
//!   same filters the default scheduler uses, and writes ASSIGNED tasks back in
//!   chunked transactions.
//! - [`SpreadScheduler`] is the default: SwarmKit's filters (ready, resources,
//!   plugins, constraints, platform, host ports, max replicas) and spread
//!   strategy with placement preferences, at O(log nodes) per placement.
//! - [`parse_constraints`] validates placement constraints (the control API
//!   calls it at service create).
//! - `testing` (feature `testing`) is the conformance suite: what the
//!   [`Scheduler`] docs require of a correct implementor, checked on a
//!   scheduler of yours with `swarm_sched::testing::suite(|| Box::new(MyScheduler))`.
//!   The default scheduler passes it.
//!
//! A tour, on a store with two nodes:
//!
//! ```
//! use std::sync::Arc;
//! use swarm_core::{Store, types::*};
//! use swarm_sched::{Driver, Draft, NodeView, Plan, Requirements, Scheduler, SpreadScheduler};
//!
//! # futures::executor::block_on(async {
//! let store = Store::new();
//! store.update(|tx| {
//!     for (id, zone) in [("n1", "a"), ("n2", "b")] {
//!         let mut node = swarm_core::testing::node(id, id);
//!         node.spec.annotations.labels.insert("zone".into(), zone.into());
//!         tx.create(node)?;
//!     }
//!     let web = swarm_core::testing::service("web", "web", "nginx", 4);
//!     for slot in 1..=4 {
//!         let mut task = swarm_core::testing::task(&format!("web.{slot}"), &web, slot);
//!         task.status.state = TaskState::Pending; // the allocator is done with it
//!         tx.create(task)?;
//!     }
//!     Ok(())
//! }).await?;
//!
//! // The driver reads the store once, then follows it.
//! let mut driver = Driver::new(store.clone(), Box::new(SpreadScheduler));
//! let report = driver.tick().await?;
//! assert_eq!(report.assigned, 4);
//! let view = store.view();
//! let on_n1 = view.tasks_by_node("n1").count();
//! assert_eq!((on_n1, view.tasks_by_node("n2").count()), (2, 2)); // spread evenly
//! assert_eq!(view.get::<Task>("web.1").unwrap().status.state, TaskState::Assigned);
//!
//! // A scheduler of your own: everything on the first node that passes the filters.
//! struct FirstFit;
//! impl Scheduler for FirstFit {
//!     fn schedule(&mut self, view: &NodeView, tasks: &[Arc<Task>]) -> Plan {
//!         let mut plan = Plan::default();
//!         let mut draft = Draft::new(view); // sees this pass's earlier placements
//!         for task in tasks {
//!             let req = Requirements::of(task);
//!             let mut nodes: Vec<_> = view.nodes().collect();
//!             nodes.sort_by(|a, b| a.id().cmp(b.id()));
//!             match nodes.into_iter().find(|n| draft.check(n, &task.service_id, &req).is_ok()) {
//!                 Some(n) => {
//!                     draft.place(n, &task.service_id, &req);
//!                     plan.place(&task.id, n.id());
//!                 }
//!                 None => plan.fail(&task.id, draft.explain(&task.service_id, &req).message()),
//!             }
//!         }
//!         plan
//!     }
//! }
//! let mut first_fit = FirstFit;
//! let plan = first_fit.schedule(driver.view(), &[]);
//! assert!(plan.placements.is_empty());
//! # Ok::<(), swarm_sched::Error>(())
//! # }).unwrap();
//! ```
#![deny(missing_docs)]

mod constraint;
mod draft;
mod driver;
mod error;
mod filter;
mod scheduler;
mod spread;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod view;

pub use constraint::{Constraint, node_matches, parse_constraints};
pub use draft::Draft;
pub use driver::{ASSIGNED_MESSAGE, Driver, DriverConfig, TickReport};
pub use error::{Error, Result};
pub use filter::{Explanation, Filter, Requirements};
pub use scheduler::{Placement, Plan, Scheduler, Unplaced};
pub use spread::SpreadScheduler;
pub use view::{HostPort, NodeInfo, NodeView, Usage};
