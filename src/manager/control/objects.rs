//! Networks, secrets and configs: create, inspect, list, update (secrets and
//! configs: labels only), remove. Removing one that a service uses is refused
//! with the services named, as docker does.

use std::sync::Arc;

use swarm_core::types::{
    Annotations, Config, ConfigSpec, Network, NetworkSpec, Secret, SecretSpec, Service, Task,
};
use swarm_core::{Id, StoreObject, Tables};

use super::Control;
use super::validate::alphanumeric_ends;
use crate::error::{Error, Result};

/// Largest secret or config payload (SwarmKit's limit).
pub const MAX_BLOB: usize = 500 * 1024;

/// Names of secrets, configs and networks: letters and digits, with `-`, `_`
/// and `.` inside, at most 64 characters.
fn validate_object_name(what: &str, name: &str) -> Result<()> {
    let inner_ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if name.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{what}: name must be provided"
        )));
    }
    if !inner_ok || !alphanumeric_ends(name) || name.len() > 64 {
        return Err(Error::InvalidArgument(format!(
            "{what}: invalid name {name:?}: only letters, digits and '-', '_', '.' inside, at most 64 characters"
        )));
    }
    Ok(())
}

fn validate_blob(what: &str, data: &[u8]) -> Result<()> {
    if data.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{what}: data must not be empty"
        )));
    }
    if data.len() > MAX_BLOB {
        return Err(Error::InvalidArgument(format!(
            "{what}: data is {} bytes, more than the {MAX_BLOB} allowed",
            data.len()
        )));
    }
    Ok(())
}

/// Names of the services whose tasks use `matches`.
fn users(view: &Tables, matches: impl Fn(&Service) -> bool) -> Vec<String> {
    let mut v: Vec<String> = view
        .list::<Service>()
        .filter(|s| matches(s))
        .map(|s| s.spec.annotations.name.clone())
        .collect();
    v.sort();
    v
}

impl Control {
    /// Creates a network (`docker network create -d overlay`). The driver
    /// defaults to overlay.
    pub async fn create_network(&self, mut spec: NetworkSpec) -> Result<Arc<Network>> {
        validate_object_name("network", &spec.annotations.name)?;
        if spec.driver_config.name.is_empty() {
            spec.driver_config.name = "overlay".into();
        }
        if spec.ingress
            && let Some(i) = self.store.view().list::<Network>().find(|n| n.spec.ingress)
        {
            return Err(Error::FailedPrecondition(format!(
                "ingress network already exists: {} ({})",
                i.spec.annotations.name, i.id
            )));
        }
        crate::manager::allocator::check_network(&self.store.view(), &spec)?;
        let network = Network {
            spec,
            ..Default::default()
        };
        Ok(self.store.update(|tx| tx.create(network)).await?)
    }

    /// A network by ID, name or unique ID prefix.
    pub fn inspect_network(&self, id_or_name: &str) -> Result<Arc<Network>> {
        Ok(self.store.view().resolve::<Network>(id_or_name)?)
    }

    /// The nodes taking part in a network, as `docker network inspect` lists its
    /// `Peers`: (name, address) of every node with a task attached to it that
    /// has not ended, sorted by hostname. Every ready node takes part in the
    /// ingress network (each answers the published ports).
    pub fn network_peers(&self, network: &Network) -> Vec<(String, String)> {
        let view = self.store.view();
        let mut nodes: Vec<Id> = if network.spec.ingress {
            view.list::<swarm_core::types::Node>()
                .filter(|n| n.status.state == swarm_core::types::NodeState::Ready)
                .map(|n| n.id.clone())
                .collect()
        } else {
            view.list::<Task>()
                .filter(|t| !t.node_id.is_empty() && !t.status.state.is_terminal())
                .filter(|t| t.networks.iter().any(|a| a.network.id == network.id))
                .map(|t| t.node_id.clone())
                .collect()
        };
        nodes.sort();
        nodes.dedup();
        let mut peers: Vec<(String, String)> = nodes
            .iter()
            .filter_map(|id| view.get::<swarm_core::types::Node>(id))
            .map(|n| {
                let name = match n.name() {
                    "" => n.id.to_string(),
                    name => name.to_string(),
                };
                (name, n.status.addr.clone())
            })
            .collect();
        peers.sort();
        peers
    }

    /// Every network.
    pub fn list_networks(&self) -> Vec<Arc<Network>> {
        self.store.view().list::<Network>().collect()
    }

    /// Removes a network no service uses.
    pub async fn remove_network(&self, id_or_name: &str) -> Result<()> {
        let n = self.inspect_network(id_or_name)?;
        let used = users(&self.store.view(), |s| {
            s.spec
                .task
                .networks
                .iter()
                .any(|a| a.target == n.id.as_str() || a.target == n.spec.annotations.name)
        });
        if !used.is_empty() {
            return Err(Error::FailedPrecondition(format!(
                "network {} is in use by service {}",
                n.spec.annotations.name,
                used.join(", ")
            )));
        }
        self.store.update(|tx| tx.delete::<Network>(&n.id)).await?;
        Ok(())
    }

