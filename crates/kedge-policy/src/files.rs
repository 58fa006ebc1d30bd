//! Reading policy documents from files and directories (YAML streams or JSON), with their origins.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::PolicyError;
use crate::set::PolicyDocument;

/// The documents of a YAML (or, by extension `.json`, JSON) file, each with its origin (`file` or `file#N` when
/// the file holds several).
pub fn read_file(path: &Path) -> Result<Vec<PolicyDocument>, PolicyError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| PolicyError::Read {
        path: shown.clone(),
        source,
    })?;
    let docs = if path.extension().is_some_and(|e| e == "json") {
        kedge_render::parse::parse_json(&shown, &bytes)
    } else {
        kedge_render::parse::parse_yaml(&shown, &bytes)
    }
    .map_err(|source| PolicyError::Parse {
        path: shown.clone(),
        source,
    })?;
    let many = docs.len() > 1;
    Ok(docs
        .into_iter()
        .map(|d| PolicyDocument {
            origin: if many {
                format!("{shown}#{}", d.index + 1)
            } else {
                shown.clone()
            },
            value: d.value,
        })
        .collect())
}

/// The documents of every `.yaml`, `.yml` and `.json` file under a directory (or of one file), in path order.
/// Hidden files and directories (`.git`) are skipped.
pub fn read_dir(path: &Path) -> Result<Vec<PolicyDocument>, PolicyError> {
    let mut files = Vec::new();
    collect(path, &mut files)?;
    files.sort();
    let mut out = Vec::new();
    for f in files {
        out.extend(read_file(&f)?);
    }
    Ok(out)
}

fn collect(path: &Path, files: &mut Vec<PathBuf>) -> Result<(), PolicyError> {
    let read_err = |source| PolicyError::Read {
        path: path.display().to_string(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if !meta.is_dir() {
        files.push(path.to_path_buf());
        return Ok(());
    }
    for entry in std::fs::read_dir(path).map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        let p = entry.path();
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        if p.is_dir() {
            collect(&p, files)?;
        } else if p
            .extension()
            .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        {
            files.push(p);
        }
    }
    Ok(())
}

/// The one document of a file, or an error naming the file.
pub(crate) fn read_one(path: &Path) -> Result<Value, PolicyError> {
    let mut docs = read_file(path)?;
    match docs.len() {
        1 => Ok(docs.remove(0).value),
        n => Err(PolicyError::Document {
            document: path.display().to_string(),
            message: format!("expected one document, found {n}"),
        }),
    }
}
