//! Property tests of SOPS decryption, without the sops binary: documents encrypted by a small SOPS writer of the
//! test's own (AES-256-GCM values bound to their key paths, the data key sealed to an age key, a SHA-512 MAC over
//! the values in order) decrypt to what was encrypted; any single-byte change of the encrypted document is refused
//! or changes nothing; values moved between keys, reordered or changed in clear are refused; arbitrary input never
//! panics. (real_sops.rs proves that what the real sops writes is read alike.)

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::Write as _;
use std::sync::OnceLock;

use aes_gcm::aead::consts::U32;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes256;
use aes_gcm::{AesGcm, Nonce};
use base64::Engine as _;
use kedge_sops::{Identities, Node, SopsError, decrypt, decrypt_stream};
use proptest::prelude::*;
use serde_json::Value;
use sha2::{Digest, Sha512};

const LAST_MODIFIED: &str = "2026-01-02T03:04:05Z";

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// One age key for the whole run (generating is cheap, but one is enough).
fn identity() -> &'static age::x25519::Identity {
    static KEY: OnceLock<age::x25519::Identity> = OnceLock::new();
    KEY.get_or_init(age::x25519::Identity::generate)
}

fn identities() -> Identities {
    let text = age::secrecy::ExposeSecret::expose_secret(&identity().to_string()).to_owned();
    Identities::parse([("key.txt", text.as_bytes())]).unwrap()
}

