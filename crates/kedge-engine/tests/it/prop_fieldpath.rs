//! Property tests of field paths: JSON pointer escaping round-trips, pointers of existing locations resolve to
//! them, setting and removing touch only their location, and locations that do not exist are no-ops.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeSet;

use kedge_engine::fieldpath::{
    Location, PathElem, Seg, get, parse_pointer, pointer_location, remove_all, set, to_pointer,
};
use proptest::prelude::*;
use serde_json::{Map, Value};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// Keys full of what pointers escape (`~`, `/`), digits (array-index look-alikes), or anything.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[ab~/01]{0,4}",
        1 => any::<String>(),
    ]
}

fn doc() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-5i64..5).prop_map(Value::from),
        "[a-z]{0,3}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Follows `choices` down `doc` as far as it goes: an existing location.
fn existing_location(doc: &Value, choices: &[prop::sample::Index]) -> Location {
    let mut loc = Vec::new();
    let mut cur = doc;
    for c in choices {
        match cur {
            Value::Object(m) if !m.is_empty() => {
                let (k, v) = m.iter().nth(c.index(m.len())).unwrap();
                loc.push(Seg::Key(k.clone()));
                cur = v;
            }
            Value::Array(a) if !a.is_empty() => {
                let i = c.index(a.len());
                loc.push(Seg::Idx(i));
                cur = &a[i];
            }
            _ => break,
        }
    }
    loc
}

/// Any location, existing or not.
fn any_location() -> impl Strategy<Value = Location> {
    prop::collection::vec(
        prop_oneof![key().prop_map(Seg::Key), (0usize..5).prop_map(Seg::Idx)],
        0..5,
    )
}

/// The document without the values at `removed` (and everything under them): the model of removal, rebuilding
/// the document instead of deleting in place.
fn without(doc: &Value, removed: &BTreeSet<Location>, at: &mut Location) -> Value {
    match doc {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                at.push(Seg::Key(k.clone()));
                if !removed.contains(at) {
                    out.insert(k.clone(), without(v, removed, at));
                }
                at.pop();
            }
            Value::Object(out)
        }
        Value::Array(a) => {
            let mut out = Vec::new();
            for (i, v) in a.iter().enumerate() {
                at.push(Seg::Idx(i));
                if !removed.contains(at) {
                    out.push(without(v, removed, at));
                }
                at.pop();
            }
            Value::Array(out)
        }
        other => other.clone(),
    }
}

proptest! {
    #![proptest_config(config(512))]

    /// Escaping `~` as `~0` and `/` as `~1` round-trips every key; indexes come back as numeric fields.
    #[test]
    fn pointer_escaping_round_trips(loc in any_location()) {
        let pointer = to_pointer(&loc);
        let parsed = parse_pointer(&pointer).unwrap();
        let expected: Vec<PathElem> = loc
            .iter()
            .map(|s| match s {
                Seg::Key(k) => PathElem::Field(k.clone()),
                Seg::Idx(i) => PathElem::Field(i.to_string()),
            })
            .collect();
        prop_assert_eq!(parsed, expected, "{}", pointer);
        // An escaped key holds no raw `/`, and every `~` starts an escape.
        for part in pointer.split('/').skip(1) {
            let mut chars = part.chars().peekable();
            while let Some(c) = chars.next() {
                if c == '~' {
                    prop_assert!(matches!(chars.next(), Some('0' | '1')), "{}", pointer);
                }
            }
        }
    }

    /// The pointer of an existing location resolves to it (and to its value).
    #[test]
    fn pointers_of_existing_locations_resolve_to_them(
        doc in doc(),
        choices in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let loc = existing_location(&doc, &choices);
        let pointer = to_pointer(&loc);
        prop_assert_eq!(pointer_location(&pointer, &doc), Some(loc.clone()), "{}", pointer);
        prop_assert_eq!(get(&doc, &loc), doc.pointer(&pointer), "{}", pointer);
    }

    /// Setting an existing location changes that value only: setting the old value back restores the document.
    #[test]
    fn set_changes_only_its_location(
        doc in doc(),
        choices in prop::collection::vec(any::<prop::sample::Index>(), 1..6),
        value in doc(),
    ) {
        let loc = existing_location(&doc, &choices);
        let old = get(&doc, &loc).cloned().unwrap();
        let mut changed = doc.clone();
        prop_assert!(set(&mut changed, &loc, value.clone()));
        prop_assert_eq!(get(&changed, &loc), Some(&value));
        prop_assert!(set(&mut changed, &loc, old));
        prop_assert_eq!(changed, doc);
    }

    /// Removing locations that do not exist changes nothing.
    #[test]
    fn removing_missing_locations_is_a_no_op(doc in doc(), locs in prop::collection::vec(any_location(), 0..4)) {
        let missing: Vec<Location> = locs.into_iter().filter(|l| !l.is_empty() && get(&doc, l).is_none()).collect();
        let mut after = doc.clone();
        remove_all(&mut after, missing.clone());
        prop_assert_eq!(&after, &doc, "{:?}", missing);
    }

    /// Removing several existing locations at once (array elements among them, nested or not, in any order, with
    /// repeats) removes exactly those values, as if the document were rebuilt without them.
    #[test]
    fn removing_existing_locations_removes_exactly_them(
        doc in doc(),
        picks in prop::collection::vec(prop::collection::vec(any::<prop::sample::Index>(), 1..6), 0..6),
    ) {
        let locs: Vec<Location> = picks
            .iter()
            .map(|c| existing_location(&doc, c))
            .filter(|l| !l.is_empty())
            .collect();
        let mut after = doc.clone();
        remove_all(&mut after, locs.clone());
        let expected = without(&doc, &locs.iter().cloned().collect(), &mut Vec::new());
        prop_assert_eq!(after, expected, "{:?}", locs);
    }

    /// Pointers that are not pointers are refused; any text never panics.
    #[test]
    fn any_text_parses_as_a_pointer_or_is_refused(text in any::<String>(), doc in doc()) {
        match parse_pointer(&text) {
            None => prop_assert!(!text.is_empty() && !text.starts_with('/')),
            Some(elems) => {
                prop_assert_eq!(elems.len(), if text.is_empty() { 0 } else { text.matches('/').count() });
                let _ = pointer_location(&text, &doc);
            }
        }
    }
}
