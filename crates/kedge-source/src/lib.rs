//! Fetches Git revisions into one shared bare mirror per repository and reads trees at a commit.

pub mod tree;

pub use tree::{DirEntry, EntryKind, FileTree, TreeError};
