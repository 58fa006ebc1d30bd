//! Decrypts SOPS-encrypted manifests with age keys, checking the document MAC, without the sops binary.
//!
//! A SOPS document keeps its keys in clear text and replaces values with `ENC[AES256_GCM,data:..,iv:..,tag:..,
//! type:..]`; its `sops` metadata holds the data key encrypted to each recipient and a MAC over all values in
//! document order. [`decrypt`] recovers the data key with one of the [`Identities`] (age X25519 keys), decrypts every
//! value that the metadata's rules say is encrypted (each bound to its key path), recomputes the MAC and refuses the
//! document when it does not match, so that an altered or reordered document is never applied.
//!
//! The document must be read with its key order kept ([`Node`]), since the MAC covers the order.
//!
//! Supported: age recipients; `unencrypted_suffix`, `encrypted_suffix`, `unencrypted_regex`, `encrypted_regex`;
//! `mac_only_encrypted`. Refused with a clear error: Shamir key groups and comment-based rules.

use std::io::Read as _;
use std::sync::Arc;

use aes_gcm::aead::consts::U32;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes256;
use aes_gcm::{AesGcm, Nonce};
use base64::Engine as _;
use sha2::{Digest, Sha512};

mod node;

pub use node::Node;

/// The key whose presence marks a SOPS document.
pub const METADATA_KEY: &str = "sops";

/// The first bytes hashed into a MAC that covers only encrypted values (`mac_only_encrypted`), as SOPS defines them.
const MAC_ONLY_ENCRYPTED_INIT: [u8; 32] = [
    0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47, 0xbe, 0x0b,
    0x0b, 0x97, 0x5b, 0x3b, 0xf4, 0x4f, 0x72, 0xc6, 0xfd, 0xad, 0xec, 0x81, 0x76, 0xf2, 0x7d, 0x69,
];

/// The suffix SOPS leaves unencrypted when a document names no rule.
const DEFAULT_UNENCRYPTED_SUFFIX: &str = "_unencrypted";

/// A key file that holds no usable age identity.
#[derive(Debug, thiserror::Error)]
#[error("key {name}: {reason}")]
pub struct KeyError {
    /// The key file's name (the Secret's data key).
    pub name: String,
    /// What is wrong with it (never its content).
    pub reason: String,
}

/// Why a document could not be decrypted.
#[derive(Debug, thiserror::Error)]
pub enum SopsError {
    /// The document has no `sops` metadata.
    #[error("not a SOPS document (no `sops` metadata with a MAC)")]
    NotEncrypted,
    /// The document or its metadata is not what SOPS writes.
    #[error("malformed SOPS document: {0}")]
    Malformed(String),
    /// A SOPS feature Kedge does not handle.
    #[error("unsupported SOPS document: {0}")]
    Unsupported(String),
    /// None of the identities opens the data key.
    #[error(
        "no age key of the decryption Secret can decrypt this document (its age recipients: {})",
        if recipients.is_empty() { "none".to_owned() } else { recipients.join(", ") }
    )]
    NoKey {
        /// The document's age recipients (public keys).
        recipients: Vec<String>,
    },
    /// A value did not decrypt (altered, or encrypted with another data key).
    #[error("value at {path} does not decrypt: {reason}")]
    Value {
        /// The key path, `a:b:c`.
        path: String,
        /// What failed.
        reason: String,
    },
    /// The values do not match the MAC: the document was changed after it was encrypted.
    #[error(
        "MAC mismatch: the document was changed after it was encrypted (values, keys or their order)"
    )]
    MacMismatch,
}

/// The age identities (X25519 secret keys) that may open documents.
#[derive(Default)]
pub struct Identities(Vec<age::x25519::Identity>);

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identities({} age keys)", self.0.len())
    }
}

