//! Commits signed by the real `git` with SSH keys (`ssh-keygen`) and OpenPGP keys (`gpg`), checked natively.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;

use kedge_verify::{TrustedKeys, VerifyError};

fn run(dir: &Path, program: &str, args: &[&str], env: &[(&str, &Path)]) -> String {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Kedge Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Kedge Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect(program);
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A repository with one commit per call of `commit`, signed as the arguments say.
struct Repo {
    dir: tempfile::TempDir,
}

impl Repo {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        run(dir.path(), "git", &["init", "-q", "-b", "main"], &[]);
        Repo { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Commits a change with `git commit` plus `sign_args`; returns (signature, payload) of the new commit.
    fn commit(&self, sign_args: &[&str], env: &[(&str, &Path)]) -> (Option<String>, Vec<u8>) {
        let n = std::fs::read_dir(self.path()).unwrap().count();
        std::fs::write(self.path().join(format!("f{n}.yaml")), format!("n: {n}\n")).unwrap();
        run(self.path(), "git", &["add", "-A"], &[]);
        let mut args: Vec<&str> = sign_args.to_vec();
        args.extend(["commit", "-q", "-m", "change"]);
        run(self.path(), "git", &args, env);
        split_signature(&run(
            self.path(),
            "git",
            &["cat-file", "commit", "HEAD"],
            &[],
        ))
    }
}

/// Splits a raw commit into its `gpgsig` header (unfolded) and the rest, the way Git signs it.
fn split_signature(raw: &str) -> (Option<String>, Vec<u8>) {
    let mut signature: Option<String> = None;
    let mut payload = String::new();
    let mut in_sig = false;
    let mut in_headers = true;
    for line in raw.split_inclusive('\n') {
        if in_headers && line == "\n" {
            in_headers = false;
        }
        if in_headers && let Some(rest) = line.strip_prefix("gpgsig ") {
            signature = Some(rest.to_owned());
            in_sig = true;
            continue;
        }
        if in_sig && let Some(rest) = line.strip_prefix(' ') {
            if let Some(s) = signature.as_mut() {
                s.push_str(rest);
            }
            continue;
        }
        in_sig = false;
        payload.push_str(line);
    }
    (signature, payload.into_bytes())
}

fn ssh_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    run(
        dir,
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            name,
            "-f",
            path.to_str().unwrap(),
        ],
        &[],
    );
    let public = std::fs::read_to_string(dir.join(format!("{name}.pub"))).unwrap();
    (path, public)
}

#[test]
fn ssh_signed_commits_verify_against_trusted_keys_only() {
    let keys_dir = tempfile::tempdir().unwrap();
    let (alice, alice_pub) = ssh_key(keys_dir.path(), "alice");
    let (_, bob_pub) = ssh_key(keys_dir.path(), "bob");
    let repo = Repo::new();
    let signing = format!("user.signingkey={}", alice.display());
    let (sig, payload) = repo.commit(
        &[
            "-c",
            "gpg.format=ssh",
            "-c",
            &signing,
            "-c",
            "commit.gpgsign=true",
        ],
        &[],
    );
    let sig = sig.expect("signed");

    let both = format!("# the team\n{alice_pub}\n{bob_pub}");
    let trusted = TrustedKeys::parse([("team.pub", both.as_bytes())]).unwrap();
    assert_eq!(trusted.len(), 2);
    let signer = trusted.verify(&sig, &payload).expect("alice is trusted");
    assert_eq!(signer.kind, "SSH");
    assert_eq!(signer.file, "team.pub");
    assert!(signer.fingerprint.starts_with("SHA256:"), "{signer:?}");

    // Only bob trusted: alice's signature is named as untrusted, with her key's fingerprint.
    let only_bob = TrustedKeys::parse([("bob.pub", bob_pub.as_bytes())]).unwrap();
    match only_bob.verify(&sig, &payload) {
        Err(VerifyError::Untrusted { kind: "SSH", key }) => assert_eq!(key, signer.fingerprint),
        other => panic!("expected untrusted, got {other:?}"),
    }

    // The commit altered after signing (another tree, same signature).
    let mut altered = payload.clone();
    altered[5] ^= 1;
    assert!(matches!(
        trusted.verify(&sig, &altered),
        Err(VerifyError::BadSignature { kind: "SSH", .. })
    ));

    // An unsigned commit has no signature to check.
    let (none, _) = repo.commit(&[], &[]);
    assert!(none.is_none());
}

