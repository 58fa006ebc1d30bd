//! Documents encrypted by the real `sops` (installed by scripts/install-sops) and decrypted natively.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use kedge_sops::{Identities, Node, SopsError, decrypt};
use serde_json::json;

use kedge_testkit::AgeKey as Key;

fn new_key() -> Key {
    Key::generate()
}

/// Encrypts `plain` with the real sops for `recipient`.
fn encrypt(plain: &str, format: &str, recipient: &str, flags: &[&str]) -> String {
    kedge_testkit::sops_encrypt(plain, format, recipient, flags).unwrap()
}

fn yaml(text: &str) -> Node {
    serde_saphyr::from_str(text).unwrap()
}

fn keys(key: &Key) -> Identities {
    let file = format!("# created by the test\n{}\n", key.identity);
    Identities::parse([("age.agekey", file.as_bytes())]).unwrap()
}

const SECRET: &str = "apiVersion: v1
kind: Secret
metadata:
  name: db
  labels:
    app: web
type: Opaque
stringData:
  password: s3cr3t
  url: postgres://db:5432/app
data:
  token: dG9rZW4=
";

/// [`SECRET`] encrypted the way Flux's guide suggests: only `data` and `stringData`.
fn encrypt_secret(key: &Key) -> String {
    encrypt(
        SECRET,
        "yaml",
        &key.recipient,
        &["--encrypted-regex", "^(data|stringData)$"],
    )
}

#[test]
fn a_kubernetes_secret_with_encrypted_regex_decrypts_to_the_original() {
    let key = new_key();
    let encrypted = encrypt_secret(&key);
    assert!(
        encrypted.contains("ENC[AES256_GCM") && !encrypted.contains("s3cr3t"),
        "{encrypted}"
    );
    assert!(
        encrypted.contains("name: db"),
        "metadata stays readable: {encrypted}"
    );
    let plain = decrypt(&yaml(&encrypted), &keys(&key)).unwrap();
    let expected: serde_json::Value = serde_saphyr::from_str(SECRET).unwrap();
    assert_eq!(plain, expected);
}

#[test]
fn every_value_type_decrypts_and_the_mac_covers_them() {
    let doc = "name: app
replicas: 3
ratio: 0.25
small: 1.5e-3
enabled: true
disabled: false
empty: ''
nothing: null
list:
  - one
  - 2
  - nested: [x, {deep: true}]
map:
  a: b
";
    let key = new_key();
    let encrypted = encrypt(doc, "yaml", &key.recipient, &[]);
    let plain = decrypt(&yaml(&encrypted), &keys(&key)).unwrap();
    let expected: serde_json::Value = serde_saphyr::from_str(doc).unwrap();
    assert_eq!(plain, expected);
}

#[test]
fn integral_floats_come_back_as_integers() {
    // sops reads JSON numbers as floats; Kubernetes wants `5`, not `5.0`, in an integer field.
    let key = new_key();
    let encrypted = encrypt(
        r#"{"spec": {"replicas": 5, "ratio": 0.5}}"#,
        "json",
        &key.recipient,
        &[],
    );
    assert!(encrypted.contains("type:float"), "{encrypted}");
    let node: Node = serde_json::from_str(&encrypted).unwrap();
    let plain = decrypt(&node, &keys(&key)).unwrap();
    assert_eq!(
        serde_json::to_string(&plain).unwrap(),
        r#"{"spec":{"ratio":0.5,"replicas":5}}"#
    );
}

#[test]
fn json_documents_and_mac_over_encrypted_values_only() {
    let doc = r#"{"kind": "ConfigMap", "data": {"a": "1", "b_unencrypted": "clear", "n": 5}}"#;
    let key = new_key();
    let encrypted = encrypt(doc, "json", &key.recipient, &["--mac-only-encrypted"]);
    let node: Node = serde_json::from_str(&encrypted).unwrap();
    let plain = decrypt(&node, &keys(&key)).unwrap();
    assert_eq!(
        plain,
        serde_json::from_str::<serde_json::Value>(doc).unwrap()
    );
    assert!(encrypted.contains("\"clear\""), "{encrypted}");
}

