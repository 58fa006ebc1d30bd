//! The generators: each turns its spec into parameter sets (list, clusters, git, matrix, merge), with the
//! `selector` post-filter.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kedge_api::{
    ApplicationSetGenerator, ApplicationSetTemplate, ClusterGenerator, FreeForm, Generator,
    GitGenerator, LabelSelector, ListGenerator, MatrixGenerator, MergeGenerator, NestedGenerator,
};
use kedge_source::{EntryKind, FileTree};
use serde_json::{Map, Value};

use crate::gotmpl::normalize;
use crate::template::{self, Engine};
use crate::{Error, Inputs};

/// A parameter set: flat `name -> string` for plain templates, nested JSON for Go templates.
pub type Params = Map<String, Value>;

/// Parameter sets with the generator template (if any) that renders them.
pub struct Generated {
    /// The parameter sets.
    pub params: Vec<Params>,
    /// The generator's own template, laid over the set's.
    pub template: Option<ApplicationSetTemplate>,
}

/// A repository read once per generation: its tree, and its directories and files (walked once).
#[derive(Clone)]
pub(crate) struct Opened {
    tree: Arc<dyn FileTree>,
    listing: Arc<(Vec<String>, Vec<String>)>,
}

/// What every generator needs: the inputs, the engine, and repositories already opened.
pub struct Ctx<'a> {
    pub(crate) inputs: &'a Inputs<'a>,
    pub(crate) engine: Engine,
    /// Repositories already read, by URL and revision: the tree and its directories and files.
    pub(crate) trees: HashMap<(String, String), Opened>,
}

impl Ctx<'_> {
    fn go(&self) -> bool {
        matches!(self.engine, Engine::Go(_))
    }
}

fn unsupported(field: String, what: &str) -> Error {
    Error::Unsupported {
        field,
        message: format!("the {what} generator is not supported by Kedge yet"),
    }
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> Error {
    Error::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// The kinds of a generator, as they are spelled in the spec, with the refused ones.
struct Kinds<'g> {
    list: Option<&'g ListGenerator>,
    clusters: Option<&'g ClusterGenerator>,
    git: Option<&'g GitGenerator>,
    matrix: Option<MatrixGenerator>,
    merge: Option<MergeGenerator>,
    selector: Option<&'g LabelSelector>,
    refused: Vec<&'static str>,
}

impl<'g> Kinds<'g> {
    /// The kinds of any generator, with its `matrix` and `merge` as given.
    fn of<A, B>(
        g: &'g Generator<A, B>,
        matrix: Option<MatrixGenerator>,
        merge: Option<MergeGenerator>,
    ) -> Self {
        let refused = [
            (g.scm_provider.is_some(), "scmProvider"),
            (g.pull_request.is_some(), "pullRequest"),
            (
                g.cluster_decision_resource.is_some(),
                "clusterDecisionResource",
            ),
            (g.plugin.is_some(), "plugin"),
        ];
        Self {
            list: g.list.as_ref(),
            clusters: g.clusters.as_ref(),
            git: g.git.as_ref(),
            matrix,
            merge,
            selector: g.selector.as_ref(),
            refused: refused
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, n)| *n)
                .collect(),
        }
    }

    fn top(g: &'g ApplicationSetGenerator) -> Self {
        Self::of(g, g.matrix.clone(), g.merge.clone())
    }

    /// A generator inside a matrix or merge at `depth`: its own matrix or merge is read from JSON, and refused
    /// deeper than Argo CD allows.
    fn nested(g: &'g NestedGenerator, field: &str, depth: usize) -> Result<Self, Error> {
        fn read<T: serde::de::DeserializeOwned>(
            v: &Option<FreeForm>,
            field: &str,
            kind: &str,
            depth: usize,
        ) -> Result<Option<T>, Error> {
            let Some(FreeForm(v)) = v else {
                return Ok(None);
            };
            if depth >= 2 {
                return Err(invalid(
                    format!("{field}.{kind}"),
                    "matrix and merge generators nest one level deep at most (as in Argo CD)",
                ));
            }
            serde_path_to_error::deserialize(v).map(Some).map_err(|e| {
                invalid(
                    format!("{field}.{kind}.{}", e.path()),
                    e.inner().to_string(),
                )
            })
        }
        let matrix = read(&g.matrix, field, "matrix", depth)?;
        let merge = read(&g.merge, field, "merge", depth)?;
        Ok(Self::of(g, matrix, merge))
    }
}

