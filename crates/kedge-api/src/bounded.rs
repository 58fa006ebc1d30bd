//! Keeping an Application's status within etcd's object size limit however many objects it manages.
//!
//! etcd refuses objects larger than about 1.5 MiB. Listed in full, an application's per-object status and inventory
//! reach it near 11,000 objects, and the status write after a sync then fails. Beyond a bound the status therefore
//! lists only the objects that need attention first (those out of sync or not healthy), up to
//! [`RESOURCES_LISTED`], with counts of all of them in [`ResourceSummary`]; the inventory, which prune needs in full,
//! is stored as a compressed list ([`CompactInventory`]) once it has more than [`INVENTORY_INLINE`] entries. The
//! controller keeps the full per-object list in memory and serves it through its API.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use base64::Engine as _;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{ApplicationStatus, HealthCode, ObjectRef, ResourceResult, ResourceStatus, SyncCode};

/// At most this many objects are listed in `status.resources` (and in a sync result).
pub const RESOURCES_LISTED: usize = 500;
/// An inventory longer than this is stored compressed in `status.compactInventory`.
pub const INVENTORY_INLINE: usize = 1000;
/// The only encoding of [`CompactInventory::data`] so far.
pub const INVENTORY_ENCODING: &str = "gzip+base64";
/// A decoded inventory larger than this is refused (a corrupt or hostile status must not exhaust memory).
const INVENTORY_MAX_BYTES: u64 = 64 << 20;

/// Counts of an application's objects by state, written when `status.resources` does not list them all.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceSummary {
    /// How many objects the application has.
    pub total: u32,
    /// How many of them `status.resources` lists (those out of sync or not healthy first).
    pub listed: u32,
    /// Objects per sync state (`Synced`, `OutOfSync`, `Unknown`).
    #[serde(default)]
    pub sync: BTreeMap<String, u32>,
    /// Objects per health (`Healthy`, `Progressing`, `Degraded`, ...); objects without a health are not counted.
    #[serde(default)]
    pub health: BTreeMap<String, u32>,
}

/// The inventory as one compressed list: one line per object, `group|version|kind|namespace|name`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompactInventory {
    /// How many objects it holds (checked when it is read).
    pub count: u32,
    /// How `data` is encoded: `gzip+base64`.
    pub encoding: String,
    /// The encoded list.
    pub data: String,
}

/// Why a stored inventory cannot be read. Nothing is pruned from an inventory that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// An encoding this version does not know.
    #[error("status.compactInventory: unknown encoding {0:?} (expected {INVENTORY_ENCODING:?})")]
    Encoding(String),
    /// Not valid base64, gzip or UTF-8, or too large.
    #[error("status.compactInventory cannot be decoded: {0}")]
    Decode(String),
    /// A line that is not five `|`-separated fields.
    #[error("status.compactInventory line {line}: expected group|version|kind|namespace|name")]
    Line {
        /// 1-based line number.
        line: usize,
    },
    /// Fewer or more entries than `count` says.
    #[error("status.compactInventory holds {found} objects where its count says {count}")]
    Count {
        /// The recorded count.
        count: u32,
        /// What was decoded.
        found: usize,
    },
}

