//! Fetching over file:// from repositories made with the git CLI.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use kedge_source::{
    ErrorKind, FetchRequest, FileTree, HistoryChange, Limits, RepoSpec, Source, SourceConfig,
    TagSignature, TreeError,
};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

struct Fixture {
    _dir: tempfile::TempDir,
    work: std::path::PathBuf,
    url: String,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir(&work).unwrap();
        git(&work, &["init", "-q", "-b", "main"]);
        Fixture {
            url: format!("file://{}", work.display()),
            work,
            _dir: dir,
        }
    }

    fn write(&self, rel: &str, content: &str) {
        let p = self.work.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    fn commit(&self, msg: &str) -> String {
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "-q", "-m", msg]);
        git(&self.work, &["rev-parse", "HEAD"])
    }
}

/// A new ed25519 SSH key in `dir` (no passphrase); its private key path.
fn ssh_key(dir: &Path) -> std::path::PathBuf {
    let key = dir.join("id");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    key
}

/// git in `dir` with SSH signing by the private key `key`.
fn git_signed(dir: &Path, key: &Path, args: &[&str]) -> String {
    let signing = format!("user.signingkey={}", key.display());
    let mut all = vec!["-c", "gpg.format=ssh", "-c", signing.as_str()];
    all.extend_from_slice(args);
    git(dir, &all)
}

fn source(cache: &Path) -> Source {
    Source::new(SourceConfig::new(cache)).unwrap()
}

#[test]
fn fetches_branch_tag_sha_and_semver_and_reads_tree() {
    let fx = Fixture::new();
    fx.write("apps/web/deploy.yaml", "kind: Deployment\n");
    let c1 = fx.commit("one");
    git(&fx.work, &["tag", "v1.2.0"]);
    fx.write("apps/web/deploy.yaml", "kind: Deployment # 2\n");
    let c2 = fx.commit("two");
    git(&fx.work, &["tag", "-a", "v1.4.1", "-m", "annotated"]);
    fx.write("apps/web/deploy.yaml", "kind: Deployment # 3\n");
    let c3 = fx.commit("three");
    git(&fx.work, &["tag", "v2.0.0"]);

    let cache = tempfile::tempdir().unwrap();
    let src = source(cache.path());
    let repo = RepoSpec::new(&fx.url).unwrap();

    let snap = src
        .fetch(&FetchRequest::new(repo.clone(), "main").with_path("apps/web"))
        .unwrap();
    assert_eq!(snap.revision().sha, c3);
    assert_eq!(snap.revision().ref_name.as_deref(), Some("refs/heads/main"));
    assert!(snap.revision().fetched);
    assert_eq!(
        snap.read_file("apps/web/deploy.yaml").unwrap(),
        b"kind: Deployment # 3\n"
    );
    let entries = snap.read_dir("apps").unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].name, "web");

    let head = src.fetch(&FetchRequest::new(repo.clone(), "HEAD")).unwrap();
    assert_eq!(head.revision().sha, c3);
    assert!(!head.revision().fetched, "the mirror already had HEAD");

    let tag = src
        .fetch(&FetchRequest::new(repo.clone(), "v1.2.0"))
        .unwrap();
    assert_eq!(tag.revision().sha, c1);
    assert_eq!(tag.revision().ref_name.as_deref(), Some("refs/tags/v1.2.0"));

    let semver = src
        .fetch(&FetchRequest::new(repo.clone(), ">=1.2.0 <2"))
        .unwrap();
    assert_eq!(semver.revision().sha, c2, "annotated tag peeled to commit");
    assert_eq!(
        semver.revision().ref_name.as_deref(),
        Some("refs/tags/v1.4.1")
    );

    let by_sha = src.fetch(&FetchRequest::new(repo.clone(), &c1)).unwrap();
    assert_eq!(by_sha.revision().sha, c1);

    let short = src
        .fetch(&FetchRequest::new(repo.clone(), &c2[..10]))
        .unwrap();
    assert_eq!(short.revision().sha, c2);

    let missing = src
        .fetch(&FetchRequest::new(repo.clone(), "no-such-branch"))
        .unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::RevisionNotFound);
    assert!(!missing.is_retryable());
    let missing_path = src
        .fetch(&FetchRequest::new(repo.clone(), "main").with_path("apps/nope"))
        .unwrap_err();
    assert_eq!(missing_path.kind(), ErrorKind::PathNotFound);
    let escape = src
        .fetch(&FetchRequest::new(repo, "main").with_path("../etc"))
        .unwrap_err();
    assert_eq!(escape.kind(), ErrorKind::PathNotFound);
}