/// Runs the top-level generator `g`.
pub fn top(
    ctx: &mut Ctx<'_>,
    g: &ApplicationSetGenerator,
    field: &str,
) -> Result<Generated, Error> {
    run(ctx, Kinds::top(g), field, 1)
}

fn run(ctx: &mut Ctx<'_>, k: Kinds<'_>, field: &str, depth: usize) -> Result<Generated, Error> {
    if let Some(first) = k.refused.first() {
        return Err(unsupported(format!("{field}.{first}"), first));
    }
    let count = [
        k.list.is_some(),
        k.clusters.is_some(),
        k.git.is_some(),
        k.matrix.is_some(),
        k.merge.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if count != 1 {
        return Err(invalid(
            field,
            format!(
                "a generator has exactly one of list, clusters, git, matrix, merge (found {count})"
            ),
        ));
    }
    let (params, template) = if let Some(list) = k.list {
        (
            list_params(ctx, list, &format!("{field}.list"))?,
            list.template.clone(),
        )
    } else if let Some(clusters) = k.clusters {
        (
            cluster_params(ctx, clusters, &format!("{field}.clusters"))?,
            clusters.template.clone(),
        )
    } else if let Some(git) = k.git {
        (
            git_params(ctx, git, &format!("{field}.git"))?,
            git.template.clone(),
        )
    } else if let Some(matrix) = &k.matrix {
        (
            matrix_params(ctx, matrix, &format!("{field}.matrix"), depth)?,
            matrix.template.clone(),
        )
    } else if let Some(merge) = &k.merge {
        (
            merge_params(ctx, merge, &format!("{field}.merge"), depth)?,
            merge.template.clone(),
        )
    } else {
        (Vec::new(), None)
    };
    let params = match k.selector {
        Some(sel) => {
            check_selector(sel, &format!("{field}.selector"))?;
            params
                .into_iter()
                .filter(|p| {
                    let flat = flatten_params(p);
                    selector_matches(sel, &flat)
                })
                .collect()
        }
        None => params,
    };
    Ok(Generated { params, template })
}

// ----- list ------------------------------------------------------------------------------------------------------

fn list_params(ctx: &Ctx<'_>, list: &ListGenerator, field: &str) -> Result<Vec<Params>, Error> {
    let mut elements = list.elements.clone();
    if let Some(yaml) = list
        .elements_yaml
        .as_deref()
        .filter(|y| !y.trim().is_empty())
    {
        let parsed: Value = serde_saphyr::from_str(yaml)
            .map_err(|e| invalid(format!("{field}.elementsYaml"), format!("not YAML: {e}")))?;
        match parsed {
            Value::Array(a) => elements.extend(a),
            _ => {
                return Err(invalid(
                    format!("{field}.elementsYaml"),
                    "expected a list of objects",
                ));
            }
        }
    }
    let mut out = Vec::new();
    for (i, e) in elements.into_iter().enumerate() {
        let Value::Object(m) = e else {
            return Err(invalid(
                format!("{field}.elements[{i}]"),
                "expected an object",
            ));
        };
        if ctx.go() {
            out.push(m);
            continue;
        }
        let mut p = Params::new();
        for (k, v) in m {
            match (k.as_str(), v) {
                ("values", Value::Object(values)) => {
                    for (vk, vv) in values {
                        p.insert(format!("values.{vk}"), Value::String(scalar(&vv)));
                    }
                }
                (_, v @ (Value::Object(_) | Value::Array(_))) => {
                    return Err(invalid(
                        format!("{field}.elements[{i}].{k}"),
                        format!(
                            "{} values need `goTemplate: true` (plain templates take strings)",
                            if v.is_object() { "object" } else { "list" }
                        ),
                    ));
                }
                (_, v) => {
                    p.insert(k, Value::String(scalar(&v)));
                }
            }
        }
        out.push(p);
    }
    Ok(out)
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => crate::gotmpl::print_value(other),
    }
}

/// A cluster a clusters generator found: name, server, labels, annotations.
type FoundCluster = (
    String,
    String,
    BTreeMap<String, String>,
    BTreeMap<String, String>,
);

// ----- clusters --------------------------------------------------------------------------------------------------

