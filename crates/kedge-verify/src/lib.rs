//! Checks that a Git commit is signed by one of the keys an application trusts (OpenPGP or SSH).
//!
//! Git stores a commit's signature in its `gpgsig` header; the signed data is the commit object without that header.
//! [`TrustedKeys`] holds the keys read from key files (armored OpenPGP public key blocks, or SSH public keys one per
//! line as in `authorized_keys`), and [`TrustedKeys::verify`] checks a signature natively, without `gpg` or
//! `ssh-keygen`: OpenPGP signatures with [`pgp`], SSH signatures (namespace `git`) with [`ssh_key`].
//!
//! ```
//! let keys = kedge_verify::TrustedKeys::parse([(
//!     "alice.pub",
//!     b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ/TFrB0l1lmmx5vG5j/l0QKATDO1SsYchurrFhjuik3 alice".as_slice(),
//! )])
//! .unwrap();
//! assert_eq!(keys.len(), 1);
//! let err = keys.verify("not a signature", b"tree ...").unwrap_err();
//! assert!(err.to_string().contains("unsupported signature format"));
//! ```

use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey};
use pgp::types::KeyDetails;

/// The namespace Git signs commits and tags in with SSH keys.
const SSH_NAMESPACE: &str = "git";

/// A key file that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("key {name}: {reason}")]
pub struct KeyError {
    /// The key file's name (the Secret's data key).
    pub name: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Why a signature is not accepted.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Neither an OpenPGP nor an SSH signature (e.g. X.509).
    #[error("unsupported signature format (only OpenPGP and SSH signatures are checked)")]
    UnsupportedFormat,
    /// The signature could not be parsed.
    #[error("malformed {kind} signature: {reason}")]
    Malformed {
        /// `OpenPGP` or `SSH`.
        kind: &'static str,
        /// The parser's message.
        reason: String,
    },
    /// Signed by a key that is not among the trusted ones.
    #[error("signed with {kind} key {key}, which is not a trusted key")]
    Untrusted {
        /// `OpenPGP` or `SSH`.
        kind: &'static str,
        /// The signing key's fingerprint (or OpenPGP key id) as the signature names it.
        key: String,
    },
    /// Made by a trusted key, but it does not match the commit (altered after signing, or a bad signature).
    #[error("the {kind} signature by trusted key {key} does not match the commit: {reason}")]
    BadSignature {
        /// `OpenPGP` or `SSH`.
        kind: &'static str,
        /// The trusted key's fingerprint.
        key: String,
        /// The verifier's message.
        reason: String,
    },
}

/// The trusted key that made a valid signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    /// `OpenPGP` or `SSH`.
    pub kind: &'static str,
    /// The key's fingerprint (OpenPGP: hex of the primary key; SSH: `SHA256:...`).
    pub fingerprint: String,
    /// The key file it came from.
    pub file: String,
}

struct PgpKey {
    file: String,
    key: SignedPublicKey,
}

struct SshKey {
    file: String,
    key: ssh_key::PublicKey,
}

/// The keys whose signatures an application accepts.
#[derive(Default)]
pub struct TrustedKeys {
    pgp: Vec<PgpKey>,
    ssh: Vec<SshKey>,
}

impl std::fmt::Debug for TrustedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustedKeys")
            .field("pgp", &self.pgp.len())
            .field("ssh", &self.ssh.len())
            .finish()
    }
}

