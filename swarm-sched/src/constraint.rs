//! Placement constraints: `KEY==VALUE` and `KEY!=VALUE` on node attributes.
//!
//! Keys: `node.id`, `node.hostname`, `node.role`, `node.platform.os`,
//! `node.platform.arch`, `node.labels.NAME`, `engine.labels.NAME`. Keys and values
//! compare case-insensitively; label names are case-sensitive. A missing attribute
//! or label compares as the empty string, so `!=` matches it and `==` does not.
//! An unknown key parses (as in SwarmKit) but matches no node.

use swarm_core::types::{Node, NodeRole};

use crate::error::{Error, Result};

const NODE_LABELS: &str = "node.labels.";
const ENGINE_LABELS: &str = "engine.labels.";

/// Which node attribute a constraint looks at.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Id,
    Hostname,
    Role,
    Os,
    Arch,
    NodeLabel(String),
    EngineLabel(String),
    Unknown,
}

/// One parsed placement constraint.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Constraint {
    key: Key,
    equal: bool,
    value: String,
}

/// Parses placement constraints. The error names the first offending expression.
///
/// ```
/// use swarm_sched::parse_constraints;
///
/// assert!(parse_constraints(&["node.role==manager".into(), "node.labels.zone != b".into()]).is_ok());
/// let err = parse_constraints(&["node.labels.zone>=b".into()]).unwrap_err();
/// assert!(err.to_string().contains("node.labels.zone>=b"));
/// ```
pub fn parse_constraints(exprs: &[String]) -> Result<Vec<Constraint>> {
    exprs.iter().map(|e| Constraint::parse(e)).collect()
}

/// Whether `node` satisfies every constraint.
pub fn node_matches(constraints: &[Constraint], node: &Node) -> bool {
    constraints.iter().all(|c| c.matches(node))
}

impl Constraint {
    /// Parses one `KEY==VALUE` or `KEY!=VALUE` expression.
    pub fn parse(expr: &str) -> Result<Constraint> {
        let invalid = |reason: String| Error::InvalidConstraint {
            expr: expr.to_string(),
            reason,
        };
        let (key, value, equal) = if let Some((k, v)) = expr.split_once("==") {
            (k, v, true)
        } else if let Some((k, v)) = expr.split_once("!=") {
            (k, v, false)
        } else {
            return Err(invalid("expected one operator from ==, !=".into()));
        };
        let (key, value) = (key.trim(), value.trim());
        if !valid_key(key) {
            return Err(invalid(format!("key {key:?} is invalid")));
        }
        if !valid_value(value) {
            return Err(invalid(format!("value {value:?} is invalid")));
        }
        let lower = key.to_ascii_lowercase();
        let key = match lower.as_str() {
            "node.id" => Key::Id,
            "node.hostname" => Key::Hostname,
            "node.role" => Key::Role,
            "node.platform.os" => Key::Os,
            "node.platform.arch" => Key::Arch,
            _ if lower.len() > NODE_LABELS.len() && lower.starts_with(NODE_LABELS) => {
                Key::NodeLabel(key[NODE_LABELS.len()..].to_string())
            }
            _ if lower.len() > ENGINE_LABELS.len() && lower.starts_with(ENGINE_LABELS) => {
                Key::EngineLabel(key[ENGINE_LABELS.len()..].to_string())
            }
            _ => Key::Unknown,
        };
        Ok(Constraint {
            key,
            equal,
            value: value.to_string(),
        })
    }

    /// Whether `node` satisfies this constraint.
    pub fn matches(&self, node: &Node) -> bool {
        let desc = node.description.as_ref();
        let attr: &str = match &self.key {
            Key::Id => &node.id,
            Key::Hostname => desc.map_or("", |d| &d.hostname),
            Key::Role => match node.role {
                NodeRole::Manager => "manager",
                NodeRole::Worker => "worker",
            },
            Key::Os => desc.map_or("", |d| &d.platform.os),
            Key::Arch => desc.map_or("", |d| &d.platform.architecture),
            Key::NodeLabel(l) => node.spec.annotations.labels.get(l).map_or("", |v| v),
            Key::EngineLabel(l) => desc.and_then(|d| d.engine.labels.get(l)).map_or("", |v| v),
            Key::Unknown => return false,
        };
        attr.eq_ignore_ascii_case(&self.value) == self.equal
    }
}

/// A letter or `_`, then at least one of letters, digits, `-`, `_`, `.`.
fn valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    first_ok
        && key.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Non-empty; letters, digits, spaces and `:-_.*()?+[]\^$|/` only (no operator
/// characters such as `<`, `>`, `~`, `=`, `!`).
fn valid_value(value: &str) -> bool {
    !value.is_empty()
        && value.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || c.is_whitespace()
                || matches!(
                    c,
                    ':' | '-'
                        | '_'
                        | '.'
                        | '*'
                        | '('
                        | ')'
                        | '?'
                        | '+'
                        | '['
                        | ']'
                        | '\\'
                        | '^'
                        | '$'
                        | '|'
                        | '/'
                )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_core::testing;

    fn parse(e: &str) -> Result<Constraint> {
        Constraint::parse(e)
    }

    #[test]
    fn parses_both_operators_with_spaces() {
        let c = parse(" node.labels.zone  ==  a ").unwrap();
        assert_eq!(c.key, Key::NodeLabel("zone".into()));
        assert!(c.equal);
        assert_eq!(c.value, "a");
        assert!(!parse("node.role!=manager").unwrap().equal);
    }

    #[test]
    fn rejects_bad_expressions_naming_them() {
        for bad in [
            "node.role",
            "node.role>=manager",
            "node.role==",
            "==manager",
            "1node==x",
            "node.role==man<ager",
            "node.role==a==b",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
            assert!(matches!(
                swarm_core::Error::from(err),
                swarm_core::Error::InvalidArgument(_)
            ));
        }
        let err = parse_constraints(&["node.role==worker".into(), "x".into()]).unwrap_err();
        assert!(err.to_string().contains("\"x\""), "{err}");
    }

    #[test]
    fn matches_every_key() {
        let mut n = testing::node("n1", "host-a");
        n.role = NodeRole::Manager;
        n.spec
            .annotations
            .labels
            .insert("zone".into(), "East".into());
        let d = n.description.as_mut().unwrap();
        d.engine.labels.insert("disk".into(), "ssd".into());
        let cases = [
            ("node.id==n1", true),
            ("node.id!=n1", false),
            ("node.hostname==HOST-A", true),
            ("node.role==manager", true),
            ("node.role==worker", false),
            ("node.platform.os==linux", true),
            ("node.platform.arch==x86_64", true),
            ("node.platform.arch!=x86_64", false),
            ("node.labels.zone==east", true),
            ("node.labels.Zone==east", false),
            ("node.labels.missing!=x", true),
            ("node.labels.missing==x", false),
            ("engine.labels.disk==ssd", true),
            ("engine.labels.disk!=ssd", false),
            ("node.unknown==x", false),
            ("node.unknown!=x", false),
            ("NODE.ROLE==Manager", true),
        ];
        for (expr, want) in cases {
            assert_eq!(parse(expr).unwrap().matches(&n), want, "{expr}");
        }
    }

    #[test]
    fn node_without_description_compares_as_empty() {
        let mut n = testing::node("n1", "h");
        n.description = None;
        assert!(parse("node.hostname!=h").unwrap().matches(&n));
        assert!(!parse("node.platform.os==linux").unwrap().matches(&n));
        let all = parse_constraints(&["node.id==n1".into(), "node.hostname!=h".into()]).unwrap();
        assert!(node_matches(&all, &n));
    }
}
