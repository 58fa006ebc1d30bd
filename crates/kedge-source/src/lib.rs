//! Fetches Git revisions into one shared bare mirror per repository and reads trees at a commit.

mod changes;
pub mod error;
mod gc;
pub mod local;
pub mod repo;
pub mod revision;
pub mod snapshot;
pub mod source;
pub mod tree;
pub mod url;

pub use error::{ErrorKind, SourceError};
pub use gc::GcReport;
pub use local::LocalTree;
pub use repo::{Credentials, RepoSpec, Scheme, Secret};
pub use revision::{HistoryChange, RemoteRef, Revision, RevisionSpec};
pub use snapshot::{Snapshot, TagSignature};
pub use source::{
    DEFAULT_MAX_FETCH_BYTES, FetchRequest, Source, SourceConfig, SourceStats,
    install_crypto_provider,
};
pub use tree::{DirEntry, EntryKind, FileTree, Limits, TreeError};
pub use url::{RepoUrl, RepoUrlError};
