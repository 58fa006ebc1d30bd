//! Integration tests of `kedge-render`: one test binary, a module per area (`cargo nextest run -p kedge-render -E 'test(/^directory::/)'` runs one).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
mod directory;
mod kustomize;
mod kustomize_options;
mod prop_parse;
mod sops;
