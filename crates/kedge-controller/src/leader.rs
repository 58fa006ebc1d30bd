//! Leader election with a `coordination.k8s.io/v1` Lease, so that of several replicas only one writes.
//!
//! As client-go's leader election does: the holder renews the Lease every `retry_period`; a candidate takes it over
//! once it has seen the same record unchanged for `lease_duration`, counted on its own clock from when it first saw
//! that record (so the clocks of different nodes need not agree); every write carries the Lease's resourceVersion, so
//! of two candidates racing for it one gets a 409 and stays a follower.
//!
//! A leader that has not renewed within `renew_deadline` (shorter than the lease) stops writing at that instant:
//! [`LeaderGuard::is_leading`] compares the time of the last successful renewal with the deadline on every call, so
//! it turns false even while the election task waits on a slow request. The old leader has thus stopped
//! `lease_duration - renew_deadline` before another replica may take over. Every attempt has a timeout (at most
//! `request_timeout`, and never past the renew deadline), so a request that hangs cannot hold the election.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
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
    /// How long the other replicas wait, after they last saw the Lease renewed, before one takes it. Default 15 s.
    pub lease_duration: Duration,
    /// How long after its last successful renewal the leader stops writing when it cannot renew. Default 10 s.
    pub renew_deadline: Duration,
    /// How often the holder renews and candidates retry. Default 2 s.
    pub retry_period: Duration,
    /// The longest one attempt (a read and a write of the Lease) may take. Default 5 s.
    pub request_timeout: Duration,
}

impl LeaseConfig {
    /// A config with the default durations (those of client-go's leader election).
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
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
        }
    }

    /// Checks that the durations leave the margins the election relies on: a retry within the renew deadline, the
    /// renew deadline within the lease, a request timeout within the renew deadline.
    pub fn validate(&self) -> Result<(), String> {
        let secs = |d: Duration| d.as_secs_f64();
        if self.retry_period.is_zero() || self.request_timeout.is_zero() {
            return Err(
                "the lease renew interval and request timeout must be longer than zero".into(),
            );
        }
        if self.renew_deadline >= self.lease_duration {
            return Err(format!(
                "the lease renew deadline ({}s) must be shorter than the lease duration ({}s): a leader must stop \
                 writing before another replica may take over",
                secs(self.renew_deadline),
                secs(self.lease_duration)
            ));
        }
        if self.retry_period.saturating_mul(2) > self.renew_deadline {
            return Err(format!(
                "the lease renew interval ({}s) must be at most half the renew deadline ({}s): one slow renewal \
                 would make the leader step down",
                secs(self.retry_period),
                secs(self.renew_deadline)
            ));
        }
        if self.request_timeout > self.renew_deadline {
            return Err(format!(
                "the lease request timeout ({}s) must not exceed the renew deadline ({}s)",
                secs(self.request_timeout),
                secs(self.renew_deadline)
            ));
        }
        Ok(())
    }
}

/// Whether this replica holds the Lease right now: cheap enough to ask before every write.
///
/// It holds the Lease from a successful renewal until `renew_deadline` after that renewal started, unless a later
/// renewal extends it, the election finds another holder, or the election stops.
#[derive(Clone, Debug)]
pub struct LeaderGuard {
    /// When the last successful acquisition or renewal started; `None` when not leading.
    renewed: Arc<Mutex<Option<Instant>>>,
    renew_deadline: Duration,
    changes: watch::Receiver<bool>,
}

impl LeaderGuard {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.renewed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The instant this replica stops leading unless it renews before; `None` when it does not lead.
    fn deadline(&self) -> Option<Instant> {
        self.lock().map(|t| t + self.renew_deadline)
    }

    /// Whether this replica may write now.
    pub fn is_leading(&self) -> bool {
        self.deadline().is_some_and(|d| Instant::now() < d)
    }

    /// Resolves once this replica does not lead (at once when it does not lead now): at the renew deadline, when the
    /// election finds another holder, or when the election stops.
    pub async fn lost(&self) {
        let mut changes = self.changes.clone();
        changes.borrow_and_update();
        let mut open = true;
        loop {
            let Some(deadline) = self.deadline() else {
                return;
            };
            if Instant::now() >= deadline {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                changed = changes.changed(), if open => open = changed.is_ok(),
            }
        }
    }

