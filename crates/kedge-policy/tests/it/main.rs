//! Integration tests of `kedge-policy`: one test binary, a module per area (`cargo nextest run -p kedge-policy -E 'test(/^evaluate::/)'` runs one).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod evaluate;
mod library;
