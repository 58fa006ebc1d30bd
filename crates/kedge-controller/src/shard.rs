//! Replicas that share the applications: membership through one Lease per replica, assignment by consistent hashing
//! with bounded loads, and a claim protocol that lets at most one replica reconcile an application at any time.
//!
//! Every replica renews a Lease of its own (labelled [`MEMBER_LABEL`]) and lists the others'. The live members are
//! those whose Lease this replica has seen renewed within the lease duration on its own clock (as the election
//! counts). From the live members and the applications every replica computes the same [`assign`]ment; the share
//! it wants is its part of it.
//!
//! The assignment alone does not keep two replicas apart: while a replica joins, leaves, or an application is being
//! created, two replicas may briefly compute different assignments. So each replica also publishes, in its Lease,
//! the applications it *claims*: those it wants plus those it still has a pass running for. A replica may start a
//! pass of an application only when it wants it, its last published claims hold it, and the list of Leases it read
//! *after* that publication shows no other live member claiming it. Of two replicas that both claim an application,
//! each publishes before it lists, so the one that listed later sees the other's claim: at most one of them goes
//! ahead (often neither, until their views agree, which takes one renewal). A replica drops an application from its
//! claims only once no pass of it runs there, so a successor never starts while its predecessor is still at work.
//!
//! A replica that stops renewing stops writing at its renew deadline (its guard, [`Shard::writes`], fences every
//! write as the leader's guard does); the others ignore its claims only once its Lease has been unchanged for the
//! whole lease duration, which is longer. A replica that shuts down deletes its Lease after its last pass, so that
//! its share moves at once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kedge_api::Application;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::leader::{LeaderGuard, Leadership, LeaseConfig, guard_pair};
use crate::metrics::Metrics;

/// Label of the member Leases; its value is the name of the group (the election's Lease name).
pub const MEMBER_LABEL: &str = "kedge.dev/replica-of";
/// Annotation of a member Lease holding its claims ([`encode_claims`]).
pub const CLAIMS_ANNOTATION: &str = "kedge.dev/claims";
/// Annotation of a member Lease holding how many applications it claims (for people reading it).
pub const CLAIM_COUNT_ANNOTATION: &str = "kedge.dev/claim-count";

/// How much above the average share one replica may hold (consistent hashing with bounded loads): 25%.
pub const LOAD_SLACK: f64 = 0.25;
/// Points of each member on the hash ring.
const VNODES: u32 = 256;
/// Claims are hashes of this many bits: a collision only pauses an application, and among 100,000 applications one
/// happens with a probability of about 2 in 100,000.
const CLAIM_BITS: u32 = 48;

/// The hash of an application key (`namespace/name`) or member identity: FNV-1a, then a 64-bit finalizer for an
/// even spread. Fixed here, not the standard library's, so that replicas of different builds agree.
pub fn hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // splitmix64's finalizer
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The claim of an application key: its hash cut to [`CLAIM_BITS`].
pub fn claim_of(key: &str) -> u64 {
    hash(key) >> (64 - CLAIM_BITS)
}

/// Which member (an index into `members`) reconciles each application, by consistent hashing with bounded loads:
/// each application goes to the first member clockwise from its hash on a ring of [`VNODES`] points per member that
/// holds fewer than `ceil((1 + LOAD_SLACK) * apps / members)` applications. Applications are placed in the order of
/// their hash, so every replica that knows the same members and applications computes the same answer; a member
/// joining or leaving moves about its own share, a little more where the bound spills over.
pub fn assign<'a>(members: &[String], apps: &[&'a str]) -> HashMap<&'a str, usize> {
    let mut out = HashMap::with_capacity(apps.len());
    if members.is_empty() {
        return out;
    }
    let mut ring: Vec<(u64, usize)> = members
        .iter()
        .enumerate()
        .flat_map(|(i, m)| (0..VNODES).map(move |v| (hash(&format!("{m}#{v}")), i)))
        .collect();
    ring.sort_unstable();
    let avg = apps.len() as f64 / members.len() as f64;
    let cap = ((1.0 + LOAD_SLACK) * avg).ceil().max(1.0) as usize;
    let mut load = vec![0usize; members.len()];
    let mut order: Vec<(u64, &'a str)> = apps.iter().map(|a| (hash(a), *a)).collect();
    order.sort_unstable();
    for (h, app) in order {
        let start = ring.partition_point(|(p, _)| *p < h);
        // The total capacity is at least the number of applications, so a member with room exists.
        for step in 0..ring.len() {
            let (_, m) = ring[(start + step) % ring.len()];
            if load[m] < cap {
                load[m] += 1;
                out.insert(app, m);
                break;
            }
        }
    }
    out
}