fn cluster_params(
    ctx: &Ctx<'_>,
    gen_: &ClusterGenerator,
    field: &str,
) -> Result<Vec<Params>, Error> {
    if gen_.flat_list.is_some() {
        return Err(Error::Unsupported {
            field: format!("{field}.flatList"),
            message: "flatList is not supported by Kedge yet".into(),
        });
    }
    let selector = gen_.selector.clone().unwrap_or_default();
    check_selector(&selector, &format!("{field}.selector"))?;
    let no_selector = selector.match_labels.is_empty() && selector.match_expressions.is_empty();
    let mut found: Vec<FoundCluster> = Vec::new();
    for c in ctx.inputs.clusters {
        let labels = c.metadata.labels.clone().unwrap_or_default();
        if !selector_matches(&selector, &labels) {
            continue;
        }
        let annotations = c.metadata.annotations.clone().unwrap_or_default();
        let name = c.metadata.name.clone().unwrap_or_default();
        found.push((name, c.spec.server.clone(), labels, annotations));
    }
    // As Argo CD: the local cluster takes part when no selector is given, unless a registered one stands for it.
    let local_registered = ctx.inputs.clusters.iter().any(|c| {
        kedge_api::normalize_server(&c.spec.server) == kedge_api::IN_CLUSTER_SERVER
            || c.metadata.name.as_deref() == Some(kedge_api::IN_CLUSTER_NAME)
    });
    if no_selector && ctx.inputs.local_cluster && !local_registered {
        found.insert(
            0,
            (
                kedge_api::IN_CLUSTER_NAME.to_owned(),
                kedge_api::IN_CLUSTER_SERVER.to_owned(),
                BTreeMap::new(),
                BTreeMap::new(),
            ),
        );
    }
    let mut out = Vec::new();
    for (name, server, labels, annotations) in found {
        let mut p = Params::new();
        let s = |v: &str| Value::String(v.to_owned());
        if ctx.go() {
            p.insert("name".into(), s(&name));
            p.insert("nameNormalized".into(), s(&normalize(&name)));
            p.insert("server".into(), s(&server));
            p.insert(
                "metadata".into(),
                serde_json::json!({"labels": labels, "annotations": annotations}),
            );
        } else {
            p.insert("name".into(), s(&name));
            p.insert("nameNormalized".into(), s(&normalize(&name)));
            p.insert("server".into(), s(&server));
            for (k, v) in &labels {
                p.insert(format!("metadata.labels.{k}"), s(v));
            }
            for (k, v) in &annotations {
                p.insert(format!("metadata.annotations.{k}"), s(v));
            }
        }
        add_values(ctx, &mut p, &gen_.values, field)?;
        out.push(p);
    }
    Ok(out)
}

/// Adds `values.<key>`, each rendered with the parameters so far.
fn add_values(
    ctx: &Ctx<'_>,
    p: &mut Params,
    values: &BTreeMap<String, String>,
    field: &str,
) -> Result<(), Error> {
    if values.is_empty() {
        return Ok(());
    }
    let mut rendered = Map::new();
    for (k, v) in values {
        let text = template::render_str(v, p, ctx.engine).map_err(|source| Error::Template {
            field: format!("{field}.values.{k}"),
            source,
        })?;
        rendered.insert(k.clone(), Value::String(text));
    }
    if ctx.go() {
        p.insert("values".into(), Value::Object(rendered));
    } else {
        for (k, v) in rendered {
            p.insert(format!("values.{k}"), v);
        }
    }
    Ok(())
}

// ----- selectors -------------------------------------------------------------------------------------------------

