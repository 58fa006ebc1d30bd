//! `Application` spec and status types.

use std::collections::BTreeMap;

use compact_str::CompactString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What to deploy (a path of a Git repository at a revision), where, and how to keep it in sync.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kedge.dev",
    version = "v1alpha1",
    kind = "Application",
    plural = "applications",
    shortname = "app",
    shortname = "apps",
    namespaced,
    status = "ApplicationStatus",
    printcolumn = r#"{"name":"Sync","type":"string","jsonPath":".status.sync.status"}"#,
    printcolumn = r#"{"name":"Health","type":"string","jsonPath":".status.health.status"}"#,
    printcolumn = r#"{"name":"Revision","type":"string","jsonPath":".status.sync.shortRevision"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSpec {
    /// Where the manifests come from.
    #[serde(default, skip_serializing_if = "ApplicationSource::is_unset")]
    #[schemars(transform = no_default)]
    pub source: ApplicationSource,
    /// Several sources combined into one application (Argo CD 2.6+), instead of `source`: paths of one Git
    /// repository at one revision, or one Helm chart taking value files (`$ref/path`) from Git sources named by
    /// `ref`. Other combinations are refused and nothing is applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<ApplicationSource>,
    /// Where they are deployed.
    #[serde(default)]
    pub destination: ApplicationDestination,
    /// The project the application belongs to (a `Project` in Kedge's namespace), as in Argo CD: it bounds the
    /// repositories, destinations and kinds the application may use. `default` allows everything while no Project of
    /// that name exists; another project that does not exist refuses the application.
    #[serde(default = "default_project")]
    #[schemars(default = "default_project")]
    pub project: String,
    /// How many deployments `status.history` keeps (rollback targets), as Argo CD's `revisionHistoryLimit`;
    /// default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub revision_history_limit: Option<i64>,
    /// Notes and links for people (`name`, `value`), shown by `kedge app get`, as Argo CD's `info`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub info: Vec<Info>,
    /// When and how Kedge syncs; without `automated`, syncs happen only when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_policy: Option<SyncPolicy>,
    /// Fields Kedge leaves alone: not compared and not applied (e.g. replicas owned by an autoscaler).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_differences: Vec<ResourceIgnoreDifferences>,
    /// Custom health rules as CEL expressions, per group and kind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health_checks: Vec<HealthCheck>,
    /// Stops all syncing (automated and self-heal) until set back to false; status keeps being reported.
    #[serde(default)]
    pub suspend: bool,
    /// Decrypts SOPS-encrypted manifests before they are compared and applied, as Flux's `Kustomization.spec.decryption`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decryption: Option<Box<Decryption>>,
    /// Applications this one waits for, as Flux's `Kustomization.spec.dependsOn`: automated syncs (and self-heal)
    /// start only when each is Synced and Healthy with no operation running; until then the application reports
    /// `WaitingForDependencies`. A requested sync does not wait. A cycle refuses the syncs of its applications,
    /// naming it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<AppDependency>,
    /// Promotion from another application (the stage before this one): this application deploys, from its own
    /// path, the commit its upstream has run Synced and Healthy for at least `soak`, once approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<Box<Promotion>>,
}

/// Where an application's revisions come from when it is a stage of a promotion chain.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Promotion {
    /// The application of the stage before (default namespace: this application's).
    pub from: AppDependency,
    /// How long the upstream must have run a revision Synced and Healthy before it is a candidate here, e.g. `10m`,
    /// `1h30m`, `45s` (default: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak: Option<String>,
    /// `Auto` (the default): a candidate is promoted when it has soaked; `Manual`: it waits in
    /// `status.promotion.pending` until `kedge app promote` approves it.
    #[serde(default)]
    pub approval: PromotionApproval,
}

/// Who promotes a candidate.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PromotionApproval {
    /// The controller, once the candidate has soaked.
    #[default]
    Auto,
    /// A person, with `kedge app promote`.
    Manual,
}

/// Where an application stands in its promotion chain.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PromotionStatus {
    /// The revision promoted here: what this application deploys (none before the first promotion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// A candidate waiting for approval (`approval: Manual`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<String>,
    /// Why the next revision waits: soak left, approval, the upstream not healthy.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub waiting: String,
    /// The promotions made here, newest last (at most 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<PromotionRecord>,
}

/// One promotion.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PromotionRecord {
    /// The revision promoted.
    pub revision: String,
    /// The upstream application (`namespace/name`), or who chose the revision by hand.
    pub from: String,
    /// Who approved: `auto`, or the user.
    pub approved_by: String,
    /// When (RFC 3339).
    pub at: String,
}

/// Annotation asking the controller to promote (JSON [`PromoteRequest`]), written by `kedge app promote`.
pub const PROMOTE_ANNOTATION: &str = "kedge.dev/promote";

/// A person's promotion: the pending candidate, or a revision of their choice.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PromoteRequest {
    /// The revision to promote; absent: the pending candidate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Who asked.
    pub by: String,
    /// When (RFC 3339); also makes repeated requests distinct.
    pub at: String,
}