/// [`assign`] by names: each application's member.
pub fn owners(members: &[String], apps: &[String]) -> HashMap<String, String> {
    let refs: Vec<&str> = apps.iter().map(String::as_str).collect();
    assign(members, &refs)
        .into_iter()
        .map(|(k, m)| (k.to_owned(), members[m].clone()))
        .collect()
}

/// Writes claims compactly: sorted, as LEB128 differences, in base64 (about 8 characters per application).
pub fn encode_claims(claims: &HashSet<u64>) -> String {
    let mut sorted: Vec<u64> = claims.iter().copied().collect();
    sorted.sort_unstable();
    let mut bytes = Vec::with_capacity(sorted.len() * 6);
    let mut prev = 0u64;
    for c in sorted {
        let mut d = c - prev;
        prev = c;
        loop {
            let b = (d & 0x7f) as u8;
            d >>= 7;
            if d == 0 {
                bytes.push(b);
                break;
            }
            bytes.push(b | 0x80);
        }
    }
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
}

/// Reads what [`encode_claims`] wrote; `None` when it is not such a text (the claims of that member are then
/// unknown, and it is taken to claim everything).
pub fn decode_claims(text: &str) -> Option<HashSet<u64>> {
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(text.trim())
        .ok()?;
    let mut out = HashSet::new();
    let (mut prev, mut d, mut shift) = (0u64, 0u64, 0u32);
    for b in bytes {
        if shift > 63 {
            return None;
        }
        d |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            prev = prev.checked_add(d)?;
            out.insert(prev);
            d = 0;
            shift = 0;
        } else {
            shift += 7;
        }
    }
    (shift == 0).then_some(out)
}

/// The name of a replica's member Lease: `kedge-replica-` and its identity made a valid name, with a hash of the
/// identity so that two identities that read alike stay apart.
pub fn member_lease_name(group: &str, identity: &str) -> String {
    let mut clean: String = identity
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() { c } else { '-' }
        })
        .collect();
    clean.truncate(30);
    let clean = clean.trim_matches('-');
    format!(
        "{group}-{}-{:08x}",
        if clean.is_empty() { "replica" } else { clean },
        hash(identity) as u32
    )
}

/// What a replica knows of the sharing, shared with the passes.
#[derive(Default)]
struct State {
    /// Applications this replica may start passes of.
    allowed: HashSet<String>,
    /// Passes running, by application.
    running: HashMap<String, usize>,
    /// The applications the last round knew of.
    known: HashSet<String>,
}

/// A replica's part in the sharing; cheap to clone.
#[derive(Clone)]
pub struct Shard {
    state: Arc<Mutex<State>>,
    wake: Arc<Notify>,
    writes: LeaderGuard,
}

impl Shard {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this replica may start a pass of the application now.
    pub fn allows(&self, key: &str) -> bool {
        self.lock().allowed.contains(key)
    }

    /// Starts a pass of the application if this replica may; the claim stays until the returned value is dropped.
    pub fn start(&self, key: &str) -> Option<Held> {
        let mut state = self.lock();
        if !state.allowed.contains(key) {
            return None;
        }
        *state.running.entry(key.to_owned()).or_default() += 1;
        Some(Held {
            shard: self.clone(),
            key: key.to_owned(),
        })
    }

    /// Whether this replica's own Lease is current: every write of the controller is gated by it.
    pub fn writes(&self) -> LeaderGuard {
        self.writes.clone()
    }

    /// Tells the membership task that an application changed: it looks again when the application is new to it.
    pub fn saw(&self, key: &str) {
        if !self.lock().known.contains(key) {
            self.wake.notify_one();
        }
    }

