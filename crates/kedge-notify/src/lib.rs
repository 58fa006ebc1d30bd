//! Tells people what happened to Kedge's applications: routes each notice (a sync started, succeeded or failed,
//! health degraded or recovered, drift detected or reverted, a revision deployed) through the Alerts that select it to
//! their Providers' channels — webhooks, Slack, Microsoft Teams, Alertmanager and commit statuses on GitHub, GitLab,
//! Gitea and Bitbucket — delivered in order per Provider, retried with backoff, de-duplicated and rate limited, with
//! the outcome in each Provider's status and in metrics.
//!
//! ```
//! use kedge_api::{NoticeKind, ProviderType};
//! use kedge_notify::{Channel, Extras, build};
//! # let notice = kedge_notify::Notice {
//! #     kind: NoticeKind::SyncFailed,
//! #     app: kedge_notify::AppRef { namespace: "team-a".into(), name: "web".into(), project: "default".into(),
//! #         cluster: "in-cluster".into(), labels: Default::default(), repo_url: "https://git.example/a/b".into() },
//! #     revision: None, message: "boom".into(), time: "2026-12-04T00:00:00Z".into() };
//! let slack = Channel { type_: ProviderType::Slack, address: Some("https://hooks.example/T/B/X".into()),
//!     channel: None, username: None, token: None, headers: vec![], body: None };
//! let request = build(&slack, &notice, Extras::default()).unwrap().unwrap();
//! assert!(String::from_utf8(request.body).unwrap().contains("team-a/web: sync failed"));
//! ```

mod channel;
mod dispatch;
mod git;
mod limit;
mod metrics;
mod notice;

pub use channel::{Channel, ChannelError, Extras, Outgoing, build, generic_event, sign};
pub use dispatch::{Notifier, NotifierConfig, check_provider, selects};
pub use git::RepoPath;
pub use limit::{DUPLICATE_WINDOW, Limiter, RATE_LIMIT, RATE_WINDOW, Verdict};
pub use metrics::NotifyMetrics;
pub use notice::{AppRef, Notice};
