//! Directory sources: every `*.yaml`, `*.yml` and `*.json` file of a directory (optionally recursive), filtered
//! by include/exclude patterns.

use kedge_source::{EntryKind, FileTree};

use crate::RenderOptions;
use crate::decrypt::{Decryption, decrypt_documents};
use crate::error::RenderError;
use crate::glob::PatternList;
use crate::object::{RenderedObject, SourceRef, objects_from_document};
use crate::parse::{parse_json, parse_yaml};

/// Renders the directory `app_dir`; returns the objects and the number of bytes parsed. Problems are pushed onto
/// `errors`, so that one bad file does not hide the others.
pub(crate) fn render_directory(
    tree: &dyn FileTree,
    app_dir: &str,
    options: &RenderOptions,
    errors: &mut Vec<RenderError>,
) -> (Vec<RenderedObject>, usize) {
    let include = compile("include", options.include.as_deref(), errors);
    let exclude = compile("exclude", options.exclude.as_deref(), errors);
    let (Ok(include), Ok(exclude)) = (include, exclude) else {
        return (Vec::new(), 0);
    };
    let mut walk = Walk {
        tree,
        app_dir,
        decryption: options.decryption.as_ref(),
        recurse: options.recurse,
        include,
        exclude,
        objects: Vec::new(),
        bytes: 0,
        errors,
    };
    walk.dir("");
    (walk.objects, walk.bytes)
}

fn compile(
    which: &'static str,
    pattern: Option<&str>,
    errors: &mut Vec<RenderError>,
) -> Result<Option<PatternList>, ()> {
    match pattern.filter(|p| !p.trim().is_empty()) {
        None => Ok(None),
        Some(p) => PatternList::new(which, p)
            .map(Some)
            .map_err(|e| errors.push(e)),
    }
}

struct Walk<'a> {
    tree: &'a dyn FileTree,
    app_dir: &'a str,
    decryption: Option<&'a Decryption>,
    recurse: bool,
    include: Option<PatternList>,
    exclude: Option<PatternList>,
    objects: Vec<RenderedObject>,
    bytes: usize,
    errors: &'a mut Vec<RenderError>,
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_owned(),
        (_, true) => a.to_owned(),
        _ => format!("{a}/{b}"),
    }
}

impl Walk<'_> {
    /// Visits `rel` (relative to the application directory), in name order, depth first, as Argo CD does.
    fn dir(&mut self, rel: &str) {
        let full = join(self.app_dir, rel);
        let entries = match self.tree.read_dir(&full) {
            Ok(e) => e,
            Err(source) => {
                self.errors.push(RenderError::Tree { path: full, source });
                return;
            }
        };
        for entry in entries {
            let rel_path = join(rel, &entry.name);
            match entry.kind {
                EntryKind::Dir => {
                    if self.recurse && entry.name != ".git" {
                        self.dir(&rel_path);
                    }
                }
                EntryKind::File => self.file(&rel_path),
            }
        }
    }

    fn file(&mut self, rel: &str) {
        // Extensions are matched case-sensitively, as Argo CD does.
        let json = rel.ends_with(".json");
        if !(json || rel.ends_with(".yaml") || rel.ends_with(".yml")) {
            return;
        }
        if self.exclude.as_ref().is_some_and(|e| e.matches(rel)) {
            return;
        }
        if self.include.as_ref().is_some_and(|i| !i.matches(rel)) {
            return;
        }
        let path = join(self.app_dir, rel);
        let bytes = match self.tree.read_file(&path) {
            Ok(b) => b,
            Err(source) => {
                self.errors.push(RenderError::Tree { path, source });
                return;
            }
        };
        self.bytes += bytes.len();
        let docs = if json {
            parse_json(&path, &bytes)
        } else {
            parse_yaml(&path, &bytes)
        }
        .and_then(|mut docs| {
            decrypt_documents(&path, &bytes, json, &mut docs, self.decryption)?;
            Ok(docs)
        });
        match docs {
            Ok(docs) => {
                for d in docs {
                    let source = SourceRef {
                        file: path.clone(),
                        document: d.index,
                        item: None,
                        line: d.line,
                    };
                    objects_from_document(d.value, source, &mut self.objects, self.errors);
                }
            }
            Err(e) => self.errors.push(e),
        }
    }
}
