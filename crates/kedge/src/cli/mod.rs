//! Subcommands of the `kedge` binary, one module each.

pub mod app;
pub mod appset;
pub mod cluster;
pub mod import;
pub mod install;
pub mod kube;
pub mod policy;
pub mod project;
pub mod render;
pub mod run;
