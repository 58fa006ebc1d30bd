//! A notice: one thing that happened to one application, as the controller reports it.

use std::collections::BTreeMap;

use kedge_api::{Application, NoticeKind};
use kube::ResourceExt;

/// The application a notice is about: what Alerts select on and what messages show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppRef {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its project.
    pub project: String,
    /// The cluster it deploys to (name or server).
    pub cluster: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its source repository's URL.
    pub repo_url: String,
}

impl AppRef {
    /// The reference of an Application.
    pub fn of(app: &Application) -> Self {
        Self {
            namespace: app.namespace().unwrap_or_default(),
            name: app.name_any(),
            project: app.spec.project.clone(),
            cluster: app.spec.cluster().to_owned(),
            labels: app.labels().clone(),
            repo_url: app.spec.source.repo_url.clone(),
        }
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// One thing that happened to one application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// What happened.
    pub kind: NoticeKind,
    /// To which application.
    pub app: AppRef,
    /// The commit concerned (the one synced, deployed or running), when there is one.
    pub revision: Option<String>,
    /// What the controller said about it (never a secret value).
    pub message: String,
    /// When (RFC 3339).
    pub time: String,
}

impl Notice {
    /// A notice of `kind` about `app` now.
    pub fn new(
        kind: NoticeKind,
        app: &Application,
        revision: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            app: AppRef::of(app),
            revision: revision.filter(|r| !r.is_empty()).map(str::to_owned),
            message: message.into(),
            // Truncated, never rounded up: a resolved alert whose end lies in the future is not resolved yet for
            // Alertmanager, which then keeps the firing alert's end.
            time: jiff::Timestamp::now()
                .round(
                    jiff::TimestampRound::new()
                        .smallest(jiff::Unit::Second)
                        .mode(jiff::RoundMode::Trunc),
                )
                .unwrap_or_else(|_| jiff::Timestamp::now())
                .to_string(),
        }
    }

    /// The revision's first 7 characters, or empty.
    pub fn short_revision(&self) -> &str {
        self.revision
            .as_deref()
            .map(|r| r.get(..7).unwrap_or(r))
            .unwrap_or_default()
    }

    /// One line saying what happened, e.g. `team-a/web: sync of 1a2b3c4 failed`.
    pub fn title(&self) -> String {
        let app = self.app.key();
        let rev = self.short_revision();
        let at = if rev.is_empty() {
            String::new()
        } else {
            format!(" {rev}")
        };
        match self.kind {
            NoticeKind::SyncStarted => format!("{app}: syncing{at}"),
            NoticeKind::SyncSucceeded => format!("{app}: synced{at}"),
            NoticeKind::SyncFailed if rev.is_empty() => format!("{app}: sync failed"),
            NoticeKind::SyncFailed => format!("{app}: sync of {rev} failed"),
            NoticeKind::HealthDegraded => format!("{app} is Degraded"),
            NoticeKind::HealthRecovered => format!("{app} is Healthy again"),
            NoticeKind::DriftDetected => format!("{app}: live state drifted from Git"),
            NoticeKind::DriftReverted => format!("{app}: drift reverted"),
            NoticeKind::RevisionDeployed => format!("{app}: deployed{at}"),
        }
    }

    /// `error` for problems, `info` otherwise.
    pub fn severity(&self) -> &'static str {
        if self.kind.is_problem() {
            "error"
        } else {
            "info"
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn notice(kind: NoticeKind) -> Notice {
        Notice {
            kind,
            app: AppRef {
                namespace: "team-a".into(),
                name: "web".into(),
                project: "default".into(),
                cluster: "east".into(),
                labels: BTreeMap::from([("tier".into(), "frontend".into())]),
                repo_url: "https://github.com/acme/deploy.git".into(),
            },
            revision: Some("1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d".into()),
            message: "synced 3 objects".into(),
            time: "2026-12-04T03:00:00Z".into(),
        }
    }

    #[test]
    fn titles_name_the_application_and_the_short_revision() {
        assert_eq!(
            notice(NoticeKind::SyncFailed).title(),
            "team-a/web: sync of 1a2b3c4 failed"
        );
        assert_eq!(
            notice(NoticeKind::HealthDegraded).title(),
            "team-a/web is Degraded"
        );
        let mut n = notice(NoticeKind::SyncStarted);
        n.revision = None;
        assert_eq!(n.title(), "team-a/web: syncing");
        assert_eq!(notice(NoticeKind::DriftDetected).severity(), "error");
        assert_eq!(notice(NoticeKind::DriftReverted).severity(), "info");
    }
}
