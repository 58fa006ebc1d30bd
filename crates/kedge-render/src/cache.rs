//! A small in-memory LRU of rendered sets, bounded by entry count and by approximate size.

use std::collections::HashMap;
use std::sync::Arc;

use crate::RenderOptions;
use crate::object::RenderedSet;

/// Bounds of the render cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// The most rendered sets kept; 0 disables the cache (and the `dir_id` look-ups it needs).
    pub max_entries: usize,
    /// The most bytes of rendered input kept (measured as the bytes parsed to produce each set).
    pub max_bytes: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_entries: 256,
            max_bytes: 256 * 1024 * 1024,
        }
    }
}

/// Hit and miss counters of the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Renders answered from the cache.
    pub hits: u64,
    /// Renders that had to run.
    pub misses: u64,
    /// Sets currently held.
    pub entries: usize,
    /// Approximate bytes currently held.
    pub bytes: usize,
}

/// What a render depends on: the application path, its options and the content ids of its input directories.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CacheKey {
    pub path: String,
    pub options: RenderOptions,
    pub kustomize: Option<crate::KustomizeOptions>,
    pub inputs: Vec<(String, String)>,
}

struct Entry {
    set: Arc<RenderedSet>,
    weight: usize,
    last_used: u64,
}

pub(crate) struct Lru {
    config: CacheConfig,
    map: HashMap<CacheKey, Entry>,
    clock: u64,
    bytes: usize,
    hits: u64,
    misses: u64,
}

impl Lru {
    pub fn new(config: CacheConfig) -> Self {
        Lru {
            config,
            map: HashMap::new(),
            clock: 0,
            bytes: 0,
            hits: 0,
            misses: 0,
        }
    }

    pub fn enabled(&self) -> bool {
        self.config.max_entries > 0
    }

    pub fn get(&mut self, key: &CacheKey) -> Option<Arc<RenderedSet>> {
        self.clock += 1;
        match self.map.get_mut(key) {
            Some(e) => {
                e.last_used = self.clock;
                self.hits += 1;
                Some(e.set.clone())
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    pub fn insert(&mut self, key: CacheKey, set: Arc<RenderedSet>, weight: usize) {
        if !self.enabled() || weight > self.config.max_bytes {
            return;
        }
        self.clock += 1;
        if let Some(old) = self.map.insert(
            key,
            Entry {
                set,
                weight,
                last_used: self.clock,
            },
        ) {
            self.bytes -= old.weight;
        }
        self.bytes += weight;
        while self.map.len() > self.config.max_entries || self.bytes > self.config.max_bytes {
            // A linear scan: the cache holds at most a few hundred entries, and evictions are rare.
            let Some(oldest) = self
                .map
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(e) = self.map.remove(&oldest) {
                self.bytes -= e.weight;
            }
        }
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits,
            misses: self.misses,
            entries: self.map.len(),
            bytes: self.bytes,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::object::SourceKind;

    fn key(n: usize) -> CacheKey {
        CacheKey {
            path: format!("app{n}"),
            options: RenderOptions::default(),
            kustomize: None,
            inputs: vec![(format!("app{n}"), "id".into())],
        }
    }

    fn set() -> Arc<RenderedSet> {
        Arc::new(RenderedSet {
            objects: vec![],
            kind: SourceKind::Directory,
            inputs: vec![],
        })
    }

    #[test]
    fn evicts_least_recently_used_by_count_and_bytes() {
        let mut lru = Lru::new(CacheConfig {
            max_entries: 2,
            max_bytes: 100,
        });
        lru.insert(key(1), set(), 10);
        lru.insert(key(2), set(), 10);
        assert!(lru.get(&key(1)).is_some());
        lru.insert(key(3), set(), 10);
        assert!(lru.get(&key(2)).is_none(), "2 was least recently used");
        assert!(lru.get(&key(1)).is_some());
        assert!(lru.get(&key(3)).is_some());
        lru.insert(key(4), set(), 95);
        assert_eq!(lru.stats().entries, 1);
        assert!(lru.get(&key(4)).is_some());
        assert!(lru.stats().bytes <= 100);
        lru.insert(key(5), set(), 101);
        assert!(lru.get(&key(5)).is_none(), "larger than the whole cache");
    }
}
