//! `helm template` of a chart on disk, parsing of its output, post-render patches and the render cache.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use kedge_render::{ObjectId, RenderedObject, RenderedSet, SourceKind, SourceRef};
use kedge_source::FileTree;
use kedge_source::tree::clean_relative;
use serde_json::{Value, json};

use crate::command::{self, RunError};
use crate::error::HelmError;
use crate::hooks::map_hooks;
use crate::remote::FetchedChart;
use crate::values::{Hasher, Masker, ValuesLayer, escape_set_value};
use crate::{Capabilities, HelmOptions, HelmOutput, HelmRenderer};

/// A chart on disk, ready for `helm template`.
struct ChartOnDisk<'a> {
    dir: PathBuf,
    /// For messages: the tree path or `name version`.
    label: String,
    /// Replaces the chart name at the start of Helm's `# Source:` paths.
    source_prefix: String,
    digest: String,
    /// The chart's own name (the first component of Helm's `# Source:` paths).
    name: Option<String>,
    _tree: Option<&'a dyn FileTree>,
}

/// A value file that does not exist, named as the spec names it.
fn missing_value_file(file: &str, path: &str) -> HelmError {
    HelmError::invalid(format!(
        "value file {file:?} not found ({path}); set spec.source.helm.ignoreMissingValueFiles to skip missing value files"
    ))
}

fn remote_value_file(v: &str) -> bool {
    v.contains("://")
}

impl HelmRenderer {
    /// Renders the chart at `path` of `tree`. Value files are read through the tree (relative to the chart,
    /// never outside the tree); `extra` layers (from `valuesFrom`) come after `values` and `valuesObject`.
    pub fn render_tree(
        &self,
        tree: &dyn FileTree,
        path: &str,
        options: &HelmOptions,
        extra: &[ValuesLayer],
        capabilities: &Capabilities,
    ) -> Result<Arc<HelmOutput>, HelmError> {
        let tree_err = |p: &str| {
            let p = p.to_owned();
            move |source| HelmError::Tree { path: p, source }
        };
        let chart_path = clean_relative(path).map_err(tree_err(path))?.join("/");
        let mut files = Vec::with_capacity(options.value_files.len());
        for f in &options.value_files {
            if remote_value_file(f) {
                return Err(HelmError::invalid(format!(
                    "value file {f:?}: remote value files are not supported; put the file in the repository"
                )));
            }
            let joined = if chart_path.is_empty() {
                f.clone()
            } else {
                format!("{chart_path}/{f}")
            };
            let rel = clean_relative(&joined)
                .map_err(tree_err(&joined))?
                .join("/");
            let bytes = match tree.read_file(&rel) {
                Ok(b) => b,
                Err(kedge_source::TreeError::NotFound { .. }) => {
                    return Err(missing_value_file(f, &rel));
                }
                Err(e) => return Err(tree_err(&rel)(e)),
            };
            files.push(ValuesLayer::plain(rel, bytes));
        }
        let digest = tree.dir_id(&chart_path).map_err(tree_err(&chart_path))?;
        let root = tree.materialize().map_err(tree_err(""))?;
        let dir = if chart_path.is_empty() {
            root
        } else {
            root.join(&chart_path)
        };
        let label = if chart_path.is_empty() {
            ".".to_owned()
        } else {
            chart_path.clone()
        };
        let chart = ChartOnDisk {
            name: chart_name(&dir),
            dir,
            source_prefix: label.clone(),
            label: format!("{label} of {}", tree.describe()),
            digest,
            _tree: Some(tree),
        };
        self.render_on_disk(&chart, files, options, extra, capabilities)
    }