#[test]
fn shallow_fetch_is_really_shallow_and_force_push_is_detected() {
    let fx = Fixture::new();
    for i in 0..5 {
        fx.write("a.txt", &format!("{i}\n"));
        fx.commit(&format!("c{i}"));
    }
    let before = git(&fx.work, &["rev-parse", "HEAD"]);
    let cache = tempfile::tempdir().unwrap();
    let src = source(cache.path());
    let repo = RepoSpec::new(&fx.url).unwrap();
    let snap = src.fetch(&FetchRequest::new(repo.clone(), "main")).unwrap();
    assert!(snap.revision().shallow, "depth 1 fetch must be shallow");
    let count = git(
        &src.mirror_path(&repo),
        &["rev-list", "--count", "refs/heads/main"],
    );
    assert_eq!(count, "1");

    // Fast-forward.
    fx.write("a.txt", "ff\n");
    let ff = fx.commit("ff");
    let snap = src
        .fetch(&FetchRequest::new(repo.clone(), "main").with_previous(Some(before.clone())))
        .unwrap();
    assert_eq!(snap.revision().sha, ff);
    assert_eq!(snap.revision().history, HistoryChange::FastForward);

    // Rewrite: drop the last two commits and commit something else.
    git(&fx.work, &["reset", "-q", "--hard", "HEAD~2"]);
    fx.write("a.txt", "rewritten\n");
    let rewritten = fx.commit("rewritten");
    let snap = src
        .fetch(&FetchRequest::new(repo.clone(), "main").with_previous(Some(ff.clone())))
        .unwrap();
    assert_eq!(snap.revision().sha, rewritten);
    assert_eq!(snap.revision().history, HistoryChange::Rewritten);

    let same = src
        .fetch(&FetchRequest::new(repo, "main").with_previous(Some(rewritten)))
        .unwrap();
    assert_eq!(same.revision().history, HistoryChange::Unchanged);
}

#[test]
fn symlinks_limits_and_materialize() {
    let fx = Fixture::new();
    fx.write("base/cm.yaml", "kind: ConfigMap\n");
    fx.write("big.txt", &"x".repeat(2048));
    std::os::unix::fs::symlink("../base/cm.yaml", fx.work.join("link-ok")).ok();
    std::fs::create_dir_all(fx.work.join("app")).unwrap();
    std::os::unix::fs::symlink("../base", fx.work.join("app/base")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", fx.work.join("app/abs")).unwrap();
    std::os::unix::fs::symlink("../../outside", fx.work.join("app/out")).unwrap();
    fx.commit("links");

    let cache = tempfile::tempdir().unwrap();
    let mut config = SourceConfig::new(cache.path());
    config.limits = Limits {
        max_file_bytes: 1024,
        ..Limits::default()
    };
    let src = Source::new(config).unwrap();
    let repo = RepoSpec::new(&fx.url).unwrap();
    let snap = src
        .fetch(&FetchRequest::new(repo, "main").with_path("app"))
        .unwrap();
    assert_eq!(
        snap.read_file("app/base/cm.yaml").unwrap(),
        b"kind: ConfigMap\n"
    );
    assert!(matches!(
        snap.read_file("app/abs"),
        Err(TreeError::SymlinkEscape { .. })
    ));
    assert!(matches!(
        snap.read_file("app/out"),
        Err(TreeError::SymlinkEscape { .. })
    ));
    assert!(matches!(
        snap.read_file("../x"),
        Err(TreeError::PathEscape { .. })
    ));
    assert!(matches!(
        snap.read_file("big.txt"),
        Err(TreeError::LimitExceeded {
            what: "file size",
            ..
        })
    ));
    let kinds: Vec<_> = snap
        .read_dir("app")
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.kind))
        .collect();
    assert!(kinds.contains(&("base".into(), kedge_source::EntryKind::Dir)));
    assert_eq!(
        snap.dir_id("app/base").unwrap(),
        snap.dir_id("base").unwrap()
    );

    // Materialize fails on the oversized file; with generous limits it works and is cached.
    assert!(snap.materialize().is_err());
}

