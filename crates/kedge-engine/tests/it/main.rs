//! Integration tests of `kedge-engine`: one test binary, a module per area (`cargo nextest run -p kedge-engine -E 'test(/^argocd_annotations::/)'` runs one).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod argocd_annotations;
mod common;
mod health;
mod operator_health;
mod plan_sync;
mod prop_fieldpath;
mod prune_adopt;
mod watch;
mod waves_hooks;
