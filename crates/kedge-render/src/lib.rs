//! Turns a directory of YAML, JSON or a Kustomize overlay into an ordered set of Kubernetes objects.
//!
//! # Sources
//!
//! A [`Renderer`] renders one application path of a [`FileTree`]:
//!
//! - If the directory holds `kustomization.yaml`, `kustomization.yml` or `Kustomization`, it is built with
//!   kustomize (see [`KustomizeConfig`]) in the tree's materialized checkout, so overlays that reference
//!   `../base` work. The directory options are ignored, as Argo CD does.
//! - Otherwise every `*.yaml`, `*.yml` and `*.json` file of the directory is read (of its subdirectories too
//!   with [`RenderOptions::recurse`]), filtered by the include and exclude patterns (Argo CD semantics, see
//!   [`glob::PatternList`]), in name order, depth first. Other files are ignored.
//!
//! YAML is read as kubectl reads it (YAML 1.1 scalars: `0644` is 420, `yes` is true); duplicate keys and alias
//! bombs are errors that name the file and line. Empty documents are skipped; a document whose kind ends in
//! `List` contributes its `items`.
//!
//! Every object needs `apiVersion`, `kind` and `metadata.name` (or `metadata.generateName`, for hooks that are
//! named by the server). Two objects with the same group, kind, namespace and name are an error naming both
//! places. A render reports all its problems at once ([`RenderError::Multiple`]).
//!
//! # Cache
//!
//! Successful renders are kept in an in-memory LRU (bounded by [`CacheConfig`]) under a key made of the
//! application path, the [`RenderOptions`] and the content ids ([`FileTree::dir_id`]) of every directory the
//! render reads:
//!
//! - a plain directory: the application directory (its id covers the whole subtree, so it is right with or
//!   without `recurse`);
//! - a kustomization: the application directory plus every directory its kustomization files reference,
//!   followed transitively through the kustomizations found there. Any string of a kustomization that names an
//!   existing file or directory of the tree counts as a reference (a file contributes its directory); when a
//!   kustomization cannot be parsed, or there are more than a few hundred, the key is the repository root's id.
//!   Remote bases are refused unless [`KustomizeConfig::allow_remote_bases`]; when allowed they are not part of
//!   the key: like the rest of the render, they are taken as of the first render of that content.
//!
//! So a new commit that changes nothing an application reads has the same key and costs a few `dir_id` look-ups
//! (tree ids for Git) and no parsing. Failed renders are not cached.
//!
//! Kustomization fields that name paths (`resources`, `components`, `patches[].path`, generator `files`, ...) must
//! stay inside the repository: an absolute path or a `..` that leaves the root is refused before kustomize runs.
//! Every kustomization the build reads (the application's and its local bases', transitively) is also checked for
//! remote bases (an entry of `resources`, `bases`, `components`, ... that is a URL or not a file of the
//! repository, or a Helm chart `repo`): they are refused, naming the entry and the kustomization, unless
//! [`KustomizeConfig::allow_remote_bases`]. kustomize runs with none of the caller's environment ([`process`]).
//!
//! Argo CD's `spec.source.kustomize` options ([`KustomizeOptions`], through [`Renderer::render_with`]) are applied to a
//! private copy of the directories the build reads, with the application's kustomization changed as `kustomize
//! edit` would change it ([`overrides`]); they are part of the cache key, and on a path that is not a kustomization
//! they are an error.
//!
//! Rendering is blocking (file reads, YAML parsing, a subprocess); call it from a blocking thread in async code.

pub mod cache;
pub mod error;
pub mod glob;
pub mod kustomize;
pub mod object;
pub mod overrides;
pub mod parse;
pub mod process;

mod decrypt;
mod directory;
mod inputs;

use std::sync::{Arc, Mutex, MutexGuard};

use kedge_source::{FileTree, TreeError, tree::clean_relative};

pub use cache::{CacheConfig, CacheStats};
pub use decrypt::Decryption;
pub use error::RenderError;
pub use kustomize::{KustomizeCommand, KustomizeConfig};
pub use object::{ObjectId, RenderedObject, RenderedSet, SourceKind, SourceRef};
pub use overrides::{KustomizeOptions, PatchOption};