    /// Tells the membership task that an application is gone.
    pub fn gone(&self) {
        self.wake.notify_one();
    }
}

/// A running pass's hold on its application (see [`Shard::start`]).
pub struct Held {
    shard: Shard,
    key: String,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut state = self.shard.lock();
        if let Some(n) = state.running.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                state.running.remove(&self.key);
                // Its claim may go at the next publication, unless the application is still this replica's: then
                // the claim stays, and a round would publish nothing new. (Waking after every pass made a round of
                // every application ten times a second while thousands were synced.)
                if !state.allowed.contains(&self.key) {
                    self.shard.wake.notify_one();
                }
            }
        }
    }
}

/// A member Lease as this replica last saw it.
struct Seen {
    record: (String, Option<Timestamp>, Option<String>),
    since: Instant,
}

/// Joins the group of `config.name` (every replica with the same Lease name and namespace) and keeps this replica's
/// share up to date until `stop`; applications that become this replica's are sent to `triggers`. On `stop` (given
/// once no pass runs any more) the member Lease is deleted.
pub fn spawn(
    client: kube::Client,
    config: LeaseConfig,
    apps: Store<Application>,
    triggers: mpsc::UnboundedSender<ObjectRef<Application>>,
    metrics: Metrics,
    stop: CancellationToken,
) -> (Shard, JoinHandle<()>) {
    let (writes, me) = guard_pair(config.renew_deadline);
    let identity = config.identity.clone();
    let shard = Shard {
        state: Arc::default(),
        wake: Arc::new(Notify::new()),
        writes,
    };
    let task = tokio::spawn(
        Member {
            api: Api::namespaced(client, &config.namespace),
            lease_name: member_lease_name(&config.name, &config.identity),
            config,
            shard: shard.clone(),
            me,
            apps,
            triggers,
            metrics,
            seen: HashMap::new(),
            wanted: HashSet::new(),
            published: None,
            published_at: None,
            members: vec![identity],
            others_claim: HashSet::new(),
            claims_everything: false,
            listed: false,
        }
        .run(stop),
    );
    (shard, task)
}

struct Member {
    api: Api<Lease>,
    lease_name: String,
    config: LeaseConfig,
    shard: Shard,
    me: Leadership,
    apps: Store<Application>,
    triggers: mpsc::UnboundedSender<ObjectRef<Application>>,
    metrics: Metrics,
    seen: HashMap<String, Seen>,
    /// The applications the last assignment gave this replica.
    wanted: HashSet<String>,
    /// The claims of the last successful publication.
    published: Option<HashSet<u64>>,
    published_at: Option<Instant>,
    /// The live members as last listed, this replica included.
    members: Vec<String>,
    /// What the other live members claimed when last listed.
    others_claim: HashSet<u64>,
    /// Whether a live member's claims could not be read.
    claims_everything: bool,
    /// Whether the members were listed after the last publication.
    listed: bool,
}

