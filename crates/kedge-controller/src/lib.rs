//! Keeps every `Application` equal to Git: fetch, render, plan, sync, watch for drift, and report status and events.

pub mod client;
pub mod conditions;
pub mod history;
pub mod probes;
pub mod install;
pub mod leader;
pub mod metrics;
