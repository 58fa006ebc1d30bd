//! What of an Application's Argo CD-shaped spec Kedge acts on.
//!
//! A spec that asks for something Kedge does not do — a shape of several sources,
//! a sync option or a kustomize option it does not implement — is refused before anything is fetched or applied, with a message
//! naming the field and the value ([`PipelineError::InvalidSpec`], reported as `Ready=False` and `Stalled=True`
//! with reason `InvalidSpec`). What it accepts becomes engine and renderer options here, so that no field is taken
//! and then ignored.

use kedge_api::{Application, KustomizeSource, SyncPolicy};
use kedge_engine::{ObjectSyncOptions, PropagationPolicy, SyncOptions};
use kedge_render::{KustomizeOptions, PatchOption};

use crate::pipeline::PipelineError;

/// The application-level sync options (`spec.syncPolicy.syncOptions`) Kedge acts on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppSyncOptions {
    /// Options every object gets as if its own annotation set them: `PruneLast=true`, `Replace=true`,
    /// `Force=true`, `Validate=false`, `SkipDryRunOnMissingResource=true`, `Prune=false`, `Delete=false`.
    pub objects: ObjectSyncOptions,
    /// `PrunePropagationPolicy=...`: how pruned objects' dependents go (default foreground, as Argo CD).
    pub propagation: PropagationPolicy,
    /// `FailOnSharedResource=true`: an existing object no application tracks is refused instead of adopted.
    pub fail_on_shared_resource: bool,
}

/// An application spec Kedge can act on, with the options it asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckedSpec {
    /// The sync options.
    pub sync: AppSyncOptions,
    /// The kustomize options of `spec.source.kustomize`, when any is set.
    pub kustomize: Option<KustomizeOptions>,
    /// Whether `spec.source.helm` sets anything (then the path must be a chart, as in Argo CD).
    pub helm: bool,
    /// `spec.source.kustomize.commonAnnotationsEnvsubst`: the build variables are substituted in the values of
    /// `commonAnnotations` once the revision is known ([`substitute_annotations`]).
    pub annotations_envsubst: bool,
}

/// The build variables Argo CD gives kustomize, for `app` at commit `sha`.
pub fn build_variables(app: &Application, sha: &str) -> Vec<(&'static str, String)> {
    let src = &app.spec.source;
    let namespace = app
        .spec
        .destination
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| kube::ResourceExt::namespace(app).unwrap_or_default());
    vec![
        ("ARGOCD_APP_NAME", kube::ResourceExt::name_any(app)),
        ("ARGOCD_APP_NAMESPACE", namespace),
        ("ARGOCD_APP_REVISION", sha.to_owned()),
        ("ARGOCD_APP_REVISION_SHORT", sha.chars().take(7).collect()),
        ("ARGOCD_APP_REVISION_SHORT_8", sha.chars().take(8).collect()),
        ("ARGOCD_APP_SOURCE_PATH", src.path.clone()),
        ("ARGOCD_APP_SOURCE_REPO_URL", src.repo_url.clone()),
        (
            "ARGOCD_APP_SOURCE_TARGET_REVISION",
            src.target_revision.clone(),
        ),
    ]
}

/// `value` with `$NAME` and `${NAME}` replaced by the build variable `NAME` and `$$` by `$`; a variable Kedge does
/// not provide (`KUBE_VERSION`, ...) is an error naming it, never an empty string.
pub fn expand(value: &str, vars: &[(&'static str, String)]) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, tail) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(end) => (&braced[..end], &braced[end + 1..]),
                None => return Err(format!("{value:?}: unclosed ${{")),
            }
        } else if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        if name.is_empty() {
            out.push('$');
            rest = after;
            continue;
        }
        let known = vars.iter().find(|(n, _)| *n == name).ok_or_else(|| {
            format!(
                "{value:?} names ${name}, which Kedge does not provide (it provides {})",
                vars.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            )
        })?;
        out.push_str(&known.1);
        rest = tail;
    }
    out.push_str(rest);
    Ok(out)
}