    /// Creates a secret (`docker secret create`).
    pub async fn create_secret(&self, spec: SecretSpec) -> Result<Arc<Secret>> {
        self.create_blob(spec).await
    }

    /// A secret by ID, name or unique ID prefix. The payload is never shown.
    pub fn inspect_secret(&self, id_or_name: &str) -> Result<Arc<Secret>> {
        self.inspect_blob(id_or_name)
    }

    /// Every secret.
    pub fn list_secrets(&self) -> Vec<Arc<Secret>> {
        self.list_blobs()
    }

    /// Changes a secret's labels; its name and payload cannot change.
    pub async fn update_secret(
        &self,
        id_or_name: &str,
        version: u64,
        spec: SecretSpec,
    ) -> Result<Arc<Secret>> {
        self.update_blob(id_or_name, version, spec).await
    }

    /// Removes a secret no service uses.
    pub async fn remove_secret(&self, id_or_name: &str) -> Result<()> {
        self.remove_blob::<Secret>(id_or_name).await
    }

    /// Creates a config (`docker config create`).
    pub async fn create_config(&self, spec: ConfigSpec) -> Result<Arc<Config>> {
        self.create_blob(spec).await
    }

    /// A config by ID, name or unique ID prefix.
    pub fn inspect_config(&self, id_or_name: &str) -> Result<Arc<Config>> {
        self.inspect_blob(id_or_name)
    }

    /// Every config.
    pub fn list_configs(&self) -> Vec<Arc<Config>> {
        self.list_blobs()
    }

    /// Changes a config's labels; its name and payload cannot change.
    pub async fn update_config(
        &self,
        id_or_name: &str,
        version: u64,
        spec: ConfigSpec,
    ) -> Result<Arc<Config>> {
        self.update_blob(id_or_name, version, spec).await
    }

    /// Removes a config no service uses.
    pub async fn remove_config(&self, id_or_name: &str) -> Result<()> {
        self.remove_blob::<Config>(id_or_name).await
    }
}

/// A secret or a config: a named payload that services' tasks refer to.
/// Creating, inspecting, listing, updating (labels only) and removing one is
/// the same for both kinds; this is what differs.
trait Blob: StoreObject {
    /// What the user gives.
    type Spec: Send;
    /// The kind, as messages name it.
    const WHAT: &'static str;
    /// A new object, not stored yet, holding `spec`.
    fn new(spec: Self::Spec) -> Self;
    /// The object's spec.
    fn spec(&self) -> &Self::Spec;
    /// A spec's name and labels, and its payload.
    fn parts(spec: &Self::Spec) -> (&Annotations, &[u8]);
    /// The object's name and labels.
    fn annotations_mut(&mut self) -> &mut Annotations;
    /// Whether the tasks of `service` use the object `id`.
    fn used_by(service: &Service, id: &Id) -> bool;
}

/// Implements [`Blob`] for a kind whose object holds its spec in `spec`, the
/// spec its name and labels in `annotations` and its payload in `data`: what
/// is left to say is the kind's name and which services use an object.
macro_rules! blob {
    ($object:ident, $spec:ident, $what:literal, |$service:ident, $id:ident| $used:expr) => {
        impl Blob for $object {
            type Spec = $spec;
            const WHAT: &'static str = $what;

            fn new(spec: $spec) -> $object {
                $object {
                    spec,
                    ..Default::default()
                }
            }

            fn spec(&self) -> &$spec {
                &self.spec
            }

            fn parts(spec: &$spec) -> (&Annotations, &[u8]) {
                (&spec.annotations, &spec.data)
            }

            fn annotations_mut(&mut self) -> &mut Annotations {
                &mut self.spec.annotations
            }

            fn used_by($service: &Service, $id: &Id) -> bool {
                $used
            }
        }
    };
}

blob!(Secret, SecretSpec, "secret", |service, id| {
    let secrets = &service.spec.task.container.secrets;
    secrets.iter().any(|r| r.secret_id == *id)
});
blob!(Config, ConfigSpec, "config", |service, id| {
    let configs = &service.spec.task.container.configs;
    configs.iter().any(|r| r.config_id == *id)
});

impl Control {
    /// Creates a secret or config: its name and payload checked first.
    async fn create_blob<T: Blob>(&self, spec: T::Spec) -> Result<Arc<T>> {
        let (annotations, data) = T::parts(&spec);
        validate_object_name(T::WHAT, &annotations.name)?;
        validate_blob(T::WHAT, data)?;
        let object = T::new(spec);
        Ok(self.store.update(|tx| tx.create(object)).await?)
    }

    /// A secret or config by ID, name or unique ID prefix.
    fn inspect_blob<T: Blob>(&self, id_or_name: &str) -> Result<Arc<T>> {
        Ok(self.store.view().resolve::<T>(id_or_name)?)
    }

    /// Every secret or every config.
    fn list_blobs<T: Blob>(&self) -> Vec<Arc<T>> {
        self.store.view().list::<T>().collect()
    }

