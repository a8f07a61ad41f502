//! What the resolver knows: the records of each network and the lookup index built from
//! them. Pure data, no I/O: the index is rebuilt on every change and swapped in whole, so a
//! query always sees one consistent view.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use hickory_proto::rr::Name;

use super::DnsError;

/// The records of one network: every service attached to it, with its tasks.
///
/// What a task on that network can resolve. Given whole to
/// [`DnsServer::set_network`](super::DnsServer::set_network), which replaces the previous
/// set for that network.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkRecords {
    /// The services attached to the network.
    pub services: Vec<ServiceRecord>,
}

/// One service on a network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRecord {
    /// The service name (`web`): resolves per [`ServiceRecord::mode`], and `tasks.<name>`
    /// resolves to every task address.
    pub name: String,
    /// Other names of the service on this network (`--network name=net,alias=a`); each
    /// resolves exactly as the name does, `tasks.<alias>` included.
    pub aliases: Vec<String>,
    /// How the service name resolves: to its virtual IP or to its tasks.
    pub mode: Resolution,
    /// The tasks that answer for the service: the caller lists the ones that should be
    /// resolvable (running ones, in Docker).
    pub tasks: Vec<TaskRecord>,
}

/// How a service name resolves (the service's endpoint mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// Endpoint mode `vip`: the name resolves to this one virtual IP, which balances over
    /// the tasks.
    Vip(IpAddr),
    /// Endpoint mode `dnsrr`: the name resolves to every task address, in an order that
    /// rotates from one answer to the next.
    Dnsrr,
}

/// One task of a service on a network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskRecord {
    /// The task's name, `<service>.<slot>.<task id>` as Docker names the container
    /// (`<service>.<node id>.<task id>` for a global service); it resolves to
    /// [`TaskRecord::addr`], and a PTR query for that address answers it.
    pub name: String,
    /// The task's address on this network.
    pub addr: IpAddr,
}

/// The addresses one name resolves to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Addresses {
    /// Deduplicated, in network-id then declaration order.
    pub(crate) addrs: Vec<IpAddr>,
    /// Whether each answer rotates the order (dnsrr names and `tasks.` names).
    pub(crate) rotate: bool,
}

/// The lookup index over the union of all networks of one server.
#[derive(Debug, Default)]
pub(crate) struct Index {
    /// By normalised name (see [`normalize`]).
    names: HashMap<String, Addresses>,
    /// Address => the names a PTR query answers, deduplicated.
    reverse: HashMap<IpAddr, Vec<Name>>,
}

impl Index {
    /// Builds the index of the union of `networks`, visited in network-id order.
    ///
    /// Every name must have been checked by [`validate`] first; a name that still fails to
    /// parse is left out of the reverse map rather than panicking.
    pub(crate) fn build(networks: &BTreeMap<String, NetworkRecords>) -> Self {
        let mut index = Index::default();
        for records in networks.values() {
            for service in &records.services {
                let task_addrs: Vec<IpAddr> = service.tasks.iter().map(|t| t.addr).collect();
                for name in std::iter::once(&service.name).chain(&service.aliases) {
                    let key = normalize(name);
                    match service.mode {
                        Resolution::Vip(vip) => index.add(&key, &[vip], false),
                        Resolution::Dnsrr => index.add(&key, &task_addrs, true),
                    }
                    index.add(&format!("tasks.{key}"), &task_addrs, true);
                }
                if let Resolution::Vip(vip) = service.mode {
                    index.add_reverse(vip, &service.name);
                }
                for task in &service.tasks {
                    index.add(&normalize(&task.name), &[task.addr], false);
                    index.add_reverse(task.addr, &task.name);
                }
            }
        }
        index
    }

    fn add(&mut self, key: &str, addrs: &[IpAddr], rotate: bool) {
        let entry = self.names.entry(key.to_owned()).or_default();
        entry.rotate |= rotate;
        for addr in addrs {
            if !entry.addrs.contains(addr) {
                entry.addrs.push(*addr);
            }
        }
    }

