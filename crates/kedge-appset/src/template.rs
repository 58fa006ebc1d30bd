//! Rendering parameter sets into the template: plain `{{param}}` substitution or Go templates, generators'
//! templates over the set's, `templatePatch`, and the check that the result is a valid `Application`.

use serde_json::{Map, Value};

use crate::Error;
use crate::gotmpl::{self, MissingKey};

/// How strings of the template are rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// Argo CD's default: `{{param}}` (blanks allowed inside) replaced by the flat parameter of that name; unknown
    /// names are left as they are.
    Plain,
    /// Go's text/template with the parameters as data.
    Go(MissingKey),
}

/// Replaces every `{{ name }}` of `text` whose name is a parameter; others are left untouched.
pub fn substitute(text: &str, params: &Map<String, Value>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start + 2..].find("}}") else {
            break;
        };
        let tag = &rest[start + 2..start + 2 + len];
        out.push_str(&rest[..start]);
        match params.get(tag.trim()) {
            Some(Value::String(s)) => out.push_str(s),
            Some(other) => out.push_str(&gotmpl::print_value(other)),
            None => out.push_str(&rest[start..start + 4 + len]),
        }
        rest = &rest[start + 4 + len..];
    }
    out.push_str(rest);
    out
}

/// Renders one string with `engine`.
pub fn render_str(
    text: &str,
    params: &Map<String, Value>,
    engine: Engine,
) -> Result<String, gotmpl::GoTemplateError> {
    match engine {
        Engine::Plain => Ok(substitute(text, params)),
        Engine::Go(_) if !text.contains("{{") => Ok(text.to_owned()),
        Engine::Go(missing) => gotmpl::render(text, &Value::Object(params.clone()), missing),
    }
}

/// Renders every string (keys included) of `value`.
pub fn render_value(
    value: &Value,
    params: &Map<String, Value>,
    engine: Engine,
) -> Result<Value, gotmpl::GoTemplateError> {
    Ok(match value {
        Value::String(s) => Value::String(render_str(s, params, engine)?),
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|v| render_value(v, params, engine))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                out.insert(
                    render_str(k, params, engine)?,
                    render_value(v, params, engine)?,
                );
            }
            Value::Object(out)
        }
        other => other.clone(),
    })
}

/// Lays a generator's template over the set's: its fields that are set (not empty) win, objects are merged.
pub fn override_template(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                if is_empty(v) {
                    continue;
                }
                match b.get_mut(k) {
                    Some(slot) if slot.is_object() && v.is_object() => override_template(slot, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) if !is_empty(o) => *b = o.clone(),
        _ => {}
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        Value::Number(_) => false,
    }
}

/// Merges a patch over a document as JSON merge patches do (RFC 7386): objects key by key, `null` removes, any
/// other value replaces.
pub fn merge_patch(doc: &mut Value, patch: &Value) {
    match (doc, patch) {
        (Value::Object(d), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    d.remove(k);
                } else {
                    merge_patch(d.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (d, p) => {
            let mut fresh = Value::Object(Map::new());
            if p.is_object() {
                merge_patch(&mut fresh, p);
                *d = fresh;
            } else {
                *d = p.clone();
            }
        }
    }
}

/// Deep merge where `over` wins (Go-template parameter sets in matrix and merge).
pub fn deep_merge(base: &mut Map<String, Value>, over: &Map<String, Value>) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(Value::Object(b)), Value::Object(o)) => deep_merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// The fields of `original` that are lost when it is read as an `Application` and written back: fields the
/// `Application` does not have. Empty values are skipped (they are dropped when written).
pub fn dropped_fields(original: &Value, roundtrip: &Value, path: &str, out: &mut Vec<String>) {
    match (original, roundtrip) {
        (Value::Object(o), Value::Object(r)) => {
            for (k, v) in o {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match r.get(k) {
                    Some(rv) => dropped_fields(v, rv, &p, out),
                    None if is_empty(v) => {}
                    None => out.push(p),
                }
            }
        }
        (Value::Array(o), Value::Array(r)) if o.len() == r.len() => {
            for (i, (v, rv)) in o.iter().zip(r).enumerate() {
                dropped_fields(v, rv, &format!("{path}[{i}]"), out);
            }
        }
        (Value::Object(o), _) if !o.is_empty() => out.push(path.to_owned()),
        _ => {}
    }
}

/// Whether `name` is a valid object name (a DNS-1123 subdomain).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric())
}