impl TrustedKeys {
    /// Reads key files given as `(name, content)`: an armored OpenPGP public key block (one or more keys), or SSH
    /// public keys one per line (`ssh-ed25519 AAAA... comment`; blank lines and `#` comments are skipped).
    ///
    /// A file that is neither, or a key whose self-signatures do not verify, is an error naming the file.
    pub fn parse<'a>(
        files: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<Self, KeyError> {
        let mut keys = TrustedKeys::default();
        for (name, content) in files {
            let fail = |reason: String| KeyError {
                name: name.to_owned(),
                reason,
            };
            let text = std::str::from_utf8(content).map_err(|_| {
                fail("not text: expected an armored OpenPGP key or SSH public keys".into())
            })?;
            if text.contains("-----BEGIN PGP PUBLIC KEY BLOCK-----") {
                let (parsed, _) = SignedPublicKey::from_string_many(text)
                    .map_err(|e| fail(format!("not a valid OpenPGP public key: {e}")))?;
                let mut found = 0;
                for key in parsed {
                    let key =
                        key.map_err(|e| fail(format!("not a valid OpenPGP public key: {e}")))?;
                    key.verify_bindings().map_err(|e| {
                        fail(format!(
                            "OpenPGP key {} has an invalid self-signature: {e}",
                            hex(key.fingerprint().as_bytes())
                        ))
                    })?;
                    keys.pgp.push(PgpKey {
                        file: name.to_owned(),
                        key,
                    });
                    found += 1;
                }
                if found == 0 {
                    return Err(fail("the OpenPGP block holds no key".into()));
                }
                continue;
            }
            let mut found = 0;
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let key = ssh_key::PublicKey::from_openssh(line).map_err(|e| {
                    fail(format!(
                        "line {}: not an SSH public key or an armored OpenPGP key ({e})",
                        n + 1
                    ))
                })?;
                keys.ssh.push(SshKey {
                    file: name.to_owned(),
                    key,
                });
                found += 1;
            }
            if found == 0 {
                return Err(fail("holds no key".into()));
            }
        }
        Ok(keys)
    }

    /// How many keys are trusted.
    pub fn len(&self) -> usize {
        self.pgp.len() + self.ssh.len()
    }

    /// Whether no key is trusted (then nothing verifies).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks a commit's `signature` (the armored `gpgsig` header) over `payload` (the commit without it).
    pub fn verify(&self, signature: &str, payload: &[u8]) -> Result<Signer, VerifyError> {
        let signature = signature.trim();
        if signature.starts_with("-----BEGIN PGP SIGNATURE-----") {
            self.verify_pgp(signature, payload)
        } else if signature.starts_with("-----BEGIN SSH SIGNATURE-----") {
            self.verify_ssh(signature, payload)
        } else {
            Err(VerifyError::UnsupportedFormat)
        }
    }

    fn verify_pgp(&self, armored: &str, payload: &[u8]) -> Result<Signer, VerifyError> {
        const KIND: &str = "OpenPGP";
        let (sig, _) =
            DetachedSignature::from_string(armored).map_err(|e| VerifyError::Malformed {
                kind: KIND,
                reason: e.to_string(),
            })?;
        let issuers: Vec<Vec<u8>> = sig
            .signature
            .issuer_fingerprint()
            .iter()
            .map(|f| f.as_bytes().to_vec())
            .collect();
        let issuer_ids: Vec<Vec<u8>> = sig
            .signature
            .issuer_key_id()
            .iter()
            .map(|id| id.as_ref().to_vec())
            .collect();
        let names = |fp: &[u8], id: &[u8]| {
            issuers.iter().any(|i| i == fp) || issuer_ids.iter().any(|i| i == id)
        };
        for trusted in &self.pgp {
            let primary = &trusted.key;
            let fingerprint = hex(primary.fingerprint().as_bytes());
            let candidates = std::iter::once((
                primary.fingerprint().as_bytes().to_vec(),
                primary.legacy_key_id().as_ref().to_vec(),
                sig.verify(primary, payload),
            ))
            .chain(primary.public_subkeys.iter().map(|sub| {
                (
                    sub.fingerprint().as_bytes().to_vec(),
                    sub.legacy_key_id().as_ref().to_vec(),
                    sig.verify(sub, payload),
                )
            }));
            for (fp, id, outcome) in candidates {
                match outcome {
                    Ok(()) => {
                        return Ok(Signer {
                            kind: KIND,
                            fingerprint,
                            file: trusted.file.clone(),
                        });
                    }
                    Err(e) if names(&fp, &id) => {
                        return Err(VerifyError::BadSignature {
                            kind: KIND,
                            key: fingerprint,
                            reason: e.to_string(),
                        });
                    }
                    Err(_) => {}
                }
            }
        }
        let key = issuers
            .first()
            .or(issuer_ids.first())
            .map(|b| hex(b))
            .unwrap_or_else(|| "(unnamed)".into());
        Err(VerifyError::Untrusted { kind: KIND, key })
    }

    fn verify_ssh(&self, armored: &str, payload: &[u8]) -> Result<Signer, VerifyError> {
        const KIND: &str = "SSH";
        let sig = ssh_key::SshSig::from_pem(armored).map_err(|e| VerifyError::Malformed {
            kind: KIND,
            reason: e.to_string(),
        })?;
        let signing = ssh_key::PublicKey::from(sig.public_key().clone());
        let fingerprint = signing.fingerprint(ssh_key::HashAlg::Sha256).to_string();
        let Some(trusted) = self
            .ssh
            .iter()
            .find(|t| t.key.key_data() == sig.public_key())
        else {
            return Err(VerifyError::Untrusted {
                kind: KIND,
                key: fingerprint,
            });
        };
        trusted
            .key
            .verify(SSH_NAMESPACE, payload, &sig)
            .map_err(|e| VerifyError::BadSignature {
                kind: KIND,
                key: fingerprint.clone(),
                reason: e.to_string(),
            })?;
        Ok(Signer {
            kind: KIND,
            fingerprint,
            file: trusted.file.clone(),
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}
