//! A SOPS document as YAML or JSON, read with its key order kept and decrypted (metadata, rules, age envelope,
//! values, MAC). Without a matching key the data key cannot be opened, so seed the corpus with documents encrypted
//! for the key below to reach the values.
#![no_main]

use std::sync::OnceLock;

use kedge_sops::{Identities, Node, decrypt, decrypt_stream};
use libfuzzer_sys::fuzz_target;

/// A key made for fuzzing only (it protects nothing).
const FUZZ_KEY: &str = "AGE-SECRET-KEY-1FSV8GEG6WQTG4H4UXW3ZDCURDNQGTM23RHCLG6TTFAD4X92G589SJGRL4M";

fn keys() -> &'static Identities {
    static KEYS: OnceLock<Identities> = OnceLock::new();
    KEYS.get_or_init(|| {
        Identities::parse([("fuzz.agekey", FUZZ_KEY.as_bytes())]).unwrap_or_default()
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(docs) = serde_saphyr::from_slice_multiple::<Node>(data) {
        let refs: Vec<&Node> = docs.iter().collect();
        let _ = decrypt_stream(&refs, keys());
        if let Some(first) = docs.first() {
            let _ = decrypt(first, keys());
        }
    }
    if let Ok(node) = serde_json::from_slice::<Node>(data) {
        let _ = decrypt(&node, keys());
    }
});