/// An application another one waits for.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct AppDependency {
    /// Its name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Its namespace (default: that of the application that waits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// A CEL expression that says when it is ready, over `dep` (that Application) and `self` (the one that waits),
    /// e.g. `dep.status.health.status == 'Healthy'`; it replaces the built-in check (Synced, Healthy, no operation
    /// running), as Flux's `readyExpr`. Only in `spec.dependsOn`.
    #[serde(rename = "readyExpr", default, skip_serializing_if = "Option::is_none")]
    pub ready_expr: Option<String>,
}

/// Decryption of SOPS-encrypted manifests.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Decryption {
    /// The format: `sops` (the only one).
    #[serde(default = "default_decryption_provider")]
    #[schemars(default = "default_decryption_provider")]
    pub provider: String,
    /// A Secret in the application's namespace holding age secret keys (`AGE-SECRET-KEY-1...`), in values whose
    /// names end with `.agekey`.
    pub secret_ref: LocalSecretReference,
}

fn default_decryption_provider() -> String {
    "sops".to_owned()
}

/// A path in a Git repository at a revision.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSource {
    /// The repository URL (https://, http://, ssh://, git://, file://). Credentials come from Secrets, never the URL.
    #[schemars(length(min = 1))]
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    /// Branch, tag, commit SHA (full or short), `HEAD`, or a semver constraint over tags such as `>=1.2.0 <2`.
    #[serde(default = "default_revision")]
    #[schemars(default = "default_revision")]
    pub target_revision: String,
    /// The directory inside the repository, relative to its root.
    #[serde(default = "default_path")]
    #[schemars(default = "default_path")]
    pub path: String,
    /// Options for a plain directory of YAML/JSON files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<Box<DirectorySource>>,
    /// Options for a Kustomize directory (detected by its kustomization file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kustomize: Option<Box<KustomizeSource>>,
    /// The chart name in a Helm repository (`repoURL` is then an https:// Helm repository or an `oci://`
    /// registry path, and `targetRevision` a chart version or semver constraint). Unset for charts in Git,
    /// which are detected by the `Chart.yaml` in `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart: Option<String>,
    /// Options for a Helm chart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm: Option<Box<HelmSource>>,
    /// Render and apply only commits signed by a trusted key (OpenPGP or SSH), as Flux's `GitRepository.spec.verify`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<Box<VerifySource>>,
    /// The name a chart of `spec.sources` reads value files from this source by (`$name/path` in
    /// `helm.valueFiles`); such a source deploys nothing itself. Only in `spec.sources`.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub ref_: Option<String>,
}

impl ApplicationSpec {
    /// The Git source the repository poller, webhooks and revision resolution follow: `spec.source`, or the first
    /// Git source of `spec.sources` (paths of one repository at one revision, or the `ref` source a chart reads its
    /// value files from).
    pub fn git_source(&self) -> &ApplicationSource {
        match self.sources.first() {
            Some(first) if self.source.is_unset() => self
                .sources
                .iter()
                .find(|s| s.chart.as_deref().is_none_or(str::is_empty))
                .unwrap_or(first),
            _ => &self.source,
        }
    }

    /// The source people see first: `spec.source`, or the first of `spec.sources` (a chart before its value
    /// sources).
    pub fn primary_source(&self) -> &ApplicationSource {
        match self.sources.first() {
            Some(first) if self.source.is_unset() => self
                .sources
                .iter()
                .find(|s| s.ref_.is_none())
                .unwrap_or(first),
            _ => &self.source,
        }
    }

    /// The cluster the application deploys to, as people name it: `destination.name`, else `destination.server`,
    /// else `in-cluster`.
    pub fn cluster(&self) -> &str {
        let d = &self.destination;
        d.name
            .as_deref()
            .filter(|n| !n.trim().is_empty())
            .or(d.server.as_deref().filter(|s| !s.trim().is_empty()))
            .unwrap_or(crate::IN_CLUSTER_NAME)
    }

    /// `destination.name`, trimmed; `None` when empty.
    pub fn destination_name(&self) -> Option<&str> {
        self.destination
            .name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
    }

    /// `destination.server` as the controller compares it ([`crate::normalize_server`]); `None` when empty.
    pub fn destination_server(&self) -> Option<&str> {
        self.destination
            .server
            .as_deref()
            .map(crate::normalize_server)
            .filter(|s| !s.is_empty())
    }

    /// Whether the application deploys to the cluster Kedge runs in: it names no cluster, or names it by
    /// `in-cluster` or `https://kubernetes.default.svc`.
    pub fn is_in_cluster(&self) -> bool {
        self.destination_name()
            .is_none_or(|n| n == crate::IN_CLUSTER_NAME)
            && self
                .destination_server()
                .is_none_or(|s| s == crate::IN_CLUSTER_SERVER)
    }

