//! Integration tests of `kedge-testkit`: one test binary, a module per area (`cargo nextest run -p kedge-testkit -E 'test(/^cluster_smoke::/)'` runs one).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod cluster_smoke;
mod git_servers;
mod rbac;
