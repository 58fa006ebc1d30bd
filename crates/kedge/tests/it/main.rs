//! Integration tests of `kedge`: one test binary, a module per area (`cargo nextest run -p kedge -E 'test(/^app_cli::/)'` runs one).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod app_cli;
mod appset_cli;
mod appset_diff_cli;
mod argocd_examples;
mod cli;
mod cluster_cli;
#[path = "../../../kedge-controller/tests/it/common.rs"]
mod common;
mod helm_test_cli;
mod import_cli;
mod otlp_traces;
mod policy_cli;
mod project_cli;
mod promote_cli;
mod render_cli;
mod run_shutdown;
mod safety_cli;