/// A throwaway GnuPG home; its agent is stopped when dropped.
struct GnupgHome(tempfile::TempDir);

impl Drop for GnupgHome {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .args(["--kill", "all"])
            .env("GNUPGHOME", self.0.path())
            .status();
    }
}

#[test]
fn openpgp_signed_commits_verify_with_primary_keys_and_signing_subkeys() {
    let home = GnupgHome(tempfile::tempdir().unwrap());
    let home = &home.0;
    let env = [("GNUPGHOME", home.path())];
    let gpg = |args: &[&str]| run(home.path(), "gpg", args, &env);
    // A key that signs with its primary key, and one whose signing key is a subkey (the usual layout).
    gpg(&[
        "--batch",
        "--passphrase",
        "",
        "--quick-gen-key",
        "Primary Signer <p@example.com>",
        "ed25519",
        "sign",
        "never",
    ]);
    gpg(&[
        "--batch",
        "--passphrase",
        "",
        "--quick-gen-key",
        "Subkey Signer <s@example.com>",
        "ed25519",
        "cert",
        "never",
    ]);
    let fingerprint = |uid: &str| -> String {
        gpg(&["--with-colons", "--list-keys", uid])
            .lines()
            .find_map(|l| {
                l.strip_prefix("fpr:")
                    .map(|r| r.trim_matches(':').to_owned())
            })
            .expect("fingerprint")
    };
    let primary = fingerprint("p@example.com");
    let with_sub = fingerprint("s@example.com");
    gpg(&[
        "--batch",
        "--passphrase",
        "",
        "--quick-add-key",
        &with_sub,
        "ed25519",
        "sign",
        "never",
    ]);
    let export = |fpr: &str| gpg(&["--armor", "--export", fpr]);
    let trusted = TrustedKeys::parse([
        ("primary.asc", export(&primary).as_bytes()),
        ("sub.asc", export(&with_sub).as_bytes()),
    ])
    .unwrap();

    let repo = Repo::new();
    for (fpr, file) in [(&primary, "primary.asc"), (&with_sub, "sub.asc")] {
        let signing = format!("user.signingkey={fpr}");
        let (sig, payload) = repo.commit(&["-c", &signing, "-c", "commit.gpgsign=true"], &env);
        let sig = sig.expect("signed");
        assert!(sig.starts_with("-----BEGIN PGP SIGNATURE-----"), "{sig}");
        let signer = trusted.verify(&sig, &payload).expect("trusted key");
        assert_eq!(signer.kind, "OpenPGP");
        assert_eq!(signer.fingerprint, fpr.to_uppercase());
        assert_eq!(signer.file, file);

        let mut altered = payload.clone();
        altered[5] ^= 1;
        assert!(
            matches!(
                trusted.verify(&sig, &altered),
                Err(VerifyError::BadSignature {
                    kind: "OpenPGP",
                    ..
                })
            ),
            "altered commit accepted"
        );
    }

    // Only the primary signer trusted: the subkey's signature is untrusted.
    let signing = format!("user.signingkey={with_sub}");
    let (sig, payload) = repo.commit(&["-c", &signing, "-c", "commit.gpgsign=true"], &env);
    let only_primary = TrustedKeys::parse([("primary.asc", export(&primary).as_bytes())]).unwrap();
    assert!(matches!(
        only_primary.verify(&sig.expect("signed"), &payload),
        Err(VerifyError::Untrusted {
            kind: "OpenPGP",
            ..
        })
    ));
}

#[test]
fn key_files_that_hold_no_key_are_named_in_the_error() {
    let err = TrustedKeys::parse([("notes.txt", b"hello there".as_slice())]).unwrap_err();
    assert_eq!(err.name, "notes.txt");
    assert!(err.to_string().contains("line 1"), "{err}");
    let err = TrustedKeys::parse([("empty.pub", b"# nothing\n\n".as_slice())]).unwrap_err();
    assert!(err.to_string().contains("holds no key"), "{err}");
    let err = TrustedKeys::parse([(
        "broken.asc",
        b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnot base64\n-----END PGP PUBLIC KEY BLOCK-----\n"
            .as_slice(),
    )])
    .unwrap_err();
    assert!(err.to_string().contains("broken.asc"), "{err}");
}
