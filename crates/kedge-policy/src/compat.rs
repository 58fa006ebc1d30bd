//! OPA's deprecated builtins that Rego v0 still offers (and so Gatekeeper, and older library templates):
//! `re_match`, `set_diff`, `all`, `any` and the `cast_*` family. The interpreter does not have them; they are
//! added to every v0 template as extensions. As in OPA, a call with arguments of the wrong type is undefined.

use std::collections::{BTreeSet, HashMap};

use regorus::{Engine, Value};

/// Regular expressions kept by one template's `re_match` (cleared when full).
const REGEX_CACHE: usize = 64;

/// Adds the deprecated builtins to an engine.
pub(crate) fn add_deprecated_builtins(engine: &mut Engine) -> Result<(), String> {
    let mut cache: HashMap<String, Option<regex::Regex>> = HashMap::new();
    let added = [
        engine.add_extension(
            "re_match".to_owned(),
            2,
            Box::new(move |args: Vec<Value>| {
                let (Value::String(pattern), Value::String(value)) = (&args[0], &args[1]) else {
                    return Ok(Value::Undefined);
                };
                if cache.len() >= REGEX_CACHE && !cache.contains_key(pattern.as_ref()) {
                    cache.clear();
                }
                let re = cache
                    .entry(pattern.to_string())
                    .or_insert_with(|| regex::Regex::new(pattern).ok());
                Ok(match re {
                    Some(re) => Value::from(re.is_match(value)),
                    None => Value::Undefined,
                })
            }),
        ),
        engine.add_extension(
            "set_diff".to_owned(),
            2,
            Box::new(|args: Vec<Value>| {
                Ok(match (&args[0], &args[1]) {
                    (Value::Set(a), Value::Set(b)) => a.difference(b).into_value(),
                    _ => Value::Undefined,
                })
            }),
        ),
        engine.add_extension(
            "all".to_owned(),
            1,
            Box::new(|args: Vec<Value>| {
                Ok(match elements(&args[0]) {
                    Some(items) => Value::from(items.iter().all(|v| *v == Value::Bool(true))),
                    None => Value::Undefined,
                })
            }),
        ),
        engine.add_extension(
            "any".to_owned(),
            1,
            Box::new(|args: Vec<Value>| {
                Ok(match elements(&args[0]) {
                    Some(items) => Value::from(items.contains(&Value::Bool(true))),
                    None => Value::Undefined,
                })
            }),
        ),
        engine.add_extension(
            "cast_array".to_owned(),
            1,
            Box::new(|args: Vec<Value>| {
                Ok(match elements(&args[0]) {
                    Some(items) => Value::from(items),
                    None => Value::Undefined,
                })
            }),
        ),
        engine.add_extension(
            "cast_set".to_owned(),
            1,
            Box::new(|args: Vec<Value>| {
                Ok(match elements(&args[0]) {
                    Some(items) => Value::from(items.into_iter().collect::<BTreeSet<Value>>()),
                    None => Value::Undefined,
                })
            }),
        ),
        engine.add_extension(
            "cast_string".to_owned(),
            1,
            same_if(|v| matches!(v, Value::String(_))),
        ),
        engine.add_extension(
            "cast_boolean".to_owned(),
            1,
            same_if(|v| matches!(v, Value::Bool(_))),
        ),
        engine.add_extension(
            "cast_null".to_owned(),
            1,
            same_if(|v| matches!(v, Value::Null)),
        ),
        engine.add_extension(
            "cast_object".to_owned(),
            1,
            same_if(|v| matches!(v, Value::Object(_))),
        ),
    ];
    for result in added {
        result.map_err(|e| format!("failed to add OPA's deprecated builtins: {e:#}"))?;
    }
    Ok(())
}

/// The elements of an array or set.
fn elements(value: &Value) -> Option<Vec<Value>> {
    match value {
        Value::Array(a) => Some(a.iter().cloned().collect()),
        Value::Set(s) => Some(s.iter().cloned().collect()),
        _ => None,
    }
}

/// A `cast_*` of a type to itself: the value when it has the type, else undefined.
fn same_if(has_type: fn(&Value) -> bool) -> Box<dyn regorus::Extension> {
    Box::new(move |mut args: Vec<Value>| {
        let v = args.swap_remove(0);
        Ok(if has_type(&v) { v } else { Value::Undefined })
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn deprecated_builtins_behave_as_in_opa() {
        let mut engine = Engine::new();
        engine.set_rego_v0(true);
        add_deprecated_builtins(&mut engine).unwrap();
        engine
            .add_policy(
                "t.rego".to_owned(),
                r#"package t
re { re_match("^a+$", "aaa"); not re_match("^a+$", "b") }
bad_re { re_match("(", "b") }
diff := set_diff({1, 2, 3}, {2})
all_true { all([true, true]) }
not_all { not all([true, false]) }
any_true { any({false, true}) }
arr := cast_array({1})
st := cast_set([1, 1, 2])
str := cast_string("x")
no_str { not cast_string(1) }
"#
                .to_owned(),
            )
            .unwrap();
        let results = engine.eval_query("data.t".to_owned(), false).unwrap();
        let json = serde_json::to_value(&results.result[0].expressions[0].value).unwrap();
        assert_eq!(json["re"], true);
        assert!(json.get("bad_re").is_none(), "{json}");
        assert_eq!(json["diff"], serde_json::json!([1, 3]));
        assert_eq!(json["all_true"], true);
        assert_eq!(json["not_all"], true);
        assert_eq!(json["any_true"], true);
        assert_eq!(json["arr"], serde_json::json!([1]));
        assert_eq!(json["st"], serde_json::json!([1, 2]));
        assert_eq!(json["str"], "x");
        assert_eq!(json["no_str"], true);
    }
}