    /// Renders a chart fetched from a repository or registry. Value files are files of the chart.
    pub fn render_fetched(
        &self,
        chart: &FetchedChart,
        options: &HelmOptions,
        extra: &[ValuesLayer],
        capabilities: &Capabilities,
    ) -> Result<Arc<HelmOutput>, HelmError> {
        let root = chart.dir.canonicalize().map_err(|source| HelmError::Io {
            action: "open",
            path: chart.dir.clone(),
            source,
        })?;
        let mut files = Vec::with_capacity(options.value_files.len());
        for f in &options.value_files {
            if crate::is_ref_value_file(f) {
                let (_, bytes) = options
                    .ref_values
                    .iter()
                    .find(|(entry, _)| entry == f)
                    .ok_or_else(|| {
                        HelmError::invalid(format!(
                            "value file {f:?} names a source of spec.sources that was not read"
                        ))
                    })?;
                files.push(ValuesLayer::plain(f.clone(), bytes.clone()));
                continue;
            }
            if remote_value_file(f) {
                return Err(HelmError::invalid(format!(
                    "value file {f:?}: remote value files are not supported"
                )));
            }
            let rel = clean_relative(f)
                .map_err(|source| HelmError::Tree {
                    path: f.clone(),
                    source,
                })?
                .join("/");
            let full = root.join(&rel);
            if !full.exists() {
                return Err(missing_value_file(f, &rel));
            }
            let real = full.canonicalize().map_err(|source| HelmError::Io {
                action: "read the value file",
                path: PathBuf::from(&rel),
                source,
            })?;
            if !real.starts_with(&root) {
                return Err(HelmError::invalid(format!(
                    "value file {f:?} points outside the chart"
                )));
            }
            let bytes = std::fs::read(&real).map_err(|source| HelmError::Io {
                action: "read the value file",
                path: PathBuf::from(&rel),
                source,
            })?;
            files.push(ValuesLayer::plain(rel, bytes));
        }
        let on_disk = ChartOnDisk {
            dir: root,
            label: format!("{} {}", chart.name, chart.version),
            source_prefix: format!("{}@{}", chart.name, chart.version),
            digest: chart.digest.clone(),
            name: Some(chart.name.clone()),
            _tree: None,
        };
        self.render_on_disk(&on_disk, files, options, extra, capabilities)
    }