#[test]
fn paths_in_a_folder_of_many_applications_resolve_like_any_other() {
    // A folder of 600 applications is a tree of about 20 KiB: wide enough to be indexed by name. One of them is a
    // link to another, one a file, and the folder is read at two commits.
    let fx = Fixture::new();
    for i in 0..600 {
        fx.write(&format!("apps/app-{i:04}/cm.yaml"), &format!("n: {i}\n"));
    }
    fx.write("apps/notes.txt", "not an application\n");
    std::os::unix::fs::symlink("app-0007", fx.work.join("apps/alias")).unwrap();
    let c1 = fx.commit("many");
    fx.write("apps/app-0599/cm.yaml", "n: changed\n");
    let c2 = fx.commit("one changed");

    let cache = tempfile::tempdir().unwrap();
    let src = source(cache.path());
    let repo = RepoSpec::new(&fx.url).unwrap();
    for (sha, last) in [(&c1, "n: 599\n"), (&c2, "n: changed\n")] {
        let snap = src
            .fetch(&FetchRequest::new(repo.clone(), sha.as_str()).with_path("apps/app-0001"))
            .unwrap();
        for i in [0, 1, 300, 598] {
            assert_eq!(
                snap.read_file(&format!("apps/app-{i:04}/cm.yaml")).unwrap(),
                format!("n: {i}\n").into_bytes()
            );
        }
        assert_eq!(
            snap.read_file("apps/app-0599/cm.yaml").unwrap(),
            last.as_bytes()
        );
        assert_eq!(snap.read_file("apps/alias/cm.yaml").unwrap(), b"n: 7\n");
        assert_eq!(
            snap.dir_id("apps/alias").unwrap(),
            snap.dir_id("apps/app-0007").unwrap()
        );
        assert_eq!(
            snap.read_file("apps/notes.txt").unwrap(),
            b"not an application\n"
        );
        assert!(matches!(
            snap.read_file("apps/app-0600/cm.yaml"),
            Err(TreeError::NotFound { .. })
        ));
        assert!(matches!(
            snap.read_file("apps/notes.txt/cm.yaml"),
            Err(TreeError::NotFound { .. })
        ));
        assert!(matches!(
            snap.read_file("apps/app-0002"),
            Err(TreeError::WrongType { .. })
        ));
        assert_eq!(snap.read_dir("apps").unwrap().len(), 602);
    }
}