use cache::{CacheKey, Lru};
use inputs::{KustomizeInputs, kustomization_file, kustomize_inputs};

/// Per-application options of a directory source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RenderOptions {
    /// Read subdirectories too.
    pub recurse: bool,
    /// Only files whose path (relative to the application directory) matches this pattern list.
    pub include: Option<String>,
    /// Skip files whose path (relative to the application directory) matches this pattern list.
    pub exclude: Option<String>,
    /// The keys SOPS-encrypted documents are decrypted with; without them such documents are an error.
    pub decryption: Option<Decryption>,
}

/// Configuration of a [`Renderer`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenderConfig {
    /// How to run kustomize.
    pub kustomize: KustomizeConfig,
    /// Bounds of the render cache.
    pub cache: CacheConfig,
}

/// Renders application paths of file trees, with a cache shared by all calls.
pub struct Renderer {
    config: RenderConfig,
    cache: Mutex<Lru>,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("config", &self.config)
            .field("cache", &self.cache_stats())
            .finish()
    }
}

impl Default for Renderer {
    fn default() -> Self {
        Renderer::new(RenderConfig::default())
    }
}

fn tree_err(path: &str) -> impl FnOnce(TreeError) -> RenderError + '_ {
    move |source| RenderError::Tree {
        path: path.to_owned(),
        source,
    }
}

/// The file that makes a directory a Helm chart.
pub const CHART_FILE: &str = "Chart.yaml";

/// How the application at `path` of `tree` renders: [`SourceKind::Helm`] when the directory holds `Chart.yaml`
/// (rendered by kedge-helm), [`SourceKind::Kustomize`] when it holds a kustomization, else
/// [`SourceKind::Directory`]. [`Renderer::render`] renders the last two.
pub fn source_kind(tree: &dyn FileTree, path: &str) -> Result<SourceKind, RenderError> {
    let app = clean_relative(path).map_err(tree_err(path))?.join("/");
    let entries = tree.read_dir(&app).map_err(tree_err(&app))?;
    Ok(kind_of(&entries))
}

fn kind_of(entries: &[kedge_source::DirEntry]) -> SourceKind {
    let has_file = |name: &str| {
        entries
            .iter()
            .any(|e| e.kind == kedge_source::EntryKind::File && e.name == name)
    };
    if has_file(CHART_FILE) {
        SourceKind::Helm
    } else if kustomization_file(entries).is_some() {
        SourceKind::Kustomize
    } else {
        SourceKind::Directory
    }
}

impl Renderer {
    /// A renderer with the given configuration and an empty cache.
    pub fn new(config: RenderConfig) -> Self {
        let cache = Mutex::new(Lru::new(config.cache));
        Renderer { config, cache }
    }

    /// The configuration.
    pub fn config(&self) -> &RenderConfig {
        &self.config
    }

    /// Cache counters.
    pub fn cache_stats(&self) -> CacheStats {
        self.lock().stats()
    }

    fn lock(&self) -> MutexGuard<'_, Lru> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Renders the application at `path` (relative to the tree root, `""` for the root) into objects: a directory or
    /// a kustomization (see [`source_kind`]); a Helm chart is an error (kedge-helm renders charts).
    pub fn render(
        &self,
        tree: &dyn FileTree,
        path: &str,
        options: &RenderOptions,
    ) -> Result<Arc<RenderedSet>, RenderError> {
        self.render_with(tree, path, options, None)
    }