fn other_identities() -> Identities {
    let other = age::x25519::Identity::generate();
    let text = age::secrecy::ExposeSecret::expose_secret(&other.to_string()).to_owned();
    Identities::parse([("other.txt", text.as_bytes())]).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A SOPS writer: deterministic IVs and data key from `seed` (the age envelope has its own randomness).
struct Writer {
    key: [u8; 32],
    seed: u64,
    counter: u64,
    mac: Sha512,
}

impl Writer {
    fn new(seed: u64) -> Self {
        let digest = Sha512::digest(format!("data key {seed}"));
        Writer {
            key: digest[..32].try_into().unwrap(),
            seed,
            counter: 0,
            mac: Sha512::new(),
        }
    }

    fn seal(&mut self, plain: &str, aad: &str, kind: &str) -> String {
        self.counter += 1;
        let iv: [u8; 32] = Sha512::digest(format!("iv {} {}", self.seed, self.counter))[..32]
            .try_into()
            .unwrap();
        let cipher = AesGcm::<Aes256, U32>::new_from_slice(&self.key).unwrap();
        let sealed = cipher
            .encrypt(
                Nonce::<U32>::from_slice(&iv),
                Payload {
                    msg: plain.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .unwrap();
        let (data, tag) = sealed.split_at(sealed.len() - 16);
        format!(
            "ENC[AES256_GCM,data:{},iv:{},tag:{},type:{kind}]",
            b64(data),
            b64(&iv),
            b64(tag)
        )
    }

    /// Encrypts a plain document: every scalar under a key not ending in `_unencrypted` (empty strings stay as
    /// they are, as SOPS leaves them); every scalar goes into the MAC.
    fn encrypt(&mut self, node: &Node, path: &mut Vec<String>, clear: bool) -> Node {
        match node {
            Node::Map(items) => Node::Map(
                items
                    .iter()
                    .map(|(k, v)| {
                        path.push(k.clone());
                        let out = self.encrypt(v, path, clear || k.ends_with("_unencrypted"));
                        path.pop();
                        (k.clone(), out)
                    })
                    .collect(),
            ),
            Node::Seq(items) => {
                Node::Seq(items.iter().map(|v| self.encrypt(v, path, clear)).collect())
            }
            Node::Null => Node::Null,
            scalar => {
                let (text, kind) = match scalar {
                    Node::Str(s) => (s.clone(), "str"),
                    Node::Int(i) => (i.to_string(), "int"),
                    Node::Bool(true) => ("True".to_owned(), "bool"),
                    Node::Bool(false) => ("False".to_owned(), "bool"),
                    other => unreachable!("not generated: {other:?}"),
                };
                self.mac.update(text.as_bytes());
                if clear || (kind == "str" && text.is_empty()) {
                    scalar.clone()
                } else {
                    Node::Str(self.seal(&text, &format!("{}:", path.join(":")), kind))
                }
            }
        }
    }

    /// The `sops` metadata: the data key sealed to the age key, and the MAC sealed with the data key.
    fn metadata(&mut self) -> Node {
        let recipient = identity().to_public();
        let encryptor =
            age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
                .unwrap();
        let mut armored = Vec::new();
        let out =
            age::armor::ArmoredWriter::wrap_output(&mut armored, age::armor::Format::AsciiArmor)
                .unwrap();
        let mut w = encryptor.wrap_output(out).unwrap();
        w.write_all(&self.key).unwrap();
        w.finish().and_then(|armor| armor.finish()).unwrap();
        let mac = hex::encode_upper(std::mem::take(&mut self.mac).finalize());
        let mac = self.seal(&mac, LAST_MODIFIED, "str");
        let s = |v: &str| Node::Str(v.to_owned());
        Node::Map(vec![
            (
                "age".into(),
                Node::Seq(vec![Node::Map(vec![
                    ("recipient".into(), s(&recipient.to_string())),
                    ("enc".into(), s(&String::from_utf8(armored).unwrap())),
                ])]),
            ),
            ("lastmodified".into(), s(LAST_MODIFIED)),
            ("mac".into(), s(&mac)),
            ("unencrypted_suffix".into(), s("_unencrypted")),
            ("version".into(), s("3.11.0")),
        ])
    }
}

/// Encrypts the documents of one file together (one data key, one MAC over all of them, the same metadata in each).
fn encrypt_file(docs: &[Node], seed: u64) -> Vec<Node> {
    let mut w = Writer::new(seed);
    let encrypted: Vec<Node> = docs
        .iter()
        .map(|d| w.encrypt(d, &mut Vec::new(), false))
        .collect();
    let meta = w.metadata();
    encrypted
        .into_iter()
        .map(|d| match d {
            Node::Map(mut items) => {
                items.push(("sops".into(), meta.clone()));
                Node::Map(items)
            }
            other => unreachable!("documents are mappings: {other:?}"),
        })
        .collect()
}

fn encrypt_doc(doc: &Node, seed: u64) -> Node {
    encrypt_file(std::slice::from_ref(doc), seed).pop().unwrap()
}

/// The plain document as the decryption should return it.
fn to_json(node: &Node) -> Value {
    match node {
        Node::Null => Value::Null,
        Node::Bool(b) => Value::Bool(*b),
        Node::Int(i) => Value::from(*i),
        Node::Float(f) => Value::from(*f),
        Node::Str(s) => Value::from(s.clone()),
        Node::Seq(items) => Value::Array(items.iter().map(to_json).collect()),
        Node::Map(items) => {
            Value::Object(items.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
        }
    }
}

/// JSON text of a node with its key order kept.
fn to_text(node: &Node) -> String {
    match node {
        Node::Map(items) => format!(
            "{{{}}}",
            items
                .iter()
                .map(|(k, v)| format!("{}:{}", serde_json::to_string(k).unwrap(), to_text(v)))
                .collect::<Vec<_>>()
                .join(",")
        ),
        Node::Seq(items) => format!(
            "[{}]",
            items.iter().map(to_text).collect::<Vec<_>>().join(",")
        ),
        other => to_json(other).to_string(),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Generators.

/// Mapping keys; `bound`: none ending in `_unencrypted` (the key of a value kept in clear is not authenticated, by
/// SOPS's design, so a renamed one would pass).
fn key(bound: bool) -> BoxedStrategy<String> {
    let any_key = any::<String>().prop_filter("not the metadata key, not clear", |k| {
        k != "sops" && !k.ends_with("_unencrypted")
    });
    if bound {
        prop_oneof![6 => "[a-z][a-zA-Z0-9]{0,6}", 1 => any_key].boxed()
    } else {
        prop_oneof![6 => "[a-z][a-zA-Z0-9]{0,6}", 1 => "[a-z]{1,4}_unencrypted", 1 => any_key]
            .boxed()
    }
}

/// Distinct keys in generated order (mappings keep the order they are written in).
fn entries(value: BoxedStrategy<Node>, bound: bool) -> impl Strategy<Value = Vec<(String, Node)>> {
    prop::collection::vec((key(bound), value), 0..4).prop_map(|mut items| {
        let mut seen = std::collections::HashSet::new();
        items.retain(|(k, _)| seen.insert(k.clone()));
        items
    })
}

/// `bound`: only values whose key path the encryption binds (no empty strings, nulls or unencrypted keys), so that
/// every key is covered.
fn plain_value(bound: bool) -> BoxedStrategy<Node> {
    let leaf = if bound {
        prop_oneof![
            any::<bool>().prop_map(Node::Bool),
            any::<i64>().prop_map(Node::Int),
            any::<String>()
                .prop_filter("non-empty", |s| !s.is_empty())
                .prop_map(Node::Str),
        ]
        .boxed()
    } else {
        prop_oneof![
            Just(Node::Null),
            any::<bool>().prop_map(Node::Bool),
            any::<i64>().prop_map(Node::Int),
            any::<String>().prop_map(Node::Str),
        ]
        .boxed()
    };
    leaf.prop_recursive(3, 20, 4, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..3).prop_map(Node::Seq),
            entries(inner, bound)
                .prop_filter("non-empty", |e| !e.is_empty())
                .prop_map(Node::Map),
        ]
    })
    .boxed()
}

fn plain_doc(bound: bool) -> impl Strategy<Value = Node> {
    entries(plain_value(bound), bound).prop_map(Node::Map)
}

/// Every leaf value, with its key path, in document order.
fn leaves<'a>(node: &'a Node, path: &mut Vec<usize>, out: &mut Vec<(Vec<usize>, &'a Node)>) {
    match node {
        Node::Map(items) => {
            for (i, (_, v)) in items.iter().enumerate() {
                path.push(i);
                leaves(v, path, out);
                path.pop();
            }
        }
        Node::Seq(items) => {
            for (i, v) in items.iter().enumerate() {
                path.push(i);
                leaves(v, path, out);
                path.pop();
            }
        }
        _ => out.push((path.clone(), node)),
    }
}

fn at_mut<'a>(node: &'a mut Node, path: &[usize]) -> &'a mut Node {
    path.iter().fold(node, |n, &i| match n {
        Node::Map(items) => &mut items[i].1,
        Node::Seq(items) => &mut items[i],
        _ => unreachable!("a leaf has no children"),
    })
}

proptest! {
    #![proptest_config(config(128))]

    /// What was encrypted decrypts to itself, with values typed as they were.
    #[test]
    fn encrypted_documents_decrypt_to_what_was_encrypted(doc in plain_doc(false), seed in any::<u64>()) {
        let encrypted = encrypt_doc(&doc, seed);
        prop_assert_eq!(decrypt(&encrypted, &identities()).unwrap(), to_json(&doc));
        // Without the right key, nothing decrypts.
        prop_assert!(matches!(decrypt(&encrypted, &other_identities()), Err(SopsError::NoKey { .. })), "another key opened it");
    }

    /// The documents of one file decrypt together; any one of them alone, or the file in another order, fails
    /// the MAC (unless the order does not change the values it covers).
    #[test]
    fn documents_of_one_file_are_checked_together(
        docs in prop::collection::vec(plain_doc(true), 2..4),
        seed in any::<u64>(),
    ) {
        let encrypted = encrypt_file(&docs, seed);
        let refs: Vec<&Node> = encrypted.iter().collect();
        let plain: Vec<Value> = decrypt_stream(&refs, &identities()).unwrap().into_iter().map(|d| d.value).collect();
        prop_assert_eq!(plain, docs.iter().map(to_json).collect::<Vec<_>>());
        // One document alone fails the MAC when the others hold values.
        let mut rest = Vec::new();
        for d in &docs[1..] {
            leaves(d, &mut Vec::new(), &mut rest);
        }
        if !rest.is_empty() {
            prop_assert!(matches!(decrypt(refs[0], &identities()), Err(SopsError::MacMismatch)));
        }
        let mut reversed = refs.clone();
        reversed.reverse();
        let values = |ds: &[&Node]| {
            let mut out = Vec::new();
            for d in ds {
                let mut l = Vec::new();
                leaves(d, &mut Vec::new(), &mut l);
                out.extend(l.into_iter().map(|(_, n)| to_text(n)));
            }
            out
        };
        let same_values = values(&docs.iter().rev().collect::<Vec<_>>()) == values(&docs.iter().collect::<Vec<_>>());
        if !same_values {
            prop_assert!(decrypt_stream(&reversed, &identities()).is_err());
        }
    }

    /// Any single-byte change of an encrypted document (its JSON text) is refused, or leaves what it decrypts to
    /// unchanged (a byte of the unauthenticated recipient or version, say).
    #[test]
    fn a_single_byte_change_is_refused_or_changes_nothing(
        doc in plain_doc(true),
        seed in any::<u64>(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let encrypted = encrypt_doc(&doc, seed);
        let mut text = to_text(&encrypted).into_bytes();
        let i = at.index(text.len());
        prop_assume!(text[i] != byte);
        text[i] = byte;
        let Ok(changed) = serde_json::from_slice::<Node>(&text) else {
            return Ok(());
        };
        if let Ok(plain) = decrypt(&changed, &identities()) {
            prop_assert_eq!(plain, to_json(&doc), "accepted a change at byte {}", i);
        }
    }

    /// Moving an encrypted value to another key (swapping two ciphertexts) is refused: each is bound to its path
    /// (items of one sequence share it, and the MAC covers their order: swapping two of equal value changes nothing).
    #[test]
    fn values_swapped_between_keys_are_refused(
        doc in plain_doc(true),
        seed in any::<u64>(),
        a in any::<prop::sample::Index>(),
        b in any::<prop::sample::Index>(),
    ) {
        let encrypted = encrypt_doc(&doc, seed);
        let mut all = Vec::new();
        leaves(&encrypted, &mut Vec::new(), &mut all);
        // Leaves of the document, not of its metadata (the last key).
        let meta = match &encrypted { Node::Map(items) => items.len() - 1, _ => unreachable!() };
        let values: Vec<(Vec<usize>, Node)> =
            all.into_iter().filter(|(p, _)| p[0] != meta).map(|(p, n)| (p, n.clone())).collect();
        prop_assume!(values.len() >= 2);
        let (i, j) = (a.index(values.len()), b.index(values.len()));
        prop_assume!(i != j && values[i].1 != values[j].1);
        let mut swapped = encrypted.clone();
        *at_mut(&mut swapped, &values[i].0) = values[j].1.clone();
        *at_mut(&mut swapped, &values[j].0) = values[i].1.clone();
        if let Ok(plain) = decrypt(&swapped, &identities()) {
            prop_assert_eq!(plain, to_json(&doc), "accepted swapped values");
        }
    }

    /// An ENC value whose fields are renamed, dropped or doubled is refused, whatever its type: `type` is not
    /// covered by the MAC, so reading a renamed one as a string would turn `5` into `"5"` unnoticed.
    #[test]
    fn an_enc_value_with_other_fields_is_refused(
        doc in plain_doc(true),
        seed in any::<u64>(),
        at in any::<prop::sample::Index>(),
        field in prop::sample::select(vec!["data", "iv", "tag", "type"]),
        edit in prop::sample::select(vec!["rename", "drop", "double"]),
    ) {
        let encrypted = encrypt_doc(&doc, seed);
        let mut all = Vec::new();
        leaves(&encrypted, &mut Vec::new(), &mut all);
        let meta = match &encrypted { Node::Map(items) => items.len() - 1, _ => unreachable!() };
        let values: Vec<(Vec<usize>, String)> = all
            .into_iter()
            .filter(|(p, _)| p[0] != meta)
            .filter_map(|(p, n)| match n { Node::Str(s) => Some((p, s.clone())), _ => None })
            .collect();
        prop_assume!(!values.is_empty());
        let (path, text) = &values[at.index(values.len())];
        let inner = text.strip_prefix("ENC[AES256_GCM,").and_then(|t| t.strip_suffix(']')).unwrap();
        let mut parts: Vec<String> = inner.split(',').map(str::to_owned).collect();
        let i = parts.iter().position(|p| p.starts_with(&format!("{field}:"))).unwrap();
        match edit {
            "rename" => parts[i] = parts[i].replacen(field, "other", 1),
            "drop" => {
                parts.remove(i);
            }
            _ => {
                let copy = parts[i].clone();
                parts.push(copy);
            }
        }
        let mut changed = encrypted.clone();
        *at_mut(&mut changed, path) = Node::Str(format!("ENC[AES256_GCM,{}]", parts.join(",")));
        let result = decrypt(&changed, &identities());
        prop_assert!(
            matches!(&result, Err(SopsError::Value { .. })),
            "{} {} accepted: {:?}", edit, field, result
        );
    }

    /// Values kept in clear (`_unencrypted` keys) are still covered by the MAC: changing one is refused.
    #[test]
    fn a_changed_unencrypted_value_fails_the_mac(
        doc in plain_doc(true),
        clear in "[a-z]{1,8}",
        other in "[a-z]{1,8}",
        seed in any::<u64>(),
    ) {
        prop_assume!(clear != other);
        let Node::Map(mut items) = doc else { unreachable!() };
        items.push(("note_unencrypted".into(), Node::Str(clear.clone())));
        let doc = Node::Map(items);
        let mut encrypted = encrypt_doc(&doc, seed);
        prop_assert_eq!(decrypt(&encrypted, &identities()).unwrap(), to_json(&doc));
        if let Node::Map(items) = &mut encrypted {
            for (k, v) in items.iter_mut() {
                if k == "note_unencrypted" {
                    *v = Node::Str(other.clone());
                }
            }
        }
        prop_assert!(matches!(decrypt(&encrypted, &identities()), Err(SopsError::MacMismatch)));
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Arbitrary input.

/// Metadata of every shape: the right keys with values of any type, rules that may not compile.
fn metadata_like() -> impl Strategy<Value = Node> {
    let leaf = prop_oneof![
        Just(Node::Null),
        any::<bool>().prop_map(Node::Bool),
        any::<i64>().prop_map(Node::Int),
        any::<String>().prop_map(Node::Str),
        Just(Node::Str(
            "ENC[AES256_GCM,data:AAAA,iv:AAAA,tag:AAAA,type:str]".into()
        )),
        Just(Node::Str(
            "-----BEGIN AGE ENCRYPTED FILE-----\nYWdl\n-----END AGE ENCRYPTED FILE-----\n".into()
        )),
        prop::sample::select(vec![
            "(",
            "[a-",
            "^(data|stringData)$",
            ".*",
            "x{99999}{99999}"
        ])
        .prop_map(|s| Node::Str(s.into())),
    ];
    let keys = prop::sample::select(vec![
        "mac",
        "lastmodified",
        "age",
        "enc",
        "recipient",
        "encrypted_regex",
        "unencrypted_regex",
        "encrypted_suffix",
        "unencrypted_suffix",
        "mac_only_encrypted",
        "key_groups",
        "encrypted_comment_regex",
        "version",
        "data",
    ]);
    leaf.prop_recursive(3, 24, 5, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Node::Seq),
            prop::collection::vec((keys.clone().prop_map(str::to_owned), inner), 0..6)
                .prop_map(Node::Map),
        ]
    })
}

proptest! {
    #![proptest_config(config(256))]

    /// Documents with `sops` metadata of any shape are refused (or decrypted) without panicking.
    #[test]
    fn any_metadata_never_panics(doc in plain_value(false), meta in metadata_like()) {
        let node = match doc {
            Node::Map(mut items) => {
                items.push(("sops".into(), meta));
                Node::Map(items)
            }
            other => Node::Map(vec![("data".into(), other), ("sops".into(), meta)]),
        };
        let _ = decrypt(&node, &identities());
        let _ = decrypt_stream(&[&node, &node], &identities());
    }

    /// A valid encrypted document with one value replaced by anything is refused, never a panic.
    #[test]
    fn any_value_in_place_of_a_ciphertext_is_refused(
        doc in plain_doc(true),
        seed in any::<u64>(),
        at in any::<prop::sample::Index>(),
        value in metadata_like(),
    ) {
        let encrypted = encrypt_doc(&doc, seed);
        let mut all = Vec::new();
        leaves(&encrypted, &mut Vec::new(), &mut all);
        let (path, old) = {
            let (p, n) = &all[at.index(all.len())];
            (p.clone(), (*n).clone())
        };
        prop_assume!(old != value);
        let mut changed = encrypted.clone();
        *at_mut(&mut changed, &path) = value;
        if let Ok(plain) = decrypt(&changed, &identities()) {
            prop_assert_eq!(plain, to_json(&doc));
        }
    }

    /// Arbitrary bytes read as YAML or JSON into a [`Node`], then decrypted, never panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(node) = serde_json::from_slice::<Node>(&bytes) {
            let _ = decrypt(&node, &identities());
        }
        if let Ok(node) = serde_saphyr::from_slice::<Node>(&bytes) {
            let _ = decrypt(&node, &identities());
        }
    }
}
