//! Integration tests of `kedge-appset`: one test binary, a module per area (`cargo nextest run -p kedge-appset -E 'test(/^argocd_examples::/)'` runs one).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod argocd_examples;
mod generators;
mod real_git;
mod template_robustness;
