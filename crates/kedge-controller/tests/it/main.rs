//! Integration tests of `kedge-controller`: one test binary, a module per area (`cargo nextest run -p kedge-controller -E 'test(/^e2e::/)'` runs one).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod appsets;
mod argo_fields;
mod clusters;
mod common;
mod create_namespace;
mod dependencies;
mod e2e;
#[path = "../../../kedge-helm/tests/it/common.rs"]
mod helm_common;
mod helm_e2e;
mod impersonation;
mod large_app;
mod leadership;
mod notifications;
mod operations;
mod policies;
mod projects;
mod prometheus;
mod promotion;
mod remote_bases;
mod replicas;
mod repo_creds;
mod requests;
mod retry;