    /// Every source: `spec.source`, or each of `spec.sources`.
    pub fn all_sources(&self) -> Vec<&ApplicationSource> {
        if self.source.is_unset() && !self.sources.is_empty() {
            self.sources.iter().collect()
        } else {
            vec![&self.source]
        }
    }

    /// The paths of the application's sources in their repository.
    pub fn source_paths(&self) -> impl Iterator<Item = &str> {
        let many = self.source.is_unset() && !self.sources.is_empty();
        let single = (!many).then_some(self.source.path.as_str());
        single.into_iter().chain(
            self.sources
                .iter()
                .filter(move |_| many)
                .map(|s| s.path.as_str()),
        )
    }
}

impl ApplicationSource {
    /// Whether nothing is set: `spec.source` was left out (an application of `spec.sources`).
    pub fn is_unset(&self) -> bool {
        *self == ApplicationSource::default()
    }
}

/// Commit signature verification.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifySource {
    /// What must be signed: `HEAD`, the commit the revision resolves to (the only mode so far).
    #[serde(default = "default_verify_mode")]
    #[schemars(default = "default_verify_mode")]
    pub mode: String,
    /// A Secret in the application's namespace whose every value is a trusted key: an armored OpenPGP public key
    /// block (`gpg --armor --export`), or SSH public keys one per line (`ssh-ed25519 AAAA... name`).
    pub secret_ref: LocalSecretReference,
}

fn default_project() -> String {
    "default".to_owned()
}

/// A note or link about an application, for people.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct Info {
    /// What it is, e.g. `Runbook`.
    pub name: String,
    /// The note or URL.
    pub value: String,
}

/// A Secret in the application's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct LocalSecretReference {
    /// The Secret's name.
    #[schemars(length(min = 1))]
    pub name: String,
}

fn default_verify_mode() -> String {
    "HEAD".to_owned()
}

fn default_revision() -> String {
    "HEAD".to_owned()
}

fn default_path() -> String {
    ".".to_owned()
}

/// Options for a plain directory source.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DirectorySource {
    /// Read subdirectories too.
    #[serde(default)]
    pub recurse: bool,
    /// Only files matching this glob (or `{a,b}` list) are read; empty means all.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub include: String,
    /// Files matching this glob (or `{a,b}` list) are skipped.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub exclude: String,
}

/// Options for a Kustomize source, applied as Argo CD applies them: to a copy of the application's kustomization
/// (as `kustomize edit` would change it) before it is built. Set on a path that is not a kustomization, they are
/// refused.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KustomizeSource {
    /// Images to override, as `kustomize edit set image` takes them: `name=newName:tag`, `name:tag`,
    /// `name@digest`, `name=newName`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
    /// The prefix of every object's name (replaces the kustomization's own `namePrefix`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_prefix: Option<String>,
    /// The suffix of every object's name (replaces the kustomization's own `nameSuffix`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_suffix: Option<String>,
    /// The namespace of every namespaced object (replaces the kustomization's own `namespace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Labels added to every object (and to selectors, unless `labelWithoutSelector`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub common_labels: BTreeMap<String, String>,
    /// Override labels the kustomization's own `commonLabels` sets; without it such a label is an error.
    #[serde(default)]
    pub force_common_labels: bool,
    /// Add `commonLabels` to objects only, not to selectors.
    #[serde(default)]
    pub label_without_selector: bool,
    /// With `labelWithoutSelector`, add the labels to pod templates too.
    #[serde(default)]
    pub label_include_templates: bool,
    /// Annotations added to every object.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub common_annotations: BTreeMap<String, String>,
    /// Override annotations the kustomization's own `commonAnnotations` sets; without it such an annotation is an
    /// error.
    #[serde(default)]
    pub force_common_annotations: bool,
    /// Substitute Argo CD's build variables (`$ARGOCD_APP_NAME`, `${ARGOCD_APP_REVISION_SHORT}`, ...; `$$` for a
    /// `$`) in the values of `commonAnnotations`; a variable Kedge does not provide is refused.
    #[serde(default)]
    pub common_annotations_envsubst: bool,
    /// Replica counts by object name, as `kustomize edit set replicas`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<KustomizeReplica>,
    /// Patches added to the kustomization's `patches`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<KustomizeSourcePatch>,
    /// Components added to the kustomization's `components`, relative to the application's path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<String>,
    /// Leave out `components` that do not exist instead of failing on them.
    #[serde(default)]
    pub ignore_missing_components: bool,
    /// A kustomize version to build with (not supported: refused when set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The Kubernetes version Helm charts of the kustomization see (not supported: refused when set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_version: Option<String>,
    /// API versions Helm charts of the kustomization see (not supported: refused when set).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_versions: Vec<String>,
}

/// A replica count for the objects of one name.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KustomizeReplica {
    /// The object's name (before any prefix or suffix).
    #[schemars(length(min = 1))]
    pub name: String,
    /// The count: a number, or a string holding one.
    #[schemars(schema_with = "int_or_string")]
    pub count: serde_json::Value,
}

pub(crate) fn int_or_string(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "x-kubernetes-int-or-string": true
    })
}