    /// Announces each change of leadership (not every renewal): `true` on becoming the leader, `false` on losing it.
    pub fn changes(&self) -> watch::Receiver<bool> {
        self.changes.clone()
    }
}

/// A guard and its writing half, for another holder of a Lease than the election (a shard member's own Lease).
pub(crate) fn guard_pair(renew_deadline: Duration) -> (LeaderGuard, Leadership) {
    let (tx, changes) = watch::channel(false);
    let renewed = Arc::new(Mutex::new(None));
    (
        LeaderGuard {
            renewed: renewed.clone(),
            renew_deadline,
            changes,
        },
        Leadership { renewed, tx },
    )
}

/// The election's writing half.
pub(crate) struct Leadership {
    renewed: Arc<Mutex<Option<Instant>>>,
    tx: watch::Sender<bool>,
}

impl Leadership {
    pub(crate) fn set(&self, renewed: Option<Instant>) {
        *self.renewed.lock().unwrap_or_else(|p| p.into_inner()) = renewed;
        announce(&self.tx, renewed.is_some());
    }

    pub(crate) fn renewed(&self) -> Option<Instant> {
        *self.renewed.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Publishes whether this replica leads, waking the receivers only when that changes: a renewal every retry period
/// is no news (receivers such as the queue-everything-on-election task act on every notification).
fn announce(tx: &watch::Sender<bool>, leading: bool) {
    tx.send_if_modified(|current| std::mem::replace(current, leading) != leading);
}

/// What one attempt found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    Leading,
    Following,
}

/// The holder's record as last seen by a candidate, and when (on the candidate's clock) it was first seen so.
#[derive(Debug, Default)]
struct Observed {
    record: Option<(String, Option<Timestamp>)>,
    since: Option<Instant>,
}

/// Why an attempt failed.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// Runs the election until `stop` is cancelled; the guard says whether this replica leads right now.
///
/// On `stop`, a leader stops leading (the guard turns false before anything else) and then releases the Lease, so
/// that a successor need not wait for it to expire; the returned task ends once that is done (each request bounded by
/// the request timeout). Cancel `stop` only once nothing writes any more.
pub fn spawn(
    client: kube::Client,
    config: LeaseConfig,
    stop: CancellationToken,
) -> (LeaderGuard, JoinHandle<()>) {
    let (tx, changes) = watch::channel(false);
    let renewed = Arc::new(Mutex::new(None));
    let guard = LeaderGuard {
        renewed: renewed.clone(),
        renew_deadline: config.renew_deadline,
        changes,
    };
    let me = Leadership { renewed, tx };
    let task = tokio::spawn(async move {
        let api: Api<Lease> = Api::namespaced(client, &config.namespace);
        let mut observed = Observed::default();
        loop {
            let started = Instant::now();
            let deadline = me.renewed().map(|t| t + config.renew_deadline);
            let budget = deadline.map_or(config.request_timeout, |d| {
                config
                    .request_timeout
                    .min(d.saturating_duration_since(started))
            });
            let attempt = match tokio::time::timeout(
                budget,
                try_acquire_or_renew(&api, &config, &mut observed),
            )
            .await
            {
                Ok(result) => result.map_err(AttemptError::from),
                Err(_) => Err(AttemptError::Timeout(budget)),
            };
            match attempt {
                Ok(Attempt::Leading) => {
                    if me.renewed().is_none() {
                        tracing::info!(lease = %config.name, identity = %config.identity, "became leader");
                    }
                    me.set(Some(started));
                }
                Ok(Attempt::Following) => {
                    if me.renewed().is_some() {
                        tracing::warn!(lease = %config.name, "lost leadership to another replica");
                    }
                    me.set(None);
                }
                Err(err) => {
                    tracing::warn!(lease = %config.name, error = %err, "lease attempt failed");
                }
            }
            // Wait for the next attempt; a leader also wakes at its renew deadline to announce that it stopped.
            let deadline = me.renewed().map(|t| t + config.renew_deadline);
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(config.retry_period) => {}
                _ = sleep_until_some(deadline) => {}
            }
            if let Some(d) = me.renewed().map(|t| t + config.renew_deadline)
                && Instant::now() >= d
            {
                tracing::warn!(lease = %config.name, "could not renew the lease within the renew deadline; stopped writing");
                me.set(None);
            }
        }
        let held = me.renewed().is_some();
        // No write may pass the guard once the Lease is given up.
        me.set(None);
        if held {
            match tokio::time::timeout(config.request_timeout, release(&api, &config)).await {
                Ok(Ok(())) => tracing::info!(lease = %config.name, "released the lease"),
                Ok(Err(err)) => {
                    tracing::warn!(lease = %config.name, error = %err, "failed to release the lease")
                }
                Err(_) => tracing::warn!(
                    lease = %config.name,
                    "failed to release the lease within {:?}",
                    config.request_timeout
                ),
            }
        }
    });
    (guard, task)
}

