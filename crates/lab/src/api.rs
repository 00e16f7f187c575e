//! The lab's API server: one object per file in `<state>/api`, which the controller reads.
//! `apply` writes objects (replacing the same kind/namespace/name), `delete` removes them,
//! `scale` edits a gateway's replicas — what `kubectl` would do against a cluster.

use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use crate::command::{step, write_json};
use crate::error::LabError;

/// Kinds that live in a namespace (`default` when the manifest has none).
const NAMESPACED: [&str; 5] = [
    "VpcEgressGateway",
    "Pod",
    "NetworkAttachmentDefinition",
    "Deployment",
    "Event",
];

/// An object's identity: kind, namespace (empty for cluster-scoped kinds), name.
pub type ObjectKey = (String, String, String);

/// The identity of `object`.
pub fn key_of(object: &Json) -> ObjectKey {
    let kind = object["kind"].as_str().unwrap_or_default().to_owned();
    let namespace = match object["metadata"]["namespace"].as_str() {
        Some(ns) if !ns.is_empty() => ns.to_owned(),
        _ if NAMESPACED.contains(&kind.as_str()) => "default".to_owned(),
        _ => String::new(),
    };
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (kind, namespace, name)
}

/// Every object in `api`, with its file.
pub fn objects(api: &Path) -> Result<Vec<(PathBuf, Json)>, LabError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(api)
        .map_err(|e| step(&format!("reading {}", api.display()))(e.to_string()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue; // removed meanwhile
        };
        for manifest in veg_api::read_manifests(&text).unwrap_or_default() {
            out.push((file.clone(), manifest.object));
        }
    }
    Ok(out)
}

/// Finds the file holding `key`.
pub fn find(api: &Path, key: &ObjectKey) -> Result<Option<(PathBuf, Json)>, LabError> {
    Ok(objects(api)?.into_iter().find(|(_, o)| &key_of(o) == key))
}

/// Applies every object of a manifest text; returns their keys. A text that does not parse
/// changes nothing.
pub fn apply(api: &Path, text: &str) -> Result<Vec<ObjectKey>, LabError> {
    let manifests =
        veg_api::read_manifests(text).map_err(|e| step("reading the manifests")(e.to_string()))?;
    let mut keys = Vec::new();
    for manifest in &manifests {
        let key = key_of(&manifest.object);
        if key.0.is_empty() || key.2.is_empty() {
            return Err(step("reading the manifests")(format!(
                "document {} has no kind or metadata.name",
                manifest.index
            )));
        }
        keys.push(key);
    }
    for (manifest, key) in manifests.iter().zip(&keys) {
        let path = match find(api, key)? {
            Some((path, _)) => path,
            None => api.join(format!(
                "applied-{}-{}-{}.yaml",
                key.0.to_lowercase(),
                if key.1.is_empty() { "cluster" } else { &key.1 },
                key.2
            )),
        };
        write_json(&path, &manifest.object)?;
    }
    Ok(keys)
}

/// Deletes an object; `false` when there was none.
pub fn delete(api: &Path, key: &ObjectKey) -> Result<bool, LabError> {
    match find(api, key)? {
        Some((path, _)) => {
            std::fs::remove_file(&path)
                .map_err(|e| step(&format!("removing {}", path.display()))(e.to_string()))?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Sets `status.<field>` of an object as its controller reported it (`null`: removed), as the
/// API server's status subresource would; `false` when there is no such object or nothing
/// changes.
pub fn set_status(
    api: &Path,
    key: &ObjectKey,
    field: &str,
    value: &Json,
) -> Result<bool, LabError> {
    let Some((path, mut object)) = find(api, key)? else {
        return Ok(false);
    };
    if &object["status"][field] == value
        || (value.is_null() && object["status"].get(field).is_none())
    {
        return Ok(false);
    }
    if value.is_null() {
        if let Some(status) = object["status"].as_object_mut() {
            status.remove(field);
        }
    } else {
        object["status"][field] = value.clone();
    }
    write_json(&path, &object)?;
    Ok(true)
}

/// Sets a gateway's `spec.replicas`.
pub fn scale(api: &Path, namespace: &str, name: &str, replicas: u32) -> Result<(), LabError> {
    let key = (
        "VpcEgressGateway".to_owned(),
        namespace.to_owned(),
        name.to_owned(),
    );
    let (path, mut object) = find(api, &key)?
        .ok_or_else(|| step("scale")(format!("no VpcEgressGateway {namespace}/{name}")))?;
    object["spec"]["replicas"] = Json::from(replicas);
    write_json(&path, &object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_replaces_delete_removes_scale_edits() -> Result<(), LabError> {
        let dir = std::env::temp_dir().join(format!("veg-lab-api-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| step("dir")(e.to_string()))?;
        let text = "apiVersion: kubeovn.io/v1\nkind: VpcEgressGateway\nmetadata: {name: g}\nspec: {replicas: 1}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n";
        let keys = apply(&dir, text)?;
        assert_eq!(
            keys[0],
            ("VpcEgressGateway".into(), "default".into(), "g".into())
        );
        assert_eq!(keys[1], ("Namespace".into(), String::new(), "a".into()));
        apply(&dir, text)?;
        assert_eq!(objects(&dir)?.len(), 2, "applying twice replaces");
        scale(&dir, "default", "g", 3)?;
        let g = find(&dir, &keys[0])?.map(|(_, g)| g).unwrap_or_default();
        assert_eq!(g["spec"]["replicas"], 3);
        assert!(scale(&dir, "default", "missing", 3).is_err());
        assert!(delete(&dir, &keys[0])?);
        assert!(!delete(&dir, &keys[0])?);
        assert_eq!(objects(&dir)?.len(), 1);
        assert!(apply(&dir, "kind: [").is_err());
        assert!(apply(&dir, "kind: Pod\nmetadata: {}\n").is_err());
        assert_eq!(objects(&dir)?.len(), 1, "a bad text changes nothing");
        std::fs::remove_dir_all(&dir).map_err(|e| step("dir")(e.to_string()))?;
        Ok(())
    }
}