impl CompactInventory {
    /// Encodes a list of objects.
    pub fn encode(refs: &[ObjectRef]) -> Self {
        let mut text = String::with_capacity(refs.len() * 48);
        for r in refs {
            for (i, field) in [&r.group, &r.version, &r.kind, &r.namespace, &r.name]
                .into_iter()
                .enumerate()
            {
                if i > 0 {
                    text.push('|');
                }
                text.push_str(field);
            }
            text.push('\n');
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        // Writing to a Vec cannot fail.
        let bytes = gz
            .write_all(text.as_bytes())
            .and_then(|()| gz.finish())
            .unwrap_or_default();
        Self {
            count: u32::try_from(refs.len()).unwrap_or(u32::MAX),
            encoding: INVENTORY_ENCODING.to_owned(),
            data: base64::engine::general_purpose::STANDARD.encode(bytes),
        }
    }

    /// Decodes the list, checking its encoding, every line and the count.
    pub fn decode(&self) -> Result<Vec<ObjectRef>, InventoryError> {
        if self.encoding != INVENTORY_ENCODING {
            return Err(InventoryError::Encoding(self.encoding.clone()));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(self.data.as_bytes())
            .map_err(|e| InventoryError::Decode(e.to_string()))?;
        let mut text = String::new();
        flate2::read::GzDecoder::new(bytes.as_slice())
            .take(INVENTORY_MAX_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|e| InventoryError::Decode(e.to_string()))?;
        if text.len() as u64 > INVENTORY_MAX_BYTES {
            return Err(InventoryError::Decode(format!(
                "more than {INVENTORY_MAX_BYTES} bytes"
            )));
        }
        let mut refs = Vec::with_capacity(self.count as usize);
        for (i, line) in text.lines().enumerate() {
            let fields: Vec<&str> = line.split('|').collect();
            let [group, version, kind, namespace, name] = fields[..] else {
                return Err(InventoryError::Line { line: i + 1 });
            };
            if kind.is_empty() || name.is_empty() {
                return Err(InventoryError::Line { line: i + 1 });
            }
            refs.push(ObjectRef {
                group: group.into(),
                version: version.into(),
                kind: kind.into(),
                namespace: namespace.into(),
                name: name.into(),
            });
        }
        if refs.len() != self.count as usize {
            return Err(InventoryError::Count {
                count: self.count,
                found: refs.len(),
            });
        }
        Ok(refs)
    }
}

impl ApplicationStatus {
    /// The whole inventory, whichever way it is stored.
    pub fn inventory_refs(&self) -> Result<Vec<ObjectRef>, InventoryError> {
        let mut refs = self.inventory.clone();
        if let Some(compact) = &self.compact_inventory {
            refs.extend(compact.decode()?);
        }
        Ok(refs)
    }

    /// Stores the inventory: listed while short, compressed beyond [`INVENTORY_INLINE`] entries.
    pub fn set_inventory(&mut self, refs: Vec<ObjectRef>) {
        if refs.len() > INVENTORY_INLINE {
            self.compact_inventory = Some(CompactInventory::encode(&refs));
            self.inventory = Vec::new();
        } else {
            self.compact_inventory = None;
            self.inventory = refs;
        }
    }

    /// Stores the per-object status: all of it up to [`RESOURCES_LISTED`] objects; beyond, those that need
    /// attention first and a [`ResourceSummary`] of all.
    pub fn set_resources(&mut self, all: Vec<ResourceStatus>) {
        if all.len() <= RESOURCES_LISTED {
            self.resources = all;
            self.resource_summary = None;
            return;
        }
        let mut summary = ResourceSummary {
            total: u32::try_from(all.len()).unwrap_or(u32::MAX),
            listed: RESOURCES_LISTED as u32,
            ..ResourceSummary::default()
        };
        for r in &all {
            *summary
                .sync
                .entry(sync_name(r.status).to_owned())
                .or_default() += 1;
            if let Some(h) = &r.health {
                *summary.health.entry(health_name(h.status)).or_default() += 1;
            }
        }
        let (mut listed, rest): (Vec<_>, Vec<_>) = all.into_iter().partition(needs_attention);
        listed.extend(rest);
        listed.truncate(RESOURCES_LISTED);
        self.resources = listed;
        self.resource_summary = Some(summary);
    }
}

/// Whether an object is out of sync or not healthy (listed first when not all fit).
pub fn needs_attention(r: &ResourceStatus) -> bool {
    r.status != SyncCode::Synced
        || r.health
            .as_ref()
            .is_some_and(|h| h.status != HealthCode::Healthy)
}

/// Bounds the per-object outcomes of a sync to [`RESOURCES_LISTED`], failures and changes first; returns how many
/// were left out.
pub fn bound_results(results: &mut Vec<ResourceResult>) -> usize {
    if results.len() <= RESOURCES_LISTED {
        return 0;
    }
    let dropped = results.len() - RESOURCES_LISTED;
    // Stable: failures, then hooks and changes, then objects that were already as wanted.
    results.sort_by_key(|r| match r.status.as_str() {
        "Failed" => 0,
        "Unchanged" | "Skipped" => 2,
        _ => 1,
    });
    results.truncate(RESOURCES_LISTED);
    dropped
}

/// Joins at most `max` items with `sep`, saying how many more there were: for messages and events about many
/// objects.
pub fn join_bounded<S: AsRef<str>>(items: &[S], max: usize, sep: &str) -> String {
    let mut out = items
        .iter()
        .take(max)
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join(sep);
    if items.len() > max {
        out.push_str(&format!(" and {} more", items.len() - max));
    }
    out
}

fn sync_name(code: SyncCode) -> &'static str {
    match code {
        SyncCode::Synced => "Synced",
        SyncCode::OutOfSync => "OutOfSync",
        _ => "Unknown",
    }
}

fn health_name(code: HealthCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{code:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CompactString, HealthStatus};

    fn cm(i: usize) -> ObjectRef {
        ObjectRef {
            group: CompactString::default(),
            version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: "apps".into(),
            name: compact_str::format_compact!("cm-{i:05}"),
        }
    }

    fn res(i: usize, sync: SyncCode, health: HealthCode) -> ResourceStatus {
        ResourceStatus {
            object: cm(i),
            status: sync,
            health: Some(HealthStatus {
                status: health,
                message: None,
            }),
            message: None,
        }
    }

    #[test]
    fn short_inventory_stays_listed_and_long_one_round_trips_compressed() {
        let mut st = ApplicationStatus::default();
        st.set_inventory((0..3).map(cm).collect());
        assert_eq!(st.inventory.len(), 3);
        assert!(st.compact_inventory.is_none());

        let refs: Vec<ObjectRef> = (0..5000)
            .map(cm)
            .chain([ObjectRef {
                group: "apps".into(),
                version: "v1".into(),
                kind: "Deployment".into(),
                namespace: CompactString::default(),
                name: "web".into(),
            }])
            .collect();
        st.set_inventory(refs.clone());
        assert!(st.inventory.is_empty());
        let compact = st.compact_inventory.clone().expect("compressed");
        assert_eq!(compact.count, 5001);
        assert!(
            compact.data.len() < 40 * 1024,
            "5,001 entries took {} bytes",
            compact.data.len()
        );
        assert_eq!(st.inventory_refs().expect("decodes"), refs);

        st.set_inventory(vec![cm(1)]);
        assert!(st.compact_inventory.is_none());
        assert_eq!(st.inventory_refs().expect("decodes"), vec![cm(1)]);
    }

    #[test]
    fn a_damaged_inventory_is_an_error_not_an_empty_list() {
        let good = CompactInventory::encode(&(0..2000).map(cm).collect::<Vec<_>>());
        let wrong_count = CompactInventory {
            count: 1999,
            ..good.clone()
        };
        assert!(matches!(
            wrong_count.decode(),
            Err(InventoryError::Count {
                count: 1999,
                found: 2000
            })
        ));
        let garbled = CompactInventory {
            data: format!("!{}", &good.data[1..]),
            ..good.clone()
        };
        assert!(matches!(garbled.decode(), Err(InventoryError::Decode(_))));
        let other = CompactInventory {
            encoding: "zstd".into(),
            ..good.clone()
        };
        assert!(matches!(other.decode(), Err(InventoryError::Encoding(_))));
        let bad_line = CompactInventory {
            count: 1,
            ..CompactInventory::encode(&[])
        };
        // An empty list with a count of one.
        assert!(bad_line.decode().is_err());
    }

    #[test]
    fn many_resources_list_the_ones_needing_attention_first_with_counts_of_all() {
        let mut st = ApplicationStatus::default();
        let mut all: Vec<ResourceStatus> = (0..5000)
            .map(|i| res(i, SyncCode::Synced, HealthCode::Healthy))
            .collect();
        all[4999].status = SyncCode::OutOfSync;
        all[2500].health = Some(HealthStatus {
            status: HealthCode::Degraded,
            message: Some("crash loop".into()),
        });
        st.set_resources(all);
        assert_eq!(st.resources.len(), RESOURCES_LISTED);
        assert_eq!(st.resources[0].object.name, "cm-02500");
        assert_eq!(st.resources[1].object.name, "cm-04999");
        assert_eq!(st.resources[2].object.name, "cm-00000");
        let summary = st.resource_summary.clone().expect("summary");
        assert_eq!(summary.total, 5000);
        assert_eq!(summary.listed, RESOURCES_LISTED as u32);
        assert_eq!(summary.sync.get("Synced"), Some(&4999));
        assert_eq!(summary.sync.get("OutOfSync"), Some(&1));
        assert_eq!(summary.health.get("Healthy"), Some(&4999));
        assert_eq!(summary.health.get("Degraded"), Some(&1));

        st.set_resources(vec![res(1, SyncCode::Synced, HealthCode::Healthy)]);
        assert!(st.resource_summary.is_none());
        assert_eq!(st.resources.len(), 1);
    }

    #[test]
    fn results_keep_failures_and_messages_say_how_many_more() {
        let mut results: Vec<ResourceResult> = (0..1200)
            .map(|i| ResourceResult {
                object: cm(i),
                status: if i == 1100 { "Failed" } else { "Unchanged" }.into(),
                message: String::new(),
                hook_phase: String::new(),
            })
            .collect();
        results[700].status = "Configured".into();
        assert_eq!(bound_results(&mut results), 700);
        assert_eq!(results.len(), RESOURCES_LISTED);
        assert_eq!(results[0].object.name, "cm-01100");
        assert_eq!(results[1].object.name, "cm-00700");
        assert_eq!(join_bounded(&["a", "b", "c"], 2, ", "), "a, b and 1 more");
        assert_eq!(join_bounded(&["a"], 2, "; "), "a");
    }
}