fn check_selector(sel: &LabelSelector, field: &str) -> Result<(), Error> {
    for (i, r) in sel.match_expressions.iter().enumerate() {
        match r.operator.as_str() {
            "In" | "NotIn" if r.values.is_empty() => {
                return Err(invalid(
                    format!("{field}.matchExpressions[{i}].values"),
                    format!("operator {} needs values", r.operator),
                ));
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => {
                return Err(invalid(
                    format!("{field}.matchExpressions[{i}].operator"),
                    format!("unknown operator {other:?} (In, NotIn, Exists, DoesNotExist)"),
                ));
            }
        }
    }
    Ok(())
}

/// Whether labels (looked up by `get`) match the selector; an empty selector matches everything.
pub fn selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    sel.match_labels
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
        && sel.match_expressions.iter().all(|r| {
            let value = labels.get(&r.key);
            match r.operator.as_str() {
                "In" => value.is_some_and(|v| r.values.iter().any(|x| x == v)),
                "NotIn" => value.is_none_or(|v| !r.values.iter().any(|x| x == v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// A parameter set as `a.b.c -> text` (what selectors and merge keys look at).
pub fn flatten_params(p: &Params) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    fn walk(prefix: &str, v: &Value, out: &mut BTreeMap<String, String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    walk(&format!("{prefix}.{i}"), v, out);
                }
            }
            other => {
                out.insert(prefix.to_owned(), scalar(other));
            }
        }
    }
    for (k, v) in p {
        walk(k, v, &mut out);
    }
    out
}

// ----- git -------------------------------------------------------------------------------------------------------

fn git_params(ctx: &mut Ctx<'_>, git: &GitGenerator, field: &str) -> Result<Vec<Params>, Error> {
    let revision = git
        .revision
        .clone()
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "HEAD".into());
    match (git.directories.is_empty(), git.files.is_empty()) {
        (false, false) => return Err(invalid(field, "give either directories or files, not both")),
        (true, true) => return Err(invalid(field, "give directories or files")),
        _ => {}
    }
    let tree_err = |e: kedge_source::TreeError| Error::Git {
        field: field.to_owned(),
        repo: git.repo_url.clone(),
        revision: revision.clone(),
        message: e.to_string(),
    };
    let key = (git.repo_url.clone(), revision.clone());
    let opened = match ctx.trees.get(&key) {
        Some(o) => o.clone(),
        None => {
            let tree = ctx
                .inputs
                .git
                .tree(&git.repo_url, &revision)
                .map_err(|message| Error::Git {
                    field: field.to_owned(),
                    repo: git.repo_url.clone(),
                    revision: revision.clone(),
                    message,
                })?;
            let listing = Arc::new(walk(tree.as_ref()).map_err(tree_err)?);
            let o = Opened { tree, listing };
            ctx.trees.insert(key, o.clone());
            o
        }
    };
    let (tree, (dirs, files)) = (&opened.tree, opened.listing.as_ref());
    let prefix = git.path_param_prefix.clone().unwrap_or_default();
    let mut out = Vec::new();
    if !git.directories.is_empty() {
        let globs = globs(&git.directories, &format!("{field}.directories"))?;
        for dir in dirs.iter().filter(|d| globs.matches(d)) {
            let mut p = path_params(ctx.go(), &prefix, dir, None);
            add_values(ctx, &mut p, &git.values, field)?;
            out.push(p);
        }
    } else {
        let globs = globs(&git.files, &format!("{field}.files"))?;
        for file in files.iter().filter(|f| globs.matches(f)) {
            let bytes = tree.read_file(file).map_err(tree_err)?;
            let text = String::from_utf8(bytes).map_err(|_| Error::GitFile {
                field: field.to_owned(),
                repo: git.repo_url.clone(),
                file: file.clone(),
                message: "not UTF-8 text".into(),
            })?;
            let doc: Value = serde_saphyr::from_str(&text).map_err(|e| Error::GitFile {
                field: field.to_owned(),
                repo: git.repo_url.clone(),
                file: file.clone(),
                message: format!("not JSON or YAML: {e}"),
            })?;
            let objects = match doc {
                Value::Array(a) => a,
                Value::Null => Vec::new(),
                other => vec![other],
            };
            for obj in objects {
                let Value::Object(m) = obj else {
                    return Err(Error::GitFile {
                        field: field.to_owned(),
                        repo: git.repo_url.clone(),
                        file: file.clone(),
                        message: "expected an object (or a list of objects)".into(),
                    });
                };
                let mut p = if ctx.go() {
                    m
                } else {
                    flatten_params(&m)
                        .into_iter()
                        .map(|(k, v)| (k, Value::String(v)))
                        .collect()
                };
                let (dir, name) = file.rsplit_once('/').unwrap_or((".", file.as_str()));
                for (k, v) in path_params(ctx.go(), &prefix, dir, Some(name)) {
                    p.insert(k, v);
                }
                add_values(ctx, &mut p, &git.values, field)?;
                out.push(p);
            }
        }
    }
    Ok(out)
}

/// Include and exclude globs of a Git generator.
struct Globs {
    include: globset::GlobSet,
    exclude: globset::GlobSet,
}

impl Globs {
    fn matches(&self, path: &str) -> bool {
        self.include.is_match(path) && !self.exclude.is_match(path)
    }
}

fn globs(list: &[kedge_api::GitPathGlob], field: &str) -> Result<Globs, Error> {
    let mut include = globset::GlobSetBuilder::new();
    let mut exclude = globset::GlobSetBuilder::new();
    for (i, g) in list.iter().enumerate() {
        let glob = globset::GlobBuilder::new(g.path.trim_start_matches("./"))
            .literal_separator(true)
            .build()
            .map_err(|e| invalid(format!("{field}[{i}].path"), e.to_string()))?;
        if g.exclude {
            exclude.add(glob);
        } else {
            include.add(glob);
        }
    }
    let build = |b: globset::GlobSetBuilder| b.build().map_err(|e| invalid(field, e.to_string()));
    Ok(Globs {
        include: build(include)?,
        exclude: build(exclude)?,
    })
}

/// Every directory and file of the tree, as paths from its root.
fn walk(tree: &dyn FileTree) -> Result<(Vec<String>, Vec<String>), kedge_source::TreeError> {
    let (mut dirs, mut files) = (Vec::new(), Vec::new());
    let mut todo = vec![String::new()];
    while let Some(dir) = todo.pop() {
        for e in tree.read_dir(&dir)? {
            let path = if dir.is_empty() {
                e.name.clone()
            } else {
                format!("{dir}/{}", e.name)
            };
            match e.kind {
                EntryKind::Dir => {
                    dirs.push(path.clone());
                    todo.push(path);
                }
                EntryKind::File => files.push(path),
            }
        }
    }
    dirs.sort();
    files.sort();
    Ok((dirs, files))
}

/// The path parameters of a directory (and file): `path`, `path.basename`, `path[n]`, ... or, for Go templates,
/// `path.path`, `path.segments`, ...; under `prefix` when one is given.
fn path_params(go: bool, prefix: &str, dir: &str, file: Option<&str>) -> Params {
    let segments: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
    let basename = segments.last().copied().unwrap_or(dir);
    let mut p = Params::new();
    let s = |v: &str| Value::String(v.to_owned());
    if go {
        let mut path = Map::new();
        path.insert("path".into(), s(dir));
        path.insert("basename".into(), s(basename));
        path.insert("basenameNormalized".into(), s(&normalize(basename)));
        path.insert(
            "segments".into(),
            Value::Array(segments.iter().map(|x| s(x)).collect()),
        );
        if let Some(f) = file {
            path.insert("filename".into(), s(f));
            path.insert("filenameNormalized".into(), s(&normalize(f)));
        }
        let mut value = Value::Object(Map::from_iter([("path".to_owned(), Value::Object(path))]));
        for part in prefix.split('.').filter(|x| !x.is_empty()).rev() {
            value = Value::Object(Map::from_iter([(part.to_owned(), value)]));
        }
        if let Value::Object(m) = value {
            p = m;
        }
    } else {
        let key = if prefix.is_empty() {
            "path".to_owned()
        } else {
            format!("{prefix}.path")
        };
        p.insert(key.clone(), s(dir));
        p.insert(format!("{key}.basename"), s(basename));
        p.insert(format!("{key}.basenameNormalized"), s(&normalize(basename)));
        for (i, seg) in segments.iter().enumerate() {
            p.insert(format!("{key}[{i}]"), s(seg));
        }
        if let Some(f) = file {
            p.insert(format!("{key}.filename"), s(f));
            p.insert(format!("{key}.filenameNormalized"), s(&normalize(f)));
        }
    }
    p
}

// ----- matrix and merge ------------------------------------------------------------------------------------------

fn children<'g>(
    gens: &'g [NestedGenerator],
    field: &str,
    depth: usize,
) -> Result<Vec<(String, Kinds<'g>)>, Error> {
    gens.iter()
        .enumerate()
        .map(|(i, g)| {
            let f = format!("{field}.generators[{i}]");
            let k = Kinds::nested(g, &f, depth)?;
            let has_template = k.list.is_some_and(|x| x.template.is_some())
                || k.clusters.is_some_and(|x| x.template.is_some())
                || k.git.is_some_and(|x| x.template.is_some())
                || k.matrix.as_ref().is_some_and(|x| x.template.is_some())
                || k.merge.as_ref().is_some_and(|x| x.template.is_some());
            if has_template {
                return Err(Error::Unsupported {
                    field: format!("{f}.template"),
                    message: "templates of generators inside matrix or merge are not used by Argo CD; remove it"
                        .into(),
                });
            }
            Ok((f, k))
        })
        .collect()
}

