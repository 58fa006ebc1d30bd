//! Argo CD's example applications, as their users have them: the directories of argoproj/argocd-example-apps copied
//! unchanged under `crates/kedge-render/tests/fixtures` (see its README) are synced by the controller with Argo CD's
//! annotations and Helm hooks read as Argo CD reads them, then stay Synced for a minute with `kedge app diff` clean.
//! Hook order is read from the API server's audit log (the order in which it finished the writes), not from
//! timestamps.
//!
//! Run: `cargo nextest run -p kedge -E 'test(/^argocd_examples::/)'` (needs helm: scripts/install-helm).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::cli;
use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cli::{Run, copy_dir, kedge};
use common::*;
use kedge_api::{Application, ApplicationStatus, HealthCode, ResourceResult, SyncCode};
use kedge_testkit::{AuditEvent, TestNamespace};
use kube::api::{Api, DynamicObject, GroupVersionKind, ListParams};
use kube::discovery::ApiResource;
use serde_json::json;

/// (application, directory): every directory is also the application's path.
const EXAMPLES: &[&str] = &[
    "guestbook",
    "kustomize-guestbook",
    "helm-guestbook",
    "helm-hooks",
    "pre-post-sync",
    "sync-waves",
    "sock-shop",
];

/// How long the applications must stay Synced once they are.
const STAY_SYNCED: Duration = Duration::from_secs(60);

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../kedge-render/tests/fixtures")
}

fn sync_result(app: &Application) -> Vec<ResourceResult> {
    app.status
        .as_ref()
        .and_then(|s| s.operation_state.as_ref())
        .and_then(|o| o.sync_result.as_ref())
        .map(|r| r.resources.clone())
        .unwrap_or_default()
}

/// The hooks of the last sync, in the order they ran: `(phase, kind, name)`.
fn hooks(app: &Application) -> Vec<(String, String, String)> {
    sync_result(app)
        .into_iter()
        .filter(|r| !r.hook_phase.is_empty())
        .map(|r| (r.hook_phase, r.object.kind.into(), r.object.name.into()))
        .collect()
}

