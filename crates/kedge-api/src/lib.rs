//! The `Application` custom resource (group `kedge.dev`): the user-facing shape of what Kedge deploys and how it reports.
//!
//! The spec mirrors Argo CD's `Application` so that its users read it at once; the status follows Kubernetes API
//! conventions (conditions with reason, message and observedGeneration).
//!
//! ```
//! use kedge_api::Application;
//! use kube::CustomResourceExt;
//! let crd = Application::crd();
//! assert_eq!(crd.spec.group, "kedge.dev");
//! ```

mod application;
mod applicationset;
mod bounded;
mod cluster;
mod duration;
mod notification;
mod operation;
mod project;
mod repo_secret;
mod roles;
pub mod schedule;

pub use application::*;
pub use applicationset::*;
pub use bounded::{
    CompactInventory, INVENTORY_ENCODING, INVENTORY_INLINE, InventoryError, RESOURCES_LISTED,
    ResourceSummary, bound_results, join_bounded, needs_attention,
};
pub use cluster::{
    CONNECTED, Cluster, ClusterCredentials, ClusterSecretError, ClusterSpec, ClusterStatus,
    IN_CLUSTER_NAME, IN_CLUSTER_SERVER, KUBECONFIG_KEY, normalize_server,
};
/// The inline string type of [`ObjectRef`] and [`ResourceResult::status`].
pub use compact_str::CompactString;
pub use duration::{DurationError, parse_duration};
pub use notification::{
    Alert, AlertSpec, AlertStatus, EventSeverity, EventSource, EventSourceKind, NoticeKind,
    Provider, ProviderSpec, ProviderStatus, ProviderType,
};
pub use operation::*;
pub use project::{
    ClusterRef, ConfigMapRef, DEFAULT_PROJECT, DestinationServiceAccount, GroupKind, Hold, HoldBy,
    PolicyOrigin, PolicySource, Project, ProjectDenied, ProjectDestination, ProjectSpec,
    ProjectStatus, SyncWindow, WindowKind, WindowState, WindowVerdict,
};
pub use repo_secret::{
    REPOSITORY_SECRET_SELECTOR, RepositorySecrets, SECRET_TYPE_LABEL, decode_secret,
    select_repository_secret,
};
pub use roles::{AppAction, BadRolePolicy, ProjectRole, RolePolicy, RoleToken, parse_policy};

/// Annotation carrying the tracking id that ties a live object to the application that owns it.
pub const TRACKING_ANNOTATION: &str = "kedge.dev/tracking-id";
/// Annotation on an Application asking for a refresh (`normal`) or a re-render that bypasses caches (`hard`).
pub const REFRESH_ANNOTATION: &str = "kedge.dev/refresh";
/// Finalizer that makes deleting an Application delete the resources it owns.
pub const RESOURCES_FINALIZER: &str = "kedge.dev/resources-finalizer";
/// The API group of Kedge's resources.
pub const GROUP: &str = "kedge.dev";
