//! Kubernetes Events on Applications (core/v1, so `kubectl describe` and `kubectl get events` show them).

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kedge_api::Application;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::{Resource, ResourceExt};
use tokio::sync::Semaphore;

/// Severity of an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Something expected happened.
    Normal,
    /// Something needs attention.
    Warning,
}

/// Publishes events about Applications. Failures to publish are logged, never fatal.
#[derive(Clone)]
pub struct EventRecorder {
    client: kube::Client,
    component: String,
    instance: String,
    /// When set, events are created by tasks of their own, this many at once at most (beyond that the caller
    /// waits), so that a pass does not wait for its events.
    background: Option<(Arc<Semaphore>, u32)>,
}

impl EventRecorder {
    /// A recorder reporting as `component` (e.g. `kedge-controller`) from `instance` (this replica).
    pub fn new(
        client: kube::Client,
        component: impl Into<String>,
        instance: impl Into<String>,
    ) -> Self {
        Self {
            client,
            component: component.into(),
            instance: instance.into(),
            background: None,
        }
    }

    /// Creates events without making the caller wait, at most `at_once` in flight (beyond that the caller waits for
    /// its own). Their times are taken when they are published, so their order stays.
    pub fn in_background(mut self, at_once: usize) -> Self {
        let at_once = u32::try_from(at_once.clamp(1, Semaphore::MAX_PERMITS)).unwrap_or(u32::MAX);
        self.background = Some((Arc::new(Semaphore::new(at_once as usize)), at_once));
        self
    }

    /// Waits until the events created in the background so far are published (or have failed), for at most
    /// `within`; returns whether they all were. A replica that stops calls it before it gives up its lease, so that
    /// its last events are neither lost nor published after its successor's.
    pub async fn flush(&self, within: std::time::Duration) -> bool {
        let Some((semaphore, at_once)) = &self.background else {
            return true;
        };
        matches!(
            tokio::time::timeout(within, semaphore.acquire_many(*at_once)).await,
            Ok(Ok(_))
        )
    }

    /// Publishes one event on `app`. `reason` is CamelCase; `message` must not contain secret values.
    pub async fn publish(
        &self,
        app: &Application,
        severity: Severity,
        reason: &str,
        message: &str,
    ) {
        let Some(ns) = app.namespace() else { return };
        let now = Timestamp::now();
        let suffix = format!("{:x}", now.as_nanosecond() as u64 & 0xffff_ffff_ffff);
        let name = format!("{}.{}", app.name_any(), suffix);
        // The cluster the application deploys to: in an annotation, and in a label too when it is a valid label
        // value (a cluster name; a server URL is not), so that `kubectl get events -l kedge.dev/cluster=east` works.
        let cluster = app.spec.cluster().to_owned();
        let labels = is_label_value(&cluster)
            .then(|| BTreeMap::from([(CLUSTER_KEY.to_owned(), cluster.clone())]));
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(ns.clone()),
                annotations: Some(BTreeMap::from([(CLUSTER_KEY.to_owned(), cluster)])),
                labels,
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some(Application::api_version(&()).into_owned()),
                kind: Some(Application::kind(&()).into_owned()),
                name: Some(app.name_any()),
                namespace: Some(ns.clone()),
                uid: app.uid(),
                resource_version: app.resource_version(),
                ..Default::default()
            },
            reason: Some(reason.to_owned()),
            message: Some(truncate(message, 1024)),
            type_: Some(match severity {
                Severity::Normal => "Normal".to_owned(),
                Severity::Warning => "Warning".to_owned(),
            }),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: None,
            }),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.instance.clone()),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: Some(MicroTime(now)),
            action: Some(reason.to_owned()),
            count: Some(1),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        if let Some(permit) = self
            .background
            .as_ref()
            .and_then(|(s, _)| s.clone().try_acquire_owned().ok())
        {
            let (app, reason) = (app.name_any(), reason.to_owned());
            tokio::spawn(async move {
                let _permit = permit;
                if let Err(err) = api.create(&PostParams::default(), &event).await {
                    tracing::warn!(%app, %reason, error = %err, "failed to publish event");
                }
            });
            return;
        }
        if let Err(err) = api.create(&PostParams::default(), &event).await {
            tracing::warn!(app = %app.name_any(), reason, error = %err, "failed to publish event");
        }
    }
}

/// Label and annotation of every event: the cluster the application deploys to.
pub const CLUSTER_KEY: &str = "kedge.dev/cluster";

/// Whether `s` may be a label value: at most 63 characters, alphanumerics with `-`, `_` and `.` inside.
fn is_label_value(s: &str) -> bool {
    s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.chars().next().is_none_or(|c| c.is_ascii_alphanumeric())
        && s.chars().last().is_none_or(|c| c.is_ascii_alphanumeric())
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("ééé", 3), "é…");
    }

    #[test]
    fn cluster_names_are_label_values_and_server_urls_are_not() {
        assert!(is_label_value("east"));
        assert!(is_label_value("in-cluster"));
        assert!(is_label_value("prod_eu.1"));
        assert!(!is_label_value("https://10.0.0.1:6443"));
        assert!(!is_label_value("-east"));
        assert!(!is_label_value(&"x".repeat(64)));
    }
}
