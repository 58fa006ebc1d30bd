//! SOPS-encrypted manifests in directory and kustomize sources, encrypted by the real sops.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::sync::Arc;

use common::TempTree;
use kedge_render::{Decryption, RenderError, RenderOptions, Renderer};
use kedge_testkit::{AgeKey, sops_encrypt};
use serde_json::json;

const SECRET: &str = "apiVersion: v1
kind: Secret
metadata:
  name: db
type: Opaque
stringData:
  password: s3cr3t
";

fn encrypted_secret(key: &AgeKey) -> String {
    sops_encrypt(
        SECRET,
        "yaml",
        &key.recipient,
        &["--encrypted-regex", "^(data|stringData)$"],
    )
    .unwrap()
}

fn options(key: &AgeKey, id: &str) -> RenderOptions {
    let keys = kedge_sops::Identities::parse([("age.agekey", key.identity.as_bytes())]).unwrap();
    RenderOptions {
        decryption: Some(Decryption::new(Arc::new(keys), id)),
        ..Default::default()
    }
}

fn no_cache() -> Renderer {
    Renderer::new(kedge_render::RenderConfig {
        cache: kedge_render::CacheConfig {
            max_entries: 0,
            max_bytes: 0,
        },
        ..Default::default()
    })
}

#[test]
fn encrypted_documents_in_a_directory_are_decrypted_or_refused() {
    let key = AgeKey::generate();
    let tree = TempTree::new();
    tree.write("app/secret.yaml", &encrypted_secret(&key));
    tree.write(
        "app/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: plain\ndata:\n  a: b\n",
    );
    let r = no_cache();

    // Without keys: an error naming the file and the spec field; never an ENC[...] value as an object.
    let err = r
        .render(&tree, "app", &RenderOptions::default())
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("app/secret.yaml") && text.contains("spec.decryption"),
        "{text}"
    );

    let set = r.render(&tree, "app", &options(&key, "keys@1")).unwrap();
    let secret = set.objects.iter().find(|o| o.kind == "Secret").unwrap();
    assert_eq!(secret.object["stringData"], json!({ "password": "s3cr3t" }));
    assert!(
        secret.object.get("sops").is_none(),
        "the metadata is dropped"
    );
    assert_eq!(set.objects.len(), 2);

    // Keys that do not fit: the document's recipients are named, no key material is.
    let other = AgeKey::generate();
    let err = r
        .render(&tree, "app", &options(&other, "keys@2"))
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&key.recipient) && !text.contains("AGE-SECRET-KEY"),
        "{text}"
    );
    assert!(
        matches!(
            err,
            RenderError::Decrypt { .. } | RenderError::Multiple { .. }
        ),
        "{err:?}"
    );
}

#[test]
fn encrypted_resources_of_a_kustomization_are_decrypted_after_the_build() {
    let key = AgeKey::generate();
    let tree = TempTree::new();
    tree.write("app/secret.yaml", &encrypted_secret(&key));
    tree.write(
        "app/kustomization.yaml",
        "resources:\n  - secret.yaml\nnamespace: shop\n",
    );
    let r = no_cache();
    // kustomize sorts the keys (the MAC covers their order) and sets the namespace: the values are decrypted from
    // the original file and the build's changes stay.
    let set = r.render(&tree, "app", &options(&key, "keys@1")).unwrap();
    let secret = set.objects.iter().find(|o| o.kind == "Secret").unwrap();
    assert_eq!(secret.object["stringData"]["password"], "s3cr3t");
    assert_eq!(secret.object["metadata"]["namespace"], "shop");
    assert!(secret.object.get("sops").is_none());

    // An encrypted value moved to another key by a patch is refused (it is bound to its key).
    tree.write(
        "app/kustomization.yaml",
        "resources:\n  - secret.yaml\npatches:\n  - target: {kind: Secret}\n    patch: |-\n      - op: move\n        from: /stringData/password\n        path: /stringData/moved\n",
    );
    let err = r
        .render(&tree, "app", &options(&key, "keys@1"))
        .unwrap_err();
    assert!(err.to_string().contains("stringData:moved"), "{err}");

    // Without keys: refused.
    let err = r
        .render(&tree, "app", &RenderOptions::default())
        .unwrap_err();
    assert!(err.to_string().contains("spec.decryption"), "{err}");
}

#[test]
fn a_file_of_several_encrypted_documents_is_decrypted_as_one() {
    let key = AgeKey::generate();
    let two = format!(
        "{SECRET}---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: api\nstringData:\n  token: t0k3n\n"
    );
    let encrypted = sops_encrypt(
        &two,
        "yaml",
        &key.recipient,
        &["--encrypted-regex", "^(data|stringData)$"],
    )
    .unwrap();
    let r = no_cache();
    for kustomize in [false, true] {
        let tree = TempTree::new();
        tree.write("app/secrets.yaml", &encrypted);
        if kustomize {
            tree.write("app/kustomization.yaml", "resources:\n  - secrets.yaml\n");
        }
        let set = r.render(&tree, "app", &options(&key, "keys@1")).unwrap();
        let value = |name: &str| {
            set.objects
                .iter()
                .find(|o| o.name == name)
                .map(|o| o.object["stringData"].clone())
        };
        assert_eq!(
            value("db"),
            Some(json!({ "password": "s3cr3t" })),
            "kustomize: {kustomize}"
        );
        assert_eq!(
            value("api"),
            Some(json!({ "token": "t0k3n" })),
            "kustomize: {kustomize}"
        );
    }
}

#[test]
fn decrypted_fields_of_any_kind_are_marked_sensitive() {
    // A ConfigMap (not a Secret) encrypted whole but for its identity: the decrypted fields are listed in the
    // annotation that diffs and views mask, in a directory and after a kustomize build.
    let key = AgeKey::generate();
    let config = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: db-config\ndata:\n  url: postgres://db/shop\n  password: hunter2-in-a-config-map\n";
    let encrypted = sops_encrypt(
        config,
        "yaml",
        &key.recipient,
        &["--encrypted-regex", "^data$"],
    )
    .unwrap();
    let r = no_cache();
    for kustomize in [false, true] {
        let tree = TempTree::new();
        tree.write("app/config.yaml", &encrypted);
        tree.write(
            "app/plain.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: plain\ndata:\n  a: b\n",
        );
        if kustomize {
            tree.write(
                "app/kustomization.yaml",
                "resources:\n  - config.yaml\n  - plain.yaml\n",
            );
        }
        let set = r.render(&tree, "app", &options(&key, "keys@1")).unwrap();
        let cm = set.objects.iter().find(|o| o.name == "db-config").unwrap();
        assert_eq!(cm.object["data"]["password"], "hunter2-in-a-config-map");
        let marked = cm.object["metadata"]["annotations"]["kedge.dev/sensitive-fields"]
            .as_str()
            .unwrap_or_default();
        let fields: Vec<String> = serde_json::from_str(marked).unwrap();
        assert_eq!(
            fields,
            vec!["/data/password", "/data/url"],
            "kustomize: {kustomize}"
        );
        let plain = set.objects.iter().find(|o| o.name == "plain").unwrap();
        assert!(
            plain.object["metadata"].get("annotations").is_none(),
            "a document that was not encrypted is not marked: {}",
            plain.object
        );
    }
}