/// A kustomize patch of `spec.source.kustomize`: inline or a file, and the objects it applies to.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KustomizeSourcePatch {
    /// The patch: a partial object (strategic merge) or a JSON 6902 operation list, as YAML.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
    /// A file holding the patch, relative to the application's path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Which objects it applies to; default: the objects the patch names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<KustomizePatchTarget>,
    /// kustomize's patch options (`allowNameChange`, `allowKindChange`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, bool>,
}

/// Options for a Helm chart, rendered with `helm template`.
///
/// Values are merged in this order, later wins: `valueFiles`, `values`, `valuesObject`, `valuesFrom`,
/// `parameters`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HelmSource {
    /// The release name; default: the application's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_name: Option<String>,
    /// Values files, relative to the chart directory (for a chart in Git they may reach elsewhere in the
    /// repository, never outside it; for a packaged chart they are files of the chart).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub value_files: Vec<String>,
    /// Skip `valueFiles` that do not exist instead of failing on them.
    #[serde(default)]
    pub ignore_missing_value_files: bool,
    /// Values as a YAML string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<String>,
    /// Values as an object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub values_object: Option<serde_json::Value>,
    /// Single values, as `helm --set` (or `--set-string` with `forceString`) takes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<HelmParameter>,
    /// Values read from Secrets or ConfigMaps in the application's namespace; never printed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values_from: Vec<HelmValuesReference>,
    /// Leave out the chart's `crds/` directory.
    #[serde(default)]
    pub skip_crds: bool,
    /// The Kubernetes version templates see (`Capabilities.KubeVersion`); default: the destination cluster's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_version: Option<String>,
    /// API versions templates see (`Capabilities.APIVersions`), as `group/version` or `group/version/Kind`;
    /// default: the destination cluster's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_versions: Vec<String>,
    /// Changes applied to Helm's output before it is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_renderer: Option<HelmPostRenderer>,
}

/// Leaves a field's default out of the schema: an empty `source` (the default when only `sources` is given) would
/// break its own `minLength` rules, which the API server refuses in a CRD.
fn no_default(schema: &mut schemars::Schema) {
    if let Some(object) = schema.as_object_mut() {
        object.remove("default");
    }
}

pub(crate) fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// One value set on the command line.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HelmParameter {
    /// The key, with Helm's dotted path syntax (`image.tag`, `list[0].name`).
    pub name: String,
    /// The value.
    #[serde(default)]
    pub value: String,
    /// Keep the value a string (`--set-string`) instead of letting Helm guess its type.
    #[serde(default)]
    pub force_string: bool,
}

/// The kind of object values are read from.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum HelmValuesKind {
    /// A Secret.
    #[default]
    Secret,
    /// A ConfigMap.
    ConfigMap,
}

/// A values document held by a Secret or ConfigMap of the application's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HelmValuesReference {
    /// Secret or ConfigMap.
    pub kind: HelmValuesKind,
    /// Its name.
    pub name: String,
    /// The key holding a YAML values document; default `values.yaml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Render without it when the object or key does not exist.
    #[serde(default)]
    pub optional: bool,
}

/// Changes applied to Helm's output.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HelmPostRenderer {
    /// Kustomize patches applied to the rendered objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kustomize: Option<KustomizePostRenderer>,
}

/// Kustomize patches for Helm's output.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KustomizePostRenderer {
    /// Strategic-merge or JSON 6902 patches, as kustomize's `patches` field takes them (inline only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<KustomizePatch>,
}

/// One inline kustomize patch and the objects it applies to.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KustomizePatch {
    /// The patch: a partial object (strategic merge) or a JSON 6902 operation list, as YAML.
    #[schemars(length(min = 1))]
    pub patch: String,
    /// Which objects it applies to; default: the objects the patch names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<KustomizePatchTarget>,
}

/// Selects the objects a kustomize patch applies to.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KustomizePatchTarget {
    /// API group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// API version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name (a regular expression, as kustomize reads it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// A label selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<String>,
    /// An annotation selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotation_selector: Option<String>,
}

/// Where an application is deployed.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationDestination {
    /// Namespace for namespaced objects that do not name one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The cluster's API server URL: `https://kubernetes.default.svc` (the cluster Kedge runs in) or the
    /// `spec.server` of a registered Cluster; another value is refused and nothing is applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The cluster's name: `in-cluster` (the cluster Kedge runs in) or a registered Cluster's name (`kedge cluster
    /// add`); another value is refused and nothing is applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// When and how an application is synced.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncPolicy {
    /// Sync automatically on every new revision; without it, only on request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automated: Option<AutomatedSync>,
    /// `Name=value` options as Argo CD documents them (`CreateNamespace=true`, `PruneLast=true`,
    /// `PrunePropagationPolicy=orphan`, ...). Names Argo CD does not know are refused by the schema; options Kedge
    /// does not implement make the application report `InvalidSpec` and nothing is applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "sync_options_schema")]
    pub sync_options: Vec<String>,
    /// Retries of a failed sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryStrategy>,
}

