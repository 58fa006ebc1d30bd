//! JSON text kept compressed in memory: the objects the engine and the controller's watches keep, one per managed
//! object for as long as they live.

use std::io::{Read, Write};

use flate2::Compression;
use flate2::read::DeflateDecoder;
use flate2::write::DeflateEncoder;

/// A text kept deflated, or as it is when deflating does not make it smaller.
///
/// An object's JSON repeats its keys, and more so with `managedFields`, which name every field again: the Deployments
/// of the benchmark, about 3.3 KiB of text each, are kept in about 340 bytes, a ConfigMap of about 550 in about 360,
/// and unpacking one costs a few microseconds, less than parsing it.
#[derive(Clone, PartialEq, Eq)]
pub struct PackedText(Box<[u8]>);

/// The first byte of a packed text: how the rest is stored.
const PLAIN: u8 = 0;
const DEFLATED: u8 = 1;

impl PackedText {
    /// Packs `text`.
    pub fn pack(text: &str) -> Self {
        let mut out = Vec::with_capacity(text.len() / 3 + 8);
        out.push(DEFLATED);
        let mut encoder = DeflateEncoder::new(out, Compression::fast());
        let deflated = encoder
            .write_all(text.as_bytes())
            .and_then(|()| encoder.finish());
        match deflated {
            Ok(out) if out.len() < text.len() + 1 => Self(out.into_boxed_slice()),
            // Writing to memory does not fail; a text that does not shrink is kept as it is.
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
            (&DEFLATED, rest) => {
                let mut text = String::with_capacity(rest.len() * 4);
                DeflateDecoder::new(rest).read_to_string(&mut text).ok()?;
                Some(text)
            }
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
        assert!(
            packed.len() * 2 < text.len(),
            "{} bytes packed from {}",
            packed.len(),
            text.len()
        );
        assert_eq!(
            format!("{packed:?}"),
            format!("PackedText({} bytes)", packed.len())
        );
    }

    #[test]
    fn a_text_that_does_not_shrink_is_kept_as_it_is() {
        for text in ["", "{}", "x"] {
            let packed = PackedText::pack(text);
            assert_eq!(packed.len(), text.len() + 1);
            assert_eq!(packed.unpack().as_deref(), Some(text));
        }
        assert_eq!(PackedText(Box::new([7, b'x'])).unpack(), None);
    }
}
