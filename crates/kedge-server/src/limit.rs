//! Login rate limiting: failed logins are counted per account and per client address; past a number of failures each
//! key is refused for a while, twice as long after every further failure (bounded), and forgotten after a quiet
//! period. The table holds at most [`LoginLimits::max_entries`] keys, so a flood of made-up names cannot grow it.
//!
//! Only checked passwords count: an attempt refused because its key is waiting is not a failure, so a person who
//! keeps retrying during the wait does not lengthen it. Attempts in flight count against the threshold, so a burst of
//! concurrent guesses cannot slip past it.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The rate-limiting policy of logins.
#[derive(Clone, Debug)]
pub struct LoginLimits {
    /// Failed logins of one account before it has to wait. Default 5.
    pub account_failures: u32,
    /// Failed logins from one client address (any account) before it has to wait. Default 20: higher than the
    /// per-account bound, since several people may share an address (an office, or an ingress that does not pass
    /// the client's own address on).
    pub client_failures: u32,
    /// The first wait; doubled with every further failure. Default 2 s.
    pub backoff: Duration,
    /// The longest wait. Default 5 minutes.
    pub max_backoff: Duration,
    /// A key with no failure for this long is forgotten (its count starts again). Default 15 minutes.
    pub forget_after: Duration,
    /// The most keys tracked at once; the one quiet for the longest is dropped to make room. Default 10,000.
    pub max_entries: usize,
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self {
            account_failures: 5,
            client_failures: 20,
            backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(300),
            forget_after: Duration::from_secs(900),
            max_entries: 10_000,
        }
    }
}

/// What a login attempt is counted under.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Account(String),
    Client(IpAddr),
}

#[derive(Debug, Clone)]
struct Entry {
    failures: u32,
    in_flight: u32,
    last_failure: Instant,
    blocked_until: Option<Instant>,
}

/// How a login attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The password was right.
    Success,
    /// The password was checked and wrong (or the account does not exist).
    Failure,
    /// The password could not be checked (the accounts could not be read): counts neither way.
    Unchecked,
}

/// Why an attempt was refused before its password was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// How long until the key may try again.
    pub retry_after: Duration,
    /// Whether the account (rather than the client address) is waiting.
    pub account: bool,
}

/// The failure table (see the module documentation).
#[derive(Debug)]
pub struct LoginLimiter {
    limits: LoginLimits,
    entries: Mutex<HashMap<Key, Entry>>,
}

/// Account names longer than this are counted by their first bytes, so that a key's size is bounded.
const MAX_NAME: usize = 256;

fn account_key(user: &str) -> Key {
    let mut end = user.len().min(MAX_NAME);
    while !user.is_char_boundary(end) {
        end -= 1;
    }
    Key::Account(user[..end].to_owned())
}

/// A client's key: its IPv4 address, or the /64 network of an IPv6 address (one host usually holds a whole /64).
fn client_key(ip: IpAddr) -> Key {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => Key::Client(IpAddr::V4(v4)),
            None => {
                let s = v6.segments();
                Key::Client(IpAddr::V6(Ipv6Addr::new(
                    s[0], s[1], s[2], s[3], 0, 0, 0, 0,
                )))
            }
        },
        v4 => Key::Client(v4),
    }
}

