//! The fetcher: one bare mirror per repository URL, coalesced fetches, cheap change checks and revision resolution.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use gix::remote::Direction;

use crate::error::{ErrorKind, SourceError, error_chain};
use crate::gc::GcReport;
use crate::repo::{Credentials, RepoSpec, Scheme};
use crate::revision::{HistoryChange, RemoteRef, Revision, RevisionSpec, Wanted, resolve_remote};
use crate::snapshot::Snapshot;
use crate::tree::Limits;

/// Settings of a [`Source`].
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// Folder for mirrors, materialized trees and lock files.
    pub cache_dir: PathBuf,
    /// Limits applied when reading trees.
    pub limits: Limits,
    /// Timeout of every network operation.
    pub timeout: Duration,
    /// History depth of fetches; `0` fetches full history.
    pub depth: u32,
    /// Most pack bytes one fetch may receive; a larger fetch is stopped and refused with
    /// [`ErrorKind::LimitExceeded`], leaving the mirror as it was.
    pub max_fetch_bytes: u64,
}

impl SourceConfig {
    /// Defaults: 60 s timeout, depth 1, default [`Limits`], fetches of at most [`DEFAULT_MAX_FETCH_BYTES`].
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        SourceConfig {
            cache_dir: cache_dir.into(),
            limits: Limits::default(),
            timeout: Duration::from_secs(60),
            depth: 1,
            max_fetch_bytes: DEFAULT_MAX_FETCH_BYTES,
        }
    }
}

/// The default of [`SourceConfig::max_fetch_bytes`]: 1 GiB of pack data in one fetch.
pub const DEFAULT_MAX_FETCH_BYTES: u64 = 1 << 30;

/// Marks the error of a fetch stopped by [`SourceConfig::max_fetch_bytes`], so that it is classified as such.
const LIMIT_MARKER: &str = "fetch limit: ";

/// What to fetch: a repository, a revision and the application path inside it.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    /// The repository.
    pub repo: RepoSpec,
    /// Branch, tag, SHA (full or abbreviated), `HEAD` or a semver constraint over tags.
    pub revision: String,
    /// The application path inside the repository (`""` for the root). Must stay inside the repository.
    pub path: String,
    /// The commit applied last time, to detect force-pushes of the tracked ref.
    pub previous: Option<String>,
}

impl FetchRequest {
    /// A request for `revision` of `repo` at the repository root, without history check.
    pub fn new(repo: RepoSpec, revision: impl Into<String>) -> Self {
        FetchRequest {
            repo,
            revision: revision.into(),
            path: String::new(),
            previous: None,
        }
    }

    /// Sets the application path.
    pub fn with_path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// Sets the previously applied commit.
    pub fn with_previous(mut self, previous: Option<String>) -> Self {
        self.previous = previous;
        self
    }
}

/// Counters of network operations, for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceStats {
    /// Ref listings (handshake + ls-refs) sent to remotes.
    pub ref_listings: u64,
    /// Fetches that asked a remote for objects.
    pub fetches: u64,
    /// Requests answered by joining a fetch already in flight.
    pub coalesced: u64,
}

type FlightResult = Result<Snapshot, SourceError>;

#[derive(Default)]
struct Flight {
    result: Mutex<Option<FlightResult>>,
    done: Condvar,
}

struct Inner {
    config: SourceConfig,
    repo_locks: Mutex<HashMap<String, Arc<Busy>>>,
    flights: Mutex<HashMap<String, Arc<Flight>>>,
    ref_listings: AtomicU64,
    fetches: AtomicU64,
    coalesced: AtomicU64,
    /// Paths resolved in the trees of every snapshot.
    lookups: Arc<crate::snapshot::Lookups>,
    /// Each mirror opened once: opening reads its configuration and pack indexes, which every read would repeat.
    /// Objects a later fetch adds are found all the same (the object store looks for new packs when an object is
    /// missing); a mirror removed or created again is forgotten here.
    opened: Mutex<HashMap<PathBuf, gix::ThreadSafeRepository>>,
}

/// Fetches revisions of Git repositories into one shared bare mirror per repository URL.
///
/// Cloning a `Source` is cheap and shares mirrors, locks and counters.
#[derive(Clone)]
pub struct Source {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("cache_dir", &self.inner.config.cache_dir)
            .finish()
    }
}

/// Installs the ring crypto provider as the process default for rustls, once; keeps a provider installed by
/// someone else (e.g. the Kubernetes client).
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            // An error means another thread installed one meanwhile, which is fine.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
    });
}

const LOCK_WAIT: Duration = Duration::from_millis(20);