    fn render_on_disk(
        &self,
        chart: &ChartOnDisk<'_>,
        files: Vec<ValuesLayer>,
        options: &HelmOptions,
        extra: &[ValuesLayer],
        capabilities: &Capabilities,
    ) -> Result<Arc<HelmOutput>, HelmError> {
        let mut layers = files;
        if let Some(v) = options.values.as_deref().filter(|v| !v.trim().is_empty()) {
            layers.push(ValuesLayer::plain("spec.source.helm.values", v.as_bytes()));
        }
        if let Some(obj) = &options.values_object {
            if !obj.is_object() {
                return Err(HelmError::Values {
                    origin: "spec.source.helm.valuesObject".into(),
                    reason: "values must be a mapping".into(),
                });
            }
            let bytes = serde_json::to_vec(obj).map_err(|e| HelmError::Values {
                origin: "spec.source.helm.valuesObject".into(),
                reason: e.to_string(),
            })?;
            layers.push(ValuesLayer::plain("spec.source.helm.valuesObject", bytes));
        }
        layers.extend(extra.iter().cloned());
        let mut parsed = Vec::with_capacity(layers.len());
        for l in &layers {
            parsed.push((l.secret, l.parse()?));
        }
        let kube_version = options
            .kube_version
            .clone()
            .filter(|v| !v.trim().is_empty())
            .or_else(|| capabilities.kube_version.clone());
        let api_versions = if options.api_versions.is_empty() {
            capabilities.api_versions.clone()
        } else {
            options.api_versions.clone()
        };

        let mut h = Hasher::new();
        for l in &layers {
            h.part(&l.bytes);
        }
        h.part("params");
        for p in &options.parameters {
            h.part(&p.name)
                .part(&p.value)
                .part([u8::from(p.force_string)]);
        }
        h.part(&options.release_name)
            .part(&options.namespace)
            .part(kube_version.as_deref().unwrap_or_default())
            .part(api_versions.join(","))
            .part([u8::from(options.skip_crds)])
            .part(format!("{:?}", options.mode))
            .part(serde_json::to_vec(&options.patches).unwrap_or_default());
        let values_digest = h.finish();
        let key = format!("{}\u{0}{values_digest}", chart.digest);
        if self.config.max_cached_renders > 0
            && let Some(hit) = self.lock().get(&key)
        {
            tracing::debug!(chart = chart.label, "helm render cache hit");
            return Ok(hit);
        }

        let started = Instant::now();
        let helm = command::resolve(self.config.binary.as_deref())?;
        let home = tempfile::Builder::new()
            .prefix("kedge-helm-")
            .tempdir()
            .map_err(|source| HelmError::Io {
                action: "create a scratch directory in",
                path: std::env::temp_dir(),
                source,
            })?;
        let mut args: Vec<OsString> = vec![
            "template".into(),
            options.release_name.clone().into(),
            chart.dir.clone().into(),
            "--namespace".into(),
            options.namespace.clone().into(),
        ];
        args.push(if options.skip_crds {
            "--skip-crds".into()
        } else {
            "--include-crds".into()
        });
        if let Some(v) = &kube_version {
            args.push("--kube-version".into());
            args.push(v.into());
        }
        if !api_versions.is_empty() {
            args.push(format!("--api-versions={}", api_versions.join(",")).into());
        }
        for (i, l) in layers.iter().enumerate() {
            let file = home.path().join(format!("values-{i}.yaml"));
            write_private(&file, &l.bytes)?;
            args.push("--values".into());
            args.push(file.into());
        }
        for p in &options.parameters {
            args.push(if p.force_string {
                "--set-string".into()
            } else {
                "--set".into()
            });
            args.push(format!("{}={}", p.name, escape_set_value(&p.value)).into());
        }
        let program = helm.display().to_string();
        let finished = command::run(
            &helm,
            &args,
            home.path(),
            self.config.timeout,
            self.config.max_output_bytes,
        );
        let finished = match finished {
            Ok(f) => f,
            Err(RunError::Io(source)) => return Err(HelmError::HelmIo { program, source }),
            Err(RunError::Timeout) => {
                return Err(HelmError::HelmTimeout {
                    chart: chart.label.clone(),
                    timeout: self.config.timeout,
                });
            }
            Err(RunError::TooLarge) => {
                return Err(HelmError::OutputTooLarge {
                    chart: chart.label.clone(),
                    limit: self.config.max_output_bytes,
                });
            }
        };
        drop(home);
        if !finished.status.success() {
            let masker = Masker::new(&parsed);
            let stderr = masker.mask(&String::from_utf8_lossy(&finished.stderr));
            return Err(HelmError::HelmFailed {
                chart: chart.label.clone(),
                status: finished.status.to_string(),
                stderr: command::tail(&stderr),
            });
        }
        // Helm 3 skips the hooks it does not know, Helm 2's crd-install among them: a chart relying on it would
        // lose its definitions without a word.
        let stderr = String::from_utf8_lossy(&finished.stderr);
        if stderr
            .lines()
            .any(|l| l.contains("skipping unknown hook") && l.contains("crd-install"))
        {
            return Err(HelmError::CrdInstallHook {
                chart: chart.label.clone(),
            });
        }
        let objects = parse_output(&finished.stdout, chart)?;
        let objects = if options.patches.is_empty() {
            objects
        } else {
            self.post_render(objects, &options.patches, chart)?
        };
        let mut errors = Vec::new();
        kedge_render::object::check_duplicates(&objects, &mut errors);
        if !errors.is_empty() {
            return Err(kedge_render::RenderError::from_list(&chart.label, errors).into());
        }
        let mut mapped = map_hooks(objects, options.mode);
        // Values read from Secrets (valuesFrom) may be rendered into any kind (a ConfigMap's configuration file):
        // the fields holding them are marked, so that no diff or view shows them.
        let secrets = Masker::new(&parsed);
        for o in mapped
            .objects
            .iter_mut()
            .chain(mapped.delete_hooks.iter_mut())
            .chain(mapped.test_hooks.iter_mut())
        {
            let fields = kedge_render::object::pointers_containing(&o.object, secrets.needles());
            kedge_render::object::mark_sensitive(&mut o.object, fields);
        }
        for (what, why) in &mapped.skipped {
            tracing::debug!(
                chart = chart.label,
                object = what,
                reason = why,
                "hook left out"
            );
        }
        let out = Arc::new(HelmOutput {
            rendered: Arc::new(RenderedSet {
                objects: mapped.objects,
                kind: SourceKind::Helm,
                inputs: vec![
                    (chart.source_prefix.clone(), chart.digest.clone()),
                    ("values".into(), values_digest.clone()),
                ],
            }),
            delete_hooks: mapped.delete_hooks,
            test_hooks: mapped.test_hooks,
            chart_digest: chart.digest.clone(),
            values_digest,
        });
        tracing::debug!(
            chart = chart.label,
            objects = out.rendered.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "helm template finished"
        );
        self.lock().insert(key, out.clone());
        Ok(out)
    }

