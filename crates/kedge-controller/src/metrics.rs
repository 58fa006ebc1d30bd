//! Prometheus metrics of the controller. Label values are drawn from small sets (never object names), except the
//! per-application series (`kedge_app_info`, `kedge_app_sync_total`), which have one series per application this
//! replica reconciles, as Argo CD's `argocd_app_info` does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label set with a single `result` label (`success`, `failure`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// The outcome.
    pub result: &'static str,
    /// The cluster the application deploys to (`in-cluster`, a registered cluster's name, or a server URL).
    pub cluster: String,
}

/// The labels of `kedge_app_info`: an application and its state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppInfoLabels {
    /// The application's namespace.
    pub namespace: String,
    /// The application's name.
    pub name: String,
    /// Its project.
    pub project: String,
    /// The cluster it deploys to.
    pub cluster: String,
    /// `Synced`, `OutOfSync` or `Unknown`.
    pub sync_status: String,
    /// `Healthy`, `Progressing`, `Degraded`, `Suspended`, `Missing` or `Unknown`.
    pub health_status: String,
    /// The short revision it is synced to (empty before the first comparison).
    pub revision: String,
}

/// The labels of `kedge_app_sync_total`: an application and how a sync of it ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppSyncLabels {
    /// The application's namespace.
    pub namespace: String,
    /// The application's name.
    pub name: String,
    /// Its project.
    pub project: String,
    /// The cluster it deploys to.
    pub cluster: String,
    /// `Succeeded` or `Failed`.
    pub phase: &'static str,
}

impl AppSyncLabels {
    /// The labels of `app` with `phase`.
    pub fn of(app: &kedge_api::Application, phase: &'static str) -> Self {
        use kube::ResourceExt;
        Self {
            namespace: app.namespace().unwrap_or_default(),
            name: app.name_any(),
            project: app.spec.project.clone(),
            cluster: app.spec.cluster().to_owned(),
            phase,
        }
    }
}

/// The labels of per-application series that have no state of their own.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppLabels {
    /// The application's namespace.
    pub namespace: String,
    /// The application's name.
    pub name: String,
    /// Its project.
    pub project: String,
    /// The cluster it deploys to.
    pub cluster: String,
}

impl AppLabels {
    /// The labels of `app`.
    pub fn of(app: &kedge_api::Application) -> Self {
        use kube::ResourceExt;
        Self {
            namespace: app.namespace().unwrap_or_default(),
            name: app.name_any(),
            project: app.spec.project.clone(),
            cluster: app.spec.cluster().to_owned(),
        }
    }
}

/// Label set with a single `cluster` label: a registered cluster's name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabel {
    /// The cluster.
    pub cluster: String,
}

/// Label set with a single `verb` label (`get`, `list`, `watch`, `patch`, `create`, `delete`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerbLabel {
    /// The request verb.
    pub verb: &'static str,
    /// The cluster the request went to (`in-cluster` or a registered cluster's name).
    pub cluster: String,
}

/// Label set with a single `repository` label: a repository URL without credentials.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RepoLabel {
    /// The repository.
    pub repository: String,
}

impl RepoLabel {
    /// The label of `url`, its credentials left out.
    pub fn of(url: &str) -> Self {
        Self {
            repository: kedge_source::repo::strip_userinfo(url),
        }
    }
}

/// A histogram of durations from 5 ms to about 40 s.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// Histograms by repository.
pub type ByRepo = Family<RepoLabel, Histogram, fn() -> Histogram>;

