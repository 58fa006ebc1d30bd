//! The cluster registry: connecting to a registered [`Cluster`] with the credentials of its Secret, and keeping
//! every Cluster's status up to date (Connected, server version, last contact, applications and objects).
//!
//! A cluster Secret holds a kubeconfig (exec plugins honoured), or a CA with a bearer token or a client
//! certificate; whichever it is, Kedge connects to the Cluster's `spec.server`, so that the address applications name
//! is the one Kedge reaches. Credentials are read from the Secret at every check, so a rotation takes effect without
//! a restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::core::v1::Secret;
use kedge_api::{
    Application, CONNECTED, Cluster, ClusterCredentials, ClusterSecretError, ClusterStatus,
    IN_CLUSTER_NAME,
};
use kedge_engine::{Engine, EngineConfig};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::config::{
    AuthInfo, Context as KubeContext, KubeConfigOptions, Kubeconfig, NamedAuthInfo, NamedCluster,
    NamedContext,
};
use kube::runtime::reflector::Store;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::conditions;
use crate::leader::LeaderGuard;
use crate::metrics::Metrics;
use crate::pipeline::PipelineError;

/// How long connecting to a cluster and asking its version may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request to a registered cluster may wait for its answer.
pub const REMOTE_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Why Kedge cannot reach a registered cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The credentials Secret does not exist.
    #[error("Secret {0} not found")]
    SecretNotFound(String),
    /// The Secret could not be read.
    #[error("cannot read Secret {name}: {source}")]
    ReadSecret {
        /// Its name.
        name: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// The Secret has no usable credentials.
    #[error(transparent)]
    Secret(#[from] ClusterSecretError),
    /// The kubeconfig is not valid.
    #[error("invalid kubeconfig: {0}")]
    Kubeconfig(String),
    /// No client could be built (e.g. a CA that is not PEM).
    #[error("cannot build a client: {0}")]
    Client(String),
    /// The API server did not answer as expected (TLS refused, unauthorized, unreachable).
    #[error("cannot reach {server}: {message}")]
    Unreachable {
        /// The server asked.
        server: String,
        /// What went wrong.
        message: String,
    },
}

impl ClusterError {
    /// The reason of the `Connected` condition.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::SecretNotFound(_) | Self::ReadSecret { .. } => "SecretUnavailable",
            Self::Secret(_) | Self::Kubeconfig(_) | Self::Client(_) => "InvalidCredentials",
            Self::Unreachable { .. } => "Unreachable",
        }
    }
}

fn pem_data(pem: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(pem.as_bytes())
}

/// A kubeconfig of one context that reaches `server` with `creds`.
pub fn kubeconfig_for(
    server: &str,
    creds: &ClusterCredentials,
) -> Result<Kubeconfig, ClusterError> {
    let mut kc = match creds {
        ClusterCredentials::Kubeconfig(text) => {
            Kubeconfig::from_yaml(text).map_err(|e| ClusterError::Kubeconfig(e.to_string()))?
        }
        ClusterCredentials::Token { ca, token } => single(
            ca,
            AuthInfo {
                token: Some(token.clone().into()),
                ..AuthInfo::default()
            },
        ),
        ClusterCredentials::ClientCertificate { ca, cert, key } => single(
            ca,
            AuthInfo {
                client_certificate_data: Some(pem_data(cert)),
                client_key_data: Some(pem_data(key).into()),
                ..AuthInfo::default()
            },
        ),
    };
    if kc.current_context.is_none() && kc.contexts.len() == 1 {
        kc.current_context = Some(kc.contexts[0].name.clone());
    }
    let current = kc
        .current_context
        .clone()
        .ok_or_else(|| ClusterError::Kubeconfig("no current context".into()))?;
    let cluster_name = kc
        .contexts
        .iter()
        .find(|c| c.name == current)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone())
        .ok_or_else(|| ClusterError::Kubeconfig(format!("context {current} not found")))?;
    let cluster = kc
        .clusters
        .iter_mut()
        .find(|c| c.name == cluster_name)
        .and_then(|c| c.cluster.as_mut())
        .ok_or_else(|| ClusterError::Kubeconfig(format!("cluster {cluster_name} not found")))?;
    // Kedge connects where applications say they deploy.
    cluster.server = Some(server.to_owned());
    Ok(kc)
}