impl Identities {
    /// Reads key files given as `(name, content)`, each holding one or more `AGE-SECRET-KEY-1...` lines (as
    /// `age-keygen` writes them; `#` comments and blank lines skipped).
    pub fn parse<'a>(
        files: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<Self, KeyError> {
        let mut out = Vec::new();
        for (name, content) in files {
            let fail = |reason: &str| KeyError {
                name: name.to_owned(),
                reason: reason.to_owned(),
            };
            let text = std::str::from_utf8(content).map_err(|_| fail("not text"))?;
            let mut found = 0;
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let identity: age::x25519::Identity = line.parse().map_err(|_| KeyError {
                    name: name.to_owned(),
                    reason: format!(
                        "line {} is not an age secret key (AGE-SECRET-KEY-1...)",
                        n + 1
                    ),
                })?;
                out.push(identity);
                found += 1;
            }
            if found == 0 {
                return Err(fail("holds no age secret key"));
            }
        }
        Ok(Identities(out))
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The public keys (`age1...`) of the identities, for messages.
    pub fn recipients(&self) -> Vec<String> {
        self.0.iter().map(|i| i.to_public().to_string()).collect()
    }

    fn open(&self, armored: &str) -> Option<Vec<u8>> {
        let reader = age::armor::ArmoredReader::new(armored.as_bytes());
        let decryptor = age::Decryptor::new(reader).ok()?;
        let mut stream = decryptor
            .decrypt(self.0.iter().map(|i| i as &dyn age::Identity))
            .ok()?;
        let mut key = Vec::new();
        stream.read_to_end(&mut key).ok()?;
        Some(key)
    }
}

/// Whether a parsed manifest is a SOPS document (a top-level `sops` mapping with a `mac`).
pub fn is_encrypted(value: &serde_json::Value) -> bool {
    value
        .get(METADATA_KEY)
        .and_then(|m| m.get("mac"))
        .is_some_and(serde_json::Value::is_string)
}

/// Decrypts a SOPS document (read with its key order kept) into the manifest it encrypts, `sops` metadata removed.
pub fn decrypt(doc: &Node, keys: &Identities) -> Result<serde_json::Value, SopsError> {
    decrypt_document(doc, keys).map(|d| d.value)
}

/// A decrypted document, and what each of its encrypted values decrypted to.
#[derive(Debug, Clone)]
pub struct Decrypted {
    /// The manifest, `sops` metadata removed.
    pub value: serde_json::Value,
    /// Each `ENC[...]` value with its key path (`a:b:c`), and its plain value.
    ciphertexts: Arc<std::collections::HashMap<(String, String), serde_json::Value>>,
}

impl Decrypted {
    /// Replaces the encrypted values of `copy` (the same document after a tool such as kustomize rewrote it, with
    /// its keys reordered or other fields changed) with their plain values, and drops its `sops` metadata.
    ///
    /// Each `ENC[...]` value must sit at the key path it was encrypted for (it is bound to it), so a value moved
    /// elsewhere is refused, as SOPS refuses it.
    pub fn apply_to(&self, copy: &mut serde_json::Value) -> Result<(), SopsError> {
        if let Some(map) = copy.as_object_mut() {
            map.remove(METADATA_KEY);
        }
        let mut path = Vec::new();
        self.substitute(copy, &mut path)
    }

    fn substitute(
        &self,
        value: &mut serde_json::Value,
        path: &mut Vec<String>,
    ) -> Result<(), SopsError> {
        match value {
            serde_json::Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    path.push(key.clone());
                    self.substitute(v, path)?;
                    path.pop();
                }
            }
            serde_json::Value::Array(items) => {
                for v in items {
                    self.substitute(v, path)?;
                }
            }
            serde_json::Value::String(s) if s.starts_with("ENC[AES256_GCM,") => {
                let at = path.join(":");
                let plain = self
                    .ciphertexts
                    .get(&(at.clone(), s.clone()))
                    .ok_or_else(|| SopsError::Value {
                        path: at,
                        reason: "this encrypted value is not the one the document holds at this key (moved or \
                                 changed after encryption)"
                            .into(),
                    })?;
                *value = plain.clone();
            }
            _ => {}
        }
        Ok(())
    }
}