impl LoginLimiter {
    /// A limiter with `limits`.
    pub fn new(limits: LoginLimits) -> Self {
        Self {
            limits,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The policy.
    pub fn limits(&self) -> &LoginLimits {
        &self.limits
    }

    fn keys(user: &str, client: Option<IpAddr>) -> Vec<Key> {
        let mut keys = vec![account_key(user)];
        keys.extend(client.map(client_key));
        keys
    }

    fn threshold(&self, key: &Key) -> u32 {
        match key {
            Key::Account(_) => self.limits.account_failures,
            Key::Client(_) => self.limits.client_failures,
        }
    }

    /// Starts an attempt of `user` from `client` at `now`: refused while either key waits or has as many failures
    /// and attempts in flight as its threshold allows. A started attempt must be ended with [`Self::finish`].
    pub fn begin(&self, user: &str, client: Option<IpAddr>, now: Instant) -> Result<(), Refused> {
        let keys = Self::keys(user, client);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        self.expire(&mut entries, now);
        let mut wait: Option<Refused> = None;
        for key in &keys {
            let Some(e) = entries.get(key) else { continue };
            let refused = match e.blocked_until {
                Some(until) if until > now => Some(until - now),
                // A key at its threshold with attempts still being checked waits for them (they may be failures).
                _ if e.failures + e.in_flight >= self.threshold(key) && e.in_flight > 0 => {
                    Some(self.backoff_for(e.failures + e.in_flight, key))
                }
                _ => None,
            };
            if let Some(retry_after) = refused
                && wait.as_ref().is_none_or(|w| w.retry_after < retry_after)
            {
                wait = Some(Refused {
                    retry_after,
                    account: matches!(key, Key::Account(_)),
                });
            }
        }
        if let Some(w) = wait {
            return Err(w);
        }
        for key in keys {
            if !entries.contains_key(&key) {
                self.make_room(&mut entries);
            }
            entries
                .entry(key)
                .or_insert(Entry {
                    failures: 0,
                    in_flight: 0,
                    last_failure: now,
                    blocked_until: None,
                })
                .in_flight += 1;
        }
        Ok(())
    }

    /// Ends an attempt begun with [`Self::begin`]: a failure counts against both keys (and makes a key that reached its
    /// threshold wait); a success forgets the account's failures (not the client's, so that one good account does not
    /// reset a client that tries many others).
    pub fn finish(&self, user: &str, client: Option<IpAddr>, outcome: Outcome, now: Instant) {
        let keys = Self::keys(user, client);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        for key in keys {
            let threshold = self.threshold(&key);
            let backoff = |failures| self.backoff_for(failures, &key);
            let Some(e) = entries.get_mut(&key) else {
                continue;
            };
            e.in_flight = e.in_flight.saturating_sub(1);
            match outcome {
                Outcome::Success => {
                    if matches!(key, Key::Account(_)) {
                        e.failures = 0;
                        e.blocked_until = None;
                    }
                }
                Outcome::Failure => {
                    e.failures = e.failures.saturating_add(1);
                    e.last_failure = now;
                    if e.failures >= threshold {
                        e.blocked_until = Some(now + backoff(e.failures));
                    }
                }
                Outcome::Unchecked => {}
            }
            if e.failures == 0 && e.in_flight == 0 {
                entries.remove(&key);
            }
        }
    }

    /// The wait after `failures` failures of `key`: the base backoff at the threshold, doubled for each failure past it,
    /// at most the maximum.
    fn backoff_for(&self, failures: u32, key: &Key) -> Duration {
        let past = failures.saturating_sub(self.threshold(key)).min(30);
        self.limits
            .backoff
            .saturating_mul(1u32 << past)
            .min(self.limits.max_backoff)
    }

    fn expire(&self, entries: &mut HashMap<Key, Entry>, now: Instant) {
        let forget = self.limits.forget_after;
        entries.retain(|_, e| {
            e.in_flight > 0
                || e.blocked_until.is_some_and(|u| u > now)
                || now.saturating_duration_since(e.last_failure) < forget
        });
    }

    /// Drops the entry quiet for the longest when the table is full (entries with attempts in flight stay).
    fn make_room(&self, entries: &mut HashMap<Key, Entry>) {
        while entries.len() >= self.limits.max_entries.max(1) {
            let oldest = entries
                .iter()
                .filter(|(_, e)| e.in_flight == 0)
                .min_by_key(|(_, e)| e.last_failure)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => {
                    entries.remove(&k);
                }
                None => break,
            }
        }
    }

    /// How many keys are tracked.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> LoginLimits {
        LoginLimits {
            account_failures: 5,
            client_failures: 8,
            backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(16),
            forget_after: Duration::from_secs(60),
            max_entries: 100,
        }
    }

    fn fail(l: &LoginLimiter, user: &str, ip: Option<IpAddr>, now: Instant) -> Result<(), Refused> {
        l.begin(user, ip, now)?;
        l.finish(user, ip, Outcome::Failure, now);
        Ok(())
    }