fn single(ca: &str, auth: AuthInfo) -> Kubeconfig {
    Kubeconfig {
        clusters: vec![NamedCluster {
            name: "cluster".into(),
            cluster: Some(kube::config::Cluster {
                certificate_authority_data: Some(pem_data(ca)),
                ..kube::config::Cluster::default()
            }),
            other: Default::default(),
        }],
        auth_infos: vec![NamedAuthInfo {
            name: "user".into(),
            auth_info: Some(auth),
            other: Default::default(),
        }],
        contexts: vec![NamedContext {
            name: "context".into(),
            context: Some(KubeContext {
                cluster: "cluster".into(),
                user: Some("user".into()),
                ..KubeContext::default()
            }),
            other: Default::default(),
        }],
        current_context: Some("context".into()),
        ..Kubeconfig::default()
    }
}

/// The client configuration of `kubeconfig` (its current context) with a bounded connect timeout.
pub async fn config_for(kubeconfig: Kubeconfig) -> Result<kube::Config, ClusterError> {
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| ClusterError::Kubeconfig(e.to_string()))?;
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    Ok(config)
}

/// A client for `kubeconfig` (its current context) with bounded timeouts.
pub async fn client_for(kubeconfig: Kubeconfig) -> Result<kube::Client, ClusterError> {
    let mut config = config_for(kubeconfig).await?;
    config.read_timeout = Some(CONNECT_TIMEOUT);
    kube::Client::try_from(config).map_err(|e| ClusterError::Client(e.to_string()))
}

/// Asks the cluster's version: the check that credentials, CA and address all work.
pub async fn server_version(client: &kube::Client, server: &str) -> Result<String, ClusterError> {
    let version = tokio::time::timeout(CONNECT_TIMEOUT * 2, client.apiserver_version())
        .await
        .map_err(|_| ClusterError::Unreachable {
            server: server.to_owned(),
            message: format!("no answer within {} s", (CONNECT_TIMEOUT * 2).as_secs()),
        })?
        .map_err(|e| ClusterError::Unreachable {
            server: server.to_owned(),
            message: crate::reconcile::error_chain(&e),
        })?;
    Ok(version.git_version)
}

/// Connects to a registered cluster with its Secret (read now) and returns the client and the cluster's version.
pub async fn connect(
    client: &kube::Client,
    cluster: &Cluster,
) -> Result<(kube::Client, String), ClusterError> {
    let (kubeconfig, _) = credentials(client, cluster).await?;
    let remote = client_for(kubeconfig).await?;
    let version = server_version(&remote, &cluster.spec.server).await?;
    Ok((remote, version))
}

/// The kubeconfig that reaches a registered cluster, from its Secret (read now), and the Secret's resource version.
pub async fn credentials(
    client: &kube::Client,
    cluster: &Cluster,
) -> Result<(Kubeconfig, String), ClusterError> {
    let namespace = cluster.namespace().unwrap_or_default();
    let name = &cluster.spec.secret_ref.name;
    let secret = Api::<Secret>::namespaced(client.clone(), &namespace)
        .get_opt(name)
        .await
        .map_err(|source| ClusterError::ReadSecret {
            name: name.clone(),
            source,
        })?
        .ok_or_else(|| ClusterError::SecretNotFound(format!("{namespace}/{name}")))?;
    let version = secret.resource_version().unwrap_or_default();
    let data: BTreeMap<String, Vec<u8>> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .chain(
            secret
                .string_data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes())),
        )
        .collect();
    let creds = ClusterCredentials::from_secret(name, &data)?;
    Ok((kubeconfig_for(&cluster.spec.server, &creds)?, version))
}

/// The status a check gives a cluster: Connected (with the version and the time of contact) or not (with the reason
/// and message, keeping the last known version), and how many applications and objects it has.
pub fn status_after(
    previous: &ClusterStatus,
    check: &Result<String, ClusterError>,
    apps: &[&Application],
    generation: Option<i64>,
    now: &str,
) -> ClusterStatus {
    let mut status = previous.clone();
    match check {
        Ok(version) => {
            status.server_version = Some(version.clone());
            status.last_contact = Some(now.to_owned());
            conditions::set(
                &mut status.conditions,
                CONNECTED,
                true,
                "Connected",
                format!("reached, Kubernetes {version}"),
                generation,
                now,
            );
        }
        Err(e) => conditions::set(
            &mut status.conditions,
            CONNECTED,
            false,
            e.reason(),
            e.to_string(),
            generation,
            now,
        ),
    }
    status.applications = u32::try_from(apps.len()).unwrap_or(u32::MAX);
    status.objects = apps
        .iter()
        .filter_map(|a| a.status.as_ref())
        .map(|s| s.inventory_refs().map_or(0, |r| r.len()))
        .sum::<usize>()
        .try_into()
        .unwrap_or(u32::MAX);
    status
}