/// The MAC string of a parsed SOPS document: different for every encryption, so it identifies the document.
pub fn mac_of(value: &serde_json::Value) -> Option<&str> {
    value.get(METADATA_KEY)?.get("mac")?.as_str()
}

/// [`decrypt`], also recording what each encrypted value decrypted to (see [`Decrypted::apply_to`]).
pub fn decrypt_document(doc: &Node, keys: &Identities) -> Result<Decrypted, SopsError> {
    let mut all = decrypt_stream(&[doc], keys)?;
    all.pop().ok_or(SopsError::NotEncrypted)
}

/// Decrypts the documents of one SOPS file together: SOPS encrypts a multi-document YAML file with one data key and
/// one MAC over the values of all its documents (each document carries the same metadata), so they can only be
/// checked together, in file order.
pub fn decrypt_stream(docs: &[&Node], keys: &Identities) -> Result<Vec<Decrypted>, SopsError> {
    let mut branches = Vec::with_capacity(docs.len());
    for doc in docs {
        let Node::Map(items) = doc else {
            return Err(SopsError::NotEncrypted);
        };
        let meta = items
            .iter()
            .find(|(k, _)| k == METADATA_KEY)
            .map(|(_, v)| v)
            .ok_or(SopsError::NotEncrypted)?;
        branches.push((items, meta));
    }
    let Some((_, first_meta)) = branches.first() else {
        return Ok(Vec::new());
    };
    let meta = Metadata::read(first_meta)?;
    if docs.iter().any(|d| d.sops_mac() != Some(meta.mac.as_str())) {
        return Err(SopsError::Malformed(
            "the documents were not encrypted together (their MACs differ)".into(),
        ));
    }
    let data_key = meta.data_key(keys)?;
    let mut hasher = Sha512::new();
    if meta.mac_only_encrypted {
        hasher.update(MAC_ONLY_ENCRYPTED_INIT);
    }
    let mut walk = Walk {
        meta: &meta,
        key: &data_key,
        hasher,
        ciphertexts: std::collections::HashMap::new(),
    };
    let mut values = Vec::with_capacity(branches.len());
    for (items, _) in &branches {
        let mut out = serde_json::Map::new();
        let mut path = Vec::new();
        for (key, value) in items.iter().filter(|(k, _)| k != METADATA_KEY) {
            path.push(key.as_str());
            let plain = walk.value(value, &mut path)?;
            path.pop();
            out.insert(key.clone(), plain);
        }
        values.push(serde_json::Value::Object(out));
    }
    let computed = hex::encode_upper(walk.hasher.finalize());
    let stored = match decrypt_value(&meta.mac, &data_key, &meta.last_modified) {
        Ok(Plain::Str(s)) => s,
        Ok(_) => return Err(SopsError::Malformed("the MAC is not a string".into())),
        Err(reason) => {
            return Err(SopsError::Value {
                path: "sops:mac".into(),
                reason,
            });
        }
    };
    if stored != computed {
        return Err(SopsError::MacMismatch);
    }
    // Ciphertexts are unique (random IVs), so every document may look up the values of all.
    let ciphertexts = Arc::new(walk.ciphertexts);
    Ok(values
        .into_iter()
        .map(|value| Decrypted {
            value,
            ciphertexts: ciphertexts.clone(),
        })
        .collect())
}

/// The parts of the `sops` metadata that decryption needs.
struct Metadata {
    mac: String,
    last_modified: String,
    mac_only_encrypted: bool,
    unencrypted_suffix: Option<String>,
    encrypted_suffix: Option<String>,
    unencrypted_regex: Option<regex::Regex>,
    encrypted_regex: Option<regex::Regex>,
    age: Vec<(String, String)>,
}