impl Source {
    /// Creates a source that keeps its mirrors under `config.cache_dir`.
    pub fn new(config: SourceConfig) -> Result<Self, SourceError> {
        install_crypto_provider();
        for sub in ["mirrors", "trees", "tmp"] {
            let dir = config.cache_dir.join(sub);
            fs::create_dir_all(&dir).map_err(|e| {
                SourceError::new(
                    ErrorKind::Cache,
                    "create cache for",
                    "-",
                    "-",
                    format!("failed to create {}: {e}", dir.display()),
                )
            })?;
        }
        Ok(Source {
            inner: Arc::new(Inner {
                config,
                repo_locks: Mutex::new(HashMap::new()),
                flights: Mutex::new(HashMap::new()),
                ref_listings: AtomicU64::new(0),
                fetches: AtomicU64::new(0),
                coalesced: AtomicU64::new(0),
                lookups: Arc::default(),
                opened: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SourceConfig {
        &self.inner.config
    }

    /// Counters of network operations so far.
    pub fn stats(&self) -> SourceStats {
        SourceStats {
            ref_listings: self.inner.ref_listings.load(Ordering::Relaxed),
            fetches: self.inner.fetches.load(Ordering::Relaxed),
            coalesced: self.inner.coalesced.load(Ordering::Relaxed),
        }
    }

    /// The bare mirror folder of a repository.
    pub fn mirror_path(&self, repo: &RepoSpec) -> PathBuf {
        self.inner
            .config
            .cache_dir
            .join("mirrors")
            .join(format!("{}.git", repo.mirror_id()))
    }

    /// Lists the remote's `HEAD`, branches and tags (peeled to commits) without fetching anything: the cheap change check.
    pub fn ls_remote(&self, repo: &RepoSpec) -> Result<Vec<RemoteRef>, SourceError> {
        let lock = self.lock_repo(repo, "list refs of", "")?;
        let refs = self.list_refs(repo, "", &lock.mirror);
        drop(lock);
        refs
    }

    /// Resolves `revision` against the remote's refs without fetching: returns the commit and the ref it came from.
    /// Abbreviated SHAs that match no advertised tip cannot be resolved this way.
    pub fn resolve_remote(
        &self,
        repo: &RepoSpec,
        revision: &str,
    ) -> Result<(String, Option<String>), SourceError> {
        let spec = parse_spec(repo, revision)?;
        let refs = self.ls_remote(repo)?;
        match resolve_remote(&spec, &refs)
            .map_err(|e| err(ErrorKind::RevisionNotFound, "resolve", repo, revision, e))?
        {
            Wanted::Ref { name, commit } => Ok((commit, Some(name))),
            Wanted::Sha(sha) => Ok((sha, None)),
            Wanted::ShortSha(short) => Err(err(
                ErrorKind::RevisionNotFound,
                "resolve",
                repo,
                revision,
                format!("abbreviated commit id {short} matches no ref tip; fetch to resolve it"),
            )),
        }
    }

    /// The files added, removed or changed between two commits that are already in the mirror (nothing is fetched),
    /// as paths from the repository root; `None` when more than `max` differ.
    ///
    /// The poller uses it to find which applications of a monorepo a new commit touches.
    pub fn changed_files(
        &self,
        repo: &RepoSpec,
        from: &str,
        to: &str,
        max: usize,
    ) -> Result<Option<Vec<String>>, SourceError> {
        // Objects are immutable and a fetch adds packs atomically: reading needs no lock.
        let cache_err = |e: String| err(ErrorKind::Cache, "compare", repo, to, e);
        let mirror = self.mirror_path(repo);
        if !mirror.exists() {
            return Err(err(
                ErrorKind::RevisionNotFound,
                "compare",
                repo,
                to,
                "the repository has not been fetched yet",
            ));
        }
        let r = self.open(&mirror).map_err(cache_err)?;
        let tree_of = |sha: &str| -> Result<gix::ObjectId, SourceError> {
            let missing = |e: String| {
                err(
                    ErrorKind::RevisionNotFound,
                    "compare",
                    repo,
                    sha,
                    format!("commit {sha} is not in the mirror: {e}"),
                )
            };
            let id = gix::ObjectId::from_hex(sha.trim().as_bytes())
                .map_err(|e| missing(e.to_string()))?;
            let commit = r.find_commit(id).map_err(|e| missing(error_chain(&e)))?;
            commit
                .tree_id()
                .map(|t| t.detach())
                .map_err(|e| cache_err(error_chain(&e)))
        };
        let old = tree_of(from)?;
        let new = tree_of(to)?;
        crate::changes::changed_files(&r, old, new, max).map_err(cache_err)
    }

    /// Resolves and fetches a revision (only when the mirror lacks it) and returns a snapshot of its tree.
    ///
    /// Concurrent requests for the same repository, revision, path and previous commit share one fetch.
    pub fn fetch(&self, req: &FetchRequest) -> Result<Snapshot, SourceError> {
        let key = format!(
            "{}\n{}\n{}\n{}",
            req.repo.mirror_id(),
            req.revision,
            req.path,
            req.previous.as_deref().unwrap_or("")
        );
        let (flight, leader) = {
            let mut flights = self.inner.flights.lock().unwrap_or_else(|p| p.into_inner());
            match flights.get(&key) {
                Some(f) => (f.clone(), false),
                None => {
                    let f = Arc::new(Flight::default());
                    flights.insert(key.clone(), f.clone());
                    (f, true)
                }
            }
        };
        if !leader {
            self.inner.coalesced.fetch_add(1, Ordering::Relaxed);
            let mut guard = flight.result.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(r) = guard.as_ref() {
                    return r.clone();
                }
                guard = flight.done.wait(guard).unwrap_or_else(|p| p.into_inner());
            }
        }
        let result = self.fetch_uncoalesced(req);
        {
            let mut flights = self.inner.flights.lock().unwrap_or_else(|p| p.into_inner());
            flights.remove(&key);
        }
        *flight.result.lock().unwrap_or_else(|p| p.into_inner()) = Some(result.clone());
        flight.done.notify_all();
        result
    }

    /// [`fetch`](Self::fetch) on the blocking thread pool of the current Tokio runtime.
    pub async fn fetch_async(&self, req: FetchRequest) -> Result<Snapshot, SourceError> {
        let this = self.clone();
        let repo = req.repo.display_url().to_owned();
        let revision = req.revision.clone();
        tokio::task::spawn_blocking(move || this.fetch(&req))
            .await
            .unwrap_or_else(|e| {
                Err(SourceError::new(
                    ErrorKind::Cache,
                    "fetch",
                    repo,
                    revision,
                    format!("fetch task failed: {e}"),
                ))
            })
    }

    fn fetch_uncoalesced(&self, req: &FetchRequest) -> Result<Snapshot, SourceError> {
        let repo = &req.repo;
        let revision = req.revision.as_str();
        let spec = parse_spec(repo, revision)?;
        let lock = self.lock_repo(repo, "fetch", revision)?;
        let mirror = lock.mirror.clone();
        // A commit id the mirror already holds needs nothing from the remote: no listing of its refs (a network
        // round trip, under the repository's lock, that every application of a monorepo would otherwise take in
        // turn on each pass).
        let wanted = match &spec {
            crate::revision::RevisionSpec::Sha(sha) if self.has_commit(&mirror, sha) => {
                // Named after the branch (or tag) whose tip it was at the last fetch, as a listing would name it.
                match self.local_tip(&mirror, sha) {
                    Some(name) => Wanted::Ref {
                        name,
                        commit: sha.clone(),
                    },
                    None => Wanted::Sha(sha.clone()),
                }
            }
            _ => {
                let refs = self.list_refs(repo, revision, &mirror)?;
                resolve_remote(&spec, &refs)
                    .map_err(|e| err(ErrorKind::RevisionNotFound, "resolve", repo, revision, e))?
            }
        };
        let depth = self.inner.config.depth;
        let mut fetched = false;
        let (sha, ref_name) = match wanted {
            Wanted::Ref { name, commit } => {
                // A tag is also fetched when its commit is already here through another ref: its tag object (and
                // signature) comes only with the tag.
                let missing_tag = name.starts_with("refs/tags/") && !self.has_ref(&mirror, &name);
                if missing_tag || !self.has_commit(&mirror, &commit) {
                    self.fetch_specs(
                        repo,
                        revision,
                        &mirror,
                        vec![format!("+{name}:{name}")],
                        depth_shallow(depth),
                    )?;
                    fetched = true;
                }
                (commit, Some(name))
            }
            Wanted::Sha(sha) => {
                if !self.has_commit(&mirror, &sha) {
                    let pinned = format!("{sha}:refs/kedge/pins/{sha}");
                    let direct = self.fetch_specs(
                        repo,
                        revision,
                        &mirror,
                        vec![pinned],
                        depth_shallow(depth),
                    );
                    fetched = true;
                    if direct.is_err() || !self.has_commit(&mirror, &sha) {
                        // The server does not hand out unadvertised commits: fetch all branches with full history.
                        self.fetch_full_history(repo, revision, &mirror)?;
                    }
                    if !self.has_commit(&mirror, &sha) {
                        return Err(err(
                            ErrorKind::RevisionNotFound,
                            "resolve",
                            repo,
                            revision,
                            format!("commit {sha} is not in the history of any branch"),
                        ));
                    }
                }
                (sha, None)
            }
            Wanted::ShortSha(short) => {
                let found = match self.resolve_local_short(&mirror, &short) {
                    Some(sha) => sha,
                    None => {
                        self.fetch_full_history(repo, revision, &mirror)?;
                        fetched = true;
                        self.resolve_local_short(&mirror, &short).ok_or_else(|| {
                            err(
                                ErrorKind::RevisionNotFound,
                                "resolve",
                                repo,
                                revision,
                                format!("no commit starts with {short}"),
                            )
                        })?
                    }
                };
                (found, None)
            }
        };

        let history = match (&req.previous, &ref_name) {
            (None, _) => HistoryChange::NotChecked,
            (Some(prev), _) if prev.eq_ignore_ascii_case(&sha) => HistoryChange::Unchanged,
            (Some(prev), Some(name)) => {
                self.check_history(repo, revision, &mirror, name, &sha, prev)?
            }
            (Some(prev), None) => {
                // A pinned commit: only the local history can tell.
                match self.is_ancestor_local(&mirror, prev, &sha) {
                    Some(true) => HistoryChange::FastForward,
                    _ => HistoryChange::Rewritten,
                }
            }
        };

        let (tree, shallow) = self.commit_info(repo, revision, &mirror, &sha, depth)?;
        drop(lock);
        let revision_out = Revision {
            repo: repo.display_url().to_owned(),
            requested: revision.to_owned(),
            sha,
            ref_name,
            tree,
            shallow,
            history,
            fetched,
        };
        let opened = self
            .opened(&mirror)
            .map_err(|e| err(ErrorKind::Cache, "open", repo, revision, e))?;
        let snapshot = Snapshot::open(
            opened,
            revision_out,
            req.path.clone(),
            self.inner.config.limits,
            self.inner.config.cache_dir.join("trees"),
            self.inner.lookups.clone(),
        )?;
        snapshot.check_path()?;
        Ok(snapshot)
    }

    fn check_history(
        &self,
        repo: &RepoSpec,
        revision: &str,
        mirror: &Path,
        ref_name: &str,
        new: &str,
        prev: &str,
    ) -> Result<HistoryChange, SourceError> {
        // Rule: the previous commit must be reachable from the new one. Shallow history is first deepened to the
        // previous commit's date (minus a day of clock-skew slack); if that does not reach it, the ref's full
        // history is fetched and the answer is definitive.
        if let Some(found) = self.is_ancestor_local(mirror, prev, new) {
            if found {
                return Ok(HistoryChange::FastForward);
            }
            if !self.history_truncated(mirror, new) {
                return Ok(HistoryChange::Rewritten);
            }
        }
        let spec = vec![format!("+{ref_name}:{ref_name}")];
        if let Some(seconds) = self.commit_time(mirror, prev) {
            let cutoff = gix::date::Time::new(seconds - 86_400, 0);
            self.fetch_specs(
                repo,
                revision,
                mirror,
                spec.clone(),
                gix::remote::fetch::Shallow::Since { cutoff },
            )?;
            if self.is_ancestor_local(mirror, prev, new) == Some(true) {
                return Ok(HistoryChange::FastForward);
            }
        }
        self.fetch_specs(
            repo,
            revision,
            mirror,
            spec,
            gix::remote::fetch::Shallow::undo(),
        )?;
        Ok(match self.is_ancestor_local(mirror, prev, new) {
            Some(true) => HistoryChange::FastForward,
            _ => HistoryChange::Rewritten,
        })
    }

    fn open(&self, mirror: &Path) -> Result<gix::Repository, String> {
        self.opened(mirror).map(|r| r.to_thread_local())
    }

    /// The mirror at `mirror`, opened once and shared.
    fn opened(&self, mirror: &Path) -> Result<gix::ThreadSafeRepository, String> {
        let known = {
            let opened = self.inner.opened.lock().unwrap_or_else(|p| p.into_inner());
            opened.get(mirror).cloned()
        };
        if let Some(repo) = known {
            return Ok(repo);
        }
        let repo = gix::open_opts(mirror, gix::open::Options::isolated())
            .map_err(|e| error_chain(&e))?
            .into_sync();
        self.inner
            .opened
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(mirror.to_owned(), repo.clone());
        Ok(repo)
    }

    /// Forgets the opened mirror at `mirror` (removed, or about to be created again).
    fn forget_opened(&self, mirror: &Path) {
        self.inner
            .opened
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(mirror);
    }

    fn has_commit(&self, mirror: &Path, sha: &str) -> bool {
        let Ok(id) = gix::ObjectId::from_hex(sha.as_bytes()) else {
            return false;
        };
        self.open(mirror)
            .map(|r| r.find_commit(id).is_ok())
            .unwrap_or(false)
    }

    /// The branch (preferred) or tag of the mirror whose tip is `sha`, the first by name.
    fn local_tip(&self, mirror: &Path, sha: &str) -> Option<String> {
        let id = gix::ObjectId::from_hex(sha.as_bytes()).ok()?;
        let repo = self.open(mirror).ok()?;
        let refs = repo.references().ok()?;
        let mut found: Vec<(bool, String)> = refs
            .all()
            .ok()?
            .flatten()
            .filter(|r| r.target().try_id() == Some(id.as_ref()))
            .map(|r| r.name().as_bstr().to_string())
            .filter_map(|name| {
                if name.starts_with("refs/heads/") {
                    Some((false, name))
                } else if name.starts_with("refs/tags/") {
                    Some((true, name))
                } else {
                    None
                }
            })
            .collect();
        found.sort();
        found.into_iter().next().map(|(_, name)| name)
    }

    fn has_ref(&self, mirror: &Path, name: &str) -> bool {
        self.open(mirror)
            .map(|r| r.find_reference(name).is_ok())
            .unwrap_or(false)
    }

    fn commit_time(&self, mirror: &Path, sha: &str) -> Option<i64> {
        let id = gix::ObjectId::from_hex(sha.as_bytes()).ok()?;
        let repo = self.open(mirror).ok()?;
        let commit = repo.find_commit(id).ok()?;
        commit.time().ok().map(|t| t.seconds)
    }

    fn resolve_local_short(&self, mirror: &Path, short: &str) -> Option<String> {
        let repo = self.open(mirror).ok()?;
        let id = repo.rev_parse_single(short).ok()?;
        let commit = id.object().ok()?.peel_to_commit().ok()?;
        Some(commit.id.to_string())
    }

    /// Whether `ancestor` is reachable from `tip` in the local history; `None` if `ancestor` is not in the mirror.
    fn is_ancestor_local(&self, mirror: &Path, ancestor: &str, tip: &str) -> Option<bool> {
        let repo = self.open(mirror).ok()?;
        let anc = gix::ObjectId::from_hex(ancestor.trim().to_ascii_lowercase().as_bytes()).ok()?;
        repo.find_commit(anc).ok()?;
        let tip = gix::ObjectId::from_hex(tip.as_bytes()).ok()?;
        let walk = repo.rev_walk([tip]).all().ok()?;
        for info in walk {
            match info {
                Ok(info) if info.id == anc => return Some(true),
                Ok(_) => {}
                // Missing parents at the shallow boundary end the walk.
                Err(_) => break,
            }
        }
        Some(false)
    }

    /// Whether the history below `tip` is cut by a shallow boundary.
    fn history_truncated(&self, mirror: &Path, tip: &str) -> bool {
        let Ok(repo) = self.open(mirror) else {
            return true;
        };
        let Ok(tip) = gix::ObjectId::from_hex(tip.as_bytes()) else {
            return true;
        };
        let shallow: Vec<gix::ObjectId> = match repo.shallow_commits() {
            Ok(Some(list)) => list.iter().copied().collect(),
            Ok(None) => return false,
            Err(_) => return true,
        };
        let Ok(walk) = repo.rev_walk([tip]).all() else {
            return true;
        };
        for info in walk {
            match info {
                Ok(info) if shallow.contains(&info.id) => return true,
                Ok(_) => {}
                Err(_) => return true,
            }
        }
        false
    }

    fn commit_info(
        &self,
        repo: &RepoSpec,
        revision: &str,
        mirror: &Path,
        sha: &str,
        depth: u32,
    ) -> Result<(String, bool), SourceError> {
        let cache_err = |e: String| err(ErrorKind::Cache, "read", repo, revision, e);
        let r = self.open(mirror).map_err(cache_err)?;
        let id = gix::ObjectId::from_hex(sha.as_bytes()).map_err(|e| cache_err(e.to_string()))?;
        let commit = r.find_commit(id).map_err(|e| cache_err(error_chain(&e)))?;
        let tree = commit
            .tree_id()
            .map_err(|e| cache_err(error_chain(&e)))?
            .to_string();
        let shallow = r.is_shallow().unwrap_or(false);
        let has_parents_locally = commit.parent_ids().all(|p| r.has_object(p.detach()));
        if depth > 0 && commit.parent_ids().count() > 0 && has_parents_locally && !shallow {
            // Also true once a force-push check deepened the mirror, so this is not worth a warning.
            tracing::debug!(
                repo = repo.display_url(),
                revision,
                "the mirror holds full history (server ignored depth, or history was deepened)"
            );
        }
        Ok((tree, shallow))
    }

    fn fetch_full_history(
        &self,
        repo: &RepoSpec,
        revision: &str,
        mirror: &Path,
    ) -> Result<(), SourceError> {
        self.fetch_specs(
            repo,
            revision,
            mirror,
            vec![
                "+refs/heads/*:refs/heads/*".into(),
                "+refs/tags/*:refs/tags/*".into(),
            ],
            gix::remote::fetch::Shallow::undo(),
        )
    }

    /// Removes what no fetch has used for `max_idle`: bare mirrors (of repositories no application uses any more, or
    /// not lately), materialized trees and leftovers of interrupted writes. A mirror that is in use right now (locked
    /// by this or another process) is kept whatever its age.
    pub fn collect_garbage(&self, max_idle: Duration) -> Result<GcReport, SourceError> {
        let now = std::time::SystemTime::now();
        let root = &self.inner.config.cache_dir;
        let cache_err = |what: &Path, e: std::io::Error| {
            SourceError::new(
                ErrorKind::Cache,
                "collect garbage in",
                "-",
                "-",
                format!("failed to read {}: {e}", what.display()),
            )
        };
        let idle = |p: &Path| crate::gc::idle_for(p, now).is_some_and(|d| d >= max_idle);
        let mut report = GcReport::default();
        let mirrors = root.join("mirrors");
        for entry in fs::read_dir(&mirrors).map_err(|e| cache_err(&mirrors, e))? {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".git").map(str::to_owned) else {
                continue;
            };
            let id = id.as_str();
            let lock_path = mirrors.join(format!("{id}.lock"));
            // The lock file is touched on every use; a mirror without one is as old as its folder.
            let stamp = if lock_path.exists() {
                lock_path.clone()
            } else {
                entry.path()
            };
            if !idle(&stamp) {
                continue;
            }
            // Held while removing, so that no fetch of this repository runs meanwhile; one that waits for it starts
            // with a fresh mirror.
            let Ok(file) = fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
            else {
                continue;
            };
            if file.try_lock().is_err() {
                continue;
            }
            let local = {
                let locks = self
                    .inner
                    .repo_locks
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                locks.get(id).cloned()
            };
            let guard = match local {
                Some(busy) => match BusyGuard::acquire(busy, Instant::now()) {
                    Some(g) => Some(g),
                    None => continue,
                },
                None => None,
            };
            let bytes = crate::gc::disk_usage(&entry.path());
            let doomed = root
                .join("tmp")
                .join(format!("{id}.gc.{}", std::process::id()));
            if fs::rename(entry.path(), &doomed).is_ok() {
                self.forget_opened(&entry.path());
                let _ = fs::remove_dir_all(&doomed);
                report.bytes_freed += bytes;
                report.mirrors_removed.push(name);
                self.inner
                    .repo_locks
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(id);
            }
            drop(guard);
            drop(file);
        }
        for dir in [root.join("trees"), root.join("tmp")] {
            for entry in fs::read_dir(&dir).map_err(|e| cache_err(&dir, e))? {
                let Ok(entry) = entry else { continue };
                if !idle(&entry.path()) {
                    continue;
                }
                let bytes = crate::gc::disk_usage(&entry.path());
                let removed = if entry.path().is_dir() {
                    fs::remove_dir_all(entry.path())
                } else {
                    fs::remove_file(entry.path())
                };
                if removed.is_ok() {
                    report.bytes_freed += bytes;
                    report.trees_removed += usize::from(dir.ends_with("trees"));
                }
            }
        }
        if !report.mirrors_removed.is_empty() || report.trees_removed > 0 {
            tracing::info!(
                mirrors = report.mirrors_removed.len(),
                trees = report.trees_removed,
                bytes = report.bytes_freed,
                "removed unused git mirrors and trees"
            );
        }
        Ok(report)
    }

    fn lock_repo(
        &self,
        repo: &RepoSpec,
        action: &'static str,
        revision: &str,
    ) -> Result<RepoLock, SourceError> {
        let id = repo.mirror_id();
        let local = {
            let mut locks = self
                .inner
                .repo_locks
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            locks.entry(id.clone()).or_default().clone()
        };
        let cache_err = |e: String| err(ErrorKind::Cache, action, repo, revision, e);
        let mirror = self.mirror_path(repo);
        let lock_path = self
            .inner
            .config
            .cache_dir
            .join("mirrors")
            .join(format!("{id}.lock"));
        let deadline = Instant::now() + self.inner.config.timeout * 2;
        // In-process first, then across processes.
        let guard = BusyGuard::acquire(local, deadline).ok_or_else(|| {
            err(
                ErrorKind::Timeout,
                action,
                repo,
                revision,
                "timed out waiting for another fetch of this repository",
            )
        })?;
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| cache_err(format!("failed to open lock {}: {e}", lock_path.display())))?;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(fs::TryLockError::WouldBlock) => {
                    if Instant::now() > deadline {
                        return Err(err(
                            ErrorKind::Timeout,
                            action,
                            repo,
                            revision,
                            "timed out waiting for another process fetching this repository",
                        ));
                    }
                    std::thread::sleep(LOCK_WAIT);
                }
                Err(fs::TryLockError::Error(e)) => {
                    return Err(cache_err(format!(
                        "failed to lock {}: {e}",
                        lock_path.display()
                    )));
                }
            }
        }
        // The lock file's modification time says when the mirror was last used (see `collect_garbage`).
        crate::gc::touch(&lock_path);
        if !mirror.join("HEAD").exists() {
            self.forget_opened(&mirror);
            let tmp = self
                .inner
                .config
                .cache_dir
                .join("tmp")
                .join(format!("{id}.init.{}", std::process::id()));
            let _ = fs::remove_dir_all(&tmp);
            gix::init_bare(&tmp).map_err(|e| cache_err(error_chain(&e)))?;
            fs::rename(&tmp, &mirror)
                .map_err(|e| cache_err(format!("failed to create mirror: {e}")))?;
        }
        Ok(RepoLock {
            _file: file,
            _local: guard,
            mirror,
        })
    }

