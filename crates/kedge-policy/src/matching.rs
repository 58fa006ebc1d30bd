//! Which objects a constraint applies to, as Gatekeeper decides from `spec.match`: `kinds`, `scope`, `namespaces`,
//! `excludedNamespaces`, `name`, `labelSelector`, `namespaceSelector` and `source`.
//!
//! Namespace rules follow Gatekeeper: a `Namespace` object is matched by its own name (and, for
//! `namespaceSelector`, its own labels); any other cluster-scoped object passes `namespaces`,
//! `excludedNamespaces` and `namespaceSelector`. Names in `namespaces`, `excludedNamespaces` and `name` may start
//! and/or end with `*` (`kube-*`, `*-system`, `*team*`).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::object::{ObjectRef, labels};

/// A constraint's `spec.match`, validated.
#[derive(Debug, Clone, Default)]
pub(crate) struct Match {
    kinds: Vec<KindGroup>,
    scope: Scope,
    namespaces: Vec<String>,
    excluded_namespaces: Vec<String>,
    name: Option<String>,
    label_selector: Option<LabelSelector>,
    namespace_selector: Option<LabelSelector>,
    generated_only: bool,
}

/// `spec.match` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMatch {
    #[serde(default)]
    kinds: Vec<KindGroup>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default)]
    excluded_namespaces: Vec<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    label_selector: Option<RawSelector>,
    #[serde(default)]
    namespace_selector: Option<RawSelector>,
    #[serde(default)]
    source: Option<String>,
}

/// One entry of `match.kinds`: empty lists and `*` match everything.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct KindGroup {
    #[serde(default)]
    api_groups: Vec<String>,
    #[serde(default)]
    kinds: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Scope {
    #[default]
    Any,
    Cluster,
    Namespaced,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSelector {
    #[serde(default)]
    match_labels: BTreeMap<String, String>,
    #[serde(default)]
    match_expressions: Vec<RawExpression>,
}

#[derive(Debug, Deserialize)]
struct RawExpression {
    key: String,
    operator: String,
    #[serde(default)]
    values: Vec<String>,
}

/// A Kubernetes label selector: every label and expression must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct LabelSelector {
    labels: BTreeMap<String, String>,
    expressions: Vec<Expression>,
}

#[derive(Debug, Clone, PartialEq)]
enum Expression {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl LabelSelector {
    fn parse(raw: RawSelector, field: &str) -> Result<Self, String> {
        let mut expressions = Vec::new();
        for e in raw.match_expressions {
            let needs_values = matches!(e.operator.as_str(), "In" | "NotIn");
            if needs_values && e.values.is_empty() {
                return Err(format!(
                    "{field}: operator {} on {:?} needs values",
                    e.operator, e.key
                ));
            }
            if !needs_values && !e.values.is_empty() {
                return Err(format!(
                    "{field}: operator {} on {:?} takes no values",
                    e.operator, e.key
                ));
            }
            expressions.push(match e.operator.as_str() {
                "In" => Expression::In(e.key, e.values),
                "NotIn" => Expression::NotIn(e.key, e.values),
                "Exists" => Expression::Exists(e.key),
                "DoesNotExist" => Expression::DoesNotExist(e.key),
                other => {
                    return Err(format!(
                        "{field}: unknown operator {other:?} (In, NotIn, Exists, DoesNotExist)"
                    ));
                }
            });
        }
        Ok(Self {
            labels: raw.match_labels,
            expressions,
        })
    }

    /// Whether a set of labels satisfies the selector (an empty selector matches everything).
    pub(crate) fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.expressions.iter().all(|e| match e {
                Expression::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
                Expression::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
                Expression::Exists(k) => labels.contains_key(k),
                Expression::DoesNotExist(k) => !labels.contains_key(k),
            })
    }
}