#[test]
fn altered_documents_are_refused() {
    let key = new_key();
    let encrypted = encrypt_secret(&key);
    let ids = keys(&key);

    // A clear-text value changed: the MAC covers it.
    let renamed = encrypted.replace("name: db", "name: other");
    assert!(matches!(
        decrypt(&yaml(&renamed), &ids),
        Err(SopsError::MacMismatch)
    ));

    // The same keys and values in another order: the MAC covers the order.
    let Node::Map(mut reordered) = yaml(&encrypted) else {
        panic!("mapping")
    };
    reordered.swap(0, 1);
    assert!(matches!(
        decrypt(&Node::Map(reordered), &ids),
        Err(SopsError::MacMismatch)
    ));

    // An encrypted value moved to another key: it is bound to its path.
    let node = yaml(&encrypted);
    let Node::Map(mut items) = node else {
        panic!("mapping")
    };
    let string_data = items.iter_mut().find(|(k, _)| k == "stringData").unwrap();
    let Node::Map(fields) = &mut string_data.1 else {
        panic!("mapping")
    };
    let password = fields[0].1.clone();
    fields[1].1 = password;
    match decrypt(&Node::Map(items), &ids) {
        Err(SopsError::Value { path, .. }) => assert_eq!(path, "stringData:url"),
        other => panic!("expected a value error, got {other:?}"),
    }

    // A value replaced by clear text where the rules say it is encrypted.
    let injected: String = encrypted
        .lines()
        .map(|l| match l.split_once("password: ENC[") {
            Some((indent, _)) => format!("{indent}password: x\n"),
            None => format!("{l}\n"),
        })
        .collect();
    match decrypt(&yaml(&injected), &ids) {
        Err(SopsError::Value { path, .. }) => assert_eq!(path, "stringData:password"),
        other => panic!("expected a value error, got {other:?}"),
    }
}

#[test]
fn a_document_for_other_keys_names_its_recipients() {
    let key = new_key();
    let other = new_key();
    let encrypted = encrypt(SECRET, "yaml", &key.recipient, &[]);
    match decrypt(&yaml(&encrypted), &keys(&other)) {
        Err(err @ SopsError::NoKey { .. }) => {
            assert!(err.to_string().contains(&key.recipient), "{err}");
            assert!(!err.to_string().contains("AGE-SECRET-KEY"), "{err}");
        }
        other => panic!("expected NoKey, got {other:?}"),
    }
    assert!(matches!(
        decrypt(&yaml(SECRET), &keys(&key)),
        Err(SopsError::NotEncrypted)
    ));
    assert!(kedge_sops::is_encrypted(
        &serde_saphyr::from_str::<serde_json::Value>(&encrypted).unwrap()
    ));
    assert!(!kedge_sops::is_encrypted(&json!({"kind": "Secret"})));
}

#[test]
fn key_files_without_keys_are_errors_that_do_not_echo_content() {
    let err = Identities::parse([("age.agekey", b"not a key".as_slice())]).unwrap_err();
    assert!(
        err.to_string().contains("line 1") && !err.to_string().contains("not a key"),
        "{err}"
    );
    let err = Identities::parse([("empty.agekey", b"# nothing\n".as_slice())]).unwrap_err();
    assert!(err.to_string().contains("holds no age secret key"), "{err}");
}

#[test]
fn documents_of_one_file_are_checked_together() {
    let key = new_key();
    let encrypted = encrypt("a: 1\nb: x\n---\nc: 2\nd: y\n", "yaml", &key.recipient, &[]);
    let docs: Vec<Node> = serde_saphyr::from_multiple(&encrypted).unwrap();
    assert_eq!(docs.len(), 2);
    let ids = keys(&key);
    // One MAC covers both documents: each alone does not match it.
    assert!(matches!(
        decrypt(&docs[1], &ids),
        Err(SopsError::MacMismatch)
    ));
    let both = kedge_sops::decrypt_stream(&[&docs[0], &docs[1]], &ids).unwrap();
    assert_eq!(both[0].value, json!({"a": 1, "b": "x"}));
    assert_eq!(both[1].value, json!({"c": 2, "d": "y"}));
    // In the wrong order they do not match either.
    assert!(matches!(
        kedge_sops::decrypt_stream(&[&docs[1], &docs[0]], &ids),
        Err(SopsError::MacMismatch)
    ));
}
