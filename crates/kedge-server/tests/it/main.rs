//! Integration tests of `kedge-server`: one test binary, a module per area (`cargo nextest run -p kedge-server -E 'test(/^access::/)'` runs one).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod access;
mod api;
mod browser;
mod common;
mod oidc;
mod promotion;
mod prop_webhook;
mod webhook;
