//! The OpenAPI 3.1 document of the API, served at `/api/v1/openapi.json`.

use serde_json::{Value, json};

fn app_params() -> Value {
    json!([
        { "name": "namespace", "in": "path", "required": true, "schema": { "type": "string" } },
        { "name": "name", "in": "path", "required": true, "schema": { "type": "string" } }
    ])
}

fn responses(ok: &str, schema: Value) -> Value {
    json!({
        ok: { "description": "OK", "content": { "application/json": { "schema": schema } } },
        "400": { "$ref": "#/components/responses/Error" },
        "401": { "$ref": "#/components/responses/Error" },
        "403": { "$ref": "#/components/responses/Error" },
        "404": { "$ref": "#/components/responses/Error" }
    })
}

fn read(summary: &str, schema: Value) -> Value {
    json!({ "get": { "summary": summary, "parameters": app_params(), "responses": responses("200", schema) } })
}

fn action(summary: &str, body: Option<Value>, extra_params: Value) -> Value {
    let mut params = app_params();
    if let (Some(p), Some(extra)) = (params.as_array_mut(), extra_params.as_array()) {
        p.extend(extra.iter().cloned());
    }
    let mut op = json!({
        "summary": summary,
        "parameters": params,
        "responses": responses("202", json!({ "type": "object" }))
    });
    if let Some(schema) = body {
        op["requestBody"] =
            json!({ "required": false, "content": { "application/json": { "schema": schema } } });
    }
    json!({ "post": op })
}

fn promote_path() -> Value {
    let sref = |n: &str| json!({ "$ref": format!("#/components/schemas/{n}") });
    json!({
        "post": {
            "summary": "Promote to a stage (an application with spec.promotion) its pending candidate, or a commit of your choice (a rollback, or a stage skipped on purpose); the controller takes the request and records who approved. Needs the sync action",
            "parameters": app_params(),
            "requestBody": { "required": false, "content": { "application/json": { "schema": { "type": "object", "additionalProperties": false, "properties": {
                "revision": { "type": "string", "description": "A commit SHA, 40 hex digits or at least the first 7, to promote instead of the pending candidate" },
                "candidate": { "type": "string", "description": "The pending candidate approved, as shown; 409 when another one is pending now" } } } } } },
            "responses": {
                "202": { "description": "Requested", "content": { "application/json": { "schema": sref("PromoteAccepted") } } },
                "400": { "$ref": "#/components/responses/Error" },
                "401": { "$ref": "#/components/responses/Error" },
                "403": { "$ref": "#/components/responses/Error" },
                "404": { "$ref": "#/components/responses/Error" },
                "409": { "$ref": "#/components/responses/Error" }
            }
        }
    })
}

fn promote_accepted_schema() -> Value {
    json!({ "type": "object", "properties": {
        "application": { "type": "string", "description": "namespace/name" },
        "request": { "type": "object", "description": "As written in annotation kedge.dev/promote", "properties": {
            "revision": { "type": "string" }, "by": { "type": "string" }, "at": { "type": "string", "format": "date-time" } } },
        "revision": { "type": "string", "description": "The revision promoted: the one named, or the pending candidate" },
        "candidate": { "type": "boolean", "description": "Whether the pending candidate is approved" } } })
}

fn promotion_chain_schema() -> Value {
    json!({ "type": "object", "properties": {
        "stages": { "type": "array", "items": { "type": "object", "required": ["namespace", "name", "column", "current"], "properties": {
            "namespace": { "type": "string" }, "name": { "type": "string" },
            "upstream": { "type": "string", "description": "namespace/name of the stage it is promoted from" },
            "column": { "type": "integer", "description": "Place from the left, 0 for the first stage shown" },
            "current": { "type": "boolean" },
            "hidden": { "type": "boolean", "description": "The caller may not see it; nothing else is told" },
            "missing": { "type": "boolean", "description": "It does not exist (told to callers who see every application)" },
            "sync": { "enum": ["Synced", "OutOfSync", "Unknown"] },
            "health": { "enum": ["Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"] },
            "operationRunning": { "type": "boolean" },
            "revision": { "type": "string", "description": "The revision promoted there, or for a first stage the one it is synced to" },
            "syncedRevision": { "type": "string" },
            "approval": { "enum": ["Auto", "Manual"] }, "soak": { "type": "string" },
            "pending": { "type": "string" }, "waiting": { "type": "string" },
            "requested": { "type": "object", "description": "A promotion requested and not taken yet" },
            "history": { "type": "array", "items": { "type": "object", "properties": {
                "revision": { "type": "string" }, "from": { "type": "string" }, "approvedBy": { "type": "string" }, "at": { "type": "string" } } } },
            "mayPromote": { "type": "boolean" } } } },
        "problem": { "type": "string" } } })
}

