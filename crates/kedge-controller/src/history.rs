//! Sync history: the last syncs of an application, newest last, with increasing ids used for rollback.

use kedge_api::HistoryEntry;

/// How many entries an application keeps.
pub const HISTORY_LIMIT: usize = 10;

/// Appends an entry with the next id and drops the oldest beyond [`HISTORY_LIMIT`]; returns the new id.
pub fn record(history: &mut Vec<HistoryEntry>, mut entry: HistoryEntry) -> i64 {
    let id = history.iter().map(|h| h.id).max().unwrap_or(-1) + 1;
    entry.id = id;
    history.push(entry);
    if history.len() > HISTORY_LIMIT {
        let excess = history.len() - HISTORY_LIMIT;
        history.drain(..excess);
    }
    id
}

/// The entry with `id`, if it is still kept.
pub fn find(history: &[HistoryEntry], id: i64) -> Option<&HistoryEntry> {
    history.iter().find(|h| h.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(rev: &str) -> HistoryEntry {
        HistoryEntry {
            revision: rev.to_owned(),
            ..Default::default()
        }
    }

    #[test]
    fn keeps_the_last_ten_with_increasing_ids() {
        let mut h = Vec::new();
        for i in 0..12 {
            assert_eq!(record(&mut h, entry(&format!("r{i}"))), i);
        }
        assert_eq!(h.len(), HISTORY_LIMIT);
        assert_eq!(h[0].id, 2);
        assert_eq!(h[9].revision, "r11");
        assert!(find(&h, 1).is_none());
        assert_eq!(find(&h, 5).map(|e| e.revision.as_str()), Some("r5"));
    }
}
