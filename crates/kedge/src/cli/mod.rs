//! Subcommands of the `kedge` binary, one module each.

pub mod render;