/// Checks every Cluster of `namespace` once and writes the statuses that changed (with `writes`, which only sends
/// while this replica leads); whether each cluster answered, by name.
pub async fn check_all(
    client: &kube::Client,
    writes: &kube::Client,
    namespace: &str,
    apps: &Store<Application>,
) -> Result<Vec<(String, bool)>, kube::Error> {
    let clusters = Api::<Cluster>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await?;
    let apps = apps.state();
    let now = jiff::Timestamp::now().to_string();
    let mut checked = Vec::with_capacity(clusters.items.len());
    for cluster in clusters.items {
        let check = connect(client, &cluster).await.map(|(_, version)| version);
        checked.push((cluster.name_any(), check.is_ok()));
        let own: Vec<&Application> = apps
            .iter()
            .map(AsRef::as_ref)
            .filter(|a| cluster.is_destination_of(a))
            .collect();
        let previous = cluster.status.clone().unwrap_or_default();
        let next = status_after(&previous, &check, &own, cluster.metadata.generation, &now);
        if next == previous {
            continue;
        }
        if let Err(e) = &check {
            tracing::warn!(cluster = %cluster.name_any(), error = %e, "cluster not reachable");
        }
        Api::<Cluster>::namespaced(writes.clone(), namespace)
            .patch_status(
                &cluster.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": next })),
            )
            .await?;
    }
    Ok(checked)
}

