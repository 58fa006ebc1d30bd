//! The `ApplicationSet` custom resource: Argo CD's ApplicationSet spec (same field names), producing Kedge
//! `Application`s from generators (list, clusters, Git, matrix, merge) and a template.
//!
//! The template's `spec` is kept as free-form JSON: it holds `{{...}}` expressions that only become an
//! `ApplicationSpec` once rendered; the generated Applications are validated then.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Condition;

/// A set of Applications produced from generators' parameters and a template, as Argo CD's ApplicationSet.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kedge.dev",
    version = "v1alpha1",
    kind = "ApplicationSet",
    plural = "applicationsets",
    shortname = "appset",
    shortname = "appsets",
    namespaced,
    status = "ApplicationSetStatus",
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplicationSetSpec {
    /// Render the template with Go's text/template (`{{.path.basename}}`) instead of plain `{{param}}`
    /// substitution.
    #[serde(default)]
    pub go_template: bool,
    /// Options of the Go template engine; only `missingkey=error` (and its opposites `missingkey=default`,
    /// `missingkey=zero`, `missingkey=invalid`) are known.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub go_template_options: Vec<String>,
    /// Where the parameters come from: one Application per parameter set of each generator.
    #[serde(default)]
    pub generators: Vec<ApplicationSetGenerator>,
    /// The Application each parameter set is rendered into.
    #[serde(default)]
    pub template: ApplicationSetTemplate,
    /// A Go template (with `goTemplate: true`) rendering YAML or JSON that is merged over each rendered
    /// Application, for fields that are not strings (e.g. `automated` only for some parameter sets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_patch: Option<String>,
    /// What the controller may do to the Applications it generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_policy: Option<ApplicationSetSyncPolicy>,
    /// Progressive syncs (Argo CD's `RollingSync`): typed, not acted on yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<ApplicationSetStrategy>,
    /// Argo CD field, refused: not implemented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::application::free_form_object")]
    pub preserved_fields: Option<serde_json::Value>,
    /// Argo CD field, refused: not implemented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::application::free_form_object")]
    pub ignore_application_differences: Option<serde_json::Value>,
    /// Argo CD's switch for selectors on nested generators; they always apply in Kedge, so only `true` (or unset)
    /// is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply_nested_selectors: Option<bool>,
}

/// One generator: exactly one of its kinds, optionally filtered by `selector`. At the top of `spec.generators`
/// a `matrix` or `merge` is typed ([`ApplicationSetGenerator`]); inside one it is kept as JSON
/// ([`NestedGenerator`]), as Argo CD does, read by the generator library and nesting no further.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Generator<Matrix, Merge> {
    /// Parameter sets written out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list: Option<ListGenerator>,
    /// One parameter set per registered Cluster (and the local cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clusters: Option<ClusterGenerator>,
    /// Parameter sets from the directories or files of a Git repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitGenerator>,
    /// The combinations of two generators' parameter sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matrix: Option<Matrix>,
    /// The first generator's parameter sets, overridden by those of the others sharing the `mergeKeys`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge: Option<Merge>,
    /// Keeps only the parameter sets whose (flattened) parameters match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Argo CD generator, refused: not implemented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scm_provider: Option<FreeForm>,
    /// Argo CD generator, refused: not implemented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<FreeForm>,
    /// Argo CD generator, refused: not implemented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_decision_resource: Option<FreeForm>,
    /// Argo CD generator, refused: not implemented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<FreeForm>,
}

/// A generator of `spec.generators`.
pub type ApplicationSetGenerator = Generator<MatrixGenerator, MergeGenerator>;

/// A generator inside `matrix` or `merge`, whose own `matrix` or `merge` is kept as JSON.
pub type NestedGenerator = Generator<FreeForm, FreeForm>;

/// Any JSON object, kept by the API server as written (`x-kubernetes-preserve-unknown-fields`).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(transparent)]
pub struct FreeForm(pub serde_json::Value);

impl JsonSchema for FreeForm {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "FreeForm".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        crate::application::free_form_object(generator)
    }
}

/// The template of the generated Applications: metadata and a spec holding `{{...}}` expressions.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplicationSetTemplate {
    /// Name, namespace, labels, annotations and finalizers of each Application.
    #[serde(default)]
    pub metadata: TemplateMeta,
    /// The Application spec (Argo CD-shaped), validated once rendered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::application::free_form_object")]
    pub spec: Option<serde_json::Value>,
}

