//! Veth pairs between a bridge and a task namespace, and link removal: what an
//! overlay network's sandbox and the gateway bridge do alike.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::Path;

use rtnetlink::{Handle, LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::linux::{add_address, connect_in, errno, link_index, must_index, nl, set_link};
use super::{Cidr, MacAddr, OverlayError, netns};

/// A bridge that tasks are connected to through veth pairs.
pub(crate) struct Bridge<'a> {
    /// A netlink handle in the bridge's namespace.
    pub(crate) handle: &'a Handle,
    /// The bridge's index there.
    pub(crate) index: u32,
    /// Its name (for messages).
    pub(crate) name: &'a str,
    /// The MTU of the pairs.
    pub(crate) mtu: u32,
    /// The prefixes of the pair's temporary names, bridge end then task end (a
    /// random tag follows).
    pub(crate) prefixes: (&'static str, &'static str),
}

/// A task namespace, open.
pub(crate) struct TaskNs<'a> {
    path: &'a Path,
    file: File,
    handle: Handle,
}

impl<'a> TaskNs<'a> {
    /// Opens the task namespace at `path` and a netlink connection in it;
    /// [`OverlayError::InvalidArgument`] if it has an interface `ifname` already.
    pub(crate) async fn open(path: &'a Path, ifname: &str) -> Result<TaskNs<'a>, OverlayError> {
        let file = netns::open(path)?;
        let handle = connect_in(path)?;
        if link_index(&handle, ifname).await?.is_some() {
            return Err(OverlayError::InvalidArgument(format!(
                "interface {ifname} already exists in {}",
                path.display()
            )));
        }
        Ok(TaskNs { path, file, handle })
    }
}

/// The task's default route through the bridge.
pub(crate) enum Route {
    /// None is added.
    None,
    /// One via this address is added (failing if the task has one).
    Add(Ipv4Addr),
    /// One via this address replaces the task's.
    Replace(Ipv4Addr),
}

/// The task's end of a pair.
pub(crate) struct TaskEnd<'a> {
    /// Its name in the task namespace.
    pub(crate) ifname: &'a str,
    /// Its MAC address.
    pub(crate) mac: MacAddr,
    /// Its address.
    pub(crate) addr: Cidr,
    /// The task's default route.
    pub(crate) route: Route,
}

/// Connects `task` to `bridge`: a veth pair with one end on the bridge, up, and the
/// other moved into the task namespace, named, with its MAC, MTU and address, up,
/// and the route asked for. On failure the pair is deleted.
pub(crate) async fn connect(
    bridge: &Bridge<'_>,
    task: &TaskNs<'_>,
    end: &TaskEnd<'_>,
) -> Result<(), OverlayError> {
    let host = bridge.handle;
    let tag: u32 = rand::random();
    let (outer, inner) = (
        format!("{}{tag:08x}", bridge.prefixes.0),
        format!("{}{tag:08x}", bridge.prefixes.1),
    );
    let pair = LinkVeth::new(&outer, &inner).mtu(bridge.mtu).build();
    host.link()
        .add(pair)
        .execute()
        .await
        .map_err(nl(format!("creating veth pair {outer}/{inner}")))?;
    let wired = async {
        let outer_index = must_index(host, &outer).await?;
        let inner_index = must_index(host, &inner).await?;
        let port = LinkUnspec::new_with_index(outer_index)
            .controller(bridge.index)
            .up()
            .build();
        set_link(host, format!("adding {outer} to {}", bridge.name), port).await?;
        let moved = LinkUnspec::new_with_index(inner_index)
            .setns_by_fd(task.file.as_raw_fd())
            .build();
        set_link(host, format!("moving {inner} to the task"), moved).await?;
        let ifname = end.ifname;
        let index = must_index(&task.handle, &inner).await?;
        let named = LinkUnspec::new_with_index(index)
            .name(ifname)
            .address(end.mac.0.to_vec())
            .mtu(bridge.mtu)
            .build();
        set_link(&task.handle, format!("naming {inner} {ifname}"), named).await?;
        add_address(
            &task.handle,
            index,
            end.addr.addr,
            end.addr.prefix_len,
            ifname,
        )
        .await?;
        let up = LinkUnspec::new_with_index(index).up().build();
        set_link(&task.handle, format!("bringing {ifname} up"), up).await?;
        let (via, replace) = match end.route {
            Route::None => return Ok(()),
            Route::Add(via) => (via, false),
            Route::Replace(via) => (via, true),
        };
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(via)
            .output_interface(index)
            .build();
        let mut add = task.handle.route().add(route);
        if replace {
            add = add.replace();
        }
        add.execute().await.map_err(nl(format!(
            "adding the default route via {via} in {}",
            task.path.display()
        )))
    }
    .await;
    if wired.is_err() {
        // Deleting one end deletes the pair, wherever the other end is.
        if let Ok(Some(index)) = link_index(host, &outer).await {
            let _ = host.link().del(index).execute().await;
        }
    }
    wired
}

/// Deletes the link `name` if there is one (idempotent: no such link, or one gone
/// meanwhile, is fine).
pub(crate) async fn remove_link(handle: &Handle, name: &str) -> Result<(), OverlayError> {
    match link_index(handle, name).await? {
        Some(index) => delete_link(handle, index, format!("deleting {name}")).await,
        None => Ok(()),
    }
}

/// Deletes the link `index` (one already gone is fine); `op` names it in the error.
pub(crate) async fn delete_link(
    handle: &Handle,
    index: u32,
    op: String,
) -> Result<(), OverlayError> {
    match handle.link().del(index).execute().await {
        Err(e) if errno(&e) != Some(libc::ENODEV) => Err(nl(op)(e)),
        _ => Ok(()),
    }
}