    fn list_refs(
        &self,
        repo: &RepoSpec,
        revision: &str,
        mirror: &Path,
    ) -> Result<Vec<RemoteRef>, SourceError> {
        self.inner.ref_listings.fetch_add(1, Ordering::Relaxed);
        let specs = vec![
            "HEAD:refs/kedge/remote-head".to_owned(),
            "+refs/heads/*:refs/heads/*".to_owned(),
            "+refs/tags/*:refs/tags/*".to_owned(),
        ];
        self.network(repo, "list refs of", revision, mirror, move |r, cred, _| {
            let remote = make_remote(r, cred.url(), &specs)?;
            let conn = remote
                .connect(Direction::Fetch)
                .map_err(|e| error_chain(&e))?
                .with_credentials(cred.callback());
            let (map, _) = conn
                .ref_map(
                    gix::progress::Discard,
                    gix::remote::ref_map::Options::default(),
                )
                .map_err(|e| error_chain(&e))?;
            let mut out = Vec::new();
            for r in &map.remote_refs {
                use gix::protocol::handshake::Ref;
                match r {
                    Ref::Direct {
                        full_ref_name,
                        object,
                    } => out.push(RemoteRef {
                        name: full_ref_name.to_string(),
                        commit: object.to_string(),
                        target: None,
                    }),
                    Ref::Peeled {
                        full_ref_name,
                        object,
                        ..
                    } => out.push(RemoteRef {
                        name: full_ref_name.to_string(),
                        commit: object.to_string(),
                        target: None,
                    }),
                    Ref::Symbolic {
                        full_ref_name,
                        target,
                        object,
                        ..
                    } => out.push(RemoteRef {
                        name: full_ref_name.to_string(),
                        commit: object.to_string(),
                        target: Some(target.to_string()),
                    }),
                    Ref::Unborn { .. } => {}
                }
            }
            Ok(out)
        })
    }

