//! Helm hooks as Kedge hooks.
//!
//! | Helm (`helm.sh/hook`)          | Kedge (`kedge.dev/hook`)                                        |
//! |--------------------------------|-----------------------------------------------------------------|
//! | `pre-install`                  | `PreSync`, on the first sync only ([`ReleaseMode::Install`])    |
//! | `pre-upgrade`                  | `PreSync`, on later syncs only ([`ReleaseMode::Upgrade`])       |
//! | `post-install`, `post-upgrade` | `PostSync`, likewise                                            |
//! | `pre-delete`, `post-delete`    | not applied by a sync; returned in [`MappedHooks::delete_hooks`] and run when the application is deleted ([`map_delete_hooks`]) |
//! | `test`, `test-success`, `test-failure` | never applied by a sync, so they never make an application OutOfSync; returned in [`MappedHooks::test_hooks`] and run on request by `kedge app test`, as `helm test` runs them ([`map_test_hooks`]) |
//! | `crd-install` (Helm 2)         | not a hook: an ordinary object of the first wave (CRDs go first within a wave); `helm template` itself leaves these out of a chart's render, which Kedge refuses ([`crate::HelmError::CrdInstallHook`]) |
//! | `pre-rollback`, `post-rollback` | left out                                                       |
//!
//! A hook none of whose events applies to the current sync is left out of the desired set, as Helm would not
//! create it. `helm.sh/hook-weight` becomes `kedge.dev/sync-wave` (for any object, as Argo CD does);
//! `helm.sh/hook-delete-policy` values `before-hook-creation`, `hook-succeeded`, `hook-failed` become
//! `BeforeHookCreation`, `HookSucceeded`, `HookFailed` (Helm's default, before-hook-creation, is also
//! Kedge's). `helm.sh/resource-policy: keep` becomes the sync options `Prune=false,Delete=false`: the object is
//! neither pruned nor deleted with the application. Kedge's own annotations and Argo CD's
//! (`argocd.argoproj.io/hook`, `/sync-wave`, `/hook-delete-policy`), when present, win over Helm's, as in Argo CD.
//! A hook named by `generateName` keeps it: the engine creates a new instance each time it runs.

use kedge_engine::object::{
    AnnotationPair, HOOK, HOOK_ANNOTATION, HOOK_DELETE_POLICY, HOOK_DELETE_POLICY_ANNOTATION,
    SYNC_OPTIONS_ANNOTATION, SYNC_WAVE, SYNC_WAVE_ANNOTATION,
};
use kedge_render::RenderedObject;
use serde_json::{Map, Value};

/// Helm's hook annotation.
pub const HELM_HOOK: &str = "helm.sh/hook";
/// Helm's hook weight annotation.
pub const HELM_HOOK_WEIGHT: &str = "helm.sh/hook-weight";
/// Helm's hook delete policy annotation.
pub const HELM_HOOK_DELETE_POLICY: &str = "helm.sh/hook-delete-policy";
/// Helm's resource policy annotation (`keep`: never delete).
pub const HELM_RESOURCE_POLICY: &str = "helm.sh/resource-policy";

/// Whether a sync installs the release (first sync) or upgrades it: this chooses the hooks that run.
///
/// Templates render the same way in both modes (`.Release.IsInstall` is true, as with `helm template`): the desired
/// objects depend on chart and values only. Rendering an upgrade with `--is-upgrade` would make the comparison after
/// the first sync differ from what that sync installed, and every chart that templates on it would be synced a
/// second time, running its upgrade hooks, with nothing changed in Git (charts that refuse to render an upgrade
/// without the previous release's secrets would fail outright).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ReleaseMode {
    /// The first sync: `pre-install`/`post-install` hooks run.
    #[default]
    Install,
    /// A later sync: `pre-upgrade`/`post-upgrade` hooks run.
    Upgrade,
}

/// The result of mapping Helm hooks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MappedHooks {
    /// The objects to sync, with Kedge hook and wave annotations.
    pub objects: Vec<RenderedObject>,
    /// `pre-delete` and `post-delete` hooks, for whoever deletes the application.
    pub delete_hooks: Vec<RenderedObject>,
    /// `test` (and `test-success`, `test-failure`) hooks: never synced; run on request ([`map_test_hooks`]).
    pub test_hooks: Vec<RenderedObject>,
    /// Hooks left out of this sync, with the reason (for logs).
    pub skipped: Vec<(String, String)>,
}