fn matrix_params(
    ctx: &mut Ctx<'_>,
    m: &MatrixGenerator,
    field: &str,
    depth: usize,
) -> Result<Vec<Params>, Error> {
    if m.generators.len() != 2 {
        return Err(invalid(
            format!("{field}.generators"),
            format!(
                "a matrix combines exactly two generators (found {})",
                m.generators.len()
            ),
        ));
    }
    let kinds = children(&m.generators, field, depth)?;
    let mut kinds = kinds.into_iter();
    let (Some((f1, k1)), Some((f2, _))) = (kinds.next(), kinds.next()) else {
        return Ok(Vec::new());
    };
    let first = run(ctx, k1, &f1, depth + 1)?.params;
    let mut out = Vec::new();
    for a in first {
        // The second generator may use the first's parameters: its spec is rendered with them.
        let spec =
            serde_json::to_value(&m.generators[1]).map_err(|e| invalid(&f2, e.to_string()))?;
        let rendered =
            template::render_value(&spec, &a, ctx.engine).map_err(|source| Error::Template {
                field: f2.clone(),
                source,
            })?;
        let second: NestedGenerator = serde_path_to_error::deserialize(rendered)
            .map_err(|e| invalid(format!("{f2}.{}", e.path()), e.inner().to_string()))?;
        let k2 = Kinds::nested(&second, &f2, depth)?;
        for b in run(ctx, k2, &f2, depth + 1)?.params {
            out.push(combine(ctx.go(), &a, &b, field)?);
        }
    }
    Ok(out)
}