    fn add_reverse(&mut self, addr: IpAddr, name: &str) {
        let Ok(mut name) = parse_name(name) else {
            return;
        };
        name.set_fqdn(true);
        let names = self.reverse.entry(addr).or_default();
        if !names.iter().any(|n| n.eq_ignore_root(&name)) {
            names.push(name);
        }
    }

    /// The addresses of `name` (any case, with or without the trailing dot), if the name
    /// is known on any network.
    pub(crate) fn lookup(&self, name: &Name) -> Option<&Addresses> {
        // `to_ascii` is already the punycode form `normalize` gives stored names.
        let ascii = name.to_ascii();
        self.names
            .get(&ascii.trim_end_matches('.').to_ascii_lowercase())
    }

    /// The names a PTR query for `addr` answers, if the address is a known VIP or task.
    pub(crate) fn reverse(&self, addr: IpAddr) -> Option<&[Name]> {
        self.reverse.get(&addr).map(Vec::as_slice)
    }

    /// How many names the index answers (service names, aliases, `tasks.` names, tasks).
    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }
}

/// Parses a name as given in the records: ASCII names as they are (underscores allowed,
/// as in a stack's `stack_web`; IDNA would refuse them), others through IDNA (punycode).
pub(crate) fn parse_name(name: &str) -> Result<Name, hickory_proto::ProtoError> {
    if name.is_ascii() {
        Name::from_ascii(name)
    } else {
        Name::from_utf8(name)
    }
}

/// The key of a name: ASCII (punycode) form, lower case, without the trailing dot.
pub(crate) fn normalize(name: &str) -> String {
    let ascii = match parse_name(name) {
        Ok(parsed) => parsed.to_ascii(),
        Err(_) => name.to_owned(),
    };
    ascii.trim_end_matches('.').to_ascii_lowercase()
}