/// The application sync options Argo CD documents, by name.
pub const SYNC_OPTION_NAMES: [&str; 14] = [
    "Validate",
    "CreateNamespace",
    "PruneLast",
    "ApplyOutOfSyncOnly",
    "PrunePropagationPolicy",
    "Replace",
    "ServerSideApply",
    "FailOnSharedResource",
    "RespectIgnoreDifferences",
    "SkipDryRunOnMissingResource",
    "Force",
    "Prune",
    "Delete",
    "ClientSideApplyMigration",
];

fn sync_options_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let pattern = format!(r"^\s*({})\s*=.*$", SYNC_OPTION_NAMES.join("|"));
    schemars::json_schema!({
        "type": "array",
        "items": { "type": "string", "pattern": pattern }
    })
}

impl SyncPolicy {
    /// The automated sync settings when automated sync is on (`automated` set and not `enabled: false`).
    pub fn automation(&self) -> Option<&AutomatedSync> {
        self.automated.as_ref().filter(|a| a.enabled != Some(false))
    }

    /// The value of a `Name=value` sync option, if set.
    pub fn option(&self, name: &str) -> Option<&str> {
        self.sync_options.iter().find_map(|o| {
            let (k, v) = o.split_once('=')?;
            (k.trim() == name).then(|| v.trim())
        })
    }

    /// Whether a boolean sync option is set to `true`.
    pub fn flag(&self, name: &str) -> bool {
        self.option(name)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

/// Automated sync settings.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutomatedSync {
    /// Delete objects that were removed from Git.
    #[serde(default)]
    pub prune: bool,
    /// Revert changes made to live objects outside Git.
    #[serde(default)]
    pub self_heal: bool,
    /// Allow a sync whose desired set is empty to prune everything.
    #[serde(default)]
    pub allow_empty: bool,
    /// `false` turns automated sync off while keeping its settings, as Argo CD's `automated.enabled`; default on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// Retry of failed syncs with exponential backoff.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryStrategy {
    /// Maximum number of retries; a negative value retries forever.
    #[serde(default = "default_retry_limit")]
    #[schemars(default = "default_retry_limit")]
    pub limit: i64,
    /// How long to wait between retries.
    #[serde(default)]
    pub backoff: Backoff,
}

fn default_retry_limit() -> i64 {
    5
}

/// Exponential backoff parameters.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Backoff {
    /// The first wait, e.g. `5s`.
    #[serde(default = "default_backoff_duration")]
    #[schemars(default = "default_backoff_duration")]
    pub duration: String,
    /// Multiplier applied after each retry.
    #[serde(default = "default_backoff_factor")]
    #[schemars(default = "default_backoff_factor", range(min = 1))]
    pub factor: i64,
    /// The longest wait, e.g. `3m`.
    #[serde(default = "default_backoff_max")]
    #[schemars(default = "default_backoff_max")]
    pub max_duration: String,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            duration: default_backoff_duration(),
            factor: default_backoff_factor(),
            max_duration: default_backoff_max(),
        }
    }
}

fn default_backoff_duration() -> String {
    "5s".to_owned()
}
fn default_backoff_factor() -> i64 {
    2
}
fn default_backoff_max() -> String {
    "3m".to_owned()
}

/// Fields to ignore for matching objects.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceIgnoreDifferences {
    /// API group (empty for the core group).
    #[serde(default)]
    pub group: String,
    /// Kind.
    pub kind: String,
    /// Only the object with this name; all when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Only objects in this namespace; all when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// JSON pointers (RFC 6901) of fields to ignore, e.g. `/spec/replicas`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub json_pointers: Vec<String>,
    /// Fields owned by these field managers are ignored, e.g. `kube-controller-manager`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managed_fields_managers: Vec<String>,
}

/// A custom health rule: a CEL expression evaluated with the live object bound to `object`.
///
/// The expression returns a state name (`"Healthy"`, `"Progressing"`, `"Degraded"`, ...), a map
/// `{"status": "...", "message": "..."}`, or a bool (`true` is Healthy, `false` Progressing).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    /// API group (empty for the core group, `*` for any).
    #[serde(default)]
    pub group: String,
    /// Kind (`*` for any).
    pub kind: String,
    /// The CEL expression.
    #[schemars(length(min = 1))]
    pub expression: String,
}