    /// Applies kustomize patches to the named objects of a render; objects named by `generateName` pass as
    /// they are (kustomize needs names).
    fn post_render(
        &self,
        objects: Vec<RenderedObject>,
        patches: &[kedge_api::KustomizePatch],
        chart: &ChartOnDisk<'_>,
    ) -> Result<Vec<RenderedObject>, HelmError> {
        let (named, unnamed): (Vec<_>, Vec<_>) =
            objects.into_iter().partition(|o| !o.name.is_empty());
        let sources: HashMap<ObjectId, SourceRef> =
            named.iter().map(|o| (o.id(), o.source.clone())).collect();
        let dir = tempfile::Builder::new()
            .prefix("kedge-helm-post-")
            .tempdir()
            .map_err(|source| HelmError::Io {
                action: "create a scratch directory in",
                path: std::env::temp_dir(),
                source,
            })?;
        let mut stream = String::new();
        for o in &named {
            stream.push_str("---\n");
            stream.push_str(&serde_json::to_string(&o.object).unwrap_or_default());
            stream.push('\n');
        }
        write_private(&dir.path().join("helm-output.yaml"), stream.as_bytes())?;
        let patches: Vec<Value> = patches
            .iter()
            .map(|p| {
                let mut v = json!({"patch": p.patch});
                if let Some(t) = &p.target {
                    v["target"] = serde_json::to_value(t).unwrap_or_default();
                }
                v
            })
            .collect();
        let kustomization = json!({
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": ["helm-output.yaml"],
            "patches": patches,
        });
        write_private(
            &dir.path().join("kustomization.yaml"),
            &serde_json::to_vec(&kustomization).unwrap_or_default(),
        )?;
        let kustomize = &self.config.kustomize;
        let command = kedge_render::KustomizeCommand::resolve(kustomize)?;
        let label = format!("post-render of {}", chart.label);
        let output = kedge_render::kustomize::build(&command, kustomize, dir.path(), &label)?;
        let docs = kedge_render::parse::parse_yaml(&label, &output)?;
        let mut out = Vec::with_capacity(docs.len() + unnamed.len());
        let mut errors = Vec::new();
        for d in docs {
            let source = SourceRef {
                file: label.clone(),
                document: d.index,
                item: None,
                line: 0,
            };
            kedge_render::object::objects_from_document(d.value, source, &mut out, &mut errors);
        }
        if !errors.is_empty() {
            return Err(kedge_render::RenderError::from_list(&label, errors).into());
        }
        for o in &mut out {
            if let Some(s) = sources.get(&o.id()) {
                o.source = s.clone();
            }
        }
        out.extend(unnamed);
        Ok(out)
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), HelmError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| HelmError::Io {
        action: "write",
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)
}

/// The `name` of `Chart.yaml`, when it can be read.
fn chart_name(dir: &Path) -> Option<String> {
    let bytes = std::fs::read(dir.join("Chart.yaml")).ok()?;
    let docs = kedge_render::parse::parse_yaml("Chart.yaml", &bytes).ok()?;
    docs.first()?.value.get("name")?.as_str().map(str::to_owned)
}

/// Splits Helm's output into documents, naming each after the template it came from (`# Source:`).
fn parse_output(stdout: &[u8], chart: &ChartOnDisk<'_>) -> Result<Vec<RenderedObject>, HelmError> {
    let text = String::from_utf8_lossy(stdout);
    let mut chunks: Vec<(Option<String>, String)> = vec![(None, String::new())];
    for line in text.split_inclusive('\n') {
        if line.trim_end() == "---" {
            chunks.push((None, String::new()));
            continue;
        }
        let Some(last) = chunks.last_mut() else {
            continue;
        };
        if last.0.is_none()
            && let Some(src) = line.trim_end().strip_prefix("# Source: ")
        {
            last.0 = Some(src.trim().to_owned());
        }
        last.1.push_str(line);
    }
    let mut per_file: HashMap<String, usize> = HashMap::new();
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    for (source, body) in chunks {
        if body.trim().is_empty() {
            continue;
        }
        let file = match source {
            Some(s) => match (&chart.name, s.split_once('/')) {
                (Some(name), Some((first, rest))) if first == name => {
                    format!("{}/{rest}", chart.source_prefix)
                }
                _ => s,
            },
            None => format!("{} (helm output)", chart.source_prefix),
        };
        let docs = kedge_render::parse::parse_yaml(&file, body.as_bytes())?;
        for d in docs {
            let n = per_file.entry(file.clone()).or_default();
            let source = SourceRef {
                file: file.clone(),
                document: *n,
                item: None,
                line: 0,
            };
            *n += 1;
            kedge_render::object::objects_from_document(d.value, source, &mut objects, &mut errors);
        }
    }
    if !errors.is_empty() {
        return Err(kedge_render::RenderError::from_list(&chart.label, errors).into());
    }
    Ok(objects)
}