/// Checks the registered clusters every `interval` while this replica leads, until `shutdown`; the leader's
/// `kedge_cluster_connected` says what it found.
#[allow(clippy::too_many_arguments)]
pub async fn keep_checking(
    client: kube::Client,
    writes: kube::Client,
    leader: LeaderGuard,
    namespace: String,
    apps: Store<Application>,
    interval: Duration,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    loop {
        if leader.is_leading() {
            match check_all(&client, &writes, &namespace, &apps).await {
                Ok(found) => {
                    metrics.cluster_connected.clear();
                    for (cluster, up) in found {
                        metrics
                            .cluster_connected
                            .get_or_create(&crate::metrics::ClusterLabel { cluster })
                            .set(i64::from(up));
                    }
                }
                // No Cluster CRD installed: nothing registered.
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => tracing::warn!(error = %e, "cannot check the registered clusters"),
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// Queues the applications of every registered cluster whose Cluster changes (a new server, other credentials
/// named), so that they use it at once rather than at their next pass; until `shutdown`.
pub async fn trigger_on_change(
    client: kube::Client,
    namespace: String,
    apps: Store<Application>,
    triggers: tokio::sync::mpsc::UnboundedSender<kube::runtime::reflector::ObjectRef<Application>>,
    shutdown: CancellationToken,
) {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};
    let api = Api::<Cluster>::namespaced(client, &namespace);
    let changes = watcher(api, watcher::Config::default())
        .default_backoff()
        .touched_objects()
        .predicate_filter(kube::runtime::predicates::generation, Default::default());
    let mut changes = std::pin::pin!(changes);
    loop {
        let next = tokio::select! {
            () = shutdown.cancelled() => return,
            next = changes.next() => next,
        };
        match next {
            None => return,
            Some(Ok(cluster)) => {
                for app in apps.state() {
                    if cluster.is_destination_of(&app) {
                        let _ = triggers
                            .send(kube::runtime::reflector::ObjectRef::from_obj(app.as_ref()));
                    }
                }
            }
            Some(Err(e)) => tracing::debug!(error = %e, "cannot watch the registered clusters"),
        }
    }
}

/// Where applications deploy: the engine of the cluster Kedge runs in, or of a registered cluster (one per cluster,
/// shared by its applications, made again when its Cluster or Secret changes). Writes to every cluster go through a
/// client that sends only while this replica leads.
pub struct ClusterPool {
    local: Arc<Engine>,
    hub: kube::Client,
    namespace: String,
    metrics: Metrics,
    leader: LeaderGuard,
    drift: crate::drift::DriftWatcher,
    remotes: Mutex<HashMap<String, Remote>>,
    /// How the controller reaches the cluster it runs in (to make clients that impersonate).
    local_config: Mutex<Option<kube::Config>>,
    /// Engines that impersonate a ServiceAccount, by cluster, cluster version and user, with their cluster's drift
    /// watches.
    impersonating: Mutex<HashMap<String, (Arc<Engine>, crate::drift::DriftWatcher)>>,
}

/// A registered cluster's engine and drift watches, as made for one version of its Cluster and Secret.
struct Remote {
    key: String,
    /// How it is reached (to make clients that impersonate).
    config: kube::Config,
    engine: Arc<Engine>,
    drift: crate::drift::DriftWatcher,
    /// Stops its watches once the engine is replaced.
    _stop: tokio_util::sync::DropGuard,
}

impl ClusterPool {
    /// A pool whose in-cluster engine is `local`; Clusters are read from `namespace` with `hub`.
    pub fn new(
        local: Arc<Engine>,
        hub: kube::Client,
        namespace: String,
        metrics: Metrics,
        leader: LeaderGuard,
        drift: crate::drift::DriftWatcher,
    ) -> Self {
        Self {
            local,
            hub,
            namespace,
            metrics,
            leader,
            drift,
            remotes: Mutex::default(),
            local_config: Mutex::default(),
            impersonating: Mutex::default(),
        }
    }

    /// How the controller reaches the cluster it runs in: needed to sync with impersonation there.
    pub fn set_local_config(&self, config: kube::Config) {
        *self.local_config.lock().unwrap_or_else(|p| p.into_inner()) = Some(config);
    }

    /// An engine for `cluster` (`None`: the cluster Kedge runs in; else a registered cluster that
    /// [`engine_for`](Self::engine_for) just returned) whose every request impersonates ServiceAccount
    /// `namespace:name`, so that the cluster's RBAC decides what the application may do. Made once per cluster
    /// version and account.
    pub fn engine_as(
        &self,
        cluster: Option<&str>,
        namespace: &str,
        name: &str,
    ) -> Result<Arc<Engine>, PipelineError> {
        let user = format!("system:serviceaccount:{namespace}:{name}");
        let (base, version, drift) = match cluster {
            None => (
                self.local_config
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone()
                    .ok_or_else(|| {
                        PipelineError::Cluster(
                            "syncs with impersonation need the controller's own connection settings".into(),
                        )
                    })?,
                String::new(),
                self.drift.clone(),
            ),
            Some(c) => {
                let remotes = self.remotes.lock().unwrap_or_else(|p| p.into_inner());
                let r = remotes.get(c).ok_or_else(|| {
                    PipelineError::Cluster(format!("cluster {c}: not connected"))
                })?;
                (r.config.clone(), r.key.clone(), r.drift.clone())
            }
        };
        let cluster_name = cluster.unwrap_or(IN_CLUSTER_NAME);
        let key = format!("{cluster_name}|{version}|{user}");
        if let Some((engine, _)) = self
            .impersonating
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(engine.clone());
        }
        let failed =
            |e: String| PipelineError::Cluster(format!("cluster {cluster_name} as {user}: {e}"));
        let mut config = base;
        config.auth_info.impersonate = Some(user.clone());
        let client = crate::client::leader_client_for(
            config,
            &self.metrics,
            self.leader.clone(),
            cluster_name,
        )
        .map_err(|e| failed(e.to_string()))?;
        let engine = Arc::new(
            Engine::new(client, EngineConfig::default()).map_err(|e| failed(e.to_string()))?,
        );
        let mut map = self.impersonating.lock().unwrap_or_else(|p| p.into_inner());
        // Engines of replaced cluster versions go.
        map.retain(|k, _| {
            !k.starts_with(&format!("{cluster_name}|"))
                || k.starts_with(&format!("{cluster_name}|{version}|"))
        });
        map.insert(key, (engine.clone(), drift));
        Ok(engine)
    }

    /// The engine of the cluster Kedge runs in.
    pub fn local(&self) -> &Arc<Engine> {
        &self.local
    }

    /// The drift watches of the cluster `engine` deploys to (`None` for an engine this pool no longer holds).
    pub fn drift_of(&self, engine: &Arc<Engine>) -> Option<crate::drift::DriftWatcher> {
        if Arc::ptr_eq(engine, &self.local) {
            return Some(self.drift.clone());
        }
        if let Some((_, drift)) = self
            .impersonating
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .find(|(e, _)| Arc::ptr_eq(e, engine))
        {
            return Some(drift.clone());
        }
        self.remotes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .find(|r| Arc::ptr_eq(&r.engine, engine))
            .map(|r| r.drift.clone())
    }

    /// The engine of `app`'s destination, with the registered Cluster's name (`None` for the cluster Kedge runs
    /// in: no name and no server, or theirs; else the Cluster named by `destination.name` or
    /// `destination.server`).
    pub async fn engine_for(
        &self,
        app: &Application,
    ) -> Result<(Option<String>, Arc<Engine>), PipelineError> {
        let name = app.spec.destination_name();
        let server = app.spec.destination_server();
        if app.spec.is_in_cluster() {
            return Ok((None, self.local.clone()));
        }
        let api = Api::<Cluster>::namespaced(self.hub.clone(), &self.namespace);
        let unavailable = |e: kube::Error| {
            PipelineError::Cluster(format!("cannot read the registered clusters: {e}"))
        };
        let cluster = match name.filter(|n| *n != IN_CLUSTER_NAME) {
            Some(n) => api.get_opt(n).await.map_err(unavailable)?.ok_or_else(|| {
                PipelineError::InvalidSpec(format!(
                    "spec.destination.name {n:?} is not a registered cluster (kedge cluster add {n} ...); nothing \
                     is applied"
                ))
            })?,
            None => {
                let server = server.unwrap_or_default();
                api.list(&ListParams::default())
                    .await
                    .map_err(unavailable)?
                    .items
                    .into_iter()
                    .find(|c| kedge_api::normalize_server(&c.spec.server) == server)
                    .ok_or_else(|| {
                        PipelineError::InvalidSpec(format!(
                            "spec.destination.server {server:?} is not the server of a registered cluster (kedge \
                             cluster add); nothing is applied"
                        ))
                    })?
            }
        };
        let cluster_name = cluster.name_any();
        if let Some(s) = server
            && s != kedge_api::normalize_server(&cluster.spec.server)
        {
            return Err(PipelineError::InvalidSpec(format!(
                "spec.destination names cluster {cluster_name} (server {}) and server {s}: they disagree",
                cluster.spec.server
            )));
        }
        if !cluster.spec.namespaces.is_empty() {
            let ns = app.spec.destination.namespace.clone().unwrap_or_default();
            if !cluster.spec.namespaces.contains(&ns) {
                return Err(PipelineError::InvalidSpec(format!(
                    "spec.destination.namespace {ns:?} is not one cluster {cluster_name} allows ({}); nothing is \
                     applied",
                    cluster.spec.namespaces.join(", ")
                )));
            }
        }
        let failed = |e: String| PipelineError::Cluster(format!("cluster {cluster_name}: {e}"));
        let (kubeconfig, secret_version) = credentials(&self.hub, &cluster)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let key = format!(
            "{}/{secret_version}",
            cluster.resource_version().unwrap_or_default()
        );
        if let Some(remote) = self
            .remotes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&cluster_name)
            && remote.key == key
        {
            return Ok((Some(cluster_name), remote.engine.clone()));
        }
        let mut config = config_for(kubeconfig)
            .await
            .map_err(|e| failed(e.to_string()))?;
        // Watches are long requests that stay quiet while nothing changes: their client has no read timeout.
        let watch_client =
            crate::client::counting_client_for(config.clone(), &self.metrics, &cluster_name)
                .map_err(|e| failed(e.to_string()))?;
        // A cluster that stops answering holds a pass (and its admission slot) this long at most per request.
        config.read_timeout = Some(REMOTE_READ_TIMEOUT);
        let remote_config = config.clone();
        let client = crate::client::leader_client_for(
            config,
            &self.metrics,
            self.leader.clone(),
            &cluster_name,
        )
        .map_err(|e| failed(e.to_string()))?;
        let stop = self.drift.shutdown().child_token();
        let drift = self.drift.for_cluster(watch_client.clone(), stop.clone());
        let live = Arc::new(kedge_engine::VersionedLiveObjects::new(
            client.clone(),
            drift.versions(),
        ));
        let engine = Arc::new(
            Engine::with_live_objects(client, EngineConfig::default(), live)
                .map_err(|e| failed(e.to_string()))?,
        );
        engine.watch_namespaces(watch_client);
        let remote = Remote {
            key,
            config: remote_config,
            engine: engine.clone(),
            drift,
            _stop: stop.drop_guard(),
        };
        // The replaced engine's watches stop as its entry is dropped, and the new ones start only as passes ask:
        // a change made in between would go unseen, so no pass may skip its comparison on the old watches' word.
        self.drift.admission().watches_restarted();
        self.remotes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(cluster_name.clone(), remote);
        Ok((Some(cluster_name), engine))
    }
}