    fn fetch_specs(
        &self,
        repo: &RepoSpec,
        revision: &str,
        mirror: &Path,
        specs: Vec<String>,
        shallow: gix::remote::fetch::Shallow,
    ) -> Result<(), SourceError> {
        self.inner.fetches.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(repo = repo.display_url(), revision, ?specs, "fetching");
        let max_bytes = self.inner.config.max_fetch_bytes;
        self.network(
            repo,
            "fetch",
            revision,
            mirror,
            move |r, cred, interrupt| {
                let limit = crate::gc::PackLimit::new(max_bytes, interrupt.clone());
                let remote = make_remote(r, cred.url(), &specs)?;
                let conn = remote
                    .connect(Direction::Fetch)
                    .map_err(|e| error_chain(&e))?
                    .with_credentials(cred.callback());
                let prepared = conn
                    .prepare_fetch(
                        gix::progress::Discard,
                        gix::remote::ref_map::Options::default(),
                    )
                    .map_err(|e| error_chain(&e))?
                    .with_shallow(shallow)
                    .with_write_packed_refs_only(true);
                let received = prepared.receive(limit.clone(), interrupt);
                if limit.exceeded() {
                    return Err(format!(
                        "{LIMIT_MARKER}the repository sent more than {max_bytes} bytes of pack data \
                         ({} received before it was stopped); nothing of it was kept",
                        limit.received()
                    ));
                }
                received.map_err(|e| error_chain(&e))?;
                Ok(())
            },
        )
    }