/// Gatekeeper's wildcard: a leading and/or trailing `*` matches any suffix, prefix or infix.
pub(crate) fn glob_matches(pattern: &str, candidate: &str) -> bool {
    match (pattern.strip_prefix('*'), pattern.strip_suffix('*')) {
        (Some(_), Some(_)) if pattern.len() >= 2 => {
            candidate.contains(&pattern[1..pattern.len() - 1])
        }
        // A lone `*`.
        (Some(_), Some(_)) => true,
        (Some(suffix), None) => candidate.ends_with(suffix),
        (None, Some(prefix)) => candidate.starts_with(prefix),
        (None, None) => pattern == candidate,
    }
}

/// The labels of namespaces by name, which a `namespaceSelector` needs.
pub(crate) type NamespaceLabels = BTreeMap<String, BTreeMap<String, String>>;

impl Match {
    /// Reads and validates `spec.match` (absent: everything matches).
    pub(crate) fn parse(value: Option<&Value>) -> Result<Self, String> {
        let raw: RawMatch = match value {
            None | Some(Value::Null) => RawMatch::default(),
            Some(v) => serde_json::from_value(v.clone()).map_err(|e| format!("spec.match: {e}"))?,
        };
        let scope = match raw.scope.as_deref() {
            None | Some("") | Some("*") => Scope::Any,
            Some("Cluster") => Scope::Cluster,
            Some("Namespaced") => Scope::Namespaced,
            Some(other) => {
                return Err(format!(
                    "spec.match.scope: unknown scope {other:?} (Cluster, Namespaced, *)"
                ));
            }
        };
        let generated_only = match raw.source.as_deref() {
            None | Some("") | Some("All") | Some("Original") => false,
            Some("Generated") => true,
            Some(other) => {
                return Err(format!(
                    "spec.match.source: unknown source {other:?} (All, Original, Generated)"
                ));
            }
        };
        Ok(Self {
            kinds: raw.kinds,
            scope,
            namespaces: raw.namespaces,
            excluded_namespaces: raw.excluded_namespaces,
            name: raw.name.filter(|n| !n.is_empty()),
            label_selector: raw
                .label_selector
                .map(|s| LabelSelector::parse(s, "spec.match.labelSelector"))
                .transpose()?,
            namespace_selector: raw
                .namespace_selector
                .map(|s| LabelSelector::parse(s, "spec.match.namespaceSelector"))
                .transpose()?,
            generated_only,
        })
    }

    /// Whether the constraint applies to `object`. `namespace_labels` gives the labels of namespaces by name; it
    /// is read only with a `namespaceSelector`, and a namespaced object whose namespace it does not know is an
    /// error (as in Gatekeeper, rather than a silent match or miss).
    pub(crate) fn matches(
        &self,
        id: &ObjectRef,
        object: &Value,
        namespace_labels: &NamespaceLabels,
    ) -> Result<bool, String> {
        if self.generated_only {
            // Kedge reviews objects as they are written, never objects generated from them.
            return Ok(false);
        }
        if !self.kinds_match(id) {
            return Ok(false);
        }
        // A Namespace is cluster-scoped; its own name stands for the namespace in namespace rules.
        let namespace = if id.is_namespace() {
            Some(id.name.as_str())
        } else {
            id.namespace.as_deref()
        };
        let cluster_scoped = id.namespace.is_none();
        match self.scope {
            Scope::Cluster if !cluster_scoped => return Ok(false),
            Scope::Namespaced if cluster_scoped => return Ok(false),
            _ => {}
        }
        if let Some(ns) = namespace {
            if !self.namespaces.is_empty() && !self.namespaces.iter().any(|p| glob_matches(p, ns)) {
                return Ok(false);
            }
            if self.excluded_namespaces.iter().any(|p| glob_matches(p, ns)) {
                return Ok(false);
            }
        }
        if let Some(pattern) = &self.name
            && !glob_matches(pattern, &id.name)
        {
            return Ok(false);
        }
        let own_labels = labels(object);
        if let Some(selector) = &self.label_selector
            && !selector.matches(&own_labels)
        {
            return Ok(false);
        }
        if let Some(selector) = &self.namespace_selector {
            if id.is_namespace() {
                return Ok(selector.matches(&own_labels));
            }
            if let Some(ns) = &id.namespace {
                let Some(ns_labels) = namespace_labels.get(ns) else {
                    return Err(format!(
                        "the constraint's namespaceSelector needs the labels of namespace {ns}, which is not known"
                    ));
                };
                return Ok(selector.matches(ns_labels));
            }
        }
        Ok(true)
    }

