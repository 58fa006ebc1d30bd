//! The local-directory tree: same path, symlink and limit rules as Git trees; content-hash directory ids.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::symlink;

use kedge_source::{EntryKind, FileTree, Limits, LocalTree, TreeError};

#[test]
fn local_tree_reads_and_refuses_escapes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    std::fs::create_dir_all(root.join("base")).unwrap();
    std::fs::create_dir_all(root.join("app")).unwrap();
    std::fs::write(root.join("base/cm.yaml"), "kind: ConfigMap\n").unwrap();
    std::fs::write(dir.path().join("secret.txt"), "outside\n").unwrap();
    std::fs::write(root.join("big.txt"), "x".repeat(4096)).unwrap();
    symlink("../base", root.join("app/base")).unwrap();
    symlink("../../secret.txt", root.join("app/out")).unwrap();
    symlink(dir.path().join("secret.txt"), root.join("app/abs")).unwrap();

    let tree = LocalTree::new(
        &root,
        Limits {
            max_file_bytes: 1024,
            ..Limits::default()
        },
    )
    .unwrap();
    assert_eq!(
        tree.read_file("app/base/cm.yaml").unwrap(),
        b"kind: ConfigMap\n"
    );
    assert!(matches!(
        tree.read_file("app/out"),
        Err(TreeError::SymlinkEscape { .. })
    ));
    assert!(matches!(
        tree.read_file("app/abs"),
        Err(TreeError::SymlinkEscape { .. })
    ));
    assert!(matches!(
        tree.read_file("../secret.txt"),
        Err(TreeError::PathEscape { .. })
    ));
    assert!(matches!(
        tree.read_file("big.txt"),
        Err(TreeError::LimitExceeded { .. })
    ));
    assert!(matches!(
        tree.read_file("nope.yaml"),
        Err(TreeError::NotFound { .. })
    ));
    let listing = tree.read_dir("app").unwrap();
    let names: Vec<_> = listing.iter().map(|e| (e.name.as_str(), e.kind)).collect();
    assert_eq!(
        names,
        vec![
            ("abs", EntryKind::File),
            ("base", EntryKind::Dir),
            ("out", EntryKind::File)
        ]
    );

    // dir_id is a content hash: equal content, equal id; a change changes it.
    let id_before = tree.dir_id("base").unwrap();
    assert_eq!(id_before, tree.dir_id("app/base").unwrap());
    std::fs::write(root.join("base/cm.yaml"), "kind: ConfigMap # changed\n").unwrap();
    assert_ne!(id_before, tree.dir_id("base").unwrap());
    assert_eq!(tree.materialize().unwrap(), root);
}

#[test]
fn object_count_limit() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..5 {
        std::fs::write(dir.path().join(format!("f{i}")), "x").unwrap();
    }
    let tree = LocalTree::new(
        dir.path(),
        Limits {
            max_objects: 3,
            ..Limits::default()
        },
    )
    .unwrap();
    let err = tree.dir_id("").unwrap_err();
    assert!(
        matches!(
            err,
            TreeError::LimitExceeded {
                what: "object count",
                ..
            }
        ),
        "{err}"
    );
}
