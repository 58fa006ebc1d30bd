//! Leader election with a `coordination.k8s.io/v1` Lease, so that of several replicas only one acts.
//!
//! The holder renews the lease every `retry_period`; a candidate takes it over once `renewTime + leaseDuration` has
//! passed. Writes use the lease's resourceVersion, so two candidates racing for an expired lease cannot both win: the
//! loser gets a 409 and stays a follower. A leader that fails to renew within the lease duration steps down.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Settings of the election.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (pod name or hostname plus a random suffix).
    pub identity: String,
    /// How long a lease is valid after its last renewal. Default 15 s.
    pub lease_duration: Duration,
    /// How often the holder renews and candidates retry. Default 2 s.
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// A config with the default durations.
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What one attempt found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    Leading,
    Following,
}

/// Publishes whether this replica leads, waking the receivers only when that changes: a renewal every retry period
/// is no news (receivers such as the queue-everything-on-election task act on every notification).
fn set_leading(tx: &watch::Sender<bool>, leading: bool) {
    tx.send_if_modified(|current| std::mem::replace(current, leading) != leading);
}

/// Runs the election until `shutdown`; the returned receiver says whether this replica leads right now.
/// On shutdown a leader releases the lease so that a successor need not wait for it to expire.
pub fn spawn(
    client: kube::Client,
    config: LeaseConfig,
    shutdown: CancellationToken,
) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let api: Api<Lease> = Api::namespaced(client, &config.namespace);
        let mut last_renewed: Option<tokio::time::Instant> = None;
        loop {
            match try_acquire_or_renew(&api, &config).await {
                Ok(Attempt::Leading) => {
                    last_renewed = Some(tokio::time::Instant::now());
                    if !*tx.borrow() {
                        tracing::info!(lease = %config.name, identity = %config.identity, "became leader");
                    }
                    set_leading(&tx, true);
                }
                Ok(Attempt::Following) => {
                    if *tx.borrow() {
                        tracing::warn!(lease = %config.name, "lost leadership to another replica");
                    }
                    last_renewed = None;
                    set_leading(&tx, false);
                }
                Err(err) => {
                    tracing::warn!(lease = %config.name, error = %err, "lease attempt failed");
                    let expired = last_renewed.is_none_or(|t| t.elapsed() >= config.lease_duration);
                    if expired && *tx.borrow() {
                        tracing::warn!(lease = %config.name, "could not renew the lease in time; stepping down");
                        set_leading(&tx, false);
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(config.retry_period) => {}
            }
        }
        if *tx.borrow() {
            if let Err(err) = release(&api, &config).await {
                tracing::warn!(lease = %config.name, error = %err, "failed to release the lease");
            }
            set_leading(&tx, false);
        }
    });
    rx
}

async fn try_acquire_or_renew(
    api: &Api<Lease>,
    config: &LeaseConfig,
) -> Result<Attempt, kube::Error> {
    let now = Timestamp::now();
    let lease_secs = i32::try_from(config.lease_duration.as_secs()).unwrap_or(i32::MAX);
    let Some(mut lease) = api.get_opt(&config.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(config.name.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(config.identity.clone()),
                lease_duration_seconds: Some(lease_secs),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(Attempt::Leading),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Following),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let ours = holder == config.identity;
    if !ours && !holder.is_empty() {
        let duration = i64::from(spec.lease_duration_seconds.unwrap_or(lease_secs));
        let renewed = spec
            .renew_time
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(Timestamp::UNIX_EPOCH);
        let expires = renewed.as_second().saturating_add(duration);
        if now.as_second() < expires {
            return Ok(Attempt::Following);
        }
    }
    if !ours {
        spec.acquire_time = Some(MicroTime(now));
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        spec.holder_identity = Some(config.identity.clone());
    }
    spec.renew_time = Some(MicroTime(now));
    spec.lease_duration_seconds = Some(lease_secs);
    // replace() sends metadata.resourceVersion: a concurrent writer makes this fail with 409.
    match api
        .replace(&config.name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(Attempt::Leading),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Following),
        Err(e) => Err(e),
    }
}

async fn release(api: &Api<Lease>, config: &LeaseConfig) -> Result<(), kube::Error> {
    if let Some(mut lease) = api.get_opt(&config.name).await?
        && let Some(spec) = lease.spec.as_mut()
        && spec.holder_identity.as_deref() == Some(config.identity.as_str())
    {
        spec.holder_identity = None;
        spec.renew_time = None;
        api.replace(&config.name, &PostParams::default(), &lease)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewals_do_not_wake_receivers() {
        let (tx, mut rx) = watch::channel(false);
        set_leading(&tx, true);
        assert!(rx.has_changed().unwrap_or(false), "election not announced");
        assert!(*rx.borrow_and_update());
        set_leading(&tx, true);
        assert!(
            !rx.has_changed().unwrap_or(true),
            "a renewal woke the receivers"
        );
        set_leading(&tx, false);
        assert!(
            rx.has_changed().unwrap_or(false),
            "loss of leadership not announced"
        );
        assert!(!*rx.borrow_and_update());
    }
}