/// Checks every name of `records` before anything changes: each must be a valid DNS name
/// (labels of 1 to 63 characters, at most 253 in all once `tasks.` is prefixed).
pub(crate) fn validate(network_id: &str, records: &NetworkRecords) -> Result<(), DnsError> {
    let bad = |name: &str, reason: String| DnsError::InvalidName {
        network: network_id.to_owned(),
        name: name.to_owned(),
        reason,
    };
    let check = |name: &str| -> Result<(), DnsError> {
        let trimmed = name.strip_suffix('.').unwrap_or(name);
        if trimmed.is_empty() {
            return Err(bad(name, "the name is empty".into()));
        }
        if trimmed.split('.').any(str::is_empty) {
            return Err(bad(name, "the name has an empty label".into()));
        }
        let parsed = parse_name(trimmed).map_err(|e| bad(name, e.to_string()))?;
        // 253 characters for the name plus `tasks.` must still fit a DNS name.
        if parsed.to_ascii().trim_end_matches('.').len() + "tasks.".len() > 253 {
            return Err(bad(name, "the name is longer than 247 characters".into()));
        }
        Ok(())
    };
    for service in &records.services {
        check(&service.name)?;
        for alias in &service.aliases {
            check(alias)?;
        }
        for task in &service.tasks {
            check(&task.name)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn service(name: &str, mode: Resolution, tasks: &[(&str, &str)]) -> ServiceRecord {
        ServiceRecord {
            name: name.into(),
            aliases: vec![],
            mode,
            tasks: tasks
                .iter()
                .map(|(n, a)| TaskRecord {
                    name: (*n).into(),
                    addr: ip(a),
                })
                .collect(),
        }
    }

    fn name(s: &str) -> Name {
        Name::from_utf8(s).unwrap()
    }

    #[test]
    fn vip_dnsrr_tasks_and_task_names() {
        let mut nets = BTreeMap::new();
        nets.insert(
            "n1".to_owned(),
            NetworkRecords {
                services: vec![
                    service(
                        "web",
                        Resolution::Vip(ip("10.0.1.2")),
                        &[("web.1.aaa", "10.0.1.3"), ("web.2.bbb", "10.0.1.4")],
                    ),
                    service("db", Resolution::Dnsrr, &[("db.1.ccc", "10.0.1.5")]),
                ],
            },
        );
        let index = Index::build(&nets);
        let web = index.lookup(&name("web.")).unwrap();
        assert_eq!(web.addrs, vec![ip("10.0.1.2")]);
        assert!(!web.rotate);
        let tasks = index.lookup(&name("TASKS.Web")).unwrap();
        assert_eq!(tasks.addrs, vec![ip("10.0.1.3"), ip("10.0.1.4")]);
        assert!(tasks.rotate);
        let db = index.lookup(&name("db")).unwrap();
        assert_eq!(db.addrs, vec![ip("10.0.1.5")]);
        assert!(db.rotate);
        assert_eq!(
            index.lookup(&name("web.2.bbb")).unwrap().addrs,
            vec![ip("10.0.1.4")]
        );
        assert!(index.lookup(&name("nothing")).is_none());
        assert_eq!(index.reverse(ip("10.0.1.2")).unwrap(), &[name("web.")]);
        assert_eq!(index.reverse(ip("10.0.1.5")).unwrap(), &[name("db.1.ccc.")]);
        assert!(index.reverse(ip("10.0.1.9")).is_none());
    }

    #[test]
    fn union_of_networks_deduplicates() {
        let mut nets = BTreeMap::new();
        let mut web = service("web", Resolution::Dnsrr, &[("web.1.a", "10.0.1.3")]);
        web.aliases = vec!["front".into()];
        nets.insert(
            "a".to_owned(),
            NetworkRecords {
                services: vec![web.clone()],
            },
        );
        web.tasks.push(TaskRecord {
            name: "web.1.a".into(),
            addr: ip("10.0.2.3"),
        });
        nets.insert(
            "b".to_owned(),
            NetworkRecords {
                services: vec![web],
            },
        );
        let index = Index::build(&nets);
        let expected = vec![ip("10.0.1.3"), ip("10.0.2.3")];
        assert_eq!(index.lookup(&name("web")).unwrap().addrs, expected);
        assert_eq!(index.lookup(&name("front")).unwrap().addrs, expected);
        assert_eq!(index.lookup(&name("tasks.front")).unwrap().addrs, expected);
        assert_eq!(index.lookup(&name("web.1.a")).unwrap().addrs, expected);
        // web, front, tasks.web, tasks.front, web.1.a
        assert_eq!(index.len(), 5);
    }

    #[test]
    fn validate_refuses_bad_names() {
        let ok = NetworkRecords {
            services: vec![service(
                "web",
                Resolution::Dnsrr,
                &[("web.1.x", "10.0.0.3")],
            )],
        };
        assert!(validate("n", &ok).is_ok());
        for good in ["stack_web", "Stack_Web.1.x", "ünï", "web-1."] {
            let records = NetworkRecords {
                services: vec![service(good, Resolution::Dnsrr, &[])],
            };
            assert!(validate("n", &records).is_ok(), "{good}");
        }
        for bad in ["", ".", "a..b", "a b", &"x".repeat(64), &"a.".repeat(125)] {
            let records = NetworkRecords {
                services: vec![service(bad, Resolution::Dnsrr, &[])],
            };
            let err = validate("n", &records).unwrap_err();
            assert!(
                matches!(&err, DnsError::InvalidName { network, name, .. } if network == "n" && name == bad),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn normalize_is_case_and_dot_insensitive() {
        assert_eq!(normalize("Web.Example."), "web.example");
        assert_eq!(normalize("web"), "web");
        assert_eq!(normalize("Stack_Web.1"), "stack_web.1");
        assert_eq!(normalize("ünï"), "xn--n-nga1b");
    }
}