/// Observed state of an application.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Whether the live state equals Git.
    #[serde(default)]
    pub sync: SyncStatus,
    /// Aggregated health (the worst of the objects).
    #[serde(default)]
    pub health: HealthStatus,
    /// Ready, Reconciling, Stalled and others, as Kubernetes conventions describe.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The objects of the application with their sync and health state: all of them up to
    /// [`RESOURCES_LISTED`](crate::RESOURCES_LISTED); beyond, those out of sync or not healthy first, and
    /// `resourceSummary` counts them all. Set it with [`ApplicationStatus::set_resources`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ResourceStatus>,
    /// Counts of all objects by state, present when `resources` does not list them all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_summary: Option<crate::ResourceSummary>,
    /// Identities of the objects Kedge applied and owns (the prune set), while there are at most
    /// [`INVENTORY_INLINE`](crate::INVENTORY_INLINE); read it with [`ApplicationStatus::inventory_refs`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inventory: Vec<ObjectRef>,
    /// The inventory, compressed, when it is longer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compact_inventory: Option<crate::CompactInventory>,
    /// The last deployments, newest last (at most 10; repeated syncs of one revision are one entry).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
    /// The current or last operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_state: Option<OperationState>,
    /// When the application was last compared with Git and the cluster (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconciled_at: Option<String>,
    /// The controller replica that wrote this status: the one that reconciles the application (replicas share the
    /// applications, each reconciled by one of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconciled_by: Option<String>,
    /// With `spec.promotion`: the revision promoted here, the candidate waiting and why, the promotions made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<Box<PromotionStatus>>,
}

/// Sync state of an application.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatus {
    /// `Synced`, `OutOfSync` or `Unknown`.
    #[serde(default)]
    pub status: SyncCode,
    /// The commit SHA compared against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The first 7 characters of `revision`, for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_revision: Option<String>,
}

/// Whether live equals desired.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum SyncCode {
    /// Every object equals Git.
    Synced,
    /// At least one object differs or is missing.
    OutOfSync,
    /// Not compared yet, or the comparison failed.
    #[default]
    Unknown,
}

/// Aggregated or per-object health.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthStatus {
    /// The state.
    #[serde(default)]
    pub status: HealthCode,
    /// Why, when not healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Health states, from best to worst for aggregation purposes as ordered by [`HealthCode::severity`].
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum HealthCode {
    /// Running as intended.
    Healthy,
    /// Not healthy yet, but may become so.
    Progressing,
    /// Failed or unable to become healthy.
    Degraded,
    /// Paused or suspended on purpose.
    Suspended,
    /// Does not exist in the cluster.
    Missing,
    /// Health cannot be told.
    #[default]
    Unknown,
}

impl HealthCode {
    /// How bad a state is when aggregating (higher is worse), as Argo CD orders them.
    pub fn severity(self) -> u8 {
        match self {
            HealthCode::Healthy => 0,
            HealthCode::Suspended => 1,
            HealthCode::Progressing => 2,
            HealthCode::Missing => 3,
            HealthCode::Degraded => 4,
            HealthCode::Unknown => 5,
        }
    }
}

/// A status condition following Kubernetes API conventions.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, `Reconciling`, `Stalled`, `SourceError`, `RenderError`, `SyncError`, ...
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A CamelCase machine-readable reason.
    #[serde(default)]
    pub reason: String,
    /// A human-readable message.
    #[serde(default)]
    pub message: String,
    /// The generation this condition was set for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the status last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

/// The identity of a Kubernetes object.
// Its strings are `CompactString`s, kept inline up to 24 bytes (every kind, version and namespace, and most names):
// a status lists each object of its application up to three times, and the controller keeps every application's
// status in memory. They serialize, and their schema reads, exactly as `String`s.
#[derive(
    Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    /// API group (empty for core).
    #[serde(default)]
    pub group: CompactString,
    /// API version.
    #[serde(default)]
    pub version: CompactString,
    /// Kind.
    pub kind: CompactString,
    /// Namespace (empty for cluster-scoped objects).
    #[serde(default, skip_serializing_if = "CompactString::is_empty")]
    pub namespace: CompactString,
    /// Name.
    pub name: CompactString,
}

/// One object of an application with its state.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceStatus {
    /// Which object.
    #[serde(flatten)]
    pub object: ObjectRef,
    /// Its sync state.
    pub status: SyncCode,
    /// Its health.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthStatus>,
    /// Details: what differs and who changed it, or the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A deployment: a revision that was applied, with every attempt at it since.
///
/// Consecutive syncs of the same revision (retries of a failing sync, self-heal, a resumed operation) are one entry:
/// `attempts` counts them, `failures` the failed ones, and `lastError` keeps the newest failure, so that a revision
/// that keeps failing does not push the earlier deployments (the rollback targets) out of the history.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// Increasing id, used for rollback.
    pub id: i64,
    /// The commit SHA that was applied.
    pub revision: String,
    /// When the first sync of this entry finished (RFC 3339).
    pub deployed_at: String,
    /// When the newest sync of this entry finished (RFC 3339); absent when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt_at: Option<String>,
    /// Who started the newest sync: `automated`, `self-heal`, `retry`, `rollback`, or the user who asked.
    #[serde(default)]
    pub initiated_by: String,
    /// The outcome of the newest sync.
    #[serde(default)]
    pub result: HistoryResult,
    /// How many syncs of this revision, in a row, this entry stands for.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub attempts: u32,
    /// How many of them failed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failures: u32,
    /// The message of the newest failed sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Whether one of its syncs succeeded: the revision was deployed in full at least once.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deployed: bool,
}