/// Reads the rendered template as an `Application`, naming the field that does not fit.
pub fn to_application(
    rendered: &Value,
    namespace: &str,
    params: &Map<String, Value>,
) -> Result<kedge_api::Application, Error> {
    let meta = rendered.get("metadata").cloned().unwrap_or(Value::Null);
    let name = meta
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let bad = |field: String, message: String| Error::Application {
        name: name.clone(),
        field,
        message,
        params: crate::params_text(params),
    };
    if !valid_name(&name) {
        return Err(bad(
            "metadata.name".into(),
            format!(
                "{name:?} is not a valid name (lower case letters, digits, '-' and '.', at most 253)"
            ),
        ));
    }
    let mut metadata = Map::new();
    metadata.insert("name".into(), Value::String(name.clone()));
    let ns = meta
        .get("namespace")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .unwrap_or(namespace);
    metadata.insert("namespace".into(), Value::String(ns.to_owned()));
    for key in ["labels", "annotations", "finalizers"] {
        if let Some(v) = meta.get(key).filter(|v| !is_empty(v)) {
            metadata.insert(key.into(), v.clone());
        }
    }
    if let Some(m) = meta.as_object() {
        for k in m.keys() {
            if !["name", "namespace", "labels", "annotations", "finalizers"].contains(&k.as_str()) {
                return Err(bad(
                    format!("metadata.{k}"),
                    "not a field of an ApplicationSet template's metadata".into(),
                ));
            }
        }
    }
    let spec = rendered
        .get("spec")
        .cloned()
        .unwrap_or(Value::Object(Map::new()));
    let doc = serde_json::json!({
        "apiVersion": "kedge.dev/v1alpha1",
        "kind": "Application",
        "metadata": metadata,
        "spec": spec,
    });
    let app: kedge_api::Application = serde_path_to_error::deserialize(&doc)
        .map_err(|e| bad(e.path().to_string(), e.inner().to_string()))?;
    let back = serde_json::to_value(&app.spec).map_err(|e| bad("spec".into(), e.to_string()))?;
    let mut dropped = Vec::new();
    dropped_fields(&spec, &back, "spec", &mut dropped);
    if let Some(first) = dropped.first() {
        return Err(bad(
            first.clone(),
            "not a field of a Kedge Application".into(),
        ));
    }
    Ok(app)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plain_substitution_allows_blanks_and_leaves_unknown_names() {
        let params = json!({"path.basename": "guestbook", "cluster": "east"});
        let params = params.as_object().expect("object");
        assert_eq!(
            substitute("{{ path.basename }}-{{cluster}}-{{unknown}}-{{", params),
            "guestbook-east-{{unknown}}-{{"
        );
    }

    #[test]
    fn generator_templates_override_set_fields_that_they_set() {
        let mut base = json!({"metadata": {"name": "{{cluster}}-app", "labels": {"a": "1"}}, "spec": {"project": "default", "source": {"path": "x", "repoURL": "r"}}});
        override_template(
            &mut base,
            &json!({"metadata": {"labels": {"b": "2"}}, "spec": {"project": "", "source": {"path": "y"}}}),
        );
        assert_eq!(
            base,
            json!({"metadata": {"name": "{{cluster}}-app", "labels": {"a": "1", "b": "2"}}, "spec": {"project": "default", "source": {"path": "y", "repoURL": "r"}}})
        );
    }

    #[test]
    fn applications_name_the_wrong_field() {
        let params = Map::new();
        let err = to_application(
            &json!({"metadata": {"name": "web"}, "spec": {"destination": {"server": 3}}}),
            "kedge",
            &params,
        )
        .expect_err("wrong type");
        assert!(err.to_string().contains("spec.destination.server"), "{err}");
        let err = to_application(
            &json!({"metadata": {"name": "web"}, "spec": {"source": {"repoURL": "r", "pathh": "x"}}}),
            "kedge",
            &params,
        )
        .expect_err("unknown field");
        assert!(err.to_string().contains("spec.source.pathh"), "{err}");
        let err = to_application(
            &json!({"metadata": {"name": "{{x}}-web"}}),
            "kedge",
            &params,
        )
        .expect_err("name");
        assert!(err.to_string().contains("metadata.name"), "{err}");
    }
}
