//! Bounds what a source keeps: a byte limit on every fetch, and removal of mirrors and trees nobody used lately.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use gix::progress::{Id, MessageLevel, Step, StepShared, Unit};

/// The id gix gives the progress of the pack bytes read from the remote.
const READ_PACK_BYTES: Id = *b"BWRB";

/// Counts the pack bytes a fetch receives and interrupts it once they pass a limit.
///
/// gix reports every chunk of the pack it reads to the progress child with id `BWRB`; the other children are
/// ignored. The same interrupt flag also serves the timeout, so the fetch stops the same way in both cases.
#[derive(Clone)]
pub(crate) struct PackLimit {
    id: Id,
    received: StepShared,
    limit: usize,
    exceeded: Arc<AtomicBool>,
    interrupt: Arc<AtomicBool>,
}

impl PackLimit {
    /// A limit of `limit` bytes that sets `interrupt` when it is passed.
    pub(crate) fn new(limit: u64, interrupt: Arc<AtomicBool>) -> Self {
        PackLimit {
            id: *b"ROOT",
            received: Arc::new(AtomicUsize::new(0)),
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            exceeded: Arc::new(AtomicBool::new(false)),
            interrupt,
        }
    }

    /// Whether the fetch was stopped because the pack passed the limit.
    pub(crate) fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::Relaxed)
    }

    /// Pack bytes received so far.
    pub(crate) fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed) as u64
    }

    fn child(&self, id: Id) -> Self {
        PackLimit { id, ..self.clone() }
    }
}

impl gix::Count for PackLimit {
    fn set(&self, _step: Step) {}

    fn step(&self) -> Step {
        self.received.load(Ordering::Relaxed)
    }

    fn inc_by(&self, step: Step) {
        if self.id != READ_PACK_BYTES {
            return;
        }
        let total = self.received.fetch_add(step, Ordering::Relaxed) + step;
        if total > self.limit {
            self.exceeded.store(true, Ordering::Relaxed);
            self.interrupt.store(true, Ordering::Relaxed);
        }
    }

    fn counter(&self) -> StepShared {
        // Not the pack counter: a caller adding to it directly would bypass the limit check.
        Arc::new(AtomicUsize::new(0))
    }
}

impl gix::Progress for PackLimit {
    fn init(&mut self, _max: Option<Step>, _unit: Option<Unit>) {}

    fn set_name(&mut self, _name: String) {}

    fn name(&self) -> Option<String> {
        None
    }

    fn id(&self) -> Id {
        self.id
    }

    fn message(&self, _level: MessageLevel, _message: String) {}
}

impl gix::NestedProgress for PackLimit {
    type SubProgress = PackLimit;

    fn add_child(&mut self, _name: impl Into<String>) -> Self::SubProgress {
        self.child(*b"NONE")
    }

    fn add_child_with_id(&mut self, _name: impl Into<String>, id: Id) -> Self::SubProgress {
        self.child(id)
    }
}

/// What one garbage collection removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Mirror folders removed (their names under `mirrors/`).
    pub mirrors_removed: Vec<String>,
    /// Materialized trees removed.
    pub trees_removed: usize,
    /// Bytes freed on disk.
    pub bytes_freed: u64,
}

/// Seconds since `path` was last modified, or `None` when that cannot be told.
pub(crate) fn idle_for(path: &Path, now: SystemTime) -> Option<Duration> {
    let modified = fs::metadata(path).and_then(|m| m.modified()).ok()?;
    Some(now.duration_since(modified).unwrap_or_default())
}

/// Marks `path` as used now (its modification time), so that garbage collection keeps it.
pub(crate) fn touch(path: &Path) {
    if let Ok(file) = fs::OpenOptions::new().write(true).open(path) {
        let _ = file.set_modified(SystemTime::now());
    } else if let Ok(dir) = fs::File::open(path) {
        let _ = dir.set_modified(SystemTime::now());
    }
}

/// Total size in bytes of the files below `path` (links not followed).
pub(crate) fn disk_usage(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    let Ok(entries) = fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| disk_usage(&e.path()))
        .sum::<u64>()
}

#[cfg(test)]
mod tests {
    use gix::{Count, NestedProgress};

    use super::*;

    #[test]
    fn only_pack_bytes_count_toward_the_limit() {
        let interrupt = Arc::new(AtomicBool::new(false));
        let mut root = PackLimit::new(100, interrupt.clone());
        let objects = root.add_child("resolving");
        objects.inc_by(1_000);
        assert!(
            !interrupt.load(Ordering::Relaxed),
            "object counts are not bytes"
        );
        let pack = root.add_child_with_id("read pack", READ_PACK_BYTES);
        pack.inc_by(60);
        assert!(!root.exceeded());
        pack.inc_by(60);
        assert!(root.exceeded(), "120 bytes passed the 100-byte limit");
        assert!(interrupt.load(Ordering::Relaxed));
        assert_eq!(root.received(), 120);
    }

    #[test]
    fn touched_paths_are_not_idle() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("f");
        fs::write(&file, b"x").expect("write");
        let old = SystemTime::now() - Duration::from_secs(7200);
        fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .and_then(|f| f.set_modified(old))
            .expect("set mtime");
        let now = SystemTime::now();
        assert!(idle_for(&file, now).is_some_and(|d| d >= Duration::from_secs(7000)));
        touch(&file);
        assert!(idle_for(&file, now).is_some_and(|d| d < Duration::from_secs(60)));
        assert_eq!(disk_usage(dir.path()), 1);
    }
}
