//! A file of a directory source: YAML (and JSON) parsing, objects from documents (Lists too) and the duplicate
//! check, as a render does them.
#![no_main]

use kedge_render::SourceRef;
use kedge_render::object::{check_duplicates, objects_from_document};
use kedge_render::parse::{parse_json, parse_yaml};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    for (file, parsed) in [
        ("f.yaml", parse_yaml("f.yaml", data)),
        ("f.json", parse_json("f.json", data)),
    ] {
        let Ok(docs) = parsed else { continue };
        for d in docs {
            let source = SourceRef {
                file: file.to_owned(),
                document: d.index,
                item: None,
                line: d.line,
            };
            objects_from_document(d.value, source, &mut objects, &mut errors);
        }
    }
    check_duplicates(&objects, &mut errors);
    for e in &errors {
        let _ = e.to_string();
    }
});
