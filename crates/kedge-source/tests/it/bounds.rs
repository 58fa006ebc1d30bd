//! What a source keeps is bounded: a fetch larger than the limit is refused, unused mirrors and trees are removed.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, SystemTime};

use kedge_source::{ErrorKind, FetchRequest, FileTree, RepoSpec, Source, SourceConfig};
use kedge_testkit::GitFixture;

/// A repository on `file://` whose one commit holds `size` bytes that do not compress, and a ConfigMap naming `tag`
/// (which keeps two fixtures' commits apart).
fn repo_with_blob(tag: &str, size: usize) -> (GitFixture, String) {
    let work = GitFixture::new().unwrap();
    // xorshift: incompressible enough that the pack is about as large as the blob.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let bytes: Vec<u8> = (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    work.write("blob.bin", bytes).unwrap();
    let cm = format!("apiVersion: v1\nkind: ConfigMap\n# {tag}\n");
    work.write("cm.yaml", cm).unwrap();
    work.commit("big").unwrap();
    let url = format!("file://{}", work.path().display());
    (work, url)
}

fn pack_files(mirror: &Path) -> Vec<String> {
    std::fs::read_dir(mirror.join("objects/pack"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_fetch_larger_than_the_limit_is_refused_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_repo, url) = repo_with_blob("big", 3 << 20);
    let cache = dir.path().join("cache");
    let mut config = SourceConfig::new(&cache);
    config.max_fetch_bytes = 1 << 20;
    let source = Source::new(config).unwrap();
    let repo = RepoSpec::new(&url).unwrap();
    let err = source
        .fetch(&FetchRequest::new(repo.clone(), "main"))
        .expect_err("a 3 MiB pack passes a 1 MiB limit");
    assert_eq!(err.kind, ErrorKind::LimitExceeded, "{err}");
    let message = err.to_string();
    assert!(message.contains("more than 1048576 bytes"), "{message}");
    assert!(
        pack_files(&source.mirror_path(&repo)).is_empty(),
        "no pack (or temporary pack) is left: {:?}",
        pack_files(&source.mirror_path(&repo))
    );

    // Within the limit the same repository is fetched.
    let mut config = SourceConfig::new(&cache);
    config.max_fetch_bytes = 8 << 20;
    let source = Source::new(config).unwrap();
    let snap = source.fetch(&FetchRequest::new(repo, "main")).unwrap();
    assert!(snap.read_file("cm.yaml").is_ok());
}

fn age(path: &Path, by: Duration) {
    let when = SystemTime::now() - by;
    let file = std::fs::File::open(path).unwrap();
    file.set_modified(when).unwrap();
}

#[test]
fn mirrors_and_trees_unused_for_a_day_are_removed_and_in_use_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (_old_repo, old_url) = repo_with_blob("old", 1024);
    let (_new_repo, new_url) = repo_with_blob("new", 1024);
    let cache = dir.path().join("cache");
    let source = Source::new(SourceConfig::new(&cache)).unwrap();
    let old = RepoSpec::new(&old_url).unwrap();
    let new = RepoSpec::new(&new_url).unwrap();
    let old_snap = source
        .fetch(&FetchRequest::new(old.clone(), "main"))
        .unwrap();
    let new_snap = source
        .fetch(&FetchRequest::new(new.clone(), "main"))
        .unwrap();
    let old_tree = old_snap.materialize().unwrap();
    let new_tree = new_snap.materialize().unwrap();

    let day = Duration::from_secs(24 * 3600);
    let old_mirror = source.mirror_path(&old);
    let old_lock = old_mirror.with_extension("lock");
    age(&old_lock, day + Duration::from_secs(60));
    age(&old_tree, day + Duration::from_secs(60));

    // Nothing is idle for two days: nothing goes.
    let report = source.collect_garbage(2 * day).unwrap();
    assert!(
        report.mirrors_removed.is_empty() && report.trees_removed == 0,
        "{report:?}"
    );

    let report = source.collect_garbage(day).unwrap();
    assert_eq!(report.mirrors_removed.len(), 1, "{report:?}");
    assert_eq!(report.trees_removed, 1, "{report:?}");
    assert!(report.bytes_freed > 0);
    assert!(!old_mirror.exists(), "the idle mirror is gone");
    assert!(!old_tree.exists(), "the idle tree is gone");
    assert!(source.mirror_path(&new).exists(), "the recent mirror stays");
    assert!(new_tree.exists(), "the recent tree stays");

    // A mirror locked by a fetch is kept however old it looks.
    let new_lock = source.mirror_path(&new).with_extension("lock");
    age(&new_lock, 2 * day);
    let held = std::fs::OpenOptions::new()
        .write(true)
        .open(&new_lock)
        .unwrap();
    held.lock().unwrap();
    let report = source.collect_garbage(day).unwrap();
    assert!(report.mirrors_removed.is_empty(), "{report:?}");
    drop(held);

    // The removed repository is fetched again from scratch, and a snapshot whose tree was removed writes it again.
    let again = source.fetch(&FetchRequest::new(old, "main")).unwrap();
    assert!(again.read_file("cm.yaml").is_ok());
    assert!(old_snap.materialize().unwrap().join("cm.yaml").exists());
}