/// Why one round failed.
#[derive(Debug, thiserror::Error)]
enum RoundError {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

impl Member {
    async fn run(mut self, stop: CancellationToken) {
        // Rounds come at every renewal, and sooner when the applications or running passes change; never closer
        // than this, so that a burst of new applications is published in one write.
        let min_gap = Duration::from_millis(100).min(self.config.retry_period);
        loop {
            let started = Instant::now();
            let budget = self.me.renewed().map_or(self.config.request_timeout, |t| {
                self.config
                    .request_timeout
                    .min((t + self.config.renew_deadline).saturating_duration_since(started))
            });
            match tokio::time::timeout(budget, self.round(started)).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    tracing::warn!(lease = %self.lease_name, error = %err, "shard round failed")
                }
                Err(_) => tracing::warn!(
                    lease = %self.lease_name,
                    error = %RoundError::Timeout(budget),
                    "shard round failed"
                ),
            }
            if let Some(t) = self.me.renewed()
                && Instant::now() >= t + self.config.renew_deadline
            {
                tracing::warn!(lease = %self.lease_name, "could not renew the member lease within the renew deadline; stopped writing");
                self.me.set(None);
                self.set_allowed(HashSet::new());
            }
            let next = self
                .published_at
                .map_or(started, |t| t + self.config.retry_period);
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep_until(next) => {}
                _ = self.shard.wake.notified() => {
                    tokio::time::sleep(min_gap).await;
                }
            }
        }
        self.me.set(None);
        self.set_allowed(HashSet::new());
        let dp = DeleteParams::default();
        let delete = self.api.delete(&self.lease_name, &dp);
        match tokio::time::timeout(self.config.request_timeout, delete).await {
            Ok(Ok(_)) => tracing::info!(lease = %self.lease_name, "left the shard group"),
            Ok(Err(kube::Error::Api(s))) if s.code == 404 => {}
            Ok(Err(err)) => {
                tracing::warn!(lease = %self.lease_name, error = %err, "failed to delete the member lease")
            }
            Err(_) => {
                tracing::warn!(lease = %self.lease_name, "failed to delete the member lease in time")
            }
        }
    }

    /// One round: publish the claims when they changed or the renewal is due, then (after a publication) list the
    /// members, and recompute the share and what may run.
    async fn round(&mut self, started: Instant) -> Result<(), RoundError> {
        let apps = self.apps.state();
        let keys: Vec<String> = apps.iter().map(|a| crate::reconcile::key_of(a)).collect();
        self.want(&keys);
        let claims: HashSet<u64> = {
            let mut state = self.shard.lock();
            state.known = keys.iter().cloned().collect();
            self.wanted
                .iter()
                .chain(state.running.keys())
                .map(|k| claim_of(k))
                .collect()
        };
        let due = self
            .published_at
            .is_none_or(|t| started >= t + self.config.retry_period);
        if due || self.published.as_ref() != Some(&claims) {
            self.publish(&claims).await?;
            self.me.set(Some(started));
            self.published = Some(claims);
            self.published_at = Some(started);
            self.listed = false;
        }
        // Read after the publication: see the module's documentation. Without a new publication, the last list
        // (read after the last one) still holds.
        if !self.listed {
            self.list().await?;
            self.listed = true;
            self.want(&keys);
        }
        let published = self.published.clone().unwrap_or_default();
        let allowed: HashSet<String> = if self.claims_everything || !self.shard.writes.is_leading()
        {
            HashSet::new()
        } else {
            self.wanted
                .iter()
                .filter(|k| {
                    let c = claim_of(k);
                    published.contains(&c) && !self.others_claim.contains(&c)
                })
                .cloned()
                .collect()
        };
        let (gained, lost): (HashSet<String>, Vec<String>) = {
            let state = self.shard.lock();
            (
                allowed.difference(&state.allowed).cloned().collect(),
                state.allowed.difference(&allowed).cloned().collect(),
            )
        };
        // Another replica reports those now.
        for key in &lost {
            self.metrics.forget_app(key);
        }
        self.set_allowed(allowed);
        self.metrics.shard_members.set(self.members.len() as i64);
        if !gained.is_empty() {
            for app in &apps {
                if gained.contains(&crate::reconcile::key_of(app)) {
                    let _ = self.triggers.send(ObjectRef::from_obj(app.as_ref()));
                }
            }
        }
        Ok(())
    }

    /// This replica's part of the assignment of `keys` over the members last listed.
    fn want(&mut self, keys: &[String]) {
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let assignment = assign(&self.members, &refs);
        let mine = self
            .members
            .iter()
            .position(|m| *m == self.config.identity)
            .unwrap_or(usize::MAX);
        self.wanted = assignment
            .iter()
            .filter(|(_, m)| **m == mine)
            .map(|(k, _)| (*k).to_owned())
            .collect();
    }

    /// Reads the member Leases: the live members and what the others claim.
    async fn list(&mut self) -> Result<(), RoundError> {
        let list = self
            .api
            .list(&ListParams::default().labels(&format!("{MEMBER_LABEL}={}", self.config.name)))
            .await?;
        let now = Instant::now();
        let mut members = vec![self.config.identity.clone()];
        let mut others_claim: HashSet<u64> = HashSet::new();
        let mut claims_everything = false;
        let mut present = HashSet::new();
        for lease in &list.items {
            let name = lease.metadata.name.clone().unwrap_or_default();
            present.insert(name.clone());
            let Some(spec) = &lease.spec else { continue };
            let Some(holder) = spec.holder_identity.clone().filter(|h| !h.is_empty()) else {
                continue;
            };
            if holder == self.config.identity {
                continue;
            }
            let annotation = lease
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(CLAIMS_ANNOTATION))
                .cloned();
            let record = (
                holder.clone(),
                spec.renew_time.as_ref().map(|t| t.0),
                annotation.clone(),
            );
            let seen = self.seen.entry(name.clone()).or_insert(Seen {
                record: record.clone(),
                since: now,
            });
            if seen.record != record {
                seen.record = record;
                seen.since = now;
            }
            let duration = spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map_or(self.config.lease_duration, Duration::from_secs);
            let idle = now.saturating_duration_since(seen.since);
            if idle >= duration {
                // Expired: it has stopped writing. Long expired: nobody renews it any more; remove it (only as
                // it was read, so that a replica coming back with that name keeps its new Lease).
                if idle >= duration * 4
                    && let Some(rv) = lease.metadata.resource_version.clone()
                {
                    let dp = DeleteParams {
                        preconditions: Some(Preconditions {
                            resource_version: Some(rv),
                            uid: None,
                        }),
                        ..Default::default()
                    };
                    let _ = self.api.delete(&name, &dp).await;
                }
                continue;
            }
            members.push(holder);
            match annotation.as_deref().map(decode_claims) {
                Some(Some(c)) => others_claim.extend(c),
                None => {}
                Some(None) => {
                    tracing::warn!(lease = %name, "unreadable claims; that replica is taken to claim everything");
                    claims_everything = true;
                }
            }
        }
        self.seen.retain(|name, _| present.contains(name));
        members.sort();
        members.dedup();
        self.members = members;
        self.others_claim = others_claim;
        self.claims_everything = claims_everything;
        Ok(())
    }

    fn set_allowed(&self, allowed: HashSet<String>) {
        let n = allowed.len();
        self.shard.lock().allowed = allowed;
        self.metrics.shard_applications.set(n as i64);
    }

    async fn publish(&self, claims: &HashSet<u64>) -> Result<(), kube::Error> {
        let now = MicroTime(Timestamp::now());
        let lease_secs =
            i32::try_from(self.config.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX);
        let annotations = BTreeMap::from([
            (CLAIMS_ANNOTATION.to_owned(), encode_claims(claims)),
            (CLAIM_COUNT_ANNOTATION.to_owned(), claims.len().to_string()),
        ]);
        let current = self.api.get_opt(&self.lease_name).await?;
        let mut lease = current.unwrap_or_else(|| Lease {
            metadata: ObjectMeta {
                name: Some(self.lease_name.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                acquire_time: Some(now.clone()),
                ..Default::default()
            }),
        });
        let creating = lease.metadata.resource_version.is_none();
        lease
            .metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(MEMBER_LABEL.to_owned(), self.config.name.clone());
        lease
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .extend(annotations);
        let spec = lease.spec.get_or_insert_with(Default::default);
        spec.holder_identity = Some(self.config.identity.clone());
        spec.renew_time = Some(now);
        spec.lease_duration_seconds = Some(lease_secs);
        if creating {
            self.api.create(&PostParams::default(), &lease).await?;
        } else {
            self.api
                .replace(&self.lease_name, &PostParams::default(), &lease)
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("apps/app-{i}")).collect()
    }

    fn members(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("kedge-{i}")).collect()
    }

    fn shares(members: &[String], apps: &[String]) -> HashMap<String, String> {
        owners(members, apps)
    }

    #[test]
    fn every_application_has_one_member_and_no_member_is_over_the_bound() {
        let apps = keys(3000);
        for n in 1..=5 {
            let m = members(n);
            let s = shares(&m, &apps);
            assert_eq!(s.len(), apps.len());
            let cap = ((1.0 + LOAD_SLACK) * 3000.0 / n as f64).ceil() as usize;
            for member in &m {
                let load = s.values().filter(|v| *v == member).count();
                assert!(
                    load <= cap,
                    "{member} holds {load} > {cap} with {n} members"
                );
                assert!(load > 0, "{member} holds nothing with {n} members");
            }
        }
    }

    #[test]
    fn the_assignment_does_not_depend_on_the_order_of_inputs() {
        let apps = keys(500);
        let mut m = members(3);
        let a = shares(&m, &apps);
        m.reverse();
        let mut rev = apps.clone();
        rev.reverse();
        // Member indices differ; the names they map to must not.
        let mut sorted = m.clone();
        sorted.sort();
        assert_eq!(a, shares(&sorted, &rev));
    }

    #[test]
    fn a_member_joining_or_leaving_moves_little_more_than_its_share() {
        let apps = keys(3000);
        let three = shares(&members(3), &apps);
        let four = shares(&members(4), &apps);
        let moved = apps.iter().filter(|a| three[*a] != four[*a]).count();
        // The newcomer's fair share is 750; bounded loads move a little more than that.
        assert!(
            moved < 1100,
            "{moved} of 3000 moved when a fourth member joined"
        );
        let moved_to_others = apps
            .iter()
            .filter(|a| three[*a] != four[*a] && four[*a] != "kedge-3")
            .count();
        assert!(
            moved_to_others < 350,
            "{moved_to_others} moved between the old members"
        );
        let two: Vec<String> = vec!["kedge-0".into(), "kedge-1".into()];
        let after = shares(&two, &apps);
        let moved = apps.iter().filter(|a| three[*a] != after[*a]).count();
        let left = three.values().filter(|m| *m == "kedge-2").count();
        assert!(
            moved < left + 350,
            "{moved} moved when a member holding {left} left"
        );
    }

    #[test]
    fn claims_survive_encoding() {
        let claims: HashSet<u64> = keys(1000).iter().map(|k| claim_of(k)).collect();
        let text = encode_claims(&claims);
        assert!(text.len() < 1000 * 10, "{} characters", text.len());
        assert_eq!(decode_claims(&text), Some(claims));
        assert_eq!(decode_claims(""), Some(HashSet::new()));
        assert_eq!(decode_claims("not base64!"), None);
        // A varint cut short.
        let cut = base64::engine::general_purpose::STANDARD_NO_PAD.encode([0x80u8]);
        assert_eq!(decode_claims(&cut), None);
    }

    #[test]
    fn member_lease_names_are_valid_and_distinct() {
        let a = member_lease_name("kedge-controller", "Node_1.example/pod-abc");
        assert!(a.len() <= 63, "{a}");
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{a}"
        );
        assert_ne!(
            a,
            member_lease_name("kedge-controller", "node-1-example-pod-abc")
        );
        let long = member_lease_name("kedge-controller", &"x".repeat(300));
        assert!(long.len() <= 63, "{long}");
    }

    #[test]
    fn the_hash_is_fixed() {
        // Replicas of different builds must agree: these values may never change (computed apart from this code,
        // from the definitions of FNV-1a and splitmix64).
        assert_eq!(hash(""), 0xf52a_15e9_a9b5_e89b);
        assert_eq!(hash("kedge/guestbook"), 0x2785_04ce_15d7_bcb8);
        assert_eq!(claim_of("kedge/guestbook"), 0x2785_04ce_15d7);
    }

    #[tokio::test]
    async fn a_pass_that_ends_wakes_the_membership_only_when_its_claim_may_go() {
        let (writes, _me) = guard_pair(Duration::from_secs(10));
        let shard = Shard {
            state: Arc::default(),
            wake: Arc::new(Notify::new()),
            writes,
        };
        shard.lock().allowed = HashSet::from(["ns/kept".to_owned(), "ns/moved".to_owned()]);
        let woken = || async {
            tokio::time::timeout(Duration::from_millis(50), shard.wake.notified())
                .await
                .is_ok()
        };
        // Still this replica's: its claim stays, so there is nothing to publish.
        drop(shard.start("ns/kept").expect("allowed"));
        assert!(
            !woken().await,
            "woken after a pass of an application it keeps"
        );
        // Moved away while its pass ran: the claim may go now.
        let held = shard.start("ns/moved").expect("allowed");
        shard.lock().allowed.remove("ns/moved");
        drop(held);
        assert!(
            woken().await,
            "not woken after the last pass of an application it lost"
        );
        assert!(shard.lock().running.is_empty());
    }
}
