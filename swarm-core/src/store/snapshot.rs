//! Snapshot and restore of the whole state.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::object::StoreObject;
use super::table::Tables;
use super::watch::{Action, Change};
use crate::error::{Error, Result};
use crate::types::{Cluster, Config, Network, Node, Secret, Service, Task};

/// Bumped when the snapshot layout changes.
const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Snapshot {
    format: u32,
    index: u64,
    nodes: Vec<Arc<Node>>,
    services: Vec<Arc<Service>>,
    tasks: Vec<Arc<Task>>,
    networks: Vec<Arc<Network>>,
    clusters: Vec<Arc<Cluster>>,
    secrets: Vec<Arc<Secret>>,
    configs: Vec<Arc<Config>>,
}

fn sorted<T: StoreObject>(tables: &Tables) -> Vec<Arc<T>> {
    let mut v: Vec<Arc<T>> = tables.list::<T>().collect();
    v.sort_unstable_by(|a, b| a.id().cmp(b.id()));
    v
}

pub(crate) fn encode(tables: &Tables) -> Vec<u8> {
    let snap = Snapshot {
        format: FORMAT,
        index: tables.index,
        nodes: sorted(tables),
        services: sorted(tables),
        tasks: sorted(tables),
        networks: sorted(tables),
        clusters: sorted(tables),
        secrets: sorted(tables),
        configs: sorted(tables),
    };
    postcard::to_stdvec(&snap).expect("store objects always serialise")
}

fn codec(message: impl Into<String>) -> Error {
    Error::Codec {
        what: "snapshot",
        message: message.into(),
    }
}

fn load<T: StoreObject>(tables: &mut Tables, objs: Vec<Arc<T>>) -> Result<()> {
    for o in objs {
        if o.id().is_empty() || tables.contains::<T>(o.id()) {
            return Err(codec(format!(
                "{} with an empty or repeated ID {:?}",
                T::KIND,
                o.id()
            )));
        }
        tables.insert(o);
    }
    Ok(())
}

pub(crate) fn decode(bytes: &[u8]) -> Result<Tables> {
    let snap: Snapshot = postcard::from_bytes(bytes).map_err(|e| codec(e.to_string()))?;
    if snap.format != FORMAT {
        return Err(codec(format!(
            "unknown format {} (this build reads {FORMAT})",
            snap.format
        )));
    }
    let mut t = Tables::default();
    load(&mut t, snap.nodes)?;
    load(&mut t, snap.services)?;
    load(&mut t, snap.tasks)?;
    load(&mut t, snap.networks)?;
    load(&mut t, snap.clusters)?;
    load(&mut t, snap.secrets)?;
    load(&mut t, snap.configs)?;
    t.index = snap.index;
    Ok(t)
}

fn diff_kind<T: StoreObject>(old: &Tables, new: &Tables, out: &mut Vec<Change>) {
    for o in old.list::<T>() {
        if !new.contains::<T>(o.id()) {
            out.push(Change {
                action: Action::Remove,
                object: T::wrap(o),
                old: None,
            });
        }
    }
    for n in new.list::<T>() {
        match old.get::<T>(n.id()) {
            None => out.push(Change {
                action: Action::Create,
                object: T::wrap(n),
                old: None,
            }),
            Some(o) if !Arc::ptr_eq(&o, &n) && *o != *n => out.push(Change {
                action: Action::Update,
                object: T::wrap(n),
                old: Some(T::wrap(o)),
            }),
            Some(_) => {}
        }
    }
}

/// The changes that turn `old` into `new`.
pub(crate) fn diff(old: &Tables, new: &Tables) -> Vec<Change> {
    let mut out = Vec::new();
    diff_kind::<Node>(old, new, &mut out);
    diff_kind::<Service>(old, new, &mut out);
    diff_kind::<Task>(old, new, &mut out);
    diff_kind::<Network>(old, new, &mut out);
    diff_kind::<Cluster>(old, new, &mut out);
    diff_kind::<Secret>(old, new, &mut out);
    diff_kind::<Config>(old, new, &mut out);
    out
}