impl HistoryEntry {
    /// Whether the revision was deployed in full at least once (a rollback target that once worked).
    pub fn was_deployed(&self) -> bool {
        self.deployed || self.result == HistoryResult::Succeeded
    }
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The outcome of a sync in the history.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum HistoryResult {
    /// Every object was applied (and pruned, and every hook passed).
    #[default]
    Succeeded,
    /// Something failed; see `lastError`.
    Failed,
}

impl HistoryResult {
    /// The name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
        }
    }
}

impl std::fmt::Display for HistoryResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state of the current or last operation: a requested sync or rollback, or a sync the controller started
/// (automated, self-heal, retry).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationState {
    /// The operation itself, so that another controller can resume it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<crate::Operation>,
    /// `Running`, `Terminating`, `Succeeded`, `Failed` or `Error`.
    pub phase: crate::OperationPhase,
    /// A summary; while Running, what it is doing or waiting for.
    #[serde(default)]
    pub message: String,
    /// When the operation started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When it finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// How many times it was resumed after the controller running it went away.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub resumed: u32,
    /// What the sync did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_result: Option<SyncResult>,
}

/// What a sync did, object by object.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncResult {
    /// The commit SHA applied.
    pub revision: String,
    /// Outcome per object: at most [`RESOURCES_LISTED`](crate::RESOURCES_LISTED), failures and changes first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ResourceResult>,
    /// How many outcomes `resources` leaves out (objects that were already as wanted go first).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub resources_omitted: u32,
    /// The Application's generation (its spec) the sync was made for: automated sync runs once per commit and
    /// spec, as Argo CD's does once per commit and parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
}

