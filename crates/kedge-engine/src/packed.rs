//! JSON text kept compressed in memory: the objects the engine and the controller's watches keep, one per managed
//! object for as long as they live.

use std::cell::RefCell;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// A text kept deflated, or as it is when deflating does not make it smaller.
///
/// Deflating starts from a preset dictionary of the words Kubernetes objects share (the keys of `metadata`,
/// `managedFields` and the common kinds' `spec` and `status`, their usual values), so that even a small object packs
/// well. Measured: the Deployment of this module's test, 1,869 bytes of text with its managedFields and status, packs
/// to 291 bytes (697 deflated without the dictionary); a ConfigMap of 540 bytes to 147 (362 deflated without it at
/// the fast level, as before the dictionary). Packing costs tens of microseconds and unpacking a few, less than
/// parsing the text.
#[derive(Clone, PartialEq, Eq)]
pub struct PackedText(Box<[u8]>);

/// The first byte of a packed text: how the rest is stored.
const PLAIN: u8 = 0;
const DEFLATED: u8 = 1;

/// The preset dictionary: JSON text of the shapes most objects take. Only the room it saves depends on it; any text
/// packs and unpacks the same.
static DICTIONARY: &[u8] = include_bytes!("packed-dictionary.txt");

thread_local! {
    // A deflate and an inflate state per thread, reset for each text: making one allocates a few hundred KiB.
    static DEFLATE: RefCell<Compress> = RefCell::new(Compress::new(Compression::default(), false));
    static INFLATE: RefCell<Decompress> = RefCell::new(Decompress::new(false));
}

/// A deflate or an inflate state, driven by [`run`].
trait Stream {
    /// Bytes read and written so far.
    fn totals(&self) -> (u64, u64);
    /// Reads from `input` and writes into the room `out` has, finishing the stream; `None` on an error.
    fn step(&mut self, input: &[u8], out: &mut Vec<u8>) -> Option<Status>;
}

impl Stream for Compress {
    fn totals(&self) -> (u64, u64) {
        (self.total_in(), self.total_out())
    }

    fn step(&mut self, input: &[u8], out: &mut Vec<u8>) -> Option<Status> {
        self.compress_vec(input, out, FlushCompress::Finish).ok()
    }
}

impl Stream for Decompress {
    fn totals(&self) -> (u64, u64) {
        (self.total_in(), self.total_out())
    }

    fn step(&mut self, input: &[u8], out: &mut Vec<u8>) -> Option<Status> {
        self.decompress_vec(input, out, FlushDecompress::Finish)
            .ok()
    }
}

/// Runs `stream` over all of `input`, appending to `out`: each round fills the room `out` has, then makes more. A
/// round that neither reads nor writes while there is room means the input is wrong, and gives `None`; so does an
/// error.
fn run(stream: &mut impl Stream, input: &[u8], mut out: Vec<u8>) -> Option<Vec<u8>> {
    loop {
        let before = stream.totals();
        let rest = input.get(usize::try_from(before.0).ok()?..)?;
        match stream.step(rest, &mut out)? {
            Status::StreamEnd => return Some(out),
            Status::Ok | Status::BufError => {
                if stream.totals() == before && out.len() < out.capacity() {
                    return None;
                }
                out.reserve(out.capacity().max(64));
            }
        }
    }
}

/// `input` deflated after `prefix`, or `None` if deflating failed.
fn deflate(input: &[u8], prefix: u8) -> Option<Vec<u8>> {
    DEFLATE.with(|cell| {
        let mut deflate = cell.try_borrow_mut().ok()?;
        deflate.reset();
        deflate.set_dictionary(DICTIONARY).ok()?;
        let mut out = Vec::with_capacity(input.len() / 4 + 64);
        out.push(prefix);
        run(&mut *deflate, input, out)
    })
}

/// `input` inflated, or `None` if it is not what [`deflate`] made.
fn inflate(input: &[u8]) -> Option<Vec<u8>> {
    INFLATE.with(|cell| {
        let mut inflate = cell.try_borrow_mut().ok()?;
        inflate.reset(false);
        inflate.set_dictionary(DICTIONARY).ok()?;
        run(
            &mut *inflate,
            input,
            Vec::with_capacity(input.len() * 6 + 64),
        )
    })
}

impl PackedText {
    /// Packs `text`.
    pub fn pack(text: &str) -> Self {
        match deflate(text.as_bytes(), DEFLATED) {
            Some(out) if out.len() < text.len() + 1 => Self(out.into_boxed_slice()),
            // A text that does not shrink is kept as it is.
            _ => {
                let mut out = Vec::with_capacity(text.len() + 1);
                out.push(PLAIN);
                out.extend_from_slice(text.as_bytes());
                Self(out.into_boxed_slice())
            }
        }
    }

    /// The text; `None` if it cannot be restored (it always can: it was packed from a text).
    pub fn unpack(&self) -> Option<String> {
        match self.0.split_first()? {
            (&PLAIN, rest) => String::from_utf8(rest.to_vec()).ok(),
            (&DEFLATED, rest) => String::from_utf8(inflate(rest)?).ok(),
            _ => None,
        }
    }