#[test]
fn materialize_writes_once_per_commit_and_skips_escaping_links() {
    let fx = Fixture::new();
    fx.write("base/cm.yaml", "kind: ConfigMap\n");
    std::fs::create_dir_all(fx.work.join("app")).unwrap();
    std::os::unix::fs::symlink("../base", fx.work.join("app/base")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", fx.work.join("app/abs")).unwrap();
    let sha = fx.commit("one");
    let cache = tempfile::tempdir().unwrap();
    let src = source(cache.path());
    let repo = RepoSpec::new(&fx.url).unwrap();
    let a = src.fetch(&FetchRequest::new(repo.clone(), "main")).unwrap();
    let dir = a.materialize().unwrap();
    assert_eq!(dir, cache.path().join("trees").join(&sha));
    assert_eq!(
        std::fs::read_to_string(dir.join("app/base/cm.yaml")).unwrap(),
        "kind: ConfigMap\n"
    );
    assert!(std::fs::symlink_metadata(dir.join("app/abs")).is_err());
    // Another snapshot of the same commit reuses the folder; no temporary folders are left behind.
    let b = src.fetch(&FetchRequest::new(repo, "main")).unwrap();
    assert_eq!(b.materialize().unwrap(), dir);
    let leftovers = std::fs::read_dir(cache.path().join("trees"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .map(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
                .unwrap_or(false)
        })
        .count();
    assert_eq!(leftovers, 0);
}

#[test]
fn changed_files_lists_what_a_commit_touched() {
    let fx = Fixture::new();
    fx.write("apps/a/cm.yaml", "a: 1\n");
    fx.write("apps/b/cm.yaml", "b: 1\n");
    fx.write("apps/c/x/deep.yaml", "c: 1\n");
    fx.write("base/common.yaml", "common\n");
    fx.write("README", "readme\n");
    let c1 = fx.commit("one");
    let cache = tempfile::tempdir().unwrap();
    let src = source(cache.path());
    let repo = RepoSpec::new(&fx.url).unwrap();
    // Nothing fetched yet: a clear error.
    let err = src.changed_files(&repo, &c1, &c1, 100).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RevisionNotFound, "{err}");
    src.fetch(&FetchRequest::new(repo.clone(), "main")).unwrap();

    fx.write("apps/b/cm.yaml", "b: 2\n");
    std::fs::remove_dir_all(fx.work.join("apps/c")).unwrap();
    fx.write("apps/c", "now a file\n");
    fx.write("apps/d/new.yaml", "d: 1\n");
    let c2 = fx.commit("two");
    // The new commit is not in the mirror until fetched.
    let err = src.changed_files(&repo, &c1, &c2, 100).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RevisionNotFound, "{err}");
    src.fetch(&FetchRequest::new(repo.clone(), "main")).unwrap();
    let changed = src.changed_files(&repo, &c1, &c2, 100).unwrap().unwrap();
    assert_eq!(
        changed,
        [
            "apps/b/cm.yaml",
            "apps/c",
            "apps/c/x/deep.yaml",
            "apps/d/new.yaml"
        ]
    );
    // The other way round reports the same paths; more than `max` differ: no list.
    assert_eq!(
        src.changed_files(&repo, &c2, &c1, 100).unwrap().unwrap(),
        changed
    );
    assert_eq!(src.changed_files(&repo, &c1, &c2, 3).unwrap(), None);

    // A mode change is a change; the same commit changes nothing.
    std::fs::set_permissions(
        fx.work.join("README"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let c3 = fx.commit("mode");
    src.fetch(&FetchRequest::new(repo.clone(), "main")).unwrap();
    assert_eq!(
        src.changed_files(&repo, &c2, &c3, 100).unwrap().unwrap(),
        ["README"]
    );
    assert!(
        src.changed_files(&repo, &c3, &c3, 100)
            .unwrap()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn commit_signature_is_read_with_the_bytes_it_signs() {
    let fx = Fixture::new();
    fx.write("app/cm.yaml", "a: 1\n");
    fx.commit("unsigned");
    let keys = tempfile::tempdir().unwrap();
    let key = ssh_key(keys.path());
    let cache = tempfile::tempdir().unwrap();
    let src = source(cache.path());
    let repo = RepoSpec::new(&fx.url).unwrap();
    let snap = src.fetch(&FetchRequest::new(repo.clone(), "main")).unwrap();
    assert_eq!(snap.commit_signature().unwrap(), None);

    fx.write("app/cm.yaml", "a: 2\n");
    git(&fx.work, &["add", "-A"]);
    git_signed(&fx.work, &key, &["commit", "-q", "-S", "-m", "signed"]);
    let snap = src.fetch(&FetchRequest::new(repo, "main")).unwrap();
    let (signature, payload) = snap.commit_signature().unwrap().expect("signed");
    assert!(
        signature.starts_with("-----BEGIN SSH SIGNATURE-----"),
        "{signature}"
    );
    assert!(
        signature
            .trim_end()
            .ends_with("-----END SSH SIGNATURE-----"),
        "{signature}"
    );
    // What was signed is the commit without its signature header.
    let raw = git(&fx.work, &["cat-file", "commit", "HEAD"]);
    let payload = String::from_utf8(payload).unwrap();
    assert!(
        !payload.contains("gpgsig") && payload.contains("\n\nsigned"),
        "{payload}"
    );
    assert!(raw.starts_with(payload.lines().next().unwrap()), "{raw}");
}

#[test]
fn tag_signatures_are_read_for_tags_of_an_already_fetched_commit() {
    let fx = Fixture::new();
    fx.write("app/cm.yaml", "a: 1\n");
    fx.commit("one");
    let keys = tempfile::tempdir().unwrap();
    let key = ssh_key(keys.path());
    git_signed(&fx.work, &key, &["tag", "-s", "v2", "-m", "signed"]);
    git(&fx.work, &["tag", "-a", "v1", "-m", "unsigned"]);
    git(&fx.work, &["tag", "v0"]);
    let cache = tempfile::tempdir().unwrap();
    let src = source(cache.path());
    let repo = RepoSpec::new(&fx.url).unwrap();
    // The commit is fetched through the branch first; each tag still brings its own tag object.
    let head = src.fetch(&FetchRequest::new(repo.clone(), "main")).unwrap();
    assert_eq!(head.tag_signature().unwrap(), TagSignature::NotATag);
    let v0 = src.fetch(&FetchRequest::new(repo.clone(), "v0")).unwrap();
    assert_eq!(v0.tag_signature().unwrap(), TagSignature::Lightweight);
    let v1 = src.fetch(&FetchRequest::new(repo.clone(), "v1")).unwrap();
    assert_eq!(v1.tag_signature().unwrap(), TagSignature::Unsigned);
    let v2 = src.fetch(&FetchRequest::new(repo, "v2")).unwrap();
    match v2.tag_signature().unwrap() {
        TagSignature::Signed { signature, payload } => {
            assert!(
                signature.starts_with("-----BEGIN SSH SIGNATURE-----"),
                "{signature}"
            );
            let payload = String::from_utf8(payload).unwrap();
            assert!(
                payload.starts_with("object ") && payload.ends_with("signed\n"),
                "{payload}"
            );
        }
        other => panic!("expected a signed tag, got {other:?}"),
    }
}
