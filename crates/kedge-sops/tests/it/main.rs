//! Integration tests of `kedge-sops`: one test binary, a module per area (`cargo nextest run -p kedge-sops -E 'test(/^prop_sops::/)'` runs one).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod prop_sops;
mod real_sops;