/// Whether any object carries a Helm annotation that [`map_hooks`] acts on.
pub fn has_helm_annotations(objects: &[RenderedObject]) -> bool {
    objects.iter().any(|o| {
        annotations(&o.object).is_some_and(|a| {
            a.contains_key(HELM_HOOK)
                || a.contains_key(HELM_HOOK_WEIGHT)
                || a.contains_key(HELM_RESOURCE_POLICY)
        })
    })
}

/// Whether Kedge's or Argo CD's key of `pair` is set: then Helm's equivalent is not mapped.
fn has(ann: &Map<String, Value>, pair: AnnotationPair) -> bool {
    ann.contains_key(pair.kedge) || ann.contains_key(pair.argocd)
}

fn annotations(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata")?.get("annotations")?.as_object()
}

fn annotations_mut(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    obj.get_mut("metadata")?
        .get_mut("annotations")?
        .as_object_mut()
}

fn label(o: &RenderedObject) -> String {
    let name = if o.name.is_empty() {
        o.generate_name().unwrap_or_default()
    } else {
        &o.name
    };
    format!("{} {}", o.kind, name)
}

/// Maps the Helm annotations of `objects` for a sync in `mode` (see the module documentation).
pub fn map_hooks(objects: Vec<RenderedObject>, mode: ReleaseMode) -> MappedHooks {
    let mut out = MappedHooks::default();
    let mut crd_install = Vec::new();
    for mut o in objects {
        let Some(ann) = annotations_mut(&mut o.object) else {
            out.objects.push(o);
            continue;
        };
        map_weight(ann);
        let helm_hook = ann
            .get(HELM_HOOK)
            .and_then(Value::as_str)
            .map(str::to_owned);
        let Some(events) = helm_hook.filter(|_| !has(ann, HOOK)) else {
            if ann.get(HELM_RESOURCE_POLICY).and_then(Value::as_str) == Some("keep")
                && !has(ann, HOOK)
            {
                add_sync_option(ann, "Prune=false");
                add_sync_option(ann, "Delete=false");
            }
            out.objects.push(o);
            continue;
        };
        if events.split(',').any(|e| e.trim() == "crd-install") {
            if !has(ann, SYNC_WAVE) {
                crd_install.push(out.objects.len());
            }
            out.objects.push(o);
            continue;
        }
        let mut phases: Vec<&str> = Vec::new();
        let mut delete = false;
        let mut test = false;
        for event in events.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let phase =
                match (event, mode) {
                    ("pre-install", ReleaseMode::Install)
                    | ("pre-upgrade", ReleaseMode::Upgrade) => Some("PreSync"),
                    ("post-install", ReleaseMode::Install)
                    | ("post-upgrade", ReleaseMode::Upgrade) => Some("PostSync"),
                    ("pre-delete" | "post-delete", _) => {
                        delete = true;
                        None
                    }
                    ("test" | "test-success" | "test-failure", _) => {
                        test = true;
                        None
                    }
                    _ => None,
                };
            if let Some(p) = phase
                && !phases.contains(&p)
            {
                phases.push(p);
            }
        }
        if phases.is_empty() {
            if delete {
                out.delete_hooks.push(o);
            } else if test {
                let why = format!(
                    "Helm test hook {events:?} runs only on request (kedge app test), never in a sync"
                );
                out.skipped.push((label(&o), why));
                out.test_hooks.push(o);
            } else {
                let why = format!("Helm hook {events:?} does not run on {mode:?}");
                out.skipped.push((label(&o), why));
            }
            continue;
        }
        ann.insert(HOOK_ANNOTATION.into(), Value::String(phases.join(",")));
        map_delete_policy(ann, None);
        out.objects.push(o);
    }
    first_wave(&mut out.objects, &crd_install);
    out
}

/// Sets `kedge.dev/sync-wave` from `helm.sh/hook-weight` unless Kedge's or Argo CD's sync wave is set.
fn map_weight(ann: &mut Map<String, Value>) {
    if !has(ann, SYNC_WAVE)
        && let Some(w) = ann.get(HELM_HOOK_WEIGHT).and_then(Value::as_str)
        && let Ok(w) = w.trim().parse::<i64>()
    {
        ann.insert(SYNC_WAVE_ANNOTATION.into(), Value::String(w.to_string()));
    }
}