    fn kinds_match(&self, id: &ObjectRef) -> bool {
        let any = |list: &[String], value: &str| {
            list.is_empty() || list.iter().any(|x| x == "*" || x == value)
        };
        self.kinds.is_empty()
            || self
                .kinds
                .iter()
                .any(|k| any(&k.kinds, &id.kind) && any(&k.api_groups, id.group()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(spec: Value) -> Match {
        Match::parse(Some(&spec)).unwrap()
    }

    fn check(spec: &Match, object: Value) -> bool {
        let team: BTreeMap<String, String> = [("team".to_owned(), "a".to_owned())].into();
        let namespaces: NamespaceLabels = [("team-a".to_owned(), team)].into();
        spec.matches(&ObjectRef::of(&object), &object, &namespaces)
            .unwrap()
    }

    fn pod(ns: &str, name: &str, labels: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": ns, "labels": labels}})
    }

    fn deployment(ns: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": ns}})
    }

    fn namespace(name: &str, labels: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
    }

    fn cluster_role() -> Value {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "r"}})
    }

    #[test]
    fn kinds_by_group_and_kind_with_wildcards() {
        let core_pods = m(json!({"kinds": [{"apiGroups": [""], "kinds": ["Pod"]}]}));
        assert!(check(&core_pods, pod("x", "p", json!({}))));
        assert!(!check(&core_pods, deployment("x")));
        let apps_any = m(json!({"kinds": [{"apiGroups": ["apps"], "kinds": ["*"]}]}));
        assert!(check(&apps_any, deployment("x")));
        assert!(!check(&apps_any, pod("x", "p", json!({}))));
        let any_group = m(json!({"kinds": [{"apiGroups": ["*"], "kinds": ["Deployment"]}]}));
        assert!(check(&any_group, deployment("x")));
        let empty_lists = m(json!({"kinds": [{}]}));
        assert!(check(&empty_lists, cluster_role()));
        let several = m(json!({"kinds": [
            {"apiGroups": [""], "kinds": ["Pod"]},
            {"apiGroups": ["apps"], "kinds": ["Deployment"]}]}));
        assert!(check(&several, deployment("x")) && check(&several, pod("x", "p", json!({}))));
        assert!(!check(&several, cluster_role()));
        // No match at all: everything.
        assert!(check(&m(json!({})), cluster_role()));
    }

    #[test]
    fn namespaces_with_globs_and_exclusions() {
        let only = m(json!({"namespaces": ["team-*", "prod"]}));
        assert!(check(&only, deployment("team-a")));
        assert!(check(&only, deployment("prod")));
        assert!(!check(&only, deployment("production")));
        // Cluster-scoped objects other than Namespaces are not filtered by namespace rules.
        assert!(check(&only, cluster_role()));
        // A Namespace matches by its own name.
        assert!(check(&only, namespace("team-b", json!({}))));
        assert!(!check(&only, namespace("kube-system", json!({}))));

        let excluded = m(json!({"excludedNamespaces": ["kube-*", "*-system", "*sandbox*"]}));
        assert!(!check(&excluded, deployment("kube-public")));
        assert!(!check(&excluded, deployment("gatekeeper-system")));
        assert!(!check(&excluded, deployment("my-sandbox-1")));
        assert!(!check(&excluded, namespace("kube-system", json!({}))));
        assert!(check(&excluded, deployment("team-a")));
        assert!(check(&excluded, cluster_role()));
    }