/// One matrix parameter set from two: Go templates merge deeply (the second wins); plain ones refuse a parameter
/// both give with different values, as Argo CD does.
fn combine(go: bool, a: &Params, b: &Params, field: &str) -> Result<Params, Error> {
    let mut out = a.clone();
    if go {
        template::deep_merge(&mut out, b);
        return Ok(out);
    }
    for (k, v) in b {
        match out.get(k) {
            Some(old) if old != v => {
                return Err(invalid(
                    field,
                    format!(
                        "both generators give parameter {k:?}, with different values ({old} and {v})"
                    ),
                ));
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(out)
}

fn merge_params(
    ctx: &mut Ctx<'_>,
    m: &MergeGenerator,
    field: &str,
    depth: usize,
) -> Result<Vec<Params>, Error> {
    if m.generators.len() < 2 {
        return Err(invalid(
            format!("{field}.generators"),
            format!(
                "a merge needs at least two generators (found {})",
                m.generators.len()
            ),
        ));
    }
    if m.merge_keys.is_empty() {
        return Err(invalid(
            format!("{field}.mergeKeys"),
            "give at least one merge key",
        ));
    }
    let mut sets = Vec::new();
    for (f, k) in children(&m.generators, field, depth)? {
        let params = run(ctx, k, &f, depth + 1)?.params;
        sets.push((f, params));
    }
    let key_of = |p: &Params| -> String {
        let flat = flatten_params(p);
        let parts: Vec<Value> = m
            .merge_keys
            .iter()
            .map(|k| match p.get(k) {
                Some(v) => v.clone(),
                None => flat
                    .get(k)
                    .map(|s| Value::String(s.clone()))
                    .unwrap_or(Value::Null),
            })
            .collect();
        Value::Array(parts).to_string()
    };
    let mut sets = sets.into_iter();
    let Some((base_field, mut base)) = sets.next() else {
        return Ok(Vec::new());
    };
    check_unique(&base, &key_of, &base_field)?;
    for (f, other) in sets {
        let by_key = check_unique(&other, &key_of, &f)?;
        for p in &mut base {
            if let Some(&i) = by_key.get(&key_of(p)) {
                if ctx.go() {
                    template::deep_merge(p, &other[i]);
                } else {
                    for (k, v) in &other[i] {
                        p.insert(k.clone(), v.clone());
                    }
                }
            }
        }
    }
    Ok(base)
}

fn check_unique(
    sets: &[Params],
    key_of: &dyn Fn(&Params) -> String,
    field: &str,
) -> Result<HashMap<String, usize>, Error> {
    let mut seen = HashMap::new();
    for (i, p) in sets.iter().enumerate() {
        let key = key_of(p);
        if seen.insert(key.clone(), i).is_some() {
            return Err(invalid(
                field,
                format!(
                    "two parameter sets have the same merge key values {key}: merge keys must be unique"
                ),
            ));
        }
    }
    Ok(seen)
}