/// Substitutes the build variables in `options`' common annotations (`commonAnnotationsEnvsubst`).
pub fn substitute_annotations(
    options: &mut KustomizeOptions,
    vars: &[(&'static str, String)],
) -> Result<(), PipelineError> {
    for (key, value) in options.common_annotations.iter_mut() {
        *value = expand(value, vars).map_err(|e| {
            refused(format!(
                "spec.source.kustomize.commonAnnotations[{key:?}] (commonAnnotationsEnvsubst): {e}"
            ))
        })?;
    }
    Ok(())
}

fn refused(message: String) -> PipelineError {
    PipelineError::InvalidSpec(message)
}

/// Checks everything of `app`'s spec that Kedge might otherwise ignore; the first problem is the error.
pub fn check(app: &Application) -> Result<CheckedSpec, PipelineError> {
    let spec = &app.spec;
    check_sources(app)?;
    if let Some(r) = &spec.source.ref_ {
        return Err(refused(format!(
            "spec.source.ref {r:?} names a source for spec.sources, which is not supported yet"
        )));
    }
    let sync = sync_options(spec.sync_policy.as_ref()).map_err(refused)?;
    let kustomize = match &spec.source.kustomize {
        Some(k) if **k != KustomizeSource::default() => {
            Some(kustomize_options(k).map_err(refused)?)
        }
        _ => None,
    };
    if kustomize.is_some() && spec.source.chart.is_some() {
        return Err(refused(
            "spec.source.kustomize is set on a Helm chart (spec.source.chart): kustomize options apply only to \
             kustomize sources, as in Argo CD; use spec.source.helm.postRenderer.kustomize to patch a chart"
                .into(),
        ));
    }
    let helm = spec
        .source
        .helm
        .as_ref()
        .is_some_and(|h| **h != kedge_api::HelmSource::default());
    if kustomize.is_some() && helm {
        return Err(refused(
            "spec.source sets both kustomize and helm: a source is one of them, as in Argo CD"
                .into(),
        ));
    }
    Ok(CheckedSpec {
        sync,
        kustomize,
        helm,
        annotations_envsubst: spec
            .source
            .kustomize
            .as_ref()
            .is_some_and(|k| k.common_annotations_envsubst),
    })
}

/// `spec.sources` is supported in the two shapes Argo CD users write most: paths of one Git repository at one
/// revision combined into one application, and one Helm chart whose value files come from Git sources named by
/// `ref` (`$values/envs/prod/values.yaml`). What else Argo CD allows there (several repositories or revisions of
/// paths, a chart with other content, a `ref` source that also renders) is refused, naming it.
fn check_sources(app: &Application) -> Result<(), PipelineError> {
    let spec = &app.spec;
    if spec.sources.is_empty() {
        return Ok(());
    }
    if !spec.source.is_unset() {
        return Err(refused(
            "spec.source and spec.sources are both set: an application has one or the other, as in Argo CD".into(),
        ));
    }
    let mut refs = Vec::new();
    let mut content = Vec::new();
    for (i, s) in spec.sources.iter().enumerate() {
        let field = format!("spec.sources[{i}]");
        if s.repo_url.trim().is_empty() {
            return Err(refused(format!("{field}.repoURL is empty")));
        }
        match &s.ref_ {
            Some(r) => {
                if r.is_empty()
                    || !r
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    return Err(refused(format!(
                        "{field}.ref {r:?} must be a name of letters, digits, '-' and '_'"
                    )));
                }
                if s.chart.is_some() || !matches!(s.path.trim(), "" | ".") {
                    return Err(refused(format!(
                        "{field} has ref {r:?} and also renders (chart or path): a ref source that is also \
                         deployed is not supported yet; give the value files their own source"
                    )));
                }
                refs.push(r.as_str());
            }
            None => content.push((field, s)),
        }
    }
    let charts = content.iter().filter(|(_, s)| s.chart.is_some()).count();
    if charts > 0 {
        if content.len() > 1 {
            return Err(refused(
                "spec.sources combines a chart with other sources to deploy: not supported yet (a chart may take \
                 value files from ref sources)"
                    .into(),
            ));
        }
        let (field, chart) = &content[0];
        for f in chart.helm.iter().flat_map(|h| h.value_files.iter()) {
            if let Some(rest) = f.strip_prefix('$') {
                let name = rest.split('/').next().unwrap_or_default();
                if !rest.contains('/') || !refs.contains(&name) {
                    return Err(refused(format!(
                        "{field}.helm.valueFiles {f:?} names no source of spec.sources with ref {name:?}"
                    )));
                }
            }
        }
        return Ok(());
    }
    let Some((_, first)) = content.first() else {
        return Err(refused(
            "spec.sources has only ref sources: nothing to deploy".into(),
        ));
    };
    for (field, s) in &content {
        if s.repo_url.trim() != first.repo_url.trim() || s.target_revision != first.target_revision
        {
            return Err(refused(format!(
                "{field} ({} at {}) is not supported yet: spec.sources combines paths of one repository at one \
                 revision ({} at {})",
                s.repo_url, s.target_revision, first.repo_url, first.target_revision
            )));
        }
    }
    if !refs.is_empty() {
        return Err(refused(
            "spec.sources has ref sources but no chart to read value files from them".into(),
        ));
    }
    Ok(())
}

/// Reads `spec.syncPolicy.syncOptions`: every option Argo CD documents is acted on or refused, naming it.
pub fn sync_options(policy: Option<&SyncPolicy>) -> Result<AppSyncOptions, String> {
    let mut out = AppSyncOptions::default();
    let Some(policy) = policy else {
        return Ok(out);
    };
    for raw in &policy.sync_options {
        let item = raw.trim();
        let Some((name, value)) = item.split_once('=').map(|(n, v)| (n.trim(), v.trim())) else {
            return Err(format!(
                "spec.syncPolicy.syncOptions: {item:?} is not Name=value"
            ));
        };
        let flag = || match value.to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(format!(
                "spec.syncPolicy.syncOptions: {item:?}: {name} is true or false"
            )),
        };
        let unsupported = |why: &str| {
            Err(format!(
                "spec.syncPolicy.syncOptions: {item} is not supported: {why}"
            ))
        };
        match name {
            "PruneLast" => out.objects.prune_last = flag()?,
            "Replace" => out.objects.replace = flag()?,
            "Force" => out.objects.force = flag()?,
            "Validate" => out.objects.skip_validation = !flag()?,
            "SkipDryRunOnMissingResource" => out.objects.skip_dry_run_on_missing_resource = flag()?,
            "Prune" | "Delete" if value.eq_ignore_ascii_case("confirm") => {
                return unsupported("Kedge has no confirmation of single objects' deletion");
            }
            "Prune" => out.objects.prune_disabled = !flag()?,
            "Delete" => out.objects.delete_disabled = !flag()?,
            "FailOnSharedResource" => out.fail_on_shared_resource = flag()?,
            "PrunePropagationPolicy" => {
                out.propagation = match value.to_ascii_lowercase().as_str() {
                    "foreground" => PropagationPolicy::Foreground,
                    "background" => PropagationPolicy::Background,
                    "orphan" => PropagationPolicy::Orphan,
                    _ => {
                        return Err(format!(
                            "spec.syncPolicy.syncOptions: {item:?}: PrunePropagationPolicy is foreground, \
                             background or orphan"
                        ));
                    }
                }
            }
            // Read where it acts: the namespace is created before the sync.
            "CreateNamespace" => {
                flag()?;
            }
            // Kedge applies only the objects that differ, always: applying the others would change nothing.
            "ApplyOutOfSyncOnly" => {
                flag()?;
            }
            "ServerSideApply" => {
                if !flag()? {
                    return unsupported("Kedge always applies server-side");
                }
            }
            "RespectIgnoreDifferences" => {
                if !flag()? {
                    return unsupported(
                        "Kedge always leaves the fields of spec.ignoreDifferences as they are live",
                    );
                }
            }
            "ClientSideApplyMigration" => {
                if flag()? {
                    return unsupported(
                        "Kedge does not move client-side apply field managers; ClientSideApplyMigration=false is \
                         what it does",
                    );
                }
            }
            _ => {
                return Err(format!(
                    "spec.syncPolicy.syncOptions: {item:?} is not a sync option (Argo CD's are {})",
                    kedge_api::SYNC_OPTION_NAMES.join(", ")
                ));
            }
        }
    }
    Ok(out)
}