/// The outcome of one object in a sync.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceResult {
    /// Which object.
    #[serde(flatten)]
    pub object: ObjectRef,
    /// `Synced`, `Pruned`, `PruneSkipped`, `Failed`, ...
    pub status: CompactString,
    /// Details (absent when there are none, as for an object created or left unchanged).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// `PreSync`, `Sync`, `PostSync` or `SyncFail` for hooks; empty for ordinary objects.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hook_phase: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn automated_sync_can_be_kept_but_turned_off() {
        let policy: SyncPolicy = serde_json::from_value(
            serde_json::json!({"automated": {"prune": true, "enabled": false}}),
        )
        .expect("policy");
        assert!(policy.automation().is_none());
        let policy: SyncPolicy =
            serde_json::from_value(serde_json::json!({"automated": {"prune": true}}))
                .expect("policy");
        assert!(policy.automation().is_some_and(|a| a.prune));
    }

    #[test]
    fn object_refs_read_and_write_as_plain_strings_inline_or_not() {
        let long = "a-deployment-name-longer-than-twenty-four-bytes";
        let r: ObjectRef = serde_json::from_value(
            serde_json::json!({"version": "v1", "kind": "Deployment", "name": long}),
        )
        .expect("parses");
        assert_eq!((r.group.as_str(), r.namespace.as_str()), ("", ""));
        assert_eq!(r.name, long);
        assert_eq!(
            serde_json::to_value(&r).expect("serializes"),
            serde_json::json!({"group": "", "version": "v1", "kind": "Deployment", "name": long})
        );
        let schema = serde_json::to_value(schemars::schema_for!(ObjectRef)).expect("schema");
        for field in ["group", "version", "kind", "namespace", "name"] {
            assert_eq!(
                schema["properties"][field]["type"], "string",
                "{field} in {schema}"
            );
        }
    }

    #[test]
    fn argo_shaped_manifest_parses_with_defaults() {
        let yaml = r#"
apiVersion: kedge.dev/v1alpha1
kind: Application
metadata: { name: guestbook, namespace: kedge }
spec:
  source: { repoURL: "https://example.test/repo.git", path: apps/guestbook }
  destination: { namespace: guestbook }
  syncPolicy:
    automated: { prune: true, selfHeal: true }
    syncOptions: [CreateNamespace=true]
    retry: { limit: 3 }
  ignoreDifferences: [ { group: apps, kind: Deployment, jsonPointers: [/spec/replicas] } ]
"#;
        let app: Application = serde_saphyr::from_str(yaml).expect("parses");
        assert_eq!(app.spec.source.target_revision, "HEAD");
        let policy = app.spec.sync_policy.expect("policy");
        assert!(policy.flag("CreateNamespace"));
        assert!(!policy.flag("PruneLast"));
        assert_eq!(policy.retry.expect("retry").backoff.factor, 2);
        assert_eq!(
            app.spec.ignore_differences[0].json_pointers,
            vec!["/spec/replicas"]
        );
    }

    #[test]
    fn crd_has_printer_columns_and_defaults() {
        let crd = Application::crd();
        let v = &crd.spec.versions[0];
        let cols: Vec<_> = v
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(cols, ["Sync", "Health", "Revision", "Age"]);
        let schema = serde_json::to_value(&v.schema).expect("schema");
        let rev = &schema["openAPIV3Schema"]["properties"]["spec"]["properties"]["source"]["properties"]
            ["targetRevision"];
        assert_eq!(rev["default"], "HEAD");
        assert!(
            v.subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
    }

    #[test]
    fn helm_fields_parse() {
        let yaml = r#"
apiVersion: kedge.dev/v1alpha1
kind: Application
metadata: { name: shop, namespace: kedge }
spec:
  source:
    repoURL: oci://registry.test/charts
    chart: shop
    targetRevision: ">=1.2.0 <2"
    helm:
      releaseName: shop
      valueFiles: [values-production.yaml]
      ignoreMissingValueFiles: true
      values: |
        replicaCount: 2
      valuesObject: { image: { tag: v2 } }
      parameters: [ { name: image.tag, value: "1.0", forceString: true } ]
      valuesFrom: [ { kind: Secret, name: shop-values, key: values.yaml } ]
      skipCrds: true
      postRenderer:
        kustomize:
          patches:
            - target: { kind: Deployment }
              patch: |
                - op: add
                  path: /metadata/labels/patched
                  value: "yes"
"#;
        let app: Application = serde_saphyr::from_str(yaml).expect("parses");
        let src = &app.spec.source;
        assert_eq!(src.chart.as_deref(), Some("shop"));
        let helm = src.helm.as_ref().expect("helm");
        assert_eq!(helm.value_files, ["values-production.yaml"]);
        assert!(helm.ignore_missing_value_files);
        assert_eq!(
            helm.values_object.as_ref().expect("object")["image"]["tag"],
            "v2"
        );
        assert!(helm.parameters[0].force_string);
        assert_eq!(helm.values_from[0].kind, HelmValuesKind::Secret);
        assert!(helm.skip_crds);
        let patches = &helm
            .post_renderer
            .as_ref()
            .expect("post")
            .kustomize
            .as_ref()
            .expect("k")
            .patches;
        assert_eq!(
            patches[0].target.as_ref().expect("t").kind.as_deref(),
            Some("Deployment")
        );
        let crd = serde_json::to_value(Application::crd()).expect("crd");
        let helm_schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["source"]["properties"]["helm"]["properties"];
        assert_eq!(
            helm_schema["valuesObject"]["x-kubernetes-preserve-unknown-fields"],
            true
        );
        assert_eq!(helm_schema["ignoreMissingValueFiles"]["type"], "boolean");
    }

    #[test]
    fn argo_cd_fields_parse_and_the_schema_knows_them() {
        let yaml = r#"
apiVersion: kedge.dev/v1alpha1
kind: Application
metadata: { name: guestbook, namespace: kedge }
spec:
  sources:
    - { repoURL: "https://example.test/values.git", ref: values }
  destination: { server: "https://kubernetes.default.svc", name: in-cluster, namespace: guestbook }
  syncPolicy:
    syncOptions: [PrunePropagationPolicy=orphan, " PruneLast=true"]
"#;
        let app: Application = serde_saphyr::from_str(yaml).expect("parses");
        assert_eq!(app.spec.sources[0].ref_.as_deref(), Some("values"));
        assert_eq!(app.spec.source.repo_url, "", "spec.source may be left out");
        assert_eq!(
            app.spec.destination.server.as_deref(),
            Some("https://kubernetes.default.svc")
        );
        let crd = serde_json::to_value(Application::crd()).expect("crd");
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        assert!(
            !spec["required"]
                .as_array()
                .is_some_and(|r| r.iter().any(|f| f == "source"))
        );
        assert!(
            spec["properties"]["source"].get("default").is_none(),
            "an empty default would break the CRD's own rules"
        );
        assert_eq!(
            spec["properties"]["destination"]["properties"]["server"]["type"],
            "string"
        );
        let kustomize = &spec["properties"]["source"]["properties"]["kustomize"]["properties"];
        assert_eq!(
            kustomize["replicas"]["items"]["properties"]["count"]["x-kubernetes-int-or-string"],
            true
        );
        let pattern =
            spec["properties"]["syncPolicy"]["properties"]["syncOptions"]["items"]["pattern"]
                .as_str()
                .expect("pattern");
        assert!(pattern.contains("|PrunePropagationPolicy|"), "{pattern}");
    }

    #[test]
    fn the_git_source_is_the_source_or_the_first_of_the_sources() {
        let source = |path: &str| ApplicationSource {
            repo_url: "https://git.test/r.git".into(),
            path: path.into(),
            ..Default::default()
        };
        let mut spec = ApplicationSpec {
            source: source("one"),
            ..Default::default()
        };
        assert_eq!(spec.git_source().path, "one");
        assert_eq!(spec.source_paths().collect::<Vec<_>>(), ["one"]);
        spec.source = ApplicationSource::default();
        spec.sources = vec![source("a"), source("b")];
        assert_eq!(spec.git_source().path, "a");
        assert_eq!(spec.source_paths().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn health_severity_orders_worst_last() {
        assert!(HealthCode::Degraded.severity() > HealthCode::Progressing.severity());
        assert!(HealthCode::Progressing.severity() > HealthCode::Healthy.severity());
    }
}