    /// Changes a secret's or config's labels, written at the `version` the
    /// caller read; its name and payload cannot change (an empty payload
    /// leaves it as it is).
    async fn update_blob<T: Blob>(
        &self,
        id_or_name: &str,
        version: u64,
        spec: T::Spec,
    ) -> Result<Arc<T>> {
        let current = self.inspect_blob::<T>(id_or_name)?;
        let (now, now_data) = T::parts(current.spec());
        let (asked, asked_data) = T::parts(&spec);
        if asked.name != now.name || (!asked_data.is_empty() && asked_data != now_data) {
            return Err(Error::InvalidArgument(
                "only updates to Labels are allowed".into(),
            ));
        }
        let mut object = (*current).clone();
        object.meta_mut().version.index = version;
        object.annotations_mut().labels = asked.labels.clone();
        Ok(self.store.update(|tx| tx.update(object)).await?)
    }

    /// Removes a secret or config no service uses.
    async fn remove_blob<T: Blob>(&self, id_or_name: &str) -> Result<()> {
        let object = self.inspect_blob::<T>(id_or_name)?;
        let used = users(&self.store.view(), |svc| T::used_by(svc, object.id()));
        if !used.is_empty() {
            return Err(Error::FailedPrecondition(format!(
                "{} '{}' is in use by the following service: {}",
                T::WHAT,
                T::parts(object.spec()).0.name,
                used.join(", ")
            )));
        }
        self.store.update(|tx| tx.delete::<T>(object.id())).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_core::Store;
    use swarm_core::types::{Annotations, ContainerSpec, SecretReference, ServiceSpec, TaskSpec};

    fn control() -> Control {
        Control::new(Store::new())
    }

    fn secret(name: &str, data: &[u8]) -> SecretSpec {
        SecretSpec {
            annotations: Annotations::named(name),
            data: data.to_vec(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn secrets_are_created_listed_and_removed_unless_used() {
        let c = control();
        let s = c
            .create_secret(secret("db.password", b"hunter2"))
            .await
            .unwrap();
        assert_eq!(c.list_secrets().len(), 1);
        assert!(matches!(
            c.create_secret(secret("db.password", b"x")).await,
            Err(Error::NameConflict(_))
        ));
        let mut spec = ServiceSpec {
            annotations: Annotations::named("db"),
            task: TaskSpec {
                container: ContainerSpec {
                    image: "postgres".into(),
                    ..Default::default()
                },
                ..Default::default()
            },
            ..Default::default()
        };
        spec.task.container.secrets.push(SecretReference {
            secret_id: s.id.clone(),
            secret_name: "db.password".into(),
            file_name: "db.password".into(),
            ..Default::default()
        });
        c.create_service(spec).await.unwrap();
        let e = c.remove_secret("db.password").await.unwrap_err();
        assert!(
            e.to_string()
                .contains("in use by the following service: db"),
            "{e}"
        );
        c.remove_service("db").await.unwrap();
        c.remove_secret("db.password").await.unwrap();
        assert!(c.list_secrets().is_empty());
    }

    #[tokio::test]
    async fn bad_names_and_payloads_are_refused_naming_the_fault() {
        let c = control();
        for (name, data, needle) in [
            ("", &b"x"[..], "name must be provided"),
            ("-bad", b"x", "invalid name"),
            ("ok", b"", "must not be empty"),
        ] {
            let e = c.create_secret(secret(name, data)).await.unwrap_err();
            assert!(e.to_string().contains(needle), "{e}");
        }
        let big = vec![b'a'; MAX_BLOB + 1];
        let e = c
            .create_config(ConfigSpec {
                annotations: Annotations::named("big"),
                data: big,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(e.to_string().contains("more than"), "{e}");
        assert!(c.list_configs().is_empty());
    }

    #[tokio::test]
    async fn only_labels_of_a_secret_change() {
        let c = control();
        let s = c.create_secret(secret("a", b"1")).await.unwrap();
        let mut spec = s.spec.clone();
        spec.annotations.labels.insert("k".into(), "v".into());
        spec.data = Vec::new();
        let s2 = c
            .update_secret("a", s.meta.version.index, spec.clone())
            .await
            .unwrap();
        assert_eq!(s2.spec.annotations.labels["k"], "v");
        assert_eq!(s2.spec.data, b"1");
        spec.data = b"2".to_vec();
        assert!(
            c.update_secret("a", s2.meta.version.index, spec)
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn networks_default_to_overlay_and_one_ingress() {
        let c = control();
        let n = c
            .create_network(NetworkSpec {
                annotations: Annotations::named("backend"),
                attachable: true,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(n.spec.driver_config.name, "overlay");
        let ingress = NetworkSpec {
            annotations: Annotations::named("ingress"),
            ingress: true,
            ..Default::default()
        };
        c.create_network(ingress.clone()).await.unwrap();
        let mut again = ingress;
        again.annotations.name = "ingress2".into();
        assert!(matches!(
            c.create_network(again).await,
            Err(Error::FailedPrecondition(_))
        ));
        c.remove_network("backend").await.unwrap();
        assert_eq!(c.list_networks().len(), 1);
    }
}