    /// Runs a network operation on its own thread with the configured timeout, classifying failures.
    fn network<T, F>(
        &self,
        repo: &RepoSpec,
        action: &'static str,
        revision: &str,
        mirror: &Path,
        op: F,
    ) -> Result<T, SourceError>
    where
        T: Send + 'static,
        F: FnOnce(&gix::Repository, &Auth, &Arc<AtomicBool>) -> Result<T, String> + Send + 'static,
    {
        if let Some(reason) = plain_http_refusal(repo) {
            return Err(err(ErrorKind::Invalid, action, repo, revision, reason));
        }
        let timeout = self.inner.config.timeout;
        let tmp_root = self.inner.config.cache_dir.join("tmp");
        let env = ConnEnv::prepare(repo, &tmp_root, timeout)
            .map_err(|e| err(ErrorKind::Invalid, action, repo, revision, e))?;
        let overrides = env.overrides.clone();
        let auth = Auth {
            url: repo.transport_url().to_owned(),
            credentials: repo.credentials.clone(),
        };
        let mirror = mirror.to_owned();
        let interrupt = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let flag = interrupt.clone();
        let spawned = std::thread::Builder::new()
            .name("kedge-git".into())
            .spawn(move || {
                let result = gix::open_opts(
                    &mirror,
                    gix::open::Options::isolated().config_overrides(overrides),
                )
                .map_err(|e| error_chain(&e))
                .and_then(|r| op(&r, &auth, &flag));
                let _ = tx.send(result);
            });
        if let Err(e) = spawned {
            return Err(err(
                ErrorKind::Cache,
                action,
                repo,
                revision,
                format!("failed to start a thread: {e}"),
            ));
        }
        let outcome = rx.recv_timeout(timeout);
        let ssh_log = env.ssh_log();
        match outcome {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(message)) if message.starts_with(LIMIT_MARKER) => Err(err(
                ErrorKind::LimitExceeded,
                action,
                repo,
                revision,
                message[LIMIT_MARKER.len()..].to_owned(),
            )),
            Ok(Err(message)) => {
                let kind = classify(&message, ssh_log.as_deref());
                let mut cause = message;
                if let Some(log) = ssh_log.as_deref().map(str::trim).filter(|l| !l.is_empty()) {
                    cause.push_str(": ssh: ");
                    cause.push_str(log);
                }
                Err(err(kind, action, repo, revision, repo.scrub(&cause)))
            }
            Err(_) => {
                interrupt.store(true, Ordering::Relaxed);
                Err(err(
                    ErrorKind::Timeout,
                    action,
                    repo,
                    revision,
                    format!("no answer within {} s", timeout.as_secs_f64()),
                ))
            }
        }
    }
}

