//! Keeps every `Application` equal to Git: fetch, render, plan, sync, watch for drift, and report status and events.
//!
//! Start at [`runner::run`], which wires the rooms together; [`reconcile`] is one pass over one application;
//! [`pipeline::Pipeline`] is the fetch-render-plan path shared with the CLI's previews.

pub mod admission;
pub mod appsets;
pub mod client;
pub mod clusters;
pub mod conditions;
pub mod decide;
pub mod dependents;
pub mod drift;
pub mod events;
pub mod history;
pub mod install;
pub mod intake;
pub mod leader;
pub mod metrics;
pub mod pipeline;
pub mod policies;
pub mod probes;
pub mod projects;
pub mod promotion;
pub mod reconcile;
pub mod runner;
pub mod shard;
pub mod spec_check;
pub mod trace;