    /// The text parsed as JSON; `None` if it is not JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.unpack()?).ok()
    }

    /// Bytes kept.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing is kept (never: the first byte says how the text is stored).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for PackedText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the content: it may be a Secret.
        write!(f, "PackedText({} bytes)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_object_comes_back_as_it_was_in_a_fraction_of_the_room() {
        let fields = json!({ "f:metadata": { "f:annotations": { "f:kedge.dev/tracking-id": {} },
            "f:labels": { "f:app": {} } }, "f:spec": { "f:replicas": {}, "f:selector": {}, "f:template": {
            "f:metadata": { "f:labels": { "f:app": {} } }, "f:spec": { "f:containers": {
            "k:{\"name\":\"web\"}": { ".": {}, "f:image": {}, "f:name": {}, "f:ports": {} } } } } } });
        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": "web", "namespace": "app-00001", "uid": "d83a5a98-a07b-47d9-af72-c074771e56c4",
                "resourceVersion": "1534", "generation": 1, "creationTimestamp": "2026-12-05T06:44:06Z",
                "annotations": { "kedge.dev/tracking-id": "kedge/app-00001:apps/Deployment:app-00001/web",
                    "deployment.kubernetes.io/revision": "1" },
                "labels": { "app": "web" },
                "managedFields": [
                    { "manager": "kedge", "operation": "Apply", "apiVersion": "apps/v1",
                      "time": "2026-12-05T06:44:06Z", "fieldsType": "FieldsV1", "fieldsV1": fields },
                    { "manager": "kube-controller-manager", "operation": "Update", "apiVersion": "apps/v1",
                      "time": "2026-12-05T06:44:07Z", "fieldsType": "FieldsV1", "subresource": "status",
                      "fieldsV1": { "f:status": { "f:availableReplicas": {}, "f:conditions": {},
                        "f:observedGeneration": {}, "f:readyReplicas": {}, "f:replicas": {},
                        "f:updatedReplicas": {} } } } ] },
            "spec": { "replicas": 2, "selector": { "matchLabels": { "app": "web" } },
                "template": { "metadata": { "labels": { "app": "web" } },
                    "spec": { "containers": [ { "name": "web", "image": "nginx:1.27",
                        "ports": [ { "containerPort": 80 } ] } ] } } },
            "status": { "replicas": 2, "readyReplicas": 2, "availableReplicas": 2, "updatedReplicas": 2,
                "observedGeneration": 1, "conditions": [
                    { "type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                      "message": "Deployment has minimum availability.",
                      "lastUpdateTime": "2026-12-05T06:44:07Z", "lastTransitionTime": "2026-12-05T06:44:07Z" },
                    { "type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                      "message": "ReplicaSet \"web-5d4f\" has successfully progressed.",
                      "lastUpdateTime": "2026-12-05T06:44:07Z", "lastTransitionTime": "2026-12-05T06:44:06Z" } ] },
        });
        let text = deployment.to_string();
        let packed = PackedText::pack(&text);
        assert_eq!(packed.unpack().as_deref(), Some(text.as_str()));
        assert_eq!(packed.json(), Some(deployment));
        // The dictionary's part: the same text deflated from nothing takes well over twice the room.
        let mut plain = flate2::write::DeflateEncoder::new(Vec::new(), Compression::default());
        std::io::Write::write_all(&mut plain, text.as_bytes()).expect("deflates");
        let without = plain.finish().expect("deflates").len();
        assert!(
            packed.len() * 5 < text.len() && packed.len() * 2 < without,
            "{} bytes packed from {}, {without} without the dictionary",
            packed.len(),
            text.len()
        );
        assert_eq!(
            format!("{packed:?}"),
            format!("PackedText({} bytes)", packed.len())
        );
    }

    #[test]
    fn texts_unlike_the_dictionary_and_larger_than_any_first_guess_come_back_whole() {
        // Deflating and inflating both grow their output more than once for these.
        let mut numbers = String::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        while numbers.len() < 200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            numbers.push_str(&format!("{x:x},"));
        }
        let repeated = "{\"a\":1}".repeat(50_000);
        for text in [numbers.as_str(), repeated.as_str(), "päckchen ✓ ünïcode"] {
            let packed = PackedText::pack(text);
            assert_eq!(packed.unpack().as_deref(), Some(text));
            assert!(packed.len() <= text.len() + 1);
        }
        assert!(PackedText::pack(&repeated).len() * 100 < repeated.len());
        // Packing and unpacking on many threads at once (one deflate state per thread).
        let handles: Vec<_> = (0..4)
            .map(|i| {
                std::thread::spawn(move || {
                    let text =
                        format!("{{\"kind\":\"ConfigMap\",\"data\":{{\"n\":\"{i}\"}}}}").repeat(20);
                    (0..50)
                        .all(|_| PackedText::pack(&text).unpack().as_deref() == Some(text.as_str()))
                })
            })
            .collect();
        for handle in handles {
            assert!(handle.join().expect("joins"));
        }
    }

    #[test]
    fn a_text_that_does_not_shrink_is_kept_as_it_is() {
        for text in ["", "{}", "x"] {
            let packed = PackedText::pack(text);
            assert_eq!(packed.len(), text.len() + 1);
            assert_eq!(packed.unpack().as_deref(), Some(text));
        }
        assert_eq!(PackedText(Box::new([7, b'x'])).unpack(), None);
        // Not a deflate stream, or one cut short: nothing, and no endless loop.
        assert_eq!(
            PackedText(Box::new([DEFLATED, 0xff, 0xff, 0xff])).unpack(),
            None
        );
        let whole = PackedText::pack(&"{\"kind\":\"ConfigMap\"}".repeat(100));
        assert_eq!(PackedText(whole.0[..whole.len() - 3].into()).unpack(), None);
    }
}
