//! Property tests of ignoreDifferences: comparing with the ignored fields removed is comparing as if they were
//! equal; ignored paths that do not exist change nothing; a managers rule ignores exactly the manager's fields.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::*;
use crate::fieldpath::{Location, Seg, to_pointer};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![3 => "[ab~/0]{1,3}", 1 => "[a-z]{1,6}"]
}

fn doc() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..3).prop_map(Value::from),
        "[a-z]{0,2}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            1 => prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            3 => prop::collection::btree_map(key(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Follows `choices` down `doc` through objects only (JSON pointer rules may name array indexes too, but a
/// mapping path is what users write).
fn key_path(doc: &Value, choices: &[prop::sample::Index]) -> Location {
    let mut loc = Vec::new();
    let mut cur = doc;
    for c in choices {
        match cur {
            Value::Object(m) if !m.is_empty() => {
                let (k, v) = m.iter().nth(c.index(m.len())).unwrap();
                loc.push(Seg::Key(k.clone()));
                cur = v;
            }
            _ => break,
        }
    }
    loc
}

fn id() -> ObjectId {
    ObjectId::new("apps", "Deployment", Some("ns"), "web")
}

fn pointer_rule(pointers: Vec<String>) -> Vec<IgnoreRule> {
    vec![IgnoreRule {
        group: "apps".into(),
        kind: "Deployment".into(),
        json_pointers: pointers,
        ..Default::default()
    }]
}

fn stripped(ignored: &Ignored, doc: &Value) -> Value {
    let mut d = doc.clone();
    ignored.strip(&mut d);
    d
}

proptest! {
    #![proptest_config(config(512))]

    /// For a live document and a desired one that differs from it anywhere (inside the ignored field or not):
    /// the two are equal once the ignored field is stripped from both exactly when they are equal after the
    /// desired document takes the live value of that field.
    #[test]
    fn stripping_an_ignored_field_equals_comparing_with_it_set_equal(
        live in doc(),
        choices in prop::collection::vec(any::<prop::sample::Index>(), 1..5),
        edits in prop::collection::vec((prop::collection::vec(any::<prop::sample::Index>(), 1..5), doc()), 0..3),
    ) {
        let path = key_path(&live, &choices);
        prop_assume!(!path.is_empty());
        let mut desired = live.clone();
        for (at, value) in edits {
            let loc = key_path(&desired, &at);
            if !loc.is_empty() {
                fieldpath::set(&mut desired, &loc, value);
            }
        }
        let pointer = to_pointer(&path);
        let ignored = Ignored::for_object(&pointer_rule(vec![pointer.clone()]), &id(), Some(&live));
        let equal_when_stripped = stripped(&ignored, &live) == stripped(&ignored, &desired);
        // "Set equal" as a pointer sees it (a numeric step also indexes an array): the desired document takes the
        // live value where it has the field; where it has none, the field is absent on both sides.
        let mut aligned = desired.clone();
        let mut live_aligned = live.clone();
        match fieldpath::pointer_location(&pointer, &desired) {
            Some(at) => {
                let value = fieldpath::get(&live, &path).cloned().unwrap();
                prop_assert!(fieldpath::set(&mut aligned, &at, value));
            }
            None => fieldpath::remove_all(&mut live_aligned, vec![path.clone()]),
        }
        prop_assert_eq!(equal_when_stripped, aligned == live_aligned, "pointer {}", pointer);
    }

    /// Ignored pointers that exist in neither document, and rules for other objects, change nothing.
    #[test]
    fn ignored_paths_that_do_not_exist_change_nothing(
        doc in doc(),
        pointers in prop::collection::vec(prop::collection::vec(key(), 1..4), 1..4),
    ) {
        let pointers: Vec<String> = pointers
            .into_iter()
            .map(|p| to_pointer(&p.into_iter().map(Seg::Key).collect::<Vec<_>>()))
            .filter(|p| doc.pointer(p).is_none())
            .collect();
        let ignored = Ignored::for_object(&pointer_rule(pointers.clone()), &id(), Some(&doc));
        prop_assert_eq!(stripped(&ignored, &doc), doc.clone());
        let other = ObjectId::new("apps", "StatefulSet", Some("ns"), "web");
        let all = pointer_rule(vec!["/".to_owned()]);
        prop_assert_eq!(stripped(&Ignored::for_object(&all, &other, Some(&doc)), &doc), doc);
    }

    /// A managers rule ignores exactly the fields in the manager's `fieldsV1` trie (leaves and whole subtrees),
    /// and none of another manager's.
    #[test]
    fn a_managers_rule_ignores_exactly_the_managers_fields(
        spec in doc(),
        picks in prop::collection::vec(prop::collection::vec(any::<prop::sample::Index>(), 1..5), 0..4),
        others in prop::collection::vec(prop::collection::vec(any::<prop::sample::Index>(), 1..5), 0..3),
    ) {
        let trie_of = |paths: &[Location]| {
            let mut trie = json!({});
            for p in paths {
                let mut cur = &mut trie;
                for seg in p {
                    let Seg::Key(k) = seg else { unreachable!("key paths only") };
                    cur = cur
                        .as_object_mut()
                        .unwrap()
                        .entry(format!("f:{k}"))
                        .or_insert_with(|| Value::Object(Map::new()));
                }
                // A whole subtree owned: the node owns itself and nothing listed below it.
                if let Some(m) = cur.as_object_mut() {
                    m.clear();
                    m.insert(".".into(), json!({}));
                }
            }
            trie
        };
        let under_spec = |p: Location| {
            let mut full = vec![Seg::Key("spec".into())];
            full.extend(p);
            full
        };
        let owned: Vec<Location> = picks
            .iter()
            .map(|c| key_path(&spec, c))
            .filter(|p| !p.is_empty())
            .map(under_spec)
            .collect();
        // A path under another owned path is covered by it; keep the trie free of contradictions.
        let owned: Vec<Location> = owned
            .iter()
            .filter(|p| !owned.iter().any(|q| q != *p && p.starts_with(q)))
            .cloned()
            .collect();
        let foreign: Vec<Location> = others
            .iter()
            .map(|c| key_path(&spec, c))
            .filter(|p| !p.is_empty())
            .map(under_spec)
            .collect();
        let live = json!({
            "metadata": {"managedFields": [
                {"manager": "hpa", "operation": "Update", "fieldsV1": trie_of(&owned)},
                {"manager": "someone-else", "operation": "Update", "fieldsV1": trie_of(&foreign)},
            ]},
            "spec": spec,
        });
        let rules = vec![IgnoreRule {
            group: "*".into(),
            kind: "*".into(),
            managed_fields_managers: vec!["hpa".into()],
            ..Default::default()
        }];
        let ignored = Ignored::for_object(&rules, &id(), Some(&live));
        let mut expected = live.clone();
        fieldpath::remove_all(&mut expected, owned.to_vec());
        let mut doc = live.clone();
        ignored.strip(&mut doc);
        prop_assert_eq!(doc, expected);
    }
}
