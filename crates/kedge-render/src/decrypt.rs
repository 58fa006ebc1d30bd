//! SOPS-encrypted manifests: documents with `sops` metadata are decrypted with the application's age keys before
//! they become objects, and refused when no keys are configured (an `ENC[...]` value must never reach the cluster).
//! The fields that were encrypted are listed in the object's `kedge.dev/sensitive-fields` annotation
//! ([`crate::object::SENSITIVE_ANNOTATION`]), so that their values are masked wherever the object is shown.

use std::collections::HashMap;
use std::sync::Arc;

use kedge_source::{EntryKind, FileTree};

use crate::error::RenderError;
use crate::object::{encrypted_pointers, mark_sensitive};
use crate::parse::{Document, parse_json_ordered, parse_yaml_ordered};

/// The most files read while looking for the encrypted originals of a kustomize build's documents.
const MAX_ORIGINAL_FILES: usize = 10_000;

/// The age keys an application decrypts SOPS documents with, and a name for them that changes whenever they do (it
/// is part of the render cache key).
#[derive(Clone)]
pub struct Decryption {
    keys: Arc<kedge_sops::Identities>,
    id: String,
}

impl Decryption {
    /// Keys known as `id` (e.g. the Secret's namespace, name and resource version).
    pub fn new(keys: Arc<kedge_sops::Identities>, id: impl Into<String>) -> Self {
        Decryption {
            keys,
            id: id.into(),
        }
    }

    /// The keys' name.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl std::fmt::Debug for Decryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Decryption({}, {:?})", self.id, self.keys)
    }
}

impl PartialEq for Decryption {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for Decryption {}

impl std::hash::Hash for Decryption {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

fn decrypt_error(file: &str, document: usize, message: String) -> RenderError {
    RenderError::Decrypt {
        file: file.to_owned(),
        document,
        message,
    }
}

/// The keys to decrypt `docs` with: `None` when none of them is encrypted, an error when some is and there are no
/// keys (an `ENC[...]` value must never become an object).
fn keys_for<'a>(
    file: &str,
    docs: &[Document],
    decryption: Option<&'a Decryption>,
) -> Result<Option<&'a Decryption>, RenderError> {
    let Some(first) = docs.iter().find(|d| kedge_sops::is_encrypted(&d.value)) else {
        return Ok(None);
    };
    decryption.map(Some).ok_or_else(|| {
        decrypt_error(
            file,
            first.index,
            "the document is SOPS-encrypted and the application has no decryption keys (spec.decryption)".into(),
        )
    })
}

/// Replaces every SOPS document among `docs` (parsed from `bytes` of `file`) by what it encrypts.
pub(crate) fn decrypt_documents(
    file: &str,
    bytes: &[u8],
    json: bool,
    docs: &mut [Document],
    decryption: Option<&Decryption>,
) -> Result<(), RenderError> {
    let Some(decryption) = keys_for(file, docs, decryption)? else {
        return Ok(());
    };
    let fail = |document: usize, message: String| decrypt_error(file, document, message);
    // Read again with the key order kept: the MAC covers it.
    let ordered = if json {
        parse_json_ordered(bytes)
    } else {
        parse_yaml_ordered(bytes)
    }
    .map_err(|e| fail(0, e))?;
    // The documents of one file share one MAC (SOPS checks them together): group them by it, in file order.
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for (pos, doc) in docs.iter().enumerate() {
        let Some(mac) = kedge_sops::mac_of(&doc.value) else {
            continue;
        };
        match groups.iter_mut().find(|(m, _)| m == mac) {
            Some((_, members)) => members.push(pos),
            None => groups.push((mac.to_owned(), vec![pos])),
        }
    }
    for (_, members) in groups {
        let first = docs[members[0]].index;
        let nodes: Vec<&kedge_sops::Node> = members
            .iter()
            .map(|&pos| ordered.get(docs[pos].index))
            .collect::<Option<_>>()
            .ok_or_else(|| {
                fail(
                    first,
                    "the document could not be read again in order".into(),
                )
            })?;
        let decrypted = kedge_sops::decrypt_stream(&nodes, &decryption.keys)
            .map_err(|e| fail(first, e.to_string()))?;
        for (pos, plain) in members.into_iter().zip(decrypted) {
            // The fields that were encrypted hold secret values: mark them so that no diff or view shows them.
            let secret = encrypted_pointers(&docs[pos].value);
            docs[pos].value = plain.value;
            mark_sensitive(&mut docs[pos].value, secret);
        }
    }
    Ok(())
}

