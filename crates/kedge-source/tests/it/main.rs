//! Integration tests of `kedge-source`: one test binary, a module per area (`cargo nextest run -p kedge-source -E 'test(/^bounds::/)'` runs one).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod bounds;
mod file_transport;
mod local_tree;
mod transports;