    /// Like [`render`](Self::render), with the application's kustomization changed as `kustomize` asks before it
    /// is built (Argo CD's `spec.source.kustomize`, see [`overrides`]); with `kustomize` set, a path that is not a
    /// kustomization is an error ([`RenderError::NotAKustomization`]). The options are part of the cache key.
    pub fn render_with(
        &self,
        tree: &dyn FileTree,
        path: &str,
        options: &RenderOptions,
        kustomize: Option<&KustomizeOptions>,
    ) -> Result<Arc<RenderedSet>, RenderError> {
        let app = clean_relative(path).map_err(tree_err(path))?.join("/");
        let entries = tree.read_dir(&app).map_err(tree_err(&app))?;
        if kind_of(&entries) == SourceKind::Helm {
            return Err(RenderError::HelmChart { path: app });
        }
        let kustomization = kustomization_file(&entries);
        if kustomization.is_none() && kustomize.is_some() {
            return Err(RenderError::NotAKustomization { path: app });
        }
        let allow_remote = self.config.kustomize.allow_remote_bases;
        let mut components = Vec::new();
        let input_dirs = match kustomization {
            None => vec![app.clone()],
            Some(_) => {
                let mut dirs = match kustomize_inputs(tree, &app, allow_remote)? {
                    KustomizeInputs::Dirs(d) => d,
                    KustomizeInputs::WholeTree => vec![String::new()],
                };
                if let Some(k) = kustomize {
                    overrides::check_patches(&app, k)?;
                    components = component_inputs(tree, &app, k, allow_remote, &mut dirs)?;
                }
                dirs
            }
        };
        let key = if self.lock().enabled() {
            let mut inputs = Vec::with_capacity(input_dirs.len());
            for d in &input_dirs {
                let id = tree.dir_id(d).map_err(tree_err(d))?;
                inputs.push((d.clone(), id));
            }
            let key = CacheKey {
                path: app.clone(),
                options: options.clone(),
                kustomize: kustomize.cloned(),
                inputs,
            };
            if let Some(hit) = self.lock().get(&key) {
                tracing::debug!(path = app, objects = hit.len(), "render cache hit");
                return Ok(hit);
            }
            Some(key)
        } else {
            None
        };

        let mut errors = Vec::new();
        let (objects, bytes, kind) = match kustomization {
            None => {
                let (objects, bytes) =
                    directory::render_directory(tree, &app, options, &mut errors);
                (objects, bytes, SourceKind::Directory)
            }
            Some(file) => {
                let edits = kustomize.map(|k| (k, components.as_slice()));
                let (objects, bytes) = self.render_kustomize(
                    tree,
                    &app,
                    file,
                    &input_dirs,
                    (options.decryption.as_ref(), edits),
                    &mut errors,
                )?;
                (objects, bytes, SourceKind::Kustomize)
            }
        };
        object::check_duplicates(&objects, &mut errors);
        if !errors.is_empty() {
            return Err(RenderError::from_list(&app, errors));
        }
        let set = Arc::new(RenderedSet {
            objects,
            kind,
            inputs: key.as_ref().map(|k| k.inputs.clone()).unwrap_or_default(),
        });
        if let Some(key) = key {
            self.lock().insert(key, set.clone(), bytes);
        }
        Ok(set)
    }

    fn render_kustomize(
        &self,
        tree: &dyn FileTree,
        app: &str,
        file: &str,
        input_dirs: &[String],
        (decryption, edits): (Option<&Decryption>, Option<(&KustomizeOptions, &[String])>),
        errors: &mut Vec<RenderError>,
    ) -> Result<(Vec<RenderedObject>, usize), RenderError> {
        let command = KustomizeCommand::resolve(&self.config.kustomize)?;
        let root = tree.materialize().map_err(tree_err(""))?;
        let label = if app.is_empty() { "." } else { app };
        let output = match edits {
            None => {
                let dir = if app.is_empty() { root } else { root.join(app) };
                kustomize::build(&command, &self.config.kustomize, &dir, label)?
            }
            Some((k, components)) => {
                let copy = edited_copy(tree, &root, app, file, input_dirs, k, components)?;
                let dir = if app.is_empty() {
                    copy.path().to_path_buf()
                } else {
                    copy.path().join(app)
                };
                kustomize::build(&command, &self.config.kustomize, &dir, label)?
            }
        };
        let source_file = if app.is_empty() {
            file.to_owned()
        } else {
            format!("{app}/{file}")
        };
        let mut docs = parse::parse_yaml(&source_file, &output)?;
        decrypt::decrypt_kustomize_output(tree, input_dirs, &source_file, &mut docs, decryption)?;
        let mut objects = Vec::with_capacity(docs.len());
        for d in docs {
            let source = SourceRef {
                file: source_file.clone(),
                document: d.index,
                item: None,
                line: d.line,
            };
            object::objects_from_document(d.value, source, &mut objects, errors);
        }
        Ok((objects, output.len()))
    }
}