/// The metadata of a template.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateMeta {
    /// The Application's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The Application's namespace (default: the ApplicationSet's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Finalizers (e.g. `kedge.dev/resources-finalizer`; Argo CD's `resources-finalizer.argocd.argoproj.io` too).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
}

/// Parameter sets written in the ApplicationSet.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListGenerator {
    /// One object per parameter set.
    #[serde(default)]
    #[schemars(schema_with = "free_form_list")]
    pub elements: Vec<serde_json::Value>,
    /// A YAML (or JSON) list of objects, added after `elements`; usually a template's result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elements_yaml: Option<String>,
    /// A template overriding the ApplicationSet's for these parameter sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<ApplicationSetTemplate>,
}

/// One parameter set per cluster matching `selector`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterGenerator {
    /// Labels the Cluster must have; without one, every registered Cluster plus the local cluster (`in-cluster`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Extra parameters `values.<key>`, which may use the cluster's parameters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, String>,
    /// A template overriding the ApplicationSet's for these parameter sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<ApplicationSetTemplate>,
    /// Argo CD field, refused: not implemented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flat_list: Option<bool>,
}

/// Parameter sets from a Git repository: one per matching directory, or per object of the matching files.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GitGenerator {
    /// The repository.
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    /// Branch, tag or commit (default `HEAD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Directory globs (`*` within one path segment, `**` across them); `exclude: true` removes matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub directories: Vec<GitPathGlob>,
    /// File globs; each JSON or YAML file gives one parameter set (or one per element of a top-level list).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<GitPathGlob>,
    /// Prefix of the path parameters (`<prefix>.path`, ...), to combine two Git generators in a matrix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_param_prefix: Option<String>,
    /// Extra parameters `values.<key>`, which may use the generator's parameters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, String>,
    /// How often the controller looks at the repository again (default: 180 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requeue_after_seconds: Option<u64>,
    /// A template overriding the ApplicationSet's for these parameter sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<ApplicationSetTemplate>,
}

/// A path glob of a Git generator.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GitPathGlob {
    /// The glob, relative to the repository root.
    pub path: String,
    /// Removes the paths it matches instead of adding them.
    #[serde(default)]
    pub exclude: bool,
}

/// Every combination of two generators' parameter sets.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MatrixGenerator {
    /// Exactly two generators; the second may use the first's parameters.
    pub generators: Vec<NestedGenerator>,
    /// A template overriding the ApplicationSet's for these parameter sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<ApplicationSetTemplate>,
}

/// The first generator's parameter sets, each overridden by the parameter sets of the other generators that have
/// the same values for `mergeKeys`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MergeGenerator {
    /// The generators, the first one the base.
    pub generators: Vec<NestedGenerator>,
    /// The parameters that pair parameter sets.
    pub merge_keys: Vec<String>,
    /// A template overriding the ApplicationSet's for these parameter sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<ApplicationSetTemplate>,
}

/// A Kubernetes label selector.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    /// Labels that must have these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Requirements: `In`, `NotIn`, `Exists`, `DoesNotExist`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One requirement of a [`LabelSelector`].
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    /// The label.
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: String,
    /// The values for `In` and `NotIn`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// What the controller may do to the Applications it generated.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplicationSetSyncPolicy {
    /// Leave the deployed resources in place when the ApplicationSet (hence its Applications) is deleted.
    #[serde(default)]
    pub preserve_resources_on_deletion: bool,
    /// Which changes the controller makes to generated Applications (default: `sync`, all of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applications_sync: Option<ApplicationsSync>,
}

/// Which changes the controller makes to the Applications of a set.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ApplicationsSync {
    /// Create missing Applications only.
    #[serde(rename = "create-only")]
    CreateOnly,
    /// Create and update, never delete.
    #[serde(rename = "create-update")]
    CreateUpdate,
    /// Create and delete, never update.
    #[serde(rename = "create-delete")]
    CreateDelete,
    /// Create, update and delete.
    #[serde(rename = "sync")]
    Sync,
}

/// How a set's Applications take a new revision: all at once, or step by step (`RollingSync`).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplicationSetStrategy {
    /// `AllAtOnce` or `RollingSync`.
    #[serde(rename = "type", default)]
    pub type_: String,
    /// The steps of a `RollingSync`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_sync: Option<RollingSync>,
}

