//! The test API server's audit log (`testcluster/up --audit`): one JSON `audit.k8s.io/v1` Event per request that is
//! not a read, logged when the server finished it.

use std::path::Path;

use serde_json::Value;

use crate::error::{Result, io_err};

/// One request the API server finished.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    /// The authenticated user.
    pub user: String,
    /// The client's `User-Agent` header (empty when none was sent).
    pub user_agent: String,
    /// The Kubernetes verb (`create`, `update`, `patch`, `delete`, ...).
    pub verb: String,
    /// Path and query of the request.
    pub request_uri: String,
    /// The API group of the object (empty for the core group).
    pub api_group: String,
    /// The resource (plural, e.g. `configmaps`), with `/subresource` when there is one.
    pub resource: String,
    /// The object's namespace (empty when cluster-scoped).
    pub namespace: String,
    /// The object's name (empty for a create of a generated name).
    pub name: String,
    /// The HTTP status of the response.
    pub code: Option<i64>,
    /// When the server received the request: RFC 3339 in UTC with microseconds, so that text order is time order.
    pub received: String,
    /// When the server finished it (same format).
    pub completed: String,
}

impl AuditEvent {
    /// Whether the request was a dry run (it changed nothing).
    pub fn is_dry_run(&self) -> bool {
        self.request_uri.split_once('?').is_some_and(|(_, q)| {
            q.split('&')
                .any(|kv| kv.starts_with("dryRun=") && kv != "dryRun=")
        })
    }

    /// Whether the request changed (or tried to change) something: not a dry run.
    pub fn is_write(&self) -> bool {
        !self.is_dry_run()
    }

    /// `resource namespace/name` for messages.
    pub fn object(&self) -> String {
        format!("{} {}/{}", self.resource, self.namespace, self.name)
    }

    fn parse(line: &str) -> Option<Self> {
        let v: Value = serde_json::from_str(line).ok()?;
        let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let obj = &v["objectRef"];
        let resource = match obj["subresource"].as_str() {
            Some(sub) if !sub.is_empty() => format!("{}/{sub}", s(&obj["resource"])),
            _ => s(&obj["resource"]),
        };
        Some(Self {
            user: s(&v["user"]["username"]),
            user_agent: s(&v["userAgent"]),
            verb: s(&v["verb"]),
            request_uri: s(&v["requestURI"]),
            api_group: s(&obj["apiGroup"]),
            resource,
            namespace: s(&obj["namespace"]),
            name: s(&obj["name"]),
            code: v["responseStatus"]["code"].as_i64(),
            received: s(&v["requestReceivedTimestamp"]),
            completed: s(&v["stageTimestamp"]),
        })
    }
}

/// Reads the audit log at `path` (lines that are not audit events, e.g. one being written, are skipped).
pub(crate) fn read(path: &Path) -> Result<Vec<AuditEvent>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::NotFound {
            " (was the cluster started with --audit?)"
        } else {
            ""
        };
        io_err(format!("read the audit log {}{hint}", path.display()))(e)
    })?;
    Ok(text.lines().filter_map(AuditEvent::parse).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_event_and_tells_dry_runs() {
        let line = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"x","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/a/configmaps/b?dryRun=All\u0026fieldManager=kedge","verb":"patch","user":{"username":"kedge-admin"},"userAgent":"kedge/0.1 (alpha)","objectRef":{"resource":"configmaps","namespace":"a","name":"b","apiVersion":"v1"},"responseStatus":{"code":200},"requestReceivedTimestamp":"2026-01-01T00:00:00.000001Z","stageTimestamp":"2026-01-01T00:00:00.000200Z"}"#;
        let e = AuditEvent::parse(line).expect("event");
        assert_eq!(e.user_agent, "kedge/0.1 (alpha)");
        assert_eq!(e.verb, "patch");
        assert_eq!(e.object(), "configmaps a/b");
        assert_eq!(e.code, Some(200));
        assert!(e.is_dry_run());
        assert!(!e.is_write());
        let status = line.replace(
            "?dryRun=All\\u0026fieldManager=kedge",
            "/status?fieldManager=kedge",
        );
        let e = AuditEvent::parse(&status).expect("event");
        assert!(e.is_write());
        assert!(AuditEvent::parse("not json").is_none());
    }
}