/// The document.
pub fn document() -> Value {
    let sref = |n: &str| json!({ "$ref": format!("#/components/schemas/{n}") });
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Kedge API",
            "version": "v1",
            "description": "Applications of a running Kedge controller. Authenticate with a bearer token (from POST /api/v1/session or a token in Secret kedge-users) or a session cookie; cookie-authenticated mutations need the X-CSRF-Token header. Read-only accounts get 403 on mutations. Errors are {\"message\", \"code\"}."
        },
        "security": [ { "bearer": [] }, { "cookie": [] } ],
        "paths": {
            "/api/v1/session": {
                "post": {
                    "summary": "Log in; returns a token (also set as cookie)",
                    "security": [],
                    "requestBody": { "required": true, "content": { "application/json": { "schema": {
                        "type": "object", "required": ["username", "password"],
                        "properties": { "username": { "type": "string" }, "password": { "type": "string" } } } } } },
                    "responses": responses("200", sref("Session"))
                },
                "get": { "summary": "The current account (or OIDC user) and its groups", "responses": responses("200", json!({ "type": "object",
                    "properties": { "user": { "type": "string" }, "role": { "enum": ["admin", "readonly", "none"] },
                        "groups": { "type": "array", "items": { "type": "string" } } } })) },
                "delete": { "summary": "Log out", "responses": { "204": { "description": "Logged out" } } }
            },
            "/api/v1/applications": {
                "get": {
                    "summary": "List applications (from the controller's cache), filtered and paginated",
                    "parameters": [
                        { "name": "namespace", "in": "query", "schema": { "type": "string" } },
                        { "name": "sync", "in": "query", "description": "Comma-separated: Synced, OutOfSync, Unknown", "schema": { "type": "string" } },
                        { "name": "health", "in": "query", "description": "Comma-separated: Healthy, Progressing, Degraded, Suspended, Missing, Unknown", "schema": { "type": "string" } },
                        { "name": "selector", "in": "query", "description": "Label selector, e.g. team=web,tier in (a,b),!legacy", "schema": { "type": "string" } },
                        { "name": "cluster", "in": "query", "description": "Only applications deploying to this cluster: in-cluster (or its server https://kubernetes.default.svc), a registered cluster's name, or a server as applications name it", "schema": { "type": "string" } },
                        { "name": "search", "in": "query", "description": "Substring of namespace/name (alias q)", "schema": { "type": "string" } },
                        { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 5000 } },
                        { "name": "continue", "in": "query", "description": "Token from the previous page", "schema": { "type": "string" } },
                        { "name": "page", "in": "query", "schema": { "type": "integer", "minimum": 1 } },
                        { "name": "pageSize", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 5000 } }
                    ],
                    "responses": responses("200", sref("ApplicationList"))
                }
            },
            "/api/v1/clusters": {
                "get": {
                    "summary": "The clusters applications deploy to: in-cluster and the Clusters registered in Kedge's namespace, with their state and how many applications deploy there (never their credentials)",
                    "responses": responses("200", json!({ "type": "object", "properties": { "items": { "type": "array", "items": sref("Cluster") } } }))
                }
            },
            "/api/v1/applications/{namespace}/{name}": read("The Application resource", json!({ "type": "object" })),
            "/api/v1/applications/{namespace}/{name}/diff": {
                "get": {
                    "summary": "Compare with Git (Secret values masked)",
                    "parameters": [
                        { "name": "namespace", "in": "path", "required": true, "schema": { "type": "string" } },
                        { "name": "name", "in": "path", "required": true, "schema": { "type": "string" } },
                        { "name": "revision", "in": "query", "description": "Compare this revision instead of the synced one", "schema": { "type": "string" } }
                    ],
                    "responses": responses("200", sref("Diff"))
                }
            },
            "/api/v1/applications/{namespace}/{name}/resources": read("Resource tree: objects with owned ReplicaSets, Pods and Jobs", json!({ "type": "object", "properties": { "items": { "type": "array", "items": sref("TreeNode") } } })),
            "/api/v1/applications/{namespace}/{name}/manifest": {
                "get": {
                    "summary": "Live manifest of one of the application's objects as YAML (Secret values masked)",
                    "parameters": [
                        { "name": "namespace", "in": "path", "required": true, "schema": { "type": "string" } },
                        { "name": "name", "in": "path", "required": true, "schema": { "type": "string" } },
                        { "name": "group", "in": "query", "schema": { "type": "string" } },
                        { "name": "version", "in": "query", "schema": { "type": "string" } },
                        { "name": "kind", "in": "query", "required": true, "schema": { "type": "string" } },
                        { "name": "namespace", "in": "query", "schema": { "type": "string" } },
                        { "name": "name", "in": "query", "required": true, "schema": { "type": "string" } }
                    ],
                    "responses": responses("200", json!({ "type": "object", "properties": { "exists": { "type": "boolean" }, "manifest": { "type": "string" } } }))
                }
            },
            "/api/v1/applications/{namespace}/{name}/events": read("Kubernetes events on the application, newest first", json!({ "type": "object", "properties": { "items": { "type": "array", "items": sref("Event") } } })),
            "/api/v1/applications/{namespace}/{name}/history": read("Sync history, newest first, with commit subject and author", json!({ "type": "object", "properties": { "items": { "type": "array", "items": sref("HistoryEntry") } } })),
            "/api/v1/applications/{namespace}/{name}/sync": action("Request a sync", Some(json!({ "type": "object", "properties": {
                "prune": { "type": "boolean" }, "dryRun": { "type": "boolean" }, "revision": { "type": "string" }, "confirm": { "type": "boolean", "description": "confirms a prune of more than half of the objects" } } })), json!([])),
            "/api/v1/applications/{namespace}/{name}/rollback": action("Roll back to a history entry (suspends automated sync)", Some(json!({ "type": "object", "required": ["id"], "properties": {
                "id": { "type": "integer" }, "prune": { "type": "boolean" } } })), json!([])),
            "/api/v1/applications/{namespace}/{name}/refresh": action("Compare with Git now", None, json!([
                { "name": "hard", "in": "query", "description": "Also drop cached comparisons", "schema": { "type": "boolean" } }])),
            "/api/v1/applications/{namespace}/{name}/promote": promote_path(),
            "/api/v1/applications/{namespace}/{name}/promotions": read("The promotion chain around the application: the stages upstream of it, itself, and those promoted from it, each with its revision, pending candidate, why it waits and its last promotions; a stage the caller may not see is named hidden (upstream) or left out (downstream)", sref("PromotionChain")),
            "/api/v1/applications/{namespace}/{name}/suspend": action("Suspend automated sync and self-heal", None, json!([])),
            "/api/v1/applications/{namespace}/{name}/resume": action("Resume automated sync and self-heal", None, json!([])),
            "/api/webhook": {
                "post": {
                    "summary": "Git push webhook (GitHub, GitLab, Gitea/Forgejo, Bitbucket); verified with Secret kedge-webhook",
                    "security": [],
                    "responses": {
                        "200": { "description": "Applications refreshed", "content": { "application/json": { "schema": { "type": "object",
                            "properties": { "refreshed": { "type": "integer" }, "applications": { "type": "array", "items": { "type": "string" } } } } } } },
                        "400": { "$ref": "#/components/responses/Error" },
                        "401": { "$ref": "#/components/responses/Error" },
                        "413": { "$ref": "#/components/responses/Error" }
                    }
                }
            }
        },
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer" },
                "cookie": { "type": "apiKey", "in": "cookie", "name": crate::auth::SESSION_COOKIE }
            },
            "responses": {
                "Error": { "description": "Error", "content": { "application/json": { "schema": sref("Error") } } }
            },
            "schemas": {
                "Error": { "type": "object", "required": ["message", "code"], "properties": {
                    "message": { "type": "string" }, "code": { "type": "integer", "description": "The HTTP status" } } },
                "Session": { "type": "object", "properties": {
                    "token": { "type": "string" }, "user": { "type": "string" }, "role": { "enum": ["admin", "readonly"] }, "csrfToken": { "type": "string" } } },
                "ApplicationSummary": { "type": "object", "properties": {
                    "namespace": { "type": "string" }, "name": { "type": "string" }, "repoURL": { "type": "string" }, "path": { "type": "string" },
                    "targetRevision": { "type": "string" }, "cluster": { "type": "string" }, "sync": { "enum": ["Synced", "OutOfSync", "Unknown"] },
                    "health": { "enum": ["Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"] },
                    "healthMessage": { "type": "string" }, "revision": { "type": "string" }, "shortRevision": { "type": "string" },
                    "lastSyncedAt": { "type": "string", "format": "date-time" }, "operationPhase": { "type": "string" },
                    "operationPending": { "type": "boolean" }, "suspended": { "type": "boolean" }, "automated": { "type": "boolean" },
                    "labels": { "type": "object", "additionalProperties": { "type": "string" } } } },
                "ApplicationList": { "type": "object", "properties": {
                    "items": { "type": "array", "items": sref("ApplicationSummary") }, "total": { "type": "integer" },
                    "continue": { "type": "string" }, "page": { "type": "integer" }, "pageSize": { "type": "integer" },
                    "syncCounts": { "type": "object", "additionalProperties": { "type": "integer" } },
                    "healthCounts": { "type": "object", "additionalProperties": { "type": "integer" } } } },
                "Cluster": { "type": "object", "required": ["name", "server", "inCluster", "applications"], "properties": {
                    "name": { "type": "string", "description": "in-cluster, or the registered Cluster's name" },
                    "server": { "type": "string" }, "inCluster": { "type": "boolean" },
                    "connected": { "type": ["boolean", "null"], "description": "null until a registered cluster is first checked" },
                    "reason": { "type": "string", "description": "Why it is not connected, e.g. Unreachable, SecretUnavailable, InvalidCredentials" },
                    "message": { "type": "string" }, "serverVersion": { "type": "string" },
                    "lastContact": { "type": "string", "format": "date-time" }, "createdAt": { "type": "string", "format": "date-time" },
                    "applications": { "type": "integer", "description": "Applications deploying there: those GET /api/v1/applications?cluster=NAME lists" } } },
                "Diff": { "type": "object", "properties": {
                    "revision": { "type": "string" }, "refName": { "type": "string" }, "inSync": { "type": "boolean" },
                    "objects": { "type": "array", "items": { "type": "object", "properties": {
                        "group": { "type": "string" }, "version": { "type": "string" }, "kind": { "type": "string" },
                        "namespace": { "type": "string" }, "name": { "type": "string" },
                        "status": { "enum": ["Synced", "OutOfSync", "Missing", "Error"] }, "health": { "type": "string" },
                        "healthMessage": { "type": "string" }, "message": { "type": "string" },
                        "diff": { "type": "string", "description": "Unified diff, live to Git, as YAML" },
                        "drift": { "type": "array", "items": { "type": "string" } }, "source": { "type": "string" } } } },
                    "prune": { "type": "array", "items": { "type": "object" } },
                    "invalid": { "type": "array", "items": { "type": "string" } } } },
                "TreeNode": { "type": "object", "properties": {
                    "group": { "type": "string" }, "version": { "type": "string" }, "kind": { "type": "string" },
                    "namespace": { "type": "string" }, "name": { "type": "string" }, "sync": { "type": "string" },
                    "health": { "type": "string" }, "message": { "type": "string" },
                    "children": { "type": "array", "items": { "$ref": "#/components/schemas/TreeNode" } } } },
                "Event": { "type": "object", "properties": {
                    "type": { "type": "string" }, "reason": { "type": "string" }, "message": { "type": "string" },
                    "count": { "type": "integer" }, "lastTimestamp": { "type": "string" }, "source": { "type": "string" } } },
                "PromoteAccepted": promote_accepted_schema(),
                "PromotionChain": promotion_chain_schema(),
                "HistoryEntry": { "type": "object", "properties": {
                    "id": { "type": "integer" }, "revision": { "type": "string" }, "deployedAt": { "type": "string" },
                    "initiatedBy": { "type": "string" }, "result": { "type": "string", "enum": ["Succeeded", "Failed"] },
                    "lastAttemptAt": { "type": "string" }, "attempts": { "type": "integer" }, "failures": { "type": "integer" },
                    "lastError": { "type": "string" }, "deployed": { "type": "boolean" },
                    "commit": { "type": "object", "properties": { "author": { "type": "string" }, "subject": { "type": "string" }, "date": { "type": "string" } } } } }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_route_is_documented() {
        let doc = super::document();
        let paths = doc["paths"].as_object().expect("paths");
        for p in [
            "/api/v1/applications",
            "/api/v1/clusters",
            "/api/v1/applications/{namespace}/{name}/diff",
            "/api/v1/applications/{namespace}/{name}/rollback",
            "/api/v1/applications/{namespace}/{name}/promote",
            "/api/v1/applications/{namespace}/{name}/promotions",
            "/api/webhook",
        ] {
            assert!(paths.contains_key(p), "{p}");
        }
    }
}