impl Metadata {
    fn read(node: &Node) -> Result<Self, SopsError> {
        let Node::Map(items) = node else {
            return Err(SopsError::Malformed("`sops` is not a mapping".into()));
        };
        let get = |key: &str| items.iter().find(|(k, _)| k == key).map(|(_, v)| v);
        let text = |key: &str| -> Option<String> {
            match get(key) {
                Some(Node::Str(s)) if !s.is_empty() => Some(s.clone()),
                _ => None,
            }
        };
        for rule in ["unencrypted_comment_regex", "encrypted_comment_regex"] {
            if text(rule).is_some() {
                return Err(SopsError::Unsupported(format!(
                    "`{rule}` (rules by comment)"
                )));
            }
        }
        if let Some(Node::Seq(groups)) = get("key_groups")
            && !groups.is_empty()
        {
            return Err(SopsError::Unsupported(
                "key groups (Shamir secret sharing)".into(),
            ));
        }
        let regex = |key: &str| -> Result<Option<regex::Regex>, SopsError> {
            text(key)
                .map(|r| {
                    regex::Regex::new(&r).map_err(|e| {
                        SopsError::Malformed(format!(
                            "`{key}` is not a valid regular expression: {e}"
                        ))
                    })
                })
                .transpose()
        };
        let mut age = Vec::new();
        if let Some(Node::Seq(entries)) = get("age") {
            for entry in entries {
                let Node::Map(fields) = entry else { continue };
                let field = |k: &str| {
                    fields
                        .iter()
                        .find(|(n, _)| n == k)
                        .and_then(|(_, v)| match v {
                            Node::Str(s) => Some(s.clone()),
                            _ => None,
                        })
                };
                if let Some(enc) = field("enc") {
                    age.push((field("recipient").unwrap_or_default(), enc));
                }
            }
        }
        let mut meta = Metadata {
            mac: text("mac")
                .ok_or_else(|| SopsError::Malformed("no `mac` in the metadata".into()))?,
            last_modified: text("lastmodified")
                .ok_or_else(|| SopsError::Malformed("no `lastmodified` in the metadata".into()))?,
            mac_only_encrypted: matches!(get("mac_only_encrypted"), Some(Node::Bool(true))),
            unencrypted_suffix: text("unencrypted_suffix"),
            encrypted_suffix: text("encrypted_suffix"),
            unencrypted_regex: regex("unencrypted_regex")?,
            encrypted_regex: regex("encrypted_regex")?,
            age,
        };
        if meta.unencrypted_suffix.is_none()
            && meta.encrypted_suffix.is_none()
            && meta.unencrypted_regex.is_none()
            && meta.encrypted_regex.is_none()
        {
            meta.unencrypted_suffix = Some(DEFAULT_UNENCRYPTED_SUFFIX.to_owned());
        }
        Ok(meta)
    }

    fn data_key(&self, keys: &Identities) -> Result<Vec<u8>, SopsError> {
        for (_, enc) in &self.age {
            if let Some(key) = keys.open(enc) {
                if key.len() != 32 {
                    return Err(SopsError::Malformed(format!(
                        "the data key is {} bytes long, not 32",
                        key.len()
                    )));
                }
                return Ok(key);
            }
        }
        Err(SopsError::NoKey {
            recipients: self.age.iter().map(|(r, _)| r.clone()).collect(),
        })
    }

    /// Whether the value at `path` is encrypted, by the document's rules (as SOPS decides it).
    fn encrypted(&self, path: &[&str]) -> bool {
        let mut encrypted = true;
        if let Some(suffix) = &self.unencrypted_suffix
            && path.iter().any(|k| k.ends_with(suffix.as_str()))
        {
            encrypted = false;
        }
        if let Some(suffix) = &self.encrypted_suffix {
            encrypted = path.iter().any(|k| k.ends_with(suffix.as_str()));
        }
        if let Some(re) = &self.unencrypted_regex
            && path.iter().any(|k| re.is_match(k))
        {
            encrypted = false;
        }
        if let Some(re) = &self.encrypted_regex {
            encrypted = path.iter().any(|k| re.is_match(k));
        }
        encrypted
    }
}

