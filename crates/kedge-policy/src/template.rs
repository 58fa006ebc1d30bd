//! ConstraintTemplates: their Rego (from `rego`/`libs` or a `code` entry with engine `Rego`), compiled once into
//! an interpreter that every evaluation clones.

use serde_json::Value;

use crate::error::PolicyError;
use crate::inventory::{SyncRequirement, parse_sync_requirements};

/// The only target Gatekeeper's admission templates name.
pub const TARGET: &str = "admission.k8s.gatekeeper.sh";

/// The annotation naming the kinds a referential template reads from `data.inventory`.
pub const REQUIRES_SYNC_DATA: &str = "metadata.gatekeeper.sh/requires-sync-data";

/// A compiled ConstraintTemplate.
#[derive(Clone)]
pub(crate) struct Template {
    /// `metadata.name`.
    pub(crate) name: String,
    /// The kind of its constraints (`spec.crd.spec.names.kind`).
    pub(crate) kind: String,
    /// The interpreter holding the template's modules, prepared.
    pub(crate) engine: regorus::Engine,
    /// `data.<package>.violation`.
    pub(crate) query: String,
    /// Whether the Rego mentions the inventory (then evaluations add `data.inventory`).
    pub(crate) referential: bool,
    /// What its `requires-sync-data` annotation names.
    pub(crate) sync: Vec<SyncRequirement>,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Template")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("query", &self.query)
            .field("referential", &self.referential)
            .finish_non_exhaustive()
    }
}

/// Whether a document is a ConstraintTemplate.
pub(crate) fn is_template(doc: &Value) -> bool {
    doc.get("kind").and_then(Value::as_str) == Some("ConstraintTemplate")
        && doc
            .get("apiVersion")
            .and_then(Value::as_str)
            .is_some_and(|v| v.starts_with("templates.gatekeeper.sh/"))
}

/// The Rego of a template's target: the main module, the libraries and whether it is Rego v1.
struct Source {
    rego: String,
    libs: Vec<String>,
    v1: bool,
}

impl Template {
    /// Reads and compiles a ConstraintTemplate.
    pub(crate) fn load(doc: &Value) -> Result<Self, PolicyError> {
        let name = doc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| PolicyError::Document {
                document: "ConstraintTemplate".to_owned(),
                message: "metadata.name is missing".to_owned(),
            })?
            .to_owned();
        let err = |message: String| PolicyError::Template {
            template: name.clone(),
            message,
        };
        let kind = doc
            .pointer("/spec/crd/spec/names/kind")
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| err("spec.crd.spec.names.kind is missing".to_owned()))?
            .to_owned();
        if name != kind.to_lowercase() {
            return Err(err(format!(
                "metadata.name must be the lowercase of the constraint kind {kind} ({}), as Gatekeeper requires",
                kind.to_lowercase()
            )));
        }
        let targets = doc
            .pointer("/spec/targets")
            .and_then(Value::as_array)
            .ok_or_else(|| err("spec.targets is missing".to_owned()))?;
        let [target] = targets.as_slice() else {
            return Err(err(format!(
                "spec.targets must hold exactly one target, not {}",
                targets.len()
            )));
        };
        let target_name = target
            .get("target")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if target_name != TARGET {
            return Err(err(format!(
                "target {target_name:?} is not supported (only {TARGET})"
            )));
        }
        let source = source(target).map_err(err)?;
        let sync = match doc
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(REQUIRES_SYNC_DATA))
            .and_then(Value::as_str)
        {
            Some(text) => parse_sync_requirements(text).map_err(err)?,
            None => Vec::new(),
        };
        let referential = source.rego.contains("inventory")
            || source.libs.iter().any(|l| l.contains("inventory"));

        let mut engine = regorus::Engine::new();
        engine.set_rego_v0(!source.v1);
        // OPA's (and Gatekeeper's) semantics: a builtin that fails makes its expression undefined.
        engine.set_strict_builtin_errors(false);
        if !source.v1 {
            crate::compat::add_deprecated_builtins(&mut engine).map_err(err)?;
        }
        let rego_err = |module: String, message: String| PolicyError::Rego {
            template: name.clone(),
            module,
            message: message.trim().to_owned(),
        };
        let main_path = format!("{name}/rego");
        let package = engine
            .add_policy(main_path.clone(), source.rego)
            .map_err(|e| rego_err("rego".to_owned(), format!("{e:#}")))?;
        for (i, lib) in source.libs.into_iter().enumerate() {
            let module = format!("libs[{i}]");
            let lib_package = engine
                .add_policy(format!("{name}/{module}"), lib)
                .map_err(|e| rego_err(module.clone(), format!("{e:#}")))?;
            if !lib_package.starts_with("data.lib.") {
                return Err(err(format!(
                    "{module}: package {} is not under data.lib, as Gatekeeper requires of libraries",
                    lib_package.trim_start_matches("data.")
                )));
            }
        }
        // The check cannot read every rule head (`violation[{"msg": msg}] if`, a v0 partial set written with
        // `future.keywords.if`, is an object-keyed head to it): when it cannot tell, the rule is assumed there.
        let declares_violation = engine
            .has_declared_rule_rooted_at(&main_path, "violation")
            .unwrap_or(true);
        if !declares_violation {
            return Err(err(format!(
                "the rego (package {}) has no violation rule",
                package.trim_start_matches("data.")
            )));
        }
        let query = format!("{package}.violation");
        // Analyse the modules now, so that errors surface here and each clone starts prepared.
        engine.set_input(regorus::Value::new_object());
        engine
            .eval_rule(query.clone())
            .map_err(|e| rego_err("rego".to_owned(), format!("{e:#}")))?;
        Ok(Self {
            name,
            kind,
            engine,
            query,
            referential,
            sync,
        })
    }
}