/// Puts the objects at `indexes` (Helm 2 `crd-install` objects without a wave) into the first wave of `objects`,
/// so that they are applied before everything else, as Helm 2 installed them.
fn first_wave(objects: &mut [RenderedObject], indexes: &[usize]) {
    if indexes.is_empty() {
        return;
    }
    let first = objects
        .iter()
        .filter(|o| kedge_engine::order::hook_phases(&o.object).is_ok_and(|p| p.is_none()))
        .filter_map(|o| kedge_engine::object::sync_wave(&o.object).ok())
        .min()
        .unwrap_or(0)
        .min(0);
    for &i in indexes {
        if let Some(ann) = objects
            .get_mut(i)
            .and_then(|o| annotations_mut(&mut o.object))
        {
            ann.insert(
                SYNC_WAVE_ANNOTATION.into(),
                Value::String(first.to_string()),
            );
        }
    }
}

/// Sets `kedge.dev/hook-delete-policy` from Helm's `helm.sh/hook-delete-policy` unless Kedge's is set; without
/// either, sets `default` when given.
fn map_delete_policy(ann: &mut Map<String, Value>, default: Option<&str>) {
    if has(ann, HOOK_DELETE_POLICY) {
        return;
    }
    let policies: Vec<&str> = ann
        .get(HELM_HOOK_DELETE_POLICY)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .split(',')
        .filter_map(|p| match p.trim() {
            "before-hook-creation" => Some("BeforeHookCreation"),
            "hook-succeeded" => Some("HookSucceeded"),
            "hook-failed" => Some("HookFailed"),
            _ => None,
        })
        .collect();
    let value = if policies.is_empty() {
        match default {
            Some(d) => d.to_owned(),
            None => return,
        }
    } else {
        policies.join(",")
    };
    ann.insert(HOOK_DELETE_POLICY_ANNOTATION.into(), Value::String(value));
}

/// The delete policy of a delete hook without one: replace a leftover instance (a failed attempt) and delete
/// the hook once it succeeded, since no later sync would clean it up once the application is gone.
pub const DELETE_HOOK_DEFAULT_POLICY: &str = "BeforeHookCreation,HookSucceeded";

/// Maps `pre-delete` / `post-delete` hooks (from [`MappedHooks::delete_hooks`]) to Kedge hooks of the sync that
/// deletes an application: `pre-delete` runs as `PreSync` (before anything is pruned), `post-delete` as
/// `PostSync` (after everything is pruned), ordered by `helm.sh/hook-weight` (already `kedge.dev/sync-wave`).
/// Helm's delete policy is kept; without one, [`DELETE_HOOK_DEFAULT_POLICY`] applies. Objects without a delete
/// event are left out.
pub fn map_delete_hooks(hooks: Vec<RenderedObject>) -> Vec<RenderedObject> {
    let mut out = Vec::with_capacity(hooks.len());
    for mut o in hooks {
        let Some(ann) = annotations_mut(&mut o.object) else {
            continue;
        };
        let events = ann
            .get(HELM_HOOK)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let mut phases: Vec<&str> = Vec::new();
        for event in events.split(',').map(str::trim) {
            let phase = match event {
                "pre-delete" => "PreSync",
                "post-delete" => "PostSync",
                _ => continue,
            };
            if !phases.contains(&phase) {
                phases.push(phase);
            }
        }
        if phases.is_empty() {
            continue;
        }
        map_weight(ann);
        ann.insert(HOOK_ANNOTATION.into(), Value::String(phases.join(",")));
        map_delete_policy(ann, Some(DELETE_HOOK_DEFAULT_POLICY));
        out.push(o);
    }
    out
}

/// The delete policy of a test hook without one: Helm's, replace the previous run's instance (which stays for
/// its logs until then).
pub const TEST_HOOK_DEFAULT_POLICY: &str = "BeforeHookCreation";