/// Credentials go over plain `http://` only to loopback hosts or to repositories explicitly marked insecure.
fn plain_http_refusal(repo: &RepoSpec) -> Option<String> {
    let url = repo.transport_url();
    if !url.starts_with("http://")
        || matches!(repo.credentials, Credentials::None)
        || repo.insecure_skip_host_key_check
    {
        return None;
    }
    let host = gix::url::parse(url).ok()?.host()?.to_owned();
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    (!loopback).then(|| {
        "refusing to send credentials over plain http to a non-loopback host; use https or mark the repository insecure"
            .to_owned()
    })
}

fn depth_shallow(depth: u32) -> gix::remote::fetch::Shallow {
    match std::num::NonZeroU32::new(depth) {
        Some(d) => gix::remote::fetch::Shallow::DepthAtRemote(d),
        None => gix::remote::fetch::Shallow::undo(),
    }
}

fn make_remote<'r>(
    repo: &'r gix::Repository,
    url: &str,
    specs: &[String],
) -> Result<gix::Remote<'r>, String> {
    let url = gix::url::parse(url).map_err(|e| e.to_string())?;
    repo.remote_at(url)
        .map_err(|e| error_chain(&e))?
        .with_fetch_tags(gix::remote::fetch::Tags::None)
        .with_refspecs(specs.iter().map(String::as_str), Direction::Fetch)
        .map_err(|e| error_chain(&e))
}