/// A decrypted scalar, typed as SOPS recorded it.
enum Plain {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Bytes(Vec<u8>),
}

struct Walk<'a> {
    meta: &'a Metadata,
    key: &'a [u8],
    hasher: Sha512,
    ciphertexts: std::collections::HashMap<(String, String), serde_json::Value>,
}

impl Walk<'_> {
    fn value<'n>(
        &mut self,
        node: &'n Node,
        path: &mut Vec<&'n str>,
    ) -> Result<serde_json::Value, SopsError> {
        Ok(match node {
            Node::Null => serde_json::Value::Null,
            Node::Map(items) => {
                let mut out = serde_json::Map::new();
                for (key, value) in items {
                    path.push(key.as_str());
                    let plain = self.value(value, path)?;
                    path.pop();
                    out.insert(key.clone(), plain);
                }
                serde_json::Value::Object(out)
            }
            // Items of a sequence share their parent's path.
            Node::Seq(items) => serde_json::Value::Array(
                items
                    .iter()
                    .map(|item| self.value(item, path))
                    .collect::<Result<_, _>>()?,
            ),
            Node::Str(s) => self.scalar(Plain::Str(s.clone()), path)?,
            Node::Int(i) => self.scalar(Plain::Int(*i), path)?,
            Node::Float(f) => self.scalar(Plain::Float(*f), path)?,
            Node::Bool(b) => self.scalar(Plain::Bool(*b), path)?,
        })
    }

    /// A leaf as written (`written`): decrypted when the rules say it is encrypted, hashed into the MAC.
    fn scalar(&mut self, written: Plain, path: &[&str]) -> Result<serde_json::Value, SopsError> {
        let encrypted = self.meta.encrypted(path);
        let mut ciphertext = None;
        let plain = match written {
            Plain::Str(text) if encrypted && !text.is_empty() => {
                let aad = format!("{}:", path.join(":"));
                let plain =
                    decrypt_value(&text, self.key, &aad).map_err(|reason| SopsError::Value {
                        path: path.join(":"),
                        reason,
                    })?;
                ciphertext = Some(text);
                plain
            }
            // SOPS leaves empty strings as they are.
            Plain::Str(text) => Plain::Str(text),
            _ if encrypted => {
                return Err(SopsError::Value {
                    path: path.join(":"),
                    reason:
                        "the value is in clear text where the document's rules say it is encrypted"
                            .into(),
                });
            }
            other => other,
        };
        if !self.meta.mac_only_encrypted || encrypted {
            self.hasher.update(mac_bytes(&plain));
        }
        let json = plain_to_json(plain, path)?;
        if let Some(text) = ciphertext {
            self.ciphertexts
                .insert((path.join(":"), text), json.clone());
        }
        Ok(json)
    }
}

/// The bytes SOPS hashes into the MAC for a value.
fn mac_bytes(value: &Plain) -> Vec<u8> {
    match value {
        Plain::Str(s) => s.as_bytes().to_vec(),
        Plain::Int(i) => i.to_string().into_bytes(),
        Plain::Float(f) => format_float(*f).into_bytes(),
        Plain::Bool(true) => b"True".to_vec(),
        Plain::Bool(false) => b"False".to_vec(),
        Plain::Bytes(b) => b.clone(),
    }
}

/// A float the way SOPS writes it: the shortest decimal that reads back the same, never in exponent form.
fn format_float(f: f64) -> String {
    // Rust's `Display` for `f64` prints the shortest round-trip digits without an exponent, as Go's 'f', -1 does.
    format!("{f}")
}