/// The steps of a rolling sync.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RollingSync {
    /// Steps in order.
    #[serde(default)]
    pub steps: Vec<RollingSyncStep>,
}

/// One step of a rolling sync: the Applications whose labels match, at most `maxUpdate` at a time.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RollingSyncStep {
    /// Label requirements on the Applications.
    #[serde(default)]
    pub match_expressions: Vec<LabelSelectorRequirement>,
    /// How many (or what percentage, `"25%"`) at a time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::application::int_or_string")]
    pub max_update: Option<serde_json::Value>,
}

/// What the controller last saw of a set.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSetStatus {
    /// Conditions (`ErrorOccurred`, `ParametersGenerated`, `ResourcesUpToDate`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The Applications it generated, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub applications: Vec<String>,
    /// With a `RollingSync` strategy: the step of each Application and where it stands (Argo CD's field).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub application_status: Vec<ApplicationSetApplicationStatus>,
}

/// Where one Application of a set stands in its rollout.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSetApplicationStatus {
    /// The Application's name.
    pub application: String,
    /// `Waiting`, `Progressing`, `Healthy` or `Degraded`.
    pub status: String,
    /// Why it waits, or what it does.
    #[serde(default)]
    pub message: String,
    /// Its step, from 1 (empty when no step selects it).
    #[serde(default)]
    pub step: String,
    /// The revision it may sync.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_revisions: Vec<String>,
    /// When `status` last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

/// Annotation the set controller puts on the Applications of a `RollingSync` set: the set's name. Automated syncs
/// (and self-heal) of such an Application run only for the revision in [`ROLLOUT_RELEASE_ANNOTATION`].
pub const ROLLOUT_ANNOTATION: &str = "kedge.dev/rollout";
/// Annotation the set controller puts on an Application of a `RollingSync` set: the revision its rollout step
/// released it for.
pub const ROLLOUT_RELEASE_ANNOTATION: &str = "kedge.dev/rollout-release";
/// Annotation the set controller puts on an Application of a `RollingSync` set: why it waits.
pub const ROLLOUT_WAIT_ANNOTATION: &str = "kedge.dev/rollout-wait";
/// Annotation of a set: `name@revision` pairs, comma-separated, of Degraded Applications the rollout passes
/// (`kedge appset rollout NAME --resume` writes it, `--restart` removes it).
pub const ROLLOUT_SKIP_ANNOTATION: &str = "kedge.dev/rollout-skip";

fn free_form_list(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "items": { "type": "object", "x-kubernetes-preserve-unknown-fields": true }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn the_crd_keeps_templates_and_refused_generators_free_form() {
        let crd = serde_json::to_value(ApplicationSet::crd()).expect("crd");
        assert_eq!(crd["metadata"]["name"], "applicationsets.kedge.dev");
        assert_eq!(crd["spec"]["scope"], "Namespaced");
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
        // `{{...}}` in the template spec only becomes an ApplicationSpec once rendered.
        assert_eq!(
            spec["template"]["properties"]["spec"]["x-kubernetes-preserve-unknown-fields"],
            true
        );
        let generator = &spec["generators"]["items"]["properties"];
        // Kept by the API server, so that the controller can refuse them by name instead of never seeing them.
        for refused in [
            "scmProvider",
            "pullRequest",
            "clusterDecisionResource",
            "plugin",
        ] {
            assert_eq!(
                generator[refused]["x-kubernetes-preserve-unknown-fields"], true,
                "{refused}"
            );
        }
        let nested = &generator["matrix"]["properties"]["generators"]["items"]["properties"];
        assert_eq!(
            nested["matrix"]["x-kubernetes-preserve-unknown-fields"],
            true
        );
        assert_eq!(
            spec["syncPolicy"]["properties"]["applicationsSync"]["enum"],
            serde_json::json!(["create-only", "create-update", "create-delete", "sync"])
        );
    }

    #[test]
    fn unknown_fields_are_refused_with_their_name() {
        let err = serde_json::from_value::<ApplicationSetSpec>(serde_json::json!({
            "generators": [{"list": {"elements": [], "elementz": []}}]
        }))
        .expect_err("unknown field");
        assert!(
            err.to_string().contains("unknown field `elementz`"),
            "{err}"
        );
    }
}