/// The engine's sync options for `app`'s sync options (defaults where they cannot be read; [`check`] refused
/// such a spec before any sync).
pub fn sync_defaults(app: &Application) -> SyncOptions {
    let options = sync_options(app.spec.sync_policy.as_ref()).unwrap_or_default();
    SyncOptions {
        propagation: options.propagation,
        ..SyncOptions::default()
    }
}

/// The renderer's options for `spec.source.kustomize`; fields Kedge does not implement are refused.
pub fn kustomize_options(k: &KustomizeSource) -> Result<KustomizeOptions, String> {
    let field = |f: &str| format!("spec.source.kustomize.{f}");
    if let Some(v) = k.version.as_deref().filter(|v| !v.is_empty()) {
        return Err(format!(
            "{} {v:?} is not supported: Kedge builds with its one kustomize",
            field("version")
        ));
    }
    if k.kube_version.as_deref().is_some_and(|v| !v.is_empty()) || !k.api_versions.is_empty() {
        return Err(format!(
            "{} and {} are not supported",
            field("kubeVersion"),
            field("apiVersions")
        ));
    }
    let mut replicas = Vec::with_capacity(k.replicas.len());
    for (i, r) in k.replicas.iter().enumerate() {
        let count = match &r.count {
            serde_json::Value::Number(n) => n.as_i64(),
            serde_json::Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
        .filter(|c| *c >= 0)
        .ok_or_else(|| {
            format!(
                "{}[{i}].count {} is not a number of replicas",
                field("replicas"),
                r.count
            )
        })?;
        replicas.push((r.name.clone(), count));
    }
    let patches = k
        .patches
        .iter()
        .map(|p| PatchOption {
            patch: p.patch.clone().filter(|s| !s.is_empty()),
            path: p.path.clone().filter(|s| !s.is_empty()),
            target: p
                .target
                .as_ref()
                .and_then(|t| serde_json::to_value(t).ok())
                .and_then(|v| serde_json::from_value(v).ok())
                .unwrap_or_default(),
            options: p.options.clone(),
        })
        .collect();
    Ok(KustomizeOptions {
        images: k.images.clone(),
        name_prefix: k.name_prefix.clone(),
        name_suffix: k.name_suffix.clone(),
        namespace: k.namespace.clone(),
        common_labels: k.common_labels.clone(),
        force_common_labels: k.force_common_labels,
        label_without_selector: k.label_without_selector,
        label_include_templates: k.label_include_templates,
        common_annotations: k.common_annotations.clone(),
        force_common_annotations: k.force_common_annotations,
        replicas,
        patches,
        components: k.components.clone(),
        ignore_missing_components: k.ignore_missing_components,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(items: &[&str]) -> Result<AppSyncOptions, String> {
        sync_options(Some(&SyncPolicy {
            sync_options: items.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }))
    }

    #[test]
    fn implemented_sync_options_are_read() {
        let o = options(&[
            "PruneLast=true",
            "PrunePropagationPolicy=orphan",
            "FailOnSharedResource=true",
            "CreateNamespace=true",
            "ApplyOutOfSyncOnly=true",
            "ServerSideApply=true",
            "RespectIgnoreDifferences=true",
            "Validate=false",
            "Replace=true",
            "Force=true",
            "Prune=false",
            "Delete=false",
            "SkipDryRunOnMissingResource=true",
            "ClientSideApplyMigration=false",
        ])
        .expect("accepted");
        assert!(o.fail_on_shared_resource);
        assert_eq!(o.propagation, PropagationPolicy::Orphan);
        assert_eq!(
            o.objects,
            ObjectSyncOptions {
                prune_disabled: true,
                prune_last: true,
                delete_disabled: true,
                replace: true,
                skip_validation: true,
                skip_dry_run_on_missing_resource: true,
                force: true,
            }
        );
        let defaults = options(&[
            "Validate=true",
            "Replace=false",
            "Prune=true",
            "Delete=true",
            "PrunePropagationPolicy=background",
        ])
        .expect("accepted");
        assert_eq!(defaults.objects, ObjectSyncOptions::default());
        assert_eq!(defaults.propagation, PropagationPolicy::Background);
        assert_eq!(
            options(&[]).map(|o| o.propagation),
            Ok(PropagationPolicy::Foreground)
        );
    }

    #[test]
    fn options_kedge_does_not_implement_are_refused_by_name() {
        for item in [
            "Prune=confirm",
            "Delete=confirm",
            "ServerSideApply=false",
            "RespectIgnoreDifferences=false",
            "ClientSideApplyMigration=true",
            "PrunePropagationPolicy=sideways",
            "PruneLast=yes",
            "Bogus=true",
            "PruneLast",
        ] {
            let err = options(&["CreateNamespace=true", item]).expect_err(item);
            assert!(err.contains(item), "{item}: {err}");
            assert!(err.contains("spec.syncPolicy.syncOptions"), "{err}");
        }
    }

    #[test]
    fn build_variables_are_expanded_and_unknown_ones_refused() {
        let mut app = Application::new("shop", Default::default());
        app.metadata.namespace = Some("kedge".into());
        app.spec.source.path = "apps/shop".into();
        let vars = build_variables(&app, "f913b6cbf58aa5ae5ca1f8a2b149477aebcbd9d8");
        assert_eq!(
            expand(
                "$ARGOCD_APP_NAME@${ARGOCD_APP_REVISION_SHORT} in $ARGOCD_APP_NAMESPACE:",
                &vars
            ),
            Ok("shop@f913b6c in kedge:".into())
        );
        assert_eq!(
            expand("${ARGOCD_APP_SOURCE_PATH}/$$HOME $ 5$", &vars),
            Ok("apps/shop/$HOME $ 5$".into())
        );
        let err = expand("v${KUBE_VERSION}", &vars).expect_err("unknown");
        assert!(err.contains("$KUBE_VERSION"), "{err}");
        assert!(expand("${ARGOCD_APP_NAME", &vars).is_err());
        let mut options = KustomizeOptions {
            common_annotations: [("rev".to_owned(), "$ARGOCD_APP_REVISION_SHORT_8".to_owned())]
                .into(),
            ..Default::default()
        };
        substitute_annotations(&mut options, &vars).expect("substituted");
        assert_eq!(options.common_annotations["rev"], "f913b6cb");
    }

    #[test]
    fn sources_are_paths_of_one_repository_at_one_revision() {
        let source = |repo: &str, revision: &str, path: &str| kedge_api::ApplicationSource {
            repo_url: repo.into(),
            target_revision: revision.into(),
            path: path.into(),
            ..Default::default()
        };
        let mut app = Application::new("a", Default::default());
        app.spec.sources = vec![
            source("https://git.test/r.git", "main", "a"),
            source("https://git.test/r.git", "main", "b"),
        ];
        assert!(check(&app).is_ok());
        let refused = |app: &Application| check(app).expect_err("refused").to_string();
        let mut other = app.clone();
        other.spec.sources[1].repo_url = "https://git.test/other.git".into();
        assert!(refused(&other).contains("spec.sources[1]"));
        let mut other = app.clone();
        other.spec.sources[1].target_revision = "v2".into();
        assert!(refused(&other).contains("one revision"));
        // A ref source that also renders a path.
        let mut other = app.clone();
        other.spec.sources[1].ref_ = Some("values".into());
        assert!(refused(&other).contains("spec.sources[1] has ref \"values\" and also renders"));
        // A chart beside other content.
        let mut other = app.clone();
        other.spec.sources[0].chart = Some("shop".into());
        assert!(refused(&other).contains("combines a chart with other sources"));
        let mut other = app;
        other.spec.source = source("https://git.test/r.git", "main", "c");
        assert!(refused(&other).contains("both set"));
    }

    #[test]
    fn a_chart_takes_value_files_from_ref_sources() {
        let app: Application = serde_json::from_value(serde_json::json!({
            "apiVersion": "kedge.dev/v1alpha1", "kind": "Application",
            "metadata": {"name": "shop"},
            "spec": {"sources": [
                {"repoURL": "https://charts.test", "chart": "shop", "targetRevision": "1.x",
                 "helm": {"valueFiles": ["$values/envs/prod.yaml", "values-extra.yaml"]}},
                {"repoURL": "https://git.test/config.git", "targetRevision": "main", "ref": "values"}
            ]}
        }))
        .expect("application");
        assert!(check(&app).is_ok(), "{:?}", check(&app).err());
        let refused = |app: &Application| check(app).expect_err("refused").to_string();
        let mut other = app.clone();
        if let Some(h) = other.spec.sources[0].helm.as_mut() {
            h.value_files[0] = "$config/envs/prod.yaml".into();
        }
        assert!(refused(&other).contains("names no source of spec.sources with ref \"config\""));
        let mut other = app.clone();
        other.spec.sources.truncate(1);
        other.spec.sources.push(other.spec.sources[0].clone());
        assert!(refused(&other).contains("combines a chart with other sources"));
        let mut other = app.clone();
        other.spec.sources.remove(0);
        assert!(refused(&other).contains("only ref sources"));
        let mut other = app;
        other.spec.sources[1].ref_ = Some("bad name".into());
        assert!(refused(&other).contains("must be a name"));
    }

    #[test]
    fn kustomize_fields_become_render_options_or_are_refused() {
        let k: KustomizeSource = serde_json::from_value(serde_json::json!({
            "images": ["web:2"],
            "namePrefix": "staging-",
            "replicas": [{"name": "web", "count": "3"}, {"name": "db", "count": 1}],
            "patches": [{"path": "p.yaml", "target": {"kind": "Deployment", "labelSelector": "a=b"}}],
        }))
        .expect("kustomize");
        let o = kustomize_options(&k).expect("options");
        assert_eq!(o.replicas, [("web".to_owned(), 3), ("db".to_owned(), 1)]);
        assert_eq!(o.patches[0].target["labelSelector"], "a=b");
        assert_eq!(o.patches[0].path.as_deref(), Some("p.yaml"));
        for (bad, name) in [
            (serde_json::json!({"version": "v5"}), "version"),
            (serde_json::json!({"kubeVersion": "1.30"}), "kubeVersion"),
            (
                serde_json::json!({"replicas": [{"name": "w", "count": "many"}]}),
                "replicas[0].count",
            ),
        ] {
            let k: KustomizeSource = serde_json::from_value(bad).expect("kustomize");
            let err = kustomize_options(&k).expect_err(name);
            assert!(err.contains(name), "{err}");
        }
        let mut app = Application::new("a", Default::default());
        app.spec.source.chart = Some("shop".into());
        app.spec.source.kustomize = Some(Box::new(KustomizeSource {
            name_prefix: Some("x-".into()),
            ..Default::default()
        }));
        assert!(check(&app).is_err());
        app.spec.source.kustomize = Some(Box::default());
        assert!(
            check(&app).is_ok(),
            "an empty kustomize block asks for nothing"
        );
        app.spec.source.chart = None;
        app.spec.source.kustomize = Some(Box::new(KustomizeSource {
            name_prefix: Some("x-".into()),
            ..Default::default()
        }));
        app.spec.source.helm = Some(Box::new(kedge_api::HelmSource {
            release_name: Some("r".into()),
            ..Default::default()
        }));
        let err = check(&app).expect_err("both").to_string();
        assert!(err.contains("both kustomize and helm"), "{err}");
    }
}