fn plain_to_json(plain: Plain, path: &[&str]) -> Result<serde_json::Value, SopsError> {
    Ok(match plain {
        Plain::Str(s) => serde_json::Value::String(s),
        Plain::Int(i) => serde_json::Value::from(i),
        // An integral float is written as an integer: sops reads every JSON number as a float, and Kubernetes
        // refuses `5.0` in an integer field.
        Plain::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
            serde_json::Value::from(f as i64)
        }
        Plain::Float(f) => serde_json::Number::from_f64(f)
            .map(serde_json::Value::Number)
            .ok_or_else(|| SopsError::Value {
                path: path.join(":"),
                reason: "not a finite number".into(),
            })?,
        Plain::Bool(b) => serde_json::Value::Bool(b),
        Plain::Bytes(b) => serde_json::Value::String(String::from_utf8_lossy(&b).into_owned()),
    })
}

/// The next field of an ENC value, which must be `name`.
fn enc_field<'a>(
    fields: &mut impl Iterator<Item = &'a str>,
    name: &str,
) -> Result<&'a str, String> {
    fields
        .next()
        .and_then(|f| f.strip_prefix(name))
        .and_then(|f| f.strip_prefix(':'))
        .ok_or_else(|| {
            format!("malformed ENC value: expected data, iv, tag and type, found no {name}")
        })
}

/// Decrypts one `ENC[AES256_GCM,...]` value bound to `aad`.
fn decrypt_value(text: &str, key: &[u8], aad: &str) -> Result<Plain, String> {
    let inner = text
        .strip_prefix("ENC[AES256_GCM,")
        .and_then(|t| t.strip_suffix(']'))
        .ok_or("not an ENC[AES256_GCM,...] value")?;
    // Exactly the fields SOPS writes, in its order: a field renamed or dropped (`type`, which the MAC does not
    // cover) must not change how the value is read.
    let mut fields = inner.split(',');
    let (data, iv, tag, kind) = (
        enc_field(&mut fields, "data")?,
        enc_field(&mut fields, "iv")?,
        enc_field(&mut fields, "tag")?,
        enc_field(&mut fields, "type")?,
    );
    if fields.next().is_some() {
        return Err("malformed ENC value: fields after type".into());
    }
    let b64 = |name: &str, v: &str| -> Result<Vec<u8>, String> {
        base64::engine::general_purpose::STANDARD
            .decode(v)
            .map_err(|e| format!("{name} is not base64: {e}"))
    };
    let (data, iv, tag) = (b64("data", data)?, b64("iv", iv)?, b64("tag", tag)?);
    if iv.len() != 32 {
        return Err(format!("the IV is {} bytes long, not 32", iv.len()));
    }
    let cipher =
        AesGcm::<Aes256, U32>::new_from_slice(key).map_err(|_| "the data key is not 32 bytes")?;
    let mut sealed = data;
    sealed.extend_from_slice(&tag);
    let plain = cipher
        .decrypt(
            Nonce::<U32>::from_slice(&iv),
            Payload {
                msg: &sealed,
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| {
            "authentication failed (altered value, wrong key, or moved to another key)".to_owned()
        })?;
    let as_text = || String::from_utf8(plain.clone()).map_err(|_| "not UTF-8".to_owned());
    Ok(match kind {
        "str" => Plain::Str(as_text()?),
        "int" | "int64" => Plain::Int(
            as_text()?
                .parse()
                .map_err(|e| format!("not an integer: {e}"))?,
        ),
        "float" => Plain::Float(
            as_text()?
                .parse()
                .map_err(|e| format!("not a float: {e}"))?,
        ),
        "bool" => Plain::Bool(match as_text()?.as_str() {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => true,
            "0" | "f" | "F" | "false" | "FALSE" | "False" => false,
            other => return Err(format!("not a boolean: {other:?}")),
        }),
        "bytes" => Plain::Bytes(plain),
        other => return Err(format!("unknown value type {other:?}")),
    })
}
