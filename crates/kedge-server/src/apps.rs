//! Listing applications from the controller's cache: summaries, filters (namespace, sync, health, label selector,
//! name search) and pagination (`limit` + `continue`, or `page` + `pageSize`).

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kedge_api::{
    Application, HealthCode, IN_CLUSTER_NAME, IN_CLUSTER_SERVER, SyncCode, normalize_server,
};
use kube::ResourceExt;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// The largest page served.
pub const MAX_PAGE: usize = 5000;

/// One application in a list.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AppSummary {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Repository URL (without credentials).
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    /// Path in the repository.
    pub path: String,
    /// Target revision.
    pub target_revision: String,
    /// The cluster it deploys to (`in-cluster`, a registered cluster's name, or a server URL).
    pub cluster: String,
    /// Sync state.
    pub sync: SyncCode,
    /// Health state.
    pub health: HealthCode,
    /// Why, when not healthy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_message: Option<String>,
    /// The commit compared against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Its short form.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub short_revision: Option<String>,
    /// When the last sync finished (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_synced_at: Option<String>,
    /// Phase of the current or last operation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_phase: Option<String>,
    /// Whether an operation is requested and not yet taken by the controller.
    pub operation_pending: bool,
    /// Whether syncing is suspended.
    pub suspended: bool,
    /// Whether syncing is automated.
    pub automated: bool,
    /// Labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl AppSummary {
    /// The summary of an application.
    pub fn of(app: &Application) -> Self {
        let st = app.status.clone().unwrap_or_default();
        let last_synced_at = st
            .history
            .last()
            .map(|h| {
                h.last_attempt_at
                    .clone()
                    .unwrap_or_else(|| h.deployed_at.clone())
            })
            .or_else(|| {
                st.operation_state
                    .as_ref()
                    .and_then(|o| o.finished_at.clone())
            });
        AppSummary {
            namespace: app.namespace().unwrap_or_default(),
            name: app.name_any(),
            repo_url: kedge_source::repo::strip_userinfo(&app.spec.primary_source().repo_url),
            path: app.spec.primary_source().path.clone(),
            target_revision: app.spec.primary_source().target_revision.clone(),
            cluster: app.spec.cluster().to_owned(),
            sync: st.sync.status,
            health: st.health.status,
            health_message: st.health.message.clone(),
            revision: st.sync.revision.clone(),
            short_revision: st.sync.short_revision.clone(),
            last_synced_at,
            operation_phase: st.operation_state.as_ref().map(|o| o.phase.to_string()),
            operation_pending: app
                .annotations()
                .contains_key(kedge_api::OPERATION_ANNOTATION),
            suspended: app.spec.suspend,
            automated: app
                .spec
                .sync_policy
                .as_ref()
                .is_some_and(|p| p.automation().is_some()),
            labels: app.labels().clone(),
        }
    }
}

/// Query of a list.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    /// Only this namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Only these sync states (comma-separated).
    #[serde(default)]
    pub sync: Option<String>,
    /// Only these health states (comma-separated).
    #[serde(default)]
    pub health: Option<String>,
    /// A Kubernetes label selector (`a=b,c!=d,e in (f,g),!h`).
    #[serde(default)]
    pub selector: Option<String>,
    /// Only applications deploying to this cluster (`in-cluster`, a registered cluster's name or its server).
    #[serde(default)]
    pub cluster: Option<String>,
    /// Case-insensitive substring of `namespace/name`.
    #[serde(default, alias = "q")]
    pub search: Option<String>,
    /// Page size for `continue` paging.
    #[serde(default)]
    pub limit: Option<usize>,
    /// Token from the previous page.
    #[serde(default, rename = "continue")]
    pub continue_token: Option<String>,
    /// 1-based page number for page paging.
    #[serde(default)]
    pub page: Option<usize>,
    /// Page size for page paging.
    #[serde(default)]
    pub page_size: Option<usize>,
}

/// A page of applications.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListResult {
    /// The applications of this page, ordered by namespace and name.
    pub items: Vec<AppSummary>,
    /// How many applications match the filters in all.
    pub total: usize,
    /// The token for the next page, when there is one.
    #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
    pub continue_token: Option<String>,
    /// The page number (page paging).
    pub page: usize,
    /// The page size used.
    pub page_size: usize,
    /// How many of the matching applications (before the sync/health filters) are in each sync state.
    pub sync_counts: BTreeMap<String, usize>,
    /// Likewise per health state.
    pub health_counts: BTreeMap<String, usize>,
}