fn parse_spec(repo: &RepoSpec, revision: &str) -> Result<RevisionSpec, SourceError> {
    RevisionSpec::parse(revision)
        .map_err(|e| err(ErrorKind::Invalid, "resolve", repo, revision, e.to_string()))
}

fn err(
    kind: ErrorKind,
    action: &'static str,
    repo: &RepoSpec,
    revision: &str,
    cause: impl Into<String>,
) -> SourceError {
    SourceError::new(
        kind,
        action,
        repo.display_url(),
        revision,
        repo.scrub(&cause.into()),
    )
}

/// Classifies a transport failure from its message and, for ssh, the ssh client's log.
fn classify(message: &str, ssh_log: Option<&str>) -> ErrorKind {
    if let Some(log) = ssh_log {
        if log.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
            || log.contains("has changed and you have requested strict checking")
        {
            return ErrorKind::HostKeyChanged;
        }
        if log.contains("Host key verification failed") || log.contains("host key is known") {
            return ErrorKind::HostKeyUnknown;
        }
        if log.contains("Permission denied") || log.contains("Too many authentication failures") {
            return ErrorKind::AuthFailed;
        }
        if log.contains("Connection timed out") {
            return ErrorKind::Timeout;
        }
        if log.contains("Connection refused") || log.contains("Could not resolve") {
            return ErrorKind::Unreachable;
        }
    }
    let m = message.to_ascii_lowercase();
    if m.contains("authenticat")
        || m.contains("credentials")
        || m.contains("401")
        || m.contains("403")
        || m.contains("permission denied")
    {
        ErrorKind::AuthFailed
    } else if m.contains("timed out") || m.contains("timeout") {
        ErrorKind::Timeout
    } else if m.contains("not our ref") || m.contains("want ") && m.contains("not valid") {
        ErrorKind::RevisionNotFound
    } else {
        ErrorKind::Unreachable
    }
}