/// Maps Helm test hooks (from [`MappedHooks::test_hooks`]) to Kedge `Sync` hooks of a run that applies nothing
/// else, ordered by `helm.sh/hook-weight`, as `helm test` runs them. Helm's delete policy is kept; without one,
/// [`TEST_HOOK_DEFAULT_POLICY`] applies. Helm 2's `test-failure` (a test expected to fail), which Helm 3 dropped,
/// is refused: the error names the object.
pub fn map_test_hooks(hooks: Vec<RenderedObject>) -> Result<Vec<RenderedObject>, String> {
    let mut out = Vec::with_capacity(hooks.len());
    for mut o in hooks {
        let what = label(&o);
        let Some(ann) = annotations_mut(&mut o.object) else {
            continue;
        };
        let events = ann
            .get(HELM_HOOK)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if events.split(',').any(|e| e.trim() == "test-failure") {
            return Err(format!(
                "{what}: helm.sh/hook: test-failure (Helm 2, a test expected to fail) is not run; Helm 3 removed it"
            ));
        }
        map_weight(ann);
        ann.insert(HOOK_ANNOTATION.into(), Value::String("Sync".into()));
        map_delete_policy(ann, Some(TEST_HOOK_DEFAULT_POLICY));
        out.push(o);
    }
    Ok(out)
}