/// A parsed label selector requirement.
#[derive(Clone, Debug, PartialEq)]
enum Requirement {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Requirement::Eq(k, v) => labels.get(k) == Some(v),
            Requirement::NotEq(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::NotExists(k) => !labels.contains_key(k),
        }
    }
}

fn parse_selector(s: &str) -> Result<Vec<Requirement>, ApiError> {
    let bad = |part: &str| ApiError::bad_request(format!("invalid label selector near {part:?}"));
    // Split on commas outside parentheses.
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    parts.push(cur);
    let mut out = Vec::new();
    for part in parts {
        let p = part.trim();
        if p.is_empty() {
            continue;
        }
        let list = |rest: &str| -> Result<Vec<String>, ApiError> {
            let inner = rest
                .trim()
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(|| bad(p))?;
            Ok(inner.split(',').map(|v| v.trim().to_owned()).collect())
        };
        let req = if let Some(k) = p.strip_prefix('!') {
            Requirement::NotExists(k.trim().to_owned())
        } else if let Some((k, v)) = p.split_once("!=") {
            Requirement::NotEq(k.trim().to_owned(), v.trim().to_owned())
        } else if let Some((k, v)) = p.split_once("==") {
            Requirement::Eq(k.trim().to_owned(), v.trim().to_owned())
        } else if let Some((k, v)) = p.split_once('=') {
            Requirement::Eq(k.trim().to_owned(), v.trim().to_owned())
        } else if let Some((k, rest)) = p.split_once(" notin ") {
            Requirement::NotIn(k.trim().to_owned(), list(rest)?)
        } else if let Some((k, rest)) = p.split_once(" in ") {
            Requirement::In(k.trim().to_owned(), list(rest)?)
        } else if p.contains(' ') || p.contains('(') {
            return Err(bad(p));
        } else {
            Requirement::Exists(p.to_owned())
        };
        out.push(req);
    }
    Ok(out)
}

fn parse_set<T: Copy>(
    s: &Option<String>,
    what: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Option<Vec<T>>, ApiError> {
    let Some(s) = s.as_deref().filter(|s| !s.trim().is_empty()) else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        out.push(
            parse(part).ok_or_else(|| ApiError::bad_request(format!("unknown {what} {part:?}")))?,
        );
    }
    Ok(Some(out))
}

/// Parses a sync state name (case-insensitive).
pub fn parse_sync(s: &str) -> Option<SyncCode> {
    match s.to_ascii_lowercase().as_str() {
        "synced" => Some(SyncCode::Synced),
        "outofsync" => Some(SyncCode::OutOfSync),
        "unknown" => Some(SyncCode::Unknown),
        _ => None,
    }
}

/// Parses a health state name (case-insensitive).
pub fn parse_health(s: &str) -> Option<HealthCode> {
    match s.to_ascii_lowercase().as_str() {
        "healthy" => Some(HealthCode::Healthy),
        "progressing" => Some(HealthCode::Progressing),
        "degraded" => Some(HealthCode::Degraded),
        "suspended" => Some(HealthCode::Suspended),
        "missing" => Some(HealthCode::Missing),
        "unknown" => Some(HealthCode::Unknown),
        _ => None,
    }
}

/// The name of a sync state.
pub fn sync_name(s: SyncCode) -> &'static str {
    match s {
        SyncCode::Synced => "Synced",
        SyncCode::OutOfSync => "OutOfSync",
        SyncCode::Unknown => "Unknown",
    }
}

/// The name of a health state.
pub fn health_name(h: HealthCode) -> &'static str {
    match h {
        HealthCode::Healthy => "Healthy",
        HealthCode::Progressing => "Progressing",
        HealthCode::Degraded => "Degraded",
        HealthCode::Suspended => "Suspended",
        HealthCode::Missing => "Missing",
        HealthCode::Unknown => "Unknown",
    }
}

fn encode_continue(ns: &str, name: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{ns}/{name}"))
}

fn decode_continue(token: &str) -> Result<(String, String), ApiError> {
    let bad = || ApiError::bad_request("invalid continue token");
    let raw = URL_SAFE_NO_PAD.decode(token.trim()).map_err(|_| bad())?;
    let s = String::from_utf8(raw).map_err(|_| bad())?;
    let (ns, name) = s.split_once('/').ok_or_else(bad)?;
    Ok((ns.to_owned(), name.to_owned()))
}

