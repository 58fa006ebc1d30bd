//! De-duplication and rate limiting per application and Provider, so that a flapping application does not flood a
//! channel. Pure: the clock is an argument.

use std::collections::{HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

use kedge_api::NoticeKind;

use crate::notice::Notice;

/// How long an identical notice is not sent again.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(300);
/// The window of the rate limit.
pub const RATE_WINDOW: Duration = Duration::from_secs(300);
/// At most this many notices per application and Provider within [`RATE_WINDOW`].
pub const RATE_LIMIT: usize = 12;

/// What to do with a notice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send it.
    Send,
    /// The same notice was the last of its kind sent to this Provider for this application, within the window.
    Duplicate,
    /// Too many notices for this application on this Provider lately.
    RateLimited,
}

impl Verdict {
    /// The metric label of a dropped notice.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Send => "sent",
            Self::Duplicate => "duplicate",
            Self::RateLimited => "rate_limited",
        }
    }
}

/// Notices that belong together: a problem and its end. A repeat is a duplicate only if nothing else of its group
/// was sent in between, so that Degraded, Healthy, Degraded sends all three (and the rate limit stops a flapping
/// application instead).
fn group(kind: NoticeKind) -> u8 {
    match kind {
        NoticeKind::SyncStarted | NoticeKind::SyncSucceeded | NoticeKind::SyncFailed => 0,
        NoticeKind::HealthDegraded | NoticeKind::HealthRecovered => 1,
        NoticeKind::DriftDetected | NoticeKind::DriftReverted => 2,
        NoticeKind::RevisionDeployed => 3,
    }
}

fn fingerprint(n: &Notice) -> u64 {
    let mut h = DefaultHasher::new();
    n.kind.hash(&mut h);
    n.revision.hash(&mut h);
    n.message.hash(&mut h);
    h.finish()
}

/// The memory of what was sent, per Provider and application.
#[derive(Debug, Default)]
pub struct Limiter {
    last: HashMap<(String, String, u8), (u64, Instant)>,
    sent: HashMap<(String, String), VecDeque<Instant>>,
}

impl Limiter {
    /// Decides about `notice` for `provider` at `now`, and remembers it when it is to be sent.
    pub fn check(&mut self, provider: &str, notice: &Notice, now: Instant) -> Verdict {
        let app = notice.app.key();
        let print = fingerprint(notice);
        let last_key = (provider.to_owned(), app.clone(), group(notice.kind));
        if let Some((p, at)) = self.last.get(&last_key)
            && *p == print
            && now.duration_since(*at) < DUPLICATE_WINDOW
        {
            return Verdict::Duplicate;
        }
        let sent = self.sent.entry((provider.to_owned(), app)).or_default();
        while sent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= RATE_WINDOW)
        {
            sent.pop_front();
        }
        if sent.len() >= RATE_LIMIT {
            return Verdict::RateLimited;
        }
        sent.push_back(now);
        self.last.insert(last_key, (print, now));
        Verdict::Send
    }

    /// Forgets what is older than both windows (bounded memory with many applications).
    pub fn prune(&mut self, now: Instant) {
        let keep = DUPLICATE_WINDOW.max(RATE_WINDOW);
        self.last
            .retain(|_, (_, at)| now.duration_since(*at) < keep);
        self.sent
            .retain(|_, times| times.back().is_some_and(|t| now.duration_since(*t) < keep));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notice::tests::notice;

    #[test]
    fn a_repeat_is_dropped_unless_something_else_of_its_group_came_between() {
        let mut l = Limiter::default();
        let t = Instant::now();
        let degraded = notice(NoticeKind::HealthDegraded);
        let healthy = notice(NoticeKind::HealthRecovered);
        assert_eq!(l.check("p", &degraded, t), Verdict::Send);
        assert_eq!(l.check("p", &degraded, t), Verdict::Duplicate);
        // Another Provider, another group: not duplicates.
        assert_eq!(l.check("q", &degraded, t), Verdict::Send);
        assert_eq!(
            l.check("p", &notice(NoticeKind::SyncFailed), t),
            Verdict::Send
        );
        assert_eq!(l.check("p", &healthy, t), Verdict::Send);
        assert_eq!(l.check("p", &degraded, t), Verdict::Send);
        // After the window, the same notice goes out again.
        assert_eq!(l.check("p", &degraded, t + DUPLICATE_WINDOW), Verdict::Send);
    }

    #[test]
    fn a_flapping_application_is_rate_limited_then_heard_again() {
        let mut l = Limiter::default();
        let t = Instant::now();
        let mut sent = 0;
        for i in 0..40 {
            let kind = if i % 2 == 0 {
                NoticeKind::HealthDegraded
            } else {
                NoticeKind::HealthRecovered
            };
            if l.check("p", &notice(kind), t + Duration::from_secs(i)) == Verdict::Send {
                sent += 1;
            }
        }
        assert_eq!(sent, RATE_LIMIT);
        // Another application is not limited by this one.
        let mut other = notice(NoticeKind::HealthDegraded);
        other.app.name = "api".into();
        assert_eq!(
            l.check("p", &other, t + Duration::from_secs(41)),
            Verdict::Send
        );
        let later = t + RATE_WINDOW + Duration::from_secs(60);
        assert_eq!(
            l.check("p", &notice(NoticeKind::HealthRecovered), later),
            Verdict::Send
        );
        l.prune(later + RATE_WINDOW);
        assert!(l.last.is_empty() && l.sent.is_empty());
    }
}