/// The kinds of the application's tracked objects.
fn tracked_kinds(app: &Application) -> Vec<String> {
    app.status
        .as_ref()
        .map(|s| {
            s.resources
                .iter()
                .map(|r| r.object.kind.to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The writes (not dry runs) the API server finished in `ns`, in order.
fn writes(env: &Env, ns: &str) -> Vec<AuditEvent> {
    env.cluster
        .audit_events()
        .unwrap()
        .into_iter()
        .filter(|e| e.namespace == ns && e.is_write() && e.code.is_some_and(|c| c < 300))
        .collect()
}

/// The position of the first write matching `verb` (any when empty), `resource` and `name`.
#[track_caller]
fn first(events: &[AuditEvent], verb: &str, resource: &str, name: &str) -> usize {
    events
        .iter()
        .position(|e| {
            (verb.is_empty() || e.verb == verb) && e.resource == resource && e.name == name
        })
        .unwrap_or_else(|| {
            let all: Vec<String> = events
                .iter()
                .map(|e| format!("{} {}", e.verb, e.object()))
                .collect();
            panic!("no {verb} of {resource} {name} in {all:#?}")
        })
}

/// The position of the last write matching `resource` and `name` before `before`.
#[track_caller]
fn last_before(events: &[AuditEvent], resource: &str, name: &str, before: usize) -> usize {
    events[..before]
        .iter()
        .rposition(|e| e.resource == resource && e.name == name)
        .unwrap_or_else(|| panic!("no write of {resource} {name} before position {before}"))
}

/// Healthy, or Progressing only because an Ingress has no load balancer address: the test cluster runs no
/// ingress controller (sock-shop's front-end Ingress), and Argo CD reads that Ingress the same way.
fn healthy(status: &ApplicationStatus) -> bool {
    status.health.status == HealthCode::Healthy
        || (status.health.status == HealthCode::Progressing
            && status.resources.iter().all(|r| {
                let h = r.health.as_ref().map(|h| h.status);
                h == Some(HealthCode::Healthy)
                    || (r.object.kind == "Ingress" && h == Some(HealthCode::Progressing))
            }))
}

async fn jobs(env: &Env, ns: &str) -> Vec<DynamicObject> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("batch", "v1", "Job"));
    Api::<DynamicObject>::namespaced_with(env.client.clone(), ns, &ar)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argocd_example_apps_sync_unchanged_and_stay_synced() {
    let env = Env::audited("argo-examples").await;
    let cache = tempfile::tempdir().expect("cache");
    for dir in EXAMPLES {
        copy_dir(&env, &fixtures().join(dir), dir);
    }
    let sha = env.commit_push("argocd-example-apps, unchanged");
    // Each application deploys to a namespace of its own: helm-hooks and sync-waves both have a ReplicaSet
    // `frontend`.
    let mut destinations: Vec<TestNamespace> = Vec::new();
    for dir in EXAMPLES {
        destinations.push(env.cluster.namespace(dir).await.expect("namespace"));
    }
    let dest = |app: &str| {
        let i = EXAMPLES.iter().position(|d| *d == app).unwrap();
        destinations[i].name().to_owned()
    };
    let _controller = env.start_controller("argo-examples");
    for dir in EXAMPLES {
        env.create_app_with(
            dir,
            dir,
            automated(true, false),
            json!({"destination": {"namespace": dest(dir)}}),
            json!({}),
        )
        .await;
    }
    let mut apps = Vec::new();
    for dir in EXAMPLES {
        let app = env
            .wait_app(dir, "Synced and Healthy (but Ingresses)", |a| {
                a.status.as_ref().is_some_and(|s| {
                    s.sync.status == SyncCode::Synced
                        && s.sync.revision.as_deref() == Some(sha.as_str())
                        && s.operation_state
                            .as_ref()
                            .is_some_and(|o| o.phase.is_completed())
                        && healthy(s)
                })
            })
            .await;
        apps.push(app);
    }
    let app = |name: &str| &apps[EXAMPLES.iter().position(|d| *d == name).unwrap()];

    // Hooks are never tracked objects, so they never make an application OutOfSync.
    for dir in ["helm-hooks", "pre-post-sync", "sync-waves"] {
        let kinds = tracked_kinds(app(dir));
        assert!(!kinds.iter().any(|k| k == "Job"), "{dir}: {kinds:?}");
    }

    // helm-hooks: pre-install hooks by weight (the generateName one at -2 first), then the objects, then
    // post-install.
    let ran = hooks(app("helm-hooks"));
    assert_eq!(ran.len(), 3, "{ran:?}");
    assert_eq!(ran[0].0, "PreSync");
    assert!(
        ran[0].2.starts_with("upgrade-sql-schema") && ran[0].2 != "upgrade-sql-schema",
        "{ran:?}"
    );
    assert_eq!(
        ran[1],
        ("PreSync".into(), "Job".into(), "maint-page-up".into())
    );
    assert_eq!(
        ran[2],
        ("PostSync".into(), "Job".into(), "maint-page-down".into())
    );
    let ns = dest("helm-hooks");
    let w = writes(&env, &ns);
    let sql = w
        .iter()
        .position(|e| e.verb == "create" && e.resource == "jobs" && e.name.is_empty())
        .expect("generated hook created");
    let up = first(&w, "patch", "jobs", "maint-page-up");
    let rs = first(&w, "patch", "replicasets", "frontend");
    let svc = first(&w, "patch", "services", "frontend");
    let down = first(&w, "patch", "jobs", "maint-page-down");
    assert!(
        sql < up && up < rs && rs < svc && svc < down,
        "{sql} {up} {rs} {svc} {down}"
    );

    // pre-post-sync: the PreSync Job completes before the Deployment is applied, the PostSync Job starts once
    // the Deployment is available, and both are deleted once they succeeded (HookSucceeded).
    let ns = dest("pre-post-sync");
    let ran = hooks(app("pre-post-sync"));
    assert_eq!(
        ran,
        vec![
            (
                "PreSync".to_owned(),
                "Job".to_owned(),
                "pre-post-sync-before".to_owned()
            ),
            (
                "PostSync".to_owned(),
                "Job".to_owned(),
                "pre-post-sync-after".to_owned()
            )
        ]
    );
    let w = writes(&env, &ns);
    let deployment = "pre-post-sync-kustomize-guestbook-ui";
    let before = first(&w, "patch", "jobs", "pre-post-sync-before");
    let before_done = first(&w, "", "jobs/status", "pre-post-sync-before");
    let before_deleted = first(&w, "delete", "jobs", "pre-post-sync-before");
    let applied = first(&w, "patch", "deployments", deployment);
    let after = first(&w, "patch", "jobs", "pre-post-sync-after");
    let available = last_before(&w, "deployments/status", deployment, after);
    let after_deleted = first(&w, "delete", "jobs", "pre-post-sync-after");
    assert!(
        before < before_done && before_done < before_deleted && before_deleted < applied,
        "{before} {before_done} {before_deleted} {applied}"
    );
    assert!(
        applied < available && available < after && after < after_deleted,
        "{applied} {available} {after} {after_deleted}"
    );
    assert!(jobs(&env, &ns).await.is_empty(), "both hooks deleted");

    // sync-waves: the generateName PreSync hook first, then waves 0 (backend), 1 (maint-page-up), 2 (frontend),
    // 3 (maint-page-down).
    let ns = dest("sync-waves");
    let ran = hooks(app("sync-waves"));
    assert_eq!(ran.len(), 3, "{ran:?}");
    assert_eq!(ran[0].0, "PreSync");
    let generated = ran[0].2.clone();
    assert!(generated.starts_with("upgrade-sql-schema"), "{ran:?}");
    assert_eq!(
        ran[1],
        ("Sync".into(), "Job".into(), "maint-page-up".into())
    );
    assert_eq!(
        ran[2],
        ("Sync".into(), "Job".into(), "maint-page-down".into())
    );
    let w = writes(&env, &ns);
    let sql = w
        .iter()
        .position(|e| e.verb == "create" && e.resource == "jobs" && e.name.is_empty())
        .expect("generated hook created");
    let backend = first(&w, "patch", "replicasets", "backend");
    let up = first(&w, "patch", "jobs", "maint-page-up");
    let frontend = first(&w, "patch", "replicasets", "frontend");
    let frontend_svc = first(&w, "patch", "services", "frontend");
    let down = first(&w, "patch", "jobs", "maint-page-down");
    assert!(
        sql < backend && backend < up && up < frontend && frontend < down && frontend_svc < down,
        "{sql} {backend} {up} {frontend} {down}"
    );
    // The generated instance stays (BeforeHookCreation, Argo CD's default) under the name the status records.
    let names: Vec<String> = jobs(&env, &ns)
        .await
        .into_iter()
        .filter(|j| j.metadata.generate_name.as_deref() == Some("upgrade-sql-schema"))
        .filter_map(|j| j.metadata.name)
        .collect();
    assert_eq!(names, vec![generated]);

    // Nothing moves for a minute: every application stays Synced and Healthy without another sync.
    let started: Vec<Option<String>> = apps
        .iter()
        .map(|a| {
            a.status
                .as_ref()
                .and_then(|s| s.operation_state.as_ref())
                .and_then(|o| o.started_at.clone())
        })
        .collect();
    let since = Instant::now();
    let mut checks = 0;
    while since.elapsed() < STAY_SYNCED {
        for (i, dir) in EXAMPLES.iter().enumerate() {
            let a = env.app(dir).await;
            let status = a.status.as_ref().expect("status");
            assert_eq!(
                status.sync.status,
                SyncCode::Synced,
                "{dir} left Synced: {status:#?}"
            );
            assert!(healthy(status), "{dir}: {status:#?}");
            let op = status
                .operation_state
                .as_ref()
                .and_then(|o| o.started_at.clone());
            assert_eq!(op, started[i], "{dir} synced again");
            assert!(
                status
                    .resources
                    .iter()
                    .all(|r| r.status == SyncCode::Synced),
                "{dir}: {:#?}",
                status.resources
            );
        }
        checks += 1;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert!(checks >= 10, "checked only {checks} times");

    // `kedge app diff` finds nothing to change in any of them.
    for dir in EXAMPLES {
        let Run {
            code,
            stdout,
            stderr,
        } = kedge(&env, cache.path(), &["app", "diff", dir]).await;
        assert_eq!(code, Some(0), "{dir}: stdout: {stdout}\nstderr: {stderr}");
        assert!(stderr.contains("in sync"), "{dir}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argocd_object_options_in_the_applications_status() {
    let env = Env::new("argo-options").await;
    let annotated =
        |name: &str, annotations: &[(&str, &str)]| config_map_annotated(name, "1", annotations);
    env.write(
        "disagree/both.yaml",
        &annotated(
            "both",
            &[
                ("kedge.dev/sync-wave", "1"),
                ("argocd.argoproj.io/sync-wave", "2"),
            ],
        ),
    );
    env.write("options/base.yaml", &annotated("base", &[]));
    env.write(
        "options/kept.yaml",
        &annotated(
            "kept",
            &[("argocd.argoproj.io/sync-options", "Delete=false")],
        ),
    );
    env.write(
        "options/extra.yaml",
        &annotated(
            "extra",
            &[("argocd.argoproj.io/compare-options", "IgnoreExtraneous")],
        ),
    );
    let first = env.commit_push("options");
    let _controller = env.start_controller("argo-options");
    env.create_app("disagree", "disagree", automated(true, false))
        .await;
    env.create_app_with(
        "options",
        "options",
        automated(false, false),
        json!({}),
        json!({ "finalizers": [kedge_api::RESOURCES_FINALIZER] }),
    )
    .await;

    // Disagreeing annotations: nothing applied, the object's status names both.
    let app = env
        .wait_app("disagree", "the disagreement reported", |a| {
            a.status.as_ref().is_some_and(|s| {
                s.resources
                    .iter()
                    .any(|r| r.message.as_deref().is_some_and(|m| m.contains("disagree")))
            })
        })
        .await;
    let status = app.status.unwrap();
    let message = status.resources[0].message.clone().unwrap_or_default();
    assert!(
        message.contains(r#"kedge.dev/sync-wave="1""#)
            && message.contains(r#"argocd.argoproj.io/sync-wave="2""#),
        "{message}"
    );
    assert_ne!(status.sync.status, SyncCode::Synced);
    assert!(env.config_map_data("both").await.is_none());

    // IgnoreExtraneous: removed from Git and not pruned (automated prune is off), the application stays Synced.
    env.wait_synced("options", &first).await;
    env.work.remove("options/extra.yaml").expect("remove");
    let second = env.commit_push("extra removed");
    let app = env.wait_synced("options", &second).await;
    let extra = app
        .status
        .as_ref()
        .and_then(|s| s.resources.iter().find(|r| r.object.name == "extra"))
        .cloned();
    assert!(extra.is_some(), "still tracked: {:?}", app.status);
    assert!(env.config_map_data("extra").await.is_some());

    // Deleting the application deletes its objects but the Delete=false one.
    env.apps()
        .delete("options", &Default::default())
        .await
        .expect("delete");
    env.wait_gone("", "v1", "ConfigMap", "base").await;
    env.wait_gone("", "v1", "ConfigMap", "extra").await;
    kedge_testkit::wait_for(STEP, POLL, || async {
        env.apps().get_opt("options").await.ok().flatten().is_none()
    })
    .await
    .expect("the application is gone");
    assert!(env.config_map_data("kept").await.is_some());
}