/// Whether `app` deploys to `cluster`: `in-cluster` (or its server, `https://kubernetes.default.svc`) for the cluster
/// Kedge runs in, as the controller reads a destination; else the cluster's name or server as the application names
/// it (a trailing slash names the same server). The `cluster` filter of the list and the counts of the clusters page
/// both follow this rule, so a count is what its filter lists.
pub fn deploys_to(app: &Application, cluster: &str) -> bool {
    let cluster = cluster.trim();
    if cluster == IN_CLUSTER_NAME || normalize_server(cluster) == IN_CLUSTER_SERVER {
        return app.spec.is_in_cluster();
    }
    app.spec.cluster() == cluster
        || app.spec.destination_server() == Some(normalize_server(cluster))
}

/// Filters, orders and pages `apps`. Without `limit` or `pageSize` every match is returned.
pub fn list(apps: Vec<Arc<Application>>, q: &ListQuery) -> Result<ListResult, ApiError> {
    let syncs = parse_set(&q.sync, "sync state", parse_sync)?;
    let healths = parse_set(&q.health, "health state", parse_health)?;
    let selector = parse_selector(q.selector.as_deref().unwrap_or(""))?;
    let search = q
        .search
        .as_deref()
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty());
    let namespace = q.namespace.as_deref().filter(|n| !n.is_empty());
    let after = q
        .continue_token
        .as_deref()
        .filter(|t| !t.is_empty())
        .map(decode_continue)
        .transpose()?;

    let mut sync_counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut health_counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut matched: Vec<(&str, &str, &Arc<Application>)> = Vec::new();
    for app in &apps {
        let ns = app.metadata.namespace.as_deref().unwrap_or("");
        let name = app.metadata.name.as_deref().unwrap_or("");
        if namespace.is_some_and(|n| n != ns) {
            continue;
        }
        if let Some(c) = q.cluster.as_deref().filter(|c| !c.trim().is_empty())
            && !deploys_to(app, c)
        {
            continue;
        }
        if let Some(s) = &search {
            let hay = format!("{ns}/{name}").to_ascii_lowercase();
            if !hay.contains(s.as_str()) {
                continue;
            }
        }
        if !selector.is_empty() {
            let labels = app.labels();
            if !selector.iter().all(|r| r.matches(labels)) {
                continue;
            }
        }
        let (sync, health) = app
            .status
            .as_ref()
            .map(|s| (s.sync.status, s.health.status))
            .unwrap_or_default();
        *sync_counts.entry(sync_name(sync).into()).or_default() += 1;
        *health_counts.entry(health_name(health).into()).or_default() += 1;
        if syncs.as_ref().is_some_and(|s| !s.contains(&sync)) {
            continue;
        }
        if healths.as_ref().is_some_and(|h| !h.contains(&health)) {
            continue;
        }
        matched.push((ns, name, app));
    }
    matched.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    let total = matched.len();

    let (start, size, page) = if let Some(size) = q.page_size.filter(|s| *s > 0) {
        let size = size.min(MAX_PAGE);
        let page = q.page.unwrap_or(1).max(1);
        ((page - 1).saturating_mul(size).min(total), size, page)
    } else if let Some(limit) = q.limit.filter(|l| *l > 0) {
        let start = match &after {
            Some((ns, name)) => {
                matched.partition_point(|(a, b, _)| (*a, *b) <= (ns.as_str(), name.as_str()))
            }
            None => 0,
        };
        (start, limit.min(MAX_PAGE), 1)
    } else {
        (0, total.max(1), 1)
    };
    let end = (start + size).min(total);
    let slice = &matched[start..end];
    let continue_token = (q.page_size.is_none() && q.limit.is_some() && end < total)
        .then(|| slice.last().map(|(ns, name, _)| encode_continue(ns, name)))
        .flatten();
    Ok(ListResult {
        items: slice.iter().map(|(_, _, a)| AppSummary::of(a)).collect(),
        total,
        continue_token,
        page,
        page_size: size,
        sync_counts,
        health_counts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kedge_api::{ApplicationSource, ApplicationSpec, ApplicationStatus};

    fn app(ns: &str, name: &str, sync: SyncCode, labels: &[(&str, &str)]) -> Arc<Application> {
        let mut a = Application::new(
            name,
            ApplicationSpec {
                source: ApplicationSource {
                    repo_url: "https://user:pw@git.test/r.git".into(),
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        a.metadata.namespace = Some(ns.into());
        a.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        let mut st = ApplicationStatus::default();
        st.sync.status = sync;
        a.status = Some(st);
        Arc::new(a)
    }

    fn sample() -> Vec<Arc<Application>> {
        (0..25)
            .map(|i| {
                app(
                    if i % 2 == 0 { "a" } else { "b" },
                    &format!("app-{i:02}"),
                    if i % 5 == 0 {
                        SyncCode::OutOfSync
                    } else {
                        SyncCode::Synced
                    },
                    &[("team", if i < 10 { "web" } else { "data" })],
                )
            })
            .collect()
    }

    #[test]
    fn filters_combine_and_counts_ignore_state_filters() {
        let q = ListQuery {
            namespace: Some("a".into()),
            sync: Some("outofsync".into()),
            selector: Some("team in (web, ops),!missing".into()),
            ..Default::default()
        };
        let r = list(sample(), &q).expect("list");
        let names: Vec<_> = r.items.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["app-00"]);
        assert_eq!(r.sync_counts.get("Synced"), Some(&4));
        assert!(!r.items[0].repo_url.contains("pw"));
    }

    #[test]
    fn applications_are_filtered_by_cluster_by_name_or_server() {
        let mut apps = sample();
        let east = Arc::make_mut(&mut apps[3]);
        east.spec.destination.name = Some("east".into());
        let by_server = Arc::make_mut(&mut apps[4]);
        by_server.spec.destination.server = Some("https://east.example.test:6443".into());
        let q = |c: &str| ListQuery {
            cluster: Some(c.into()),
            ..Default::default()
        };
        let r = list(apps.clone(), &q("east")).expect("list");
        assert_eq!(r.items.len(), 1);
        assert_eq!(r.items[0].cluster, "east");
        let r = list(apps.clone(), &q("https://east.example.test:6443/")).expect("list");
        assert_eq!(r.items.len(), 1);
        let r = list(apps, &q("in-cluster")).expect("list");
        assert_eq!(r.total, 23);
        assert!(r.items.iter().all(|i| i.cluster == "in-cluster"));
    }

    #[test]
    fn the_cluster_kedge_runs_in_is_named_in_cluster_or_by_its_server() {
        let mut apps = sample();
        fn d(a: &mut Arc<Application>) -> &mut kedge_api::ApplicationDestination {
            &mut Arc::make_mut(a).spec.destination
        }
        d(&mut apps[0]).server = Some("https://kubernetes.default.svc/".into());
        d(&mut apps[1]).name = Some("in-cluster".into());
        d(&mut apps[2]).name = Some("in-cluster".into());
        d(&mut apps[2]).server = Some("https://east.example.test".into());
        d(&mut apps[3]).server = Some(" ".into());
        assert!(deploys_to(&apps[0], "in-cluster"));
        assert!(deploys_to(&apps[1], "https://kubernetes.default.svc"));
        assert!(
            deploys_to(&apps[3], "in-cluster"),
            "a blank server names none"
        );
        // A name and a server that disagree are not the cluster Kedge runs in, as the controller reads them.
        assert!(!apps[2].spec.is_in_cluster());
        assert!(!deploys_to(&apps[2], "in-cluster"));
        assert!(deploys_to(&apps[2], "https://east.example.test/"));
        assert!(
            !deploys_to(&apps[3], " "),
            "a blank filter names no cluster here"
        );
        let q = ListQuery {
            cluster: Some("in-cluster".into()),
            ..Default::default()
        };
        assert_eq!(list(apps, &q).expect("list").total, 24);
    }

    #[test]
    fn continue_tokens_walk_every_item_once() {
        let mut seen = Vec::new();
        let mut q = ListQuery {
            limit: Some(7),
            ..Default::default()
        };
        loop {
            let r = list(sample(), &q).expect("list");
            assert_eq!(r.total, 25);
            seen.extend(
                r.items
                    .iter()
                    .map(|i| format!("{}/{}", i.namespace, i.name)),
            );
            match r.continue_token {
                Some(t) => q.continue_token = Some(t),
                None => break,
            }
        }
        assert_eq!(seen.len(), 25);
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, seen);
    }

    #[test]
    fn pages_and_search() {
        let q = ListQuery {
            page: Some(3),
            page_size: Some(10),
            ..Default::default()
        };
        let r = list(sample(), &q).expect("list");
        assert_eq!(r.items.len(), 5);
        let q = ListQuery {
            search: Some("B/APP-1".into()),
            ..Default::default()
        };
        assert_eq!(list(sample(), &q).expect("list").total, 5);
        assert!(
            list(
                sample(),
                &ListQuery {
                    sync: Some("bogus".into()),
                    ..Default::default()
                }
            )
            .is_err()
        );
        assert!(parse_selector("a in b").is_err());
    }
}