/// The controller's metrics and the registry that exposes them.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Time spent in one reconcile.
    pub reconcile_duration: Histogram,
    /// Syncs by result.
    pub syncs: Family<ResultLabel, Counter>,
    /// Live changes to managed objects made by someone else.
    pub drift_events: Counter,
    /// Time spent checking a repository's refs, by repository.
    pub git_fetch_duration: ByRepo,
    /// Failed fetches or checks, by repository.
    pub git_fetch_errors: Family<RepoLabel, Counter>,
    /// Time spent fetching and rendering an application's revision, by repository.
    pub render_duration: ByRepo,
    /// How long passes waited for a free reconcile slot.
    pub queue_wait: Histogram,
    /// Kubernetes API requests made by the controller, by verb and cluster.
    pub api_requests: Family<VerbLabel, Counter>,
    /// Queued passes waiting for a free reconcile slot.
    pub reconciles_waiting: Gauge,
    /// Passes that skipped the comparison: nothing changed since a full pass found the application Synced and
    /// Healthy.
    pub quiet_passes: Counter,
    /// One series per application with its state in the labels, always 1.
    pub app_info: Family<AppInfoLabels, Gauge>,
    /// Each application's current `app_info` labels, so that a change replaces its series.
    app_info_now: Arc<Mutex<HashMap<String, AppInfoLabels>>>,
    /// Syncs per application by how they ended.
    pub app_syncs: Family<AppSyncLabels, Counter>,
    /// How long each application's last pass took.
    pub app_reconcile_duration: Family<AppLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Drift reverted per application (self-heal syncs that succeeded; `phase` is always `Succeeded`).
    pub app_drift_reverted: Family<AppSyncLabels, Counter>,
    /// Whether each registered cluster answered the last check (1) or not (0); kept by the leader.
    pub cluster_connected: Family<ClusterLabel, Gauge>,
    /// Applications this replica reconciles (all of them when replicas do not share the work).
    pub shard_applications: Gauge,
    /// Replicas sharing the applications, this one included (1 when they do not share).
    pub shard_members: Gauge,
    /// Whether this replica holds the leader Lease (1) or not (0).
    pub leader: Gauge,
    /// Deliveries of notifications.
    pub notify: kedge_notify::NotifyMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("kedge");
        let reconcile_duration = duration_histogram();
        let syncs = Family::<ResultLabel, Counter>::default();
        let drift_events = Counter::default();
        let git_fetch_duration: ByRepo = Family::new_with_constructor(duration_histogram);
        let git_fetch_errors = Family::<RepoLabel, Counter>::default();
        let render_duration: ByRepo = Family::new_with_constructor(duration_histogram);
        let queue_wait = duration_histogram();
        registry.register_with_unit(
            "render_duration",
            "Time spent fetching and rendering an application's revision, by repository",
            prometheus_client::registry::Unit::Seconds,
            render_duration.clone(),
        );
        registry.register_with_unit(
            "queue_wait",
            "How long passes waited for a free reconcile slot",
            prometheus_client::registry::Unit::Seconds,
            queue_wait.clone(),
        );
        let api_requests = Family::<VerbLabel, Counter>::default();
        let reconciles_waiting = Gauge::default();
        let quiet_passes = Counter::default();
        let shard_applications = Gauge::default();
        let shard_members = Gauge::default();
        let cluster_connected = Family::<ClusterLabel, Gauge>::default();
        let leader = Gauge::default();
        let notify = kedge_notify::NotifyMetrics::default();
        notify.register(&mut registry);
        registry.register(
            "leader",
            "Whether this replica holds the leader Lease (1) or not (0): the leader checks the registered clusters, \
             and with --sharing off reconciles every application",
            leader.clone(),
        );
        let app_info = Family::<AppInfoLabels, Gauge>::default();
        let app_syncs = Family::<AppSyncLabels, Counter>::default();
        let app_drift_reverted = Family::<AppSyncLabels, Counter>::default();
        let app_reconcile_duration =
            Family::<AppLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register_with_unit(
            "app_reconcile_duration",
            "How long the last pass over each application took",
            prometheus_client::registry::Unit::Seconds,
            app_reconcile_duration.clone(),
        );
        registry.register(
            "app_drift_reverted",
            "Live changes to an application's objects reverted by self-heal, per application",
            app_drift_reverted.clone(),
        );
        registry.register(
            "app_info",
            "One series per application this replica reconciles, with its project, cluster, sync and health \
             status and revision as labels; always 1",
            app_info.clone(),
        );
        registry.register(
            "app_sync",
            "Syncs of each application by how they ended (phase Succeeded or Failed)",
            app_syncs.clone(),
        );
        registry.register(
            "cluster_connected",
            "Whether each registered cluster answered the leader's last check (1) or not (0)",
            cluster_connected.clone(),
        );
        registry.register_with_unit(
            "reconcile_duration",
            "Time spent in one reconcile of an Application",
            prometheus_client::registry::Unit::Seconds,
            reconcile_duration.clone(),
        );
        registry.register("syncs", "Syncs by result", syncs.clone());
        registry.register(
            "drift_events",
            "Live changes to managed objects made outside Kedge",
            drift_events.clone(),
        );
        registry.register_with_unit(
            "git_fetch_duration",
            "Time spent checking a Git repository's refs, by repository",
            prometheus_client::registry::Unit::Seconds,
            git_fetch_duration.clone(),
        );
        registry.register(
            "git_fetch_errors",
            "Failed Git checks or fetches, by repository",
            git_fetch_errors.clone(),
        );
        registry.register(
            "api_requests",
            "Kubernetes API requests by verb and cluster",
            api_requests.clone(),
        );
        registry.register(
            "reconciles_waiting",
            "Queued Application passes waiting for a free reconcile slot",
            reconciles_waiting.clone(),
        );
        registry.register(
            "quiet_passes",
            "Passes that skipped the comparison because nothing changed since a full pass found the application \
             Synced and Healthy",
            quiet_passes.clone(),
        );
        registry.register(
            "shard_applications",
            "Applications this replica may reconcile now",
            shard_applications.clone(),
        );
        registry.register(
            "shard_members",
            "Live replicas sharing the applications, this one included",
            shard_members.clone(),
        );
        Self {
            registry: Arc::new(registry),
            reconcile_duration,
            syncs,
            drift_events,
            git_fetch_duration,
            git_fetch_errors,
            render_duration,
            queue_wait,
            api_requests,
            reconciles_waiting,
            quiet_passes,
            cluster_connected,
            app_info,
            app_info_now: Arc::default(),
            app_syncs,
            app_drift_reverted,
            app_reconcile_duration,
            shard_applications,
            shard_members,
            leader,
            notify,
        }
    }

    /// Sets an application's `kedge_app_info` series, replacing the one it had when its labels changed.
    pub fn set_app_info(&self, labels: AppInfoLabels) {
        let key = format!("{}/{}", labels.namespace, labels.name);
        let mut now = self.app_info_now.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = now.insert(key, labels.clone())
            && old != labels
        {
            self.app_info.remove(&old);
        }
        self.app_info.get_or_create(&labels).set(1);
    }

    /// Records how long the last pass over an application took, while the application has its `kedge_app_info`
    /// series here (not after it was deleted or moved to another replica).
    pub fn set_app_duration(&self, labels: &AppLabels, seconds: f64) {
        let key = format!("{}/{}", labels.namespace, labels.name);
        let now = self.app_info_now.lock().unwrap_or_else(|p| p.into_inner());
        if now.contains_key(&key) {
            self.app_reconcile_duration
                .get_or_create(labels)
                .set(seconds);
        }
    }

    /// Removes the per-application series of `namespace/name` (deleted, or reconciled by another replica now).
    pub fn forget_app(&self, key: &str) {
        let mut now = self.app_info_now.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = now.remove(key) {
            self.app_info.remove(&old);
            self.app_reconcile_duration.remove(&AppLabels {
                namespace: old.namespace.clone(),
                name: old.name.clone(),
                project: old.project.clone(),
                cluster: old.cluster.clone(),
            });
            for phase in ["Succeeded", "Failed"] {
                let labels = AppSyncLabels {
                    namespace: old.namespace.clone(),
                    name: old.name.clone(),
                    project: old.project.clone(),
                    cluster: old.cluster.clone(),
                    phase,
                };
                self.app_syncs.remove(&labels);
                self.app_drift_reverted.remove(&labels);
            }
        }
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_counters_with_units_and_labels() {
        let m = Metrics::new();
        m.syncs
            .get_or_create(&ResultLabel {
                result: "success",
                cluster: "east".into(),
            })
            .inc();
        m.api_requests
            .get_or_create(&VerbLabel {
                verb: "patch",
                cluster: "in-cluster".into(),
            })
            .inc_by(3);
        m.reconcile_duration.observe(0.02);
        let text = m.encode();
        assert!(
            text.contains("kedge_syncs_total{result=\"success\",cluster=\"east\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("kedge_api_requests_total{verb=\"patch\",cluster=\"in-cluster\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("kedge_reconcile_duration_seconds_count 1"),
            "{text}"
        );
    }
}