    #[test]
    fn globs_as_gatekeeper() {
        assert!(glob_matches("*", "anything"));
        assert!(glob_matches("kube-*", "kube-system"));
        assert!(!glob_matches("kube-*", "system-kube"));
        assert!(glob_matches("*-system", "kube-system"));
        assert!(glob_matches("*ub*", "kube"));
        assert!(glob_matches("exact", "exact"));
        assert!(!glob_matches("exact", "exactly"));
    }

    #[test]
    fn scope() {
        let cluster = m(json!({"scope": "Cluster"}));
        assert!(check(&cluster, cluster_role()));
        assert!(check(&cluster, namespace("n", json!({}))));
        assert!(!check(&cluster, deployment("x")));
        let namespaced = m(json!({"scope": "Namespaced"}));
        assert!(!check(&namespaced, cluster_role()));
        assert!(check(&namespaced, deployment("x")));
        assert!(check(&m(json!({"scope": "*"})), cluster_role()));
        assert!(Match::parse(Some(&json!({"scope": "Everywhere"}))).is_err());
    }

    #[test]
    fn name_glob() {
        let spec = m(json!({"name": "web-*"}));
        assert!(check(&spec, pod("x", "web-1", json!({}))));
        assert!(!check(&spec, pod("x", "db-1", json!({}))));
    }

    #[test]
    fn label_selectors() {
        let spec = m(json!({"labelSelector": {
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "edge"]},
                {"key": "env", "operator": "NotIn", "values": ["dev"]},
                {"key": "owner", "operator": "Exists"},
                {"key": "legacy", "operator": "DoesNotExist"}]}}));
        let ok = json!({"app": "web", "tier": "edge", "owner": "me"});
        assert!(check(&spec, pod("x", "p", ok)));
        assert!(check(
            &spec,
            pod(
                "x",
                "p",
                json!({"app": "web", "tier": "front", "owner": "me", "env": "prod"})
            )
        ));
        assert!(!check(
            &spec,
            pod(
                "x",
                "p",
                json!({"app": "db", "tier": "edge", "owner": "me"})
            )
        ));
        assert!(!check(
            &spec,
            pod(
                "x",
                "p",
                json!({"app": "web", "tier": "back", "owner": "me"})
            )
        ));
        assert!(!check(
            &spec,
            pod(
                "x",
                "p",
                json!({"app": "web", "tier": "edge", "owner": "me", "env": "dev"})
            )
        ));
        assert!(!check(
            &spec,
            pod("x", "p", json!({"app": "web", "tier": "edge"}))
        ));
        assert!(!check(
            &spec,
            pod(
                "x",
                "p",
                json!({"app": "web", "tier": "edge", "owner": "me", "legacy": "1"})
            )
        ));
        // Invalid selectors are refused.
        for bad in [
            json!({"labelSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}),
            json!({"labelSelector": {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}}),
            json!({"labelSelector": {"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}}),
        ] {
            assert!(Match::parse(Some(&bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn namespace_selector() {
        let spec = m(json!({"namespaceSelector": {"matchLabels": {"team": "a"}}}));
        assert!(check(&spec, deployment("team-a")));
        // A Namespace is selected by its own labels.
        assert!(check(&spec, namespace("other", json!({"team": "a"}))));
        assert!(!check(&spec, namespace("team-a", json!({}))));
        // Cluster-scoped objects pass.
        assert!(check(&spec, cluster_role()));
        // An unknown namespace is an error, not a guess.
        let id = ObjectRef::of(&deployment("elsewhere"));
        let err = spec
            .matches(&id, &deployment("elsewhere"), &NamespaceLabels::new())
            .unwrap_err();
        assert!(err.contains("namespace elsewhere"), "{err}");
    }

    #[test]
    fn generated_source_matches_nothing() {
        assert!(!check(&m(json!({"source": "Generated"})), deployment("x")));
        assert!(check(&m(json!({"source": "All"})), deployment("x")));
    }
}