/// The Rego of a target: the legacy `rego`/`libs` fields, or the `code` entry with engine `Rego`.
fn source(target: &Value) -> Result<Source, String> {
    let libs_of = |v: Option<&Value>| -> Result<Vec<String>, String> {
        match v {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(list)) => list
                .iter()
                .map(|l| {
                    l.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| "libs must be a list of strings".to_owned())
                })
                .collect(),
            Some(_) => Err("libs must be a list of strings".to_owned()),
        }
    };
    let legacy = target
        .get("rego")
        .and_then(Value::as_str)
        .filter(|r| !r.trim().is_empty());
    let code = target
        .get("code")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let rego_code = code
        .iter()
        .find(|c| c.get("engine").and_then(Value::as_str) == Some("Rego"));
    match (legacy, rego_code) {
        (Some(_), Some(_)) => Err(
            "the target has both `rego` and a `code` entry with engine Rego; keep one".to_owned(),
        ),
        (Some(rego), None) => Ok(Source {
            rego: rego.to_owned(),
            libs: libs_of(target.get("libs"))?,
            v1: false,
        }),
        (None, Some(code)) => {
            let src = code.get("source").unwrap_or(&Value::Null);
            let rego = src
                .get("rego")
                .and_then(Value::as_str)
                .ok_or_else(|| "the code entry with engine Rego has no source.rego".to_owned())?;
            let v1 = match src.get("version").and_then(Value::as_str) {
                None | Some("") | Some("v0") => false,
                Some("v1") => true,
                Some(other) => return Err(format!("unknown Rego version {other:?} (v0, v1)")),
            };
            Ok(Source {
                rego: rego.to_owned(),
                libs: libs_of(src.get("libs"))?,
                v1,
            })
        }
        (None, None) => {
            let engines: Vec<&str> = code
                .iter()
                .filter_map(|c| c.get("engine").and_then(Value::as_str))
                .collect();
            if engines.is_empty() {
                Err("the target has no rego".to_owned())
            } else {
                Err(format!(
                    "the target has only {} code, which Kedge does not evaluate (it evaluates Rego)",
                    engines.join(", ")
                ))
            }
        }
    }
}
