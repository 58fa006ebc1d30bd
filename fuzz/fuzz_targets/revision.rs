//! A target revision as users write it: branch, tag, SHA, HEAD or a version constraint.
#![no_main]

use kedge_source::RevisionSpec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(spec) = RevisionSpec::parse(&text) {
        // Parsing is idempotent on what it keeps.
        let again = match &spec {
            RevisionSpec::Head => RevisionSpec::parse("HEAD"),
            RevisionSpec::Ref(s)
            | RevisionSpec::Name(s)
            | RevisionSpec::Sha(s)
            | RevisionSpec::Semver(s) => RevisionSpec::parse(s),
        };
        assert_eq!(again.ok().as_ref(), Some(&spec), "{text:?}");
    }
});