fn add_sync_option(ann: &mut Map<String, Value>, option: &str) {
    let existing = ann
        .get(SYNC_OPTIONS_ANNOTATION)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim()
        .to_owned();
    let (key, _) = option.split_once('=').unwrap_or((option, ""));
    if existing
        .split(',')
        .any(|o| o.split_once('=').is_some_and(|(k, _)| k.trim() == key))
    {
        return;
    }
    let value = if existing.is_empty() {
        option.to_owned()
    } else {
        format!("{existing},{option}")
    };
    ann.insert(SYNC_OPTIONS_ANNOTATION.into(), Value::String(value));
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use kedge_render::SourceRef;
    use serde_json::json;

    fn obj(kind: &str, name: &str, annotations: Value) -> RenderedObject {
        RenderedObject {
            group: String::new(),
            version: "v1".into(),
            kind: kind.into(),
            namespace: String::new(),
            name: name.into(),
            source: SourceRef {
                file: "t.yaml".into(),
                document: 0,
                item: None,
                line: 0,
            },
            object: json!({"apiVersion": "v1", "kind": kind,
                "metadata": {"name": name, "annotations": annotations}}),
        }
    }

    fn ann<'a>(o: &'a RenderedObject, key: &str) -> Option<&'a str> {
        annotations(&o.object)?.get(key)?.as_str()
    }

    fn set() -> Vec<RenderedObject> {
        vec![
            obj(
                "Job",
                "migrate",
                json!({"helm.sh/hook": "pre-install", "helm.sh/hook-weight": "-2",
                    "helm.sh/hook-delete-policy": "hook-succeeded,before-hook-creation"}),
            ),
            obj("Job", "upgrade", json!({"helm.sh/hook": "pre-upgrade"})),
            obj(
                "Job",
                "both",
                json!({"helm.sh/hook": "post-install, post-upgrade"}),
            ),
            obj("Job", "cleanup", json!({"helm.sh/hook": "pre-delete"})),
            obj("Pod", "test", json!({"helm.sh/hook": "test"})),
            obj("Service", "web", json!({"helm.sh/hook-weight": "2"})),
            obj(
                "PersistentVolumeClaim",
                "data",
                json!({"helm.sh/resource-policy": "keep"}),
            ),
            obj(
                "Job",
                "own",
                json!({"helm.sh/hook": "pre-install", "kedge.dev/hook": "Sync", "kedge.dev/sync-wave": "5",
                    "helm.sh/hook-weight": "1"}),
            ),
        ]
    }

    #[test]
    fn install_runs_install_hooks_only() {
        assert!(has_helm_annotations(&set()));
        let m = map_hooks(set(), ReleaseMode::Install);
        let names: Vec<&str> = m.objects.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["migrate", "both", "web", "data", "own"]);
        let migrate = &m.objects[0];
        assert_eq!(ann(migrate, HOOK_ANNOTATION), Some("PreSync"));
        assert_eq!(ann(migrate, SYNC_WAVE_ANNOTATION), Some("-2"));
        assert_eq!(
            ann(migrate, HOOK_DELETE_POLICY_ANNOTATION),
            Some("HookSucceeded,BeforeHookCreation")
        );
        assert_eq!(ann(&m.objects[1], HOOK_ANNOTATION), Some("PostSync"));
        assert_eq!(ann(&m.objects[2], HOOK_ANNOTATION), None);
        assert_eq!(ann(&m.objects[2], SYNC_WAVE_ANNOTATION), Some("2"));
        assert_eq!(
            ann(&m.objects[3], SYNC_OPTIONS_ANNOTATION),
            Some("Prune=false,Delete=false")
        );
        // Kedge's own annotations win.
        assert_eq!(ann(&m.objects[4], HOOK_ANNOTATION), Some("Sync"));
        assert_eq!(ann(&m.objects[4], SYNC_WAVE_ANNOTATION), Some("5"));
        assert_eq!(m.delete_hooks.len(), 1);
        assert_eq!(m.delete_hooks[0].name, "cleanup");
        let skipped: Vec<&str> = m.skipped.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(skipped, ["Job upgrade", "Pod test"]);
    }

    #[test]
    fn upgrade_runs_upgrade_hooks_only() {
        let m = map_hooks(set(), ReleaseMode::Upgrade);
        let names: Vec<&str> = m.objects.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["upgrade", "both", "web", "data", "own"]);
        assert_eq!(ann(&m.objects[0], HOOK_ANNOTATION), Some("PreSync"));
        assert_eq!(ann(&m.objects[0], HOOK_DELETE_POLICY_ANNOTATION), None);
        assert_eq!(ann(&m.objects[1], HOOK_ANNOTATION), Some("PostSync"));
    }

    #[test]
    fn delete_hooks_run_as_pre_and_post_sync_hooks_of_the_deletion() {
        let hooks = vec![
            obj(
                "Job",
                "cleanup",
                json!({"helm.sh/hook": "pre-delete", "helm.sh/hook-weight": "3"}),
            ),
            obj(
                "ConfigMap",
                "after",
                json!({"helm.sh/hook": "post-delete", "helm.sh/hook-delete-policy": "before-hook-creation"}),
            ),
            obj(
                "Job",
                "both",
                json!({"helm.sh/hook": "pre-delete,post-delete", "helm.sh/hook-delete-policy": "hook-failed"}),
            ),
            obj("Job", "install", json!({"helm.sh/hook": "pre-install"})),
        ];
        let m = map_hooks(hooks, ReleaseMode::Upgrade);
        assert_eq!(m.delete_hooks.len(), 3);
        let d = map_delete_hooks(m.delete_hooks);
        let names: Vec<&str> = d.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["cleanup", "after", "both"]);
        assert_eq!(ann(&d[0], HOOK_ANNOTATION), Some("PreSync"));
        assert_eq!(ann(&d[0], SYNC_WAVE_ANNOTATION), Some("3"));
        assert_eq!(
            ann(&d[0], HOOK_DELETE_POLICY_ANNOTATION),
            Some(DELETE_HOOK_DEFAULT_POLICY)
        );
        assert_eq!(ann(&d[1], HOOK_ANNOTATION), Some("PostSync"));
        assert_eq!(
            ann(&d[1], HOOK_DELETE_POLICY_ANNOTATION),
            Some("BeforeHookCreation")
        );
        assert_eq!(ann(&d[2], HOOK_ANNOTATION), Some("PreSync,PostSync"));
        assert_eq!(
            ann(&d[2], HOOK_DELETE_POLICY_ANNOTATION),
            Some("HookFailed")
        );
        // Objects that are not delete hooks are left out.
        let plain = obj("ConfigMap", "p", json!({"helm.sh/hook": "post-install"}));
        assert!(map_delete_hooks(vec![plain]).is_empty());
    }

    #[test]
    fn argocd_annotations_win_over_helms() {
        let o = obj(
            "Job",
            "argo",
            json!({"helm.sh/hook": "pre-install", "helm.sh/hook-weight": "4",
                "helm.sh/hook-delete-policy": "hook-failed",
                "argocd.argoproj.io/hook": "PostSync", "argocd.argoproj.io/sync-wave": "1"}),
        );
        let policy = obj(
            "Job",
            "policy",
            json!({"helm.sh/hook": "pre-install", "helm.sh/hook-delete-policy": "hook-failed",
                "argocd.argoproj.io/hook-delete-policy": "HookSucceeded"}),
        );
        let m = map_hooks(vec![o, policy], ReleaseMode::Install);
        assert_eq!(m.objects.len(), 2);
        // Nothing of Helm's is written next to Argo CD's: the engine reads Argo CD's.
        assert_eq!(ann(&m.objects[0], HOOK_ANNOTATION), None);
        assert_eq!(ann(&m.objects[0], SYNC_WAVE_ANNOTATION), None);
        assert_eq!(ann(&m.objects[0], HOOK_DELETE_POLICY_ANNOTATION), None);
        assert_eq!(
            kedge_engine::order::hook_phases(&m.objects[0].object).unwrap(),
            Some(vec![kedge_engine::HookPhase::PostSync])
        );
        assert_eq!(
            kedge_engine::object::sync_wave(&m.objects[0].object).unwrap(),
            1
        );
        assert_eq!(ann(&m.objects[1], HOOK_ANNOTATION), Some("PreSync"));
        assert_eq!(ann(&m.objects[1], HOOK_DELETE_POLICY_ANNOTATION), None);
        let p = kedge_engine::order::hook_delete_policy(&m.objects[1].object).unwrap();
        assert!(p.hook_succeeded && !p.hook_failed);
    }

    #[test]
    fn test_hooks_are_never_synced_and_crd_install_objects_come_first() {
        let objects = vec![
            obj("Pod", "t1", json!({"helm.sh/hook": "test-success"})),
            obj("Pod", "t2", json!({"helm.sh/hook": "test-failure"})),
            obj("Pod", "t3", json!({"helm.sh/hook": "test"})),
            obj("Service", "early", json!({"helm.sh/hook-weight": "-3"})),
            obj(
                "CustomResourceDefinition",
                "widgets.example.com",
                json!({"helm.sh/hook": "crd-install"}),
            ),
        ];
        for mode in [ReleaseMode::Install, ReleaseMode::Upgrade] {
            let m = map_hooks(objects.clone(), mode);
            let names: Vec<&str> = m.objects.iter().map(|o| o.name.as_str()).collect();
            assert_eq!(names, ["early", "widgets.example.com"]);
            assert!(
                m.skipped
                    .iter()
                    .all(|(_, why)| why.contains("kedge app test"))
            );
            assert_eq!(m.skipped.len(), 3);
            assert_eq!(m.test_hooks.len(), 3);
            // Not a hook, and in the first wave.
            assert_eq!(ann(&m.objects[1], HOOK_ANNOTATION), None);
            assert_eq!(ann(&m.objects[1], SYNC_WAVE_ANNOTATION), Some("-3"));
        }
    }

    #[test]
    fn test_hooks_run_as_sync_hooks_on_request() {
        let hooks = vec![
            obj(
                "Job",
                "second",
                json!({"helm.sh/hook": "test", "helm.sh/hook-weight": "2",
                    "helm.sh/hook-delete-policy": "hook-succeeded"}),
            ),
            obj("Job", "first", json!({"helm.sh/hook": "test-success"})),
        ];
        let m = map_hooks(hooks, ReleaseMode::Upgrade);
        assert!(m.objects.is_empty());
        let t = map_test_hooks(m.test_hooks).unwrap();
        assert_eq!(ann(&t[0], HOOK_ANNOTATION), Some("Sync"));
        assert_eq!(ann(&t[0], SYNC_WAVE_ANNOTATION), Some("2"));
        assert_eq!(
            ann(&t[0], HOOK_DELETE_POLICY_ANNOTATION),
            Some("HookSucceeded")
        );
        assert_eq!(
            ann(&t[1], HOOK_DELETE_POLICY_ANNOTATION),
            Some(TEST_HOOK_DEFAULT_POLICY)
        );
        let failure = obj("Pod", "old", json!({"helm.sh/hook": "test-failure"}));
        let e = map_test_hooks(vec![failure]).unwrap_err();
        assert!(e.contains("Pod old") && e.contains("test-failure"), "{e}");
    }

    #[test]
    fn resource_policy_keeps_existing_options() {
        let o = obj(
            "ConfigMap",
            "c",
            json!({"helm.sh/resource-policy": "keep", "kedge.dev/sync-options": "PruneLast=true"}),
        );
        let m = map_hooks(vec![o], ReleaseMode::Upgrade);
        assert_eq!(
            ann(&m.objects[0], SYNC_OPTIONS_ANNOTATION),
            Some("PruneLast=true,Prune=false,Delete=false")
        );
        let plain = obj("ConfigMap", "p", json!({}));
        assert!(!has_helm_annotations(std::slice::from_ref(&plain)));
    }
}