/// Held while one operation owns a mirror: the in-process guard plus the cross-process file lock.
struct RepoLock {
    _file: fs::File,
    _local: BusyGuard,
    mirror: PathBuf,
}

/// An in-process per-repository lock that can be held without borrowing.
#[derive(Default)]
struct Busy {
    busy: Mutex<bool>,
    cv: Condvar,
}

struct BusyGuard(Arc<Busy>);

impl BusyGuard {
    fn acquire(b: Arc<Busy>, deadline: Instant) -> Option<Self> {
        let mut busy = b.busy.lock().unwrap_or_else(|p| p.into_inner());
        while *busy {
            let left = deadline.checked_duration_since(Instant::now())?;
            busy =
                b.cv.wait_timeout(busy, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
        }
        *busy = true;
        drop(busy);
        Some(BusyGuard(b))
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        *self.0.busy.lock().unwrap_or_else(|p| p.into_inner()) = false;
        self.0.cv.notify_one();
    }
}

/// The credential side of one connection; lives on the network thread.
struct Auth {
    url: String,
    credentials: Credentials,
}

type CredentialFn = Box<
    dyn FnMut(
            gix::credentials::helper::Action,
        ) -> gix::Result<Option<gix::credentials::protocol::Outcome>>
        + Send,
>;

impl Auth {
    fn url(&self) -> &str {
        &self.url
    }

    /// A credential callback that hands out only the configured credentials, never prompts and never asks helpers.
    fn callback(&self) -> CredentialFn {
        let account = match &self.credentials {
            Credentials::Basic { username, password } => Some(gix::sec::identity::Account {
                username: username.clone(),
                password: password.expose().to_owned(),
                oauth_refresh_token: None,
            }),
            Credentials::Token { username, token } => Some(gix::sec::identity::Account {
                username: username.clone().unwrap_or_else(|| "git".to_owned()),
                password: token.expose().to_owned(),
                oauth_refresh_token: None,
            }),
            Credentials::None | Credentials::SshKey { .. } => None,
        };
        let mut handed_out = false;
        Box::new(move |action| match action {
            gix::credentials::helper::Action::Get(ctx) => match &account {
                Some(acc) if !handed_out => {
                    handed_out = true;
                    Ok(Some(gix::credentials::protocol::Outcome {
                        identity: acc.clone(),
                        next: ctx.into(),
                    }))
                }
                _ => Ok(None),
            },
            _ => Ok(None),
        })
    }
}

/// Per-connection files and configuration: for ssh, the key and known_hosts in 0600 files and a log to classify failures.
struct ConnEnv {
    overrides: Vec<String>,
    _dir: Option<tempfile::TempDir>,
    log: Option<PathBuf>,
}

impl ConnEnv {
    fn prepare(repo: &RepoSpec, tmp_root: &Path, timeout: Duration) -> Result<Self, String> {
        let mut overrides = vec![
            "protocol.version=2".to_owned(),
            format!("gitoxide.http.connectTimeout={}", timeout.as_millis()),
            "http.lowSpeedLimit=1".to_owned(),
            format!("http.lowSpeedTime={}", timeout.as_secs().max(1)),
        ];
        if repo.scheme() != Scheme::Ssh {
            return Ok(ConnEnv {
                overrides,
                _dir: None,
                log: None,
            });
        }
        let dir = tempfile::Builder::new()
            .prefix("ssh-")
            .tempdir_in(tmp_root)
            .map_err(|e| format!("failed to create a temporary folder for ssh: {e}"))?;
        let log = dir.path().join("ssh.log");
        let known_hosts = dir.path().join("known_hosts");
        let mut cmd = vec![
            "ssh".to_owned(),
            "-F".into(),
            "/dev/null".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            format!("ConnectTimeout={}", timeout.as_secs().max(1)),
            "-o".into(),
            "LogLevel=ERROR".into(),
            "-E".into(),
            quote(&log),
        ];
        let kh_content = match &repo.credentials {
            Credentials::SshKey { known_hosts, .. } => known_hosts.clone(),
            _ => String::new(),
        };
        if repo.insecure_skip_host_key_check {
            cmd.extend([
                "-o".into(),
                "StrictHostKeyChecking=no".into(),
                "-o".into(),
                "UserKnownHostsFile=/dev/null".into(),
            ]);
        } else {
            write_private(&known_hosts, &kh_content)?;
            cmd.extend([
                "-o".into(),
                "StrictHostKeyChecking=yes".into(),
                "-o".into(),
                format!("UserKnownHostsFile={}", quote(&known_hosts)),
                "-o".into(),
                "GlobalKnownHostsFile=/dev/null".into(),
            ]);
        }
        if let Credentials::SshKey { private_key, .. } = &repo.credentials {
            let key = dir.path().join("id");
            let mut content = private_key.expose().to_owned();
            if !content.ends_with('\n') {
                content.push('\n');
            }
            write_private(&key, &content)?;
            cmd.extend(["-i".into(), quote(&key)]);
        }
        overrides.push(format!("core.sshCommand={}", cmd.join(" ")));
        overrides.push("ssh.variant=ssh".to_owned());
        Ok(ConnEnv {
            overrides,
            _dir: Some(dir),
            log: Some(log),
        })
    }

    fn ssh_log(&self) -> Option<String> {
        self.log
            .as_ref()
            .map(|p| fs::read_to_string(p).unwrap_or_default())
    }
}

fn quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

fn write_private(path: &Path, content: &str) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("failed to write {}: {e}", path.display()))?;
    f.write_all(content.as_bytes())
        .map_err(|e| format!("failed to write {}: {e}", path.display()))
}