    #[test]
    fn the_sixth_attempt_waits_and_each_further_failure_doubles_the_wait_up_to_the_bound() {
        let l = LoginLimiter::new(limits());
        let t0 = Instant::now();
        for i in 0..5 {
            assert_eq!(fail(&l, "admin", None, t0), Ok(()), "failure {i}");
        }
        let refused = l.begin("admin", None, t0).expect_err("sixth refused");
        assert_eq!(refused.retry_after, Duration::from_secs(2));
        assert!(refused.account);
        // A refused attempt does not lengthen the wait.
        let later = t0 + Duration::from_secs(1);
        assert_eq!(
            l.begin("admin", None, later).map_err(|r| r.retry_after),
            Err(Duration::from_secs(1))
        );
        // After the wait, one more failure: 4 s; then 8, 16, 16 (bounded).
        let mut now = t0 + Duration::from_secs(2);
        for expected in [4, 8, 16, 16] {
            assert_eq!(fail(&l, "admin", None, now), Ok(()));
            assert_eq!(
                l.begin("admin", None, now).map_err(|r| r.retry_after),
                Err(Duration::from_secs(expected))
            );
            now += Duration::from_secs(expected);
        }
        // A success clears the account.
        l.begin("admin", None, now).expect("may try");
        l.finish("admin", None, Outcome::Success, now);
        assert!(l.is_empty());
        assert_eq!(fail(&l, "admin", None, now), Ok(()));
    }

    #[test]
    fn failures_are_forgotten_after_a_quiet_period() {
        let l = LoginLimiter::new(limits());
        let t0 = Instant::now();
        for _ in 0..4 {
            fail(&l, "admin", None, t0).expect("allowed");
        }
        let later = t0 + Duration::from_secs(61);
        for _ in 0..4 {
            fail(&l, "admin", None, later).expect("count started again");
        }
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn one_client_trying_many_accounts_waits_and_a_good_login_does_not_reset_it() {
        let l = LoginLimiter::new(limits());
        let ip: IpAddr = [10, 0, 0, 7].into();
        let other: IpAddr = [10, 0, 0, 8].into();
        let t0 = Instant::now();
        for i in 0..7 {
            fail(&l, &format!("user{i}"), Some(ip), t0).expect("under the client bound");
        }
        l.begin("mine", Some(ip), t0).expect("allowed");
        l.finish("mine", Some(ip), Outcome::Success, t0);
        fail(&l, "user7", Some(ip), t0).expect("the eighth failure");
        let refused = l.begin("fresh", Some(ip), t0).expect_err("client waits");
        assert!(!refused.account);
        // Another address of the same IPv6 /64 counts as the same client.
        let v6a: IpAddr = "2001:db8:1:2::10".parse().expect("ip");
        let v6b: IpAddr = "2001:db8:1:2:ffff::1".parse().expect("ip");
        assert_eq!(client_key(v6a), client_key(v6b));
        assert_ne!(
            client_key(v6a),
            client_key("2001:db8:1:3::10".parse().expect("ip"))
        );
        // Another address is not affected.
        l.begin("fresh", Some(other), t0).expect("other client");
        l.finish("fresh", Some(other), Outcome::Success, t0);
    }

    #[test]
    fn concurrent_attempts_count_against_the_threshold() {
        let l = LoginLimiter::new(limits());
        let t0 = Instant::now();
        for _ in 0..5 {
            l.begin("admin", None, t0).expect("in flight");
        }
        assert!(
            l.begin("admin", None, t0).is_err(),
            "a sixth concurrent attempt waits for the others"
        );
        for _ in 0..5 {
            l.finish("admin", None, Outcome::Failure, t0);
        }
        assert!(l.begin("admin", None, t0).is_err());
    }

    #[test]
    fn the_table_is_bounded() {
        let l = LoginLimiter::new(limits());
        let t0 = Instant::now();
        for i in 0..1_000u32 {
            let now = t0 + Duration::from_millis(u64::from(i));
            fail(&l, &format!("made-up-{i}"), None, now).expect("allowed");
        }
        assert_eq!(l.len(), 100);
        // Long names are counted by their first bytes.
        let long = "x".repeat(10_000);
        fail(&l, &long, None, t0).expect("allowed");
        let entries = l.entries.lock().expect("lock");
        assert!(entries.keys().all(|k| match k {
            Key::Account(a) => a.len() <= MAX_NAME,
            Key::Client(_) => true,
        }));
    }
}
