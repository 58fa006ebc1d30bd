//! Whatever a set's author writes, rendering a template returns text or an error, never a panic: arbitrary text made
//! of template syntax, in plain and Go templates, and arbitrary parameters.
#![allow(missing_docs)]

use kedge_appset::MissingKey;
use kedge_appset::template::{Engine, render_str};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn pieces() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("{{".to_owned()),
        Just("}}".to_owned()),
        Just("{{-".to_owned()),
        Just("-}}".to_owned()),
        Just(" ".to_owned()),
        Just(".".to_owned()),
        Just("$".to_owned()),
        Just("|".to_owned()),
        Just("(".to_owned()),
        Just(")".to_owned()),
        Just("\"".to_owned()),
        Just("`".to_owned()),
        Just(":=".to_owned()),
        Just(",".to_owned()),
        Just("-1".to_owned()),
        Just("/*".to_owned()),
        Just("*/".to_owned()),
        Just("if".to_owned()),
        Just("else".to_owned()),
        Just("end".to_owned()),
        Just("range".to_owned()),
        Just("with".to_owned()),
        Just("index".to_owned()),
        Just("trunc".to_owned()),
        Just("default".to_owned()),
        Just("printf".to_owned()),
        Just("%q".to_owned()),
        Just("path".to_owned()),
        Just("segments".to_owned()),
        Just("é".to_owned()),
        "[a-z0-9]{1,3}",
    ];
    prop::collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

fn params() -> Map<String, Value> {
    let v = json!({
        "path": {"path": "apps/web", "basename": "web", "segments": ["apps", "web"]},
        "name": "é-cluster",
        "n": 3,
        "list": [1, "two", null, {"k": "v"}],
        "empty": "",
    });
    v.as_object().cloned().unwrap_or_default()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn rendering_never_panics(text in pieces()) {
        let p = params();
        for engine in [Engine::Plain, Engine::Go(MissingKey::Error), Engine::Go(MissingKey::Default)] {
            let _ = render_str(&text, &p, engine);
        }
    }
}
