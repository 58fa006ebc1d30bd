//! JSON pointers (ignoreDifferences) against documents: parsing, resolving, rendering back, removing. The input is
//! a pointer, a newline, then a JSON document.
#![no_main]

use kedge_engine::fieldpath::{get, pointer_location, remove_all, to_pointer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (pointer, doc) = text.split_once('\n').unwrap_or((&text, "{}"));
    let Ok(mut doc) = serde_json::from_str::<serde_json::Value>(doc) else {
        return;
    };
    if let Some(loc) = pointer_location(pointer, &doc) {
        assert!(get(&doc, &loc).is_some());
        assert_eq!(
            pointer_location(&to_pointer(&loc), &doc).as_ref(),
            Some(&loc)
        );
        remove_all(&mut doc, vec![loc]);
    }
});