async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn try_acquire_or_renew(
    api: &Api<Lease>,
    config: &LeaseConfig,
    observed: &mut Observed,
) -> Result<Attempt, kube::Error> {
    let now = Timestamp::now();
    let lease_secs = i32::try_from(config.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX);
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
        // Another replica holds it: it has expired only once this replica has seen the same record for the whole
        // lease duration on its own clock.
        let record = Some((holder, spec.renew_time.as_ref().map(|t| t.0)));
        let seen_now = Instant::now();
        if observed.record != record {
            observed.record = record;
            observed.since = Some(seen_now);
        }
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(config.lease_duration, Duration::from_secs);
        let since = observed.since.unwrap_or(seen_now);
        if seen_now.saturating_duration_since(since) < duration {
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

    fn guard(deadline: Duration) -> (LeaderGuard, Leadership) {
        guard_pair(deadline)
    }

    #[test]
    fn renewals_do_not_wake_receivers() {
        let (tx, mut rx) = watch::channel(false);
        announce(&tx, true);
        assert!(rx.has_changed().unwrap_or(false), "election not announced");
        assert!(*rx.borrow_and_update());
        announce(&tx, true);
        assert!(
            !rx.has_changed().unwrap_or(true),
            "a renewal woke the receivers"
        );
        announce(&tx, false);
        assert!(
            rx.has_changed().unwrap_or(false),
            "loss of leadership not announced"
        );
        assert!(!*rx.borrow_and_update());
    }

    #[tokio::test(start_paused = true)]
    async fn the_guard_stops_writes_at_the_renew_deadline_without_the_election_task() {
        let (guard, me) = guard(Duration::from_secs(10));
        assert!(!guard.is_leading(), "leads before any renewal");
        let renewed = Instant::now();
        me.set(Some(renewed));
        assert!(guard.is_leading());
        tokio::time::sleep(Duration::from_millis(9_990)).await;
        assert!(guard.is_leading(), "stopped before the renew deadline");
        // Nobody told the guard anything: the deadline alone ends the leadership.
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!guard.is_leading(), "still writing at the renew deadline");
        // A renewal extends it.
        me.set(Some(Instant::now()));
        assert!(guard.is_leading());
    }

    #[tokio::test(start_paused = true)]
    async fn lost_resolves_at_the_deadline_or_when_the_election_says_so() {
        let (guard, me) = guard(Duration::from_secs(10));
        // Not leading: at once.
        tokio::time::timeout(Duration::from_millis(1), guard.lost())
            .await
            .expect("lost() waited while not leading");

        me.set(Some(Instant::now()));
        let start = Instant::now();
        // Renewed halfway: the deadline moves.
        let renew = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            me.set(Some(Instant::now()));
        };
        let ((), ()) = tokio::join!(guard.lost(), renew);
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(15),
            "lost at the renewed deadline"
        );

        // Another holder found: at once, before the deadline.
        me.set(Some(Instant::now()));
        let start = Instant::now();
        let step_down = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            me.set(None);
        };
        let ((), ()) = tokio::join!(guard.lost(), step_down);
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }

    #[test]
    fn durations_without_margins_are_refused() {
        let ok = LeaseConfig::new("ns", "lease", "me");
        assert!(ok.validate().is_ok());
        let mut late = ok.clone();
        late.renew_deadline = late.lease_duration;
        assert!(
            late.validate()
                .expect_err("deadline = lease")
                .contains("renew deadline")
        );
        let mut slow = ok.clone();
        slow.retry_period = Duration::from_secs(6);
        assert!(
            slow.validate()
                .expect_err("retry too slow")
                .contains("at most half")
        );
        let mut hang = ok;
        hang.request_timeout = Duration::from_secs(11);
        assert!(
            hang.validate()
                .expect_err("timeout")
                .contains("request timeout")
        );
    }
}