/// Replaces every SOPS document of a kustomize build's output (`docs`) by what it encrypts.
///
/// kustomize rewrites documents (it sorts their keys, and transformers change fields), and the MAC covers the
/// original order, so each document is decrypted from its original file, found by its MAC among the files of the
/// kustomization's input directories; the decrypted values then replace the encrypted ones in the build's output,
/// each at the key path it was encrypted for. What kustomize changed in clear text (a namespace, labels) stays.
pub(crate) fn decrypt_kustomize_output(
    tree: &dyn FileTree,
    input_dirs: &[String],
    file: &str,
    docs: &mut [Document],
    decryption: Option<&Decryption>,
) -> Result<(), RenderError> {
    let Some(decryption) = keys_for(file, docs, decryption)? else {
        return Ok(());
    };
    let fail = |document: usize, message: String| decrypt_error(file, document, message);
    let originals = encrypted_originals(tree, input_dirs);
    let mut decrypted: HashMap<String, kedge_sops::Decrypted> = HashMap::new();
    for doc in docs.iter_mut() {
        let Some(mac) = kedge_sops::mac_of(&doc.value).map(str::to_owned) else {
            continue;
        };
        let (path, nodes) = originals.get(&mac).ok_or_else(|| {
            fail(
                doc.index,
                "the SOPS-encrypted document comes from no file of the kustomization's directories (generated \
                 documents cannot be decrypted)"
                    .into(),
            )
        })?;
        if !decrypted.contains_key(&mac) {
            let refs: Vec<&kedge_sops::Node> = nodes.iter().collect();
            let mut all = kedge_sops::decrypt_stream(&refs, &decryption.keys)
                .map_err(|e| fail(doc.index, format!("{path}: {e}")))?;
            // Every member carries the ciphertexts of the whole file.
            if let Some(one) = all.pop() {
                decrypted.insert(mac.clone(), one);
            }
        }
        let Some(file_values) = decrypted.get(&mac) else {
            continue;
        };
        let secret = encrypted_pointers(&doc.value);
        file_values.apply_to(&mut doc.value).map_err(|e| {
            fail(
                doc.index,
                format!("{e} (a kustomize patch or replacement may have moved it)"),
            )
        })?;
        mark_sensitive(&mut doc.value, secret);
    }
    Ok(())
}

/// Every SOPS file's documents in the YAML and JSON files below `dirs`, by MAC (one per file), with the file.
fn encrypted_originals(
    tree: &dyn FileTree,
    dirs: &[String],
) -> HashMap<String, (String, Vec<kedge_sops::Node>)> {
    let mut out = HashMap::new();
    let mut pending: Vec<String> = dirs.to_vec();
    let mut seen_dirs = std::collections::HashSet::new();
    let mut files = 0usize;
    while let Some(dir) = pending.pop() {
        if !seen_dirs.insert(dir.clone()) {
            continue;
        }
        let Ok(entries) = tree.read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = if dir.is_empty() {
                entry.name.clone()
            } else {
                format!("{dir}/{}", entry.name)
            };
            match entry.kind {
                EntryKind::Dir if entry.name != ".git" => pending.push(path),
                EntryKind::Dir => {}
                EntryKind::File => {
                    let json = path.ends_with(".json");
                    if !(json || path.ends_with(".yaml") || path.ends_with(".yml")) {
                        continue;
                    }
                    files += 1;
                    if files > MAX_ORIGINAL_FILES {
                        return out;
                    }
                    let Ok(bytes) = tree.read_file(&path) else {
                        continue;
                    };
                    if !contains(&bytes, b"ENC[AES256_GCM") {
                        continue;
                    }
                    let nodes = if json {
                        parse_json_ordered(&bytes)
                    } else {
                        parse_yaml_ordered(&bytes)
                    };
                    for node in nodes.into_iter().flatten() {
                        if let Some(mac) = node.sops_mac().map(str::to_owned) {
                            out.entry(mac)
                                .or_insert_with(|| (path.clone(), Vec::new()))
                                .1
                                .push(node);
                        }
                    }
                }
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
