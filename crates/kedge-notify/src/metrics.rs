//! Metrics of deliveries, by Provider (`namespace/name`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// Label of delivery metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabel {
    /// `namespace/name` of the Provider.
    pub provider: String,
}

/// Label of dropped notices.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DroppedLabel {
    /// `namespace/name` of the Provider (empty when dropped before routing).
    pub provider: String,
    /// `duplicate`, `rate_limited` or `queue_full`.
    pub reason: String,
}

fn delivery_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// The notifier's metrics.
#[derive(Clone)]
pub struct NotifyMetrics {
    sent: Family<ProviderLabel, Counter>,
    failed: Family<ProviderLabel, Counter>,
    retried: Family<ProviderLabel, Counter>,
    dropped: Family<DroppedLabel, Counter>,
    duration: Family<ProviderLabel, Histogram, fn() -> Histogram>,
}

impl Default for NotifyMetrics {
    fn default() -> Self {
        Self {
            sent: Family::default(),
            failed: Family::default(),
            retried: Family::default(),
            dropped: Family::default(),
            duration: Family::new_with_constructor(delivery_histogram),
        }
    }
}

impl NotifyMetrics {
    /// Registers every metric (names under the registry's prefix, e.g. `kedge_notifications_sent_total`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "notifications_sent",
            "Notifications delivered, by Provider",
            self.sent.clone(),
        );
        registry.register(
            "notifications_failed",
            "Notifications given up after their attempts (or that could not be built), by Provider",
            self.failed.clone(),
        );
        registry.register(
            "notification_retries",
            "Delivery attempts that failed and were retried, by Provider",
            self.retried.clone(),
        );
        registry.register(
            "notifications_dropped",
            "Notifications not sent: duplicate, rate_limited or queue_full",
            self.dropped.clone(),
        );
        registry.register_with_unit(
            "notification_delivery_duration",
            "Time one delivery attempt took, by Provider",
            Unit::Seconds,
            self.duration.clone(),
        );
    }

    fn label(provider: &str) -> ProviderLabel {
        ProviderLabel {
            provider: provider.to_owned(),
        }
    }

    pub(crate) fn sent(&self, provider: &str) {
        self.sent.get_or_create(&Self::label(provider)).inc();
    }

    pub(crate) fn failed(&self, provider: &str) {
        self.failed.get_or_create(&Self::label(provider)).inc();
    }

    pub(crate) fn retried(&self, provider: &str) {
        self.retried.get_or_create(&Self::label(provider)).inc();
    }

    pub(crate) fn observe(&self, provider: &str, seconds: f64) {
        self.duration
            .get_or_create(&Self::label(provider))
            .observe(seconds);
    }

    pub(crate) fn dropped(&self, provider: &str, reason: &str) {
        self.dropped
            .get_or_create(&DroppedLabel {
                provider: provider.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }
}