/// The components of `options` that exist (missing ones are an error unless ignored), with the directories they
/// read added to `dirs` (the render's inputs). Remote components are refused unless `allow_remote`.
fn component_inputs(
    tree: &dyn FileTree,
    app: &str,
    options: &KustomizeOptions,
    allow_remote: bool,
    dirs: &mut Vec<String>,
) -> Result<Vec<String>, RenderError> {
    let invalid = |message: String| RenderError::KustomizeOption {
        path: app.to_owned(),
        message,
    };
    let mut out = Vec::new();
    for c in &options.components {
        if inputs::is_remote(c) {
            if !allow_remote {
                return Err(invalid(format!(
                    "component {c:?} is remote; remote bases are refused unless kedge run --allow-remote-bases"
                )));
            }
            out.push(c.clone());
            continue;
        }
        let joined = if app.is_empty() {
            c.clone()
        } else {
            format!("{app}/{c}")
        };
        let dir = match clean_relative(&joined) {
            Ok(parts) if !c.starts_with('/') => parts.join("/"),
            _ => return Err(invalid(format!("component {c:?} leaves the repository"))),
        };
        let exists = tree
            .read_dir(&dir)
            .is_ok_and(|entries| kustomization_file(&entries).is_some());
        if !exists {
            if options.ignore_missing_components {
                continue;
            }
            return Err(invalid(format!(
                "component {c:?} is not a kustomization directory of the repository (ignoreMissingComponents \
                 leaves such components out)"
            )));
        }
        match kustomize_inputs(tree, &dir, allow_remote)? {
            KustomizeInputs::Dirs(d) => dirs.extend(d),
            KustomizeInputs::WholeTree => dirs.push(String::new()),
        }
        out.push(c.clone());
    }
    dirs.sort();
    dirs.dedup();
    Ok(out)
}

/// A private copy of the directories a build reads, with the application's kustomization changed as `options`
/// ask.
fn edited_copy(
    tree: &dyn FileTree,
    root: &std::path::Path,
    app: &str,
    file: &str,
    input_dirs: &[String],
    options: &KustomizeOptions,
    components: &[String],
) -> Result<tempfile::TempDir, RenderError> {
    let label = if app.is_empty() { "." } else { app };
    let io = |e: std::io::Error| RenderError::KustomizeOption {
        path: label.to_owned(),
        message: format!("failed to prepare the changed copy of the kustomization: {e}"),
    };
    let copy = tempfile::Builder::new()
        .prefix("kedge-kustomize-edit-")
        .tempdir()
        .map_err(io)?;
    let mut dirs = input_dirs.to_vec();
    if !dirs.iter().any(|d| d.is_empty() || d == app) {
        dirs.push(app.to_owned());
    }
    overrides::copy_dirs(root, &dirs, copy.path()).map_err(io)?;
    let path = if app.is_empty() {
        file.to_owned()
    } else {
        format!("{app}/{file}")
    };
    let bytes = tree.read_file(&path).map_err(tree_err(&path))?;
    let mut doc = parse::parse_yaml(&path, &bytes)?
        .into_iter()
        .next()
        .map(|d| d.value)
        .unwrap_or(serde_json::Value::Null);
    overrides::edit(app, &mut doc, options, components)?;
    let target = copy.path().join(&path);
    // The copy of the original is replaced, not written through (it may be a link into the shared checkout).
    std::fs::remove_file(&target).map_err(io)?;
    std::fs::write(&target, serde_json::to_vec(&doc).unwrap_or_default()).map_err(io)?;
    Ok(copy)
}
