//! Integration tests of `kedge-helm`: one test binary, a module per area (`cargo nextest run -p kedge-helm -E 'test(/^remote::/)'` runs one).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
mod remote;
mod render;
