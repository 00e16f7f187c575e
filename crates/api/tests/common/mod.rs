//! Helpers shared by veg-api's integration tests: the examples, the CRD's schema, and the three
//! validators an object meets (veg's Rust rules, the OpenAPI schema, the CEL rules).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use veg_api::{FieldError, Manifest, VpcEgressGateway};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every object of every `examples/*.yaml`, with its file name.
pub fn example_manifests() -> Result<Vec<(String, Manifest)>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join("examples"))?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|path| path.extension().is_some_and(|ext| ext == "yaml"));
    files.sort();
    let mut manifests = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for manifest in veg_api::read_manifests(&text).with_context(|| name.clone())? {
            manifests.push((name.clone(), manifest));
        }
    }
    Ok(manifests)
}

/// The VpcEgressGateways of the examples, as JSON.
pub fn example_gateways() -> Result<Vec<Value>> {
    let gateways: Vec<Value> = example_manifests()?
        .into_iter()
        .filter(|(_, manifest)| manifest.kind() == "VpcEgressGateway")
        .map(|(_, manifest)| manifest.object)
        .collect();
    if gateways.len() < 2 {
        bail!(
            "expected at least two example gateways, found {}",
            gateways.len()
        );
    }
    Ok(gateways)
}

/// `gateway1` of `examples/gateway.yaml`: the seed's gateway, the base the invalid cases patch.
pub fn base_gateway() -> Result<Value> {
    example_gateways()?
        .into_iter()
        .find(|gateway| gateway["metadata"]["name"] == "gateway1")
        .context("examples/gateway.yaml has no gateway1")
}

/// JSON merge patch (RFC 7386): objects merge, `null` deletes, anything else replaces.
pub fn merge(base: &Value, patch: &Value) -> Value {
    match (base, patch) {
        (Value::Object(base), Value::Object(patch)) => {
            let mut merged = base.clone();
            for (key, value) in patch {
                if value.is_null() {
                    merged.remove(key);
                } else {
                    let current = merged.get(key).cloned().unwrap_or(Value::Null);
                    merged.insert(key.clone(), merge(&current, value));
                }
            }
            Value::Object(merged)
        }
        (_, patch) => patch.clone(),
    }
}

/// The CRD's `openAPIV3Schema` as JSON.
pub fn crd_schema() -> Result<Value> {
    let crd = veg_api::crd();
    let version = crd
        .spec
        .versions
        .first()
        .context("the CRD has no version")?;
    let schema = version
        .schema
        .as_ref()
        .and_then(|validation| validation.open_api_v3_schema.as_ref())
        .context("the CRD has no openAPIV3Schema")?;
    Ok(serde_json::to_value(schema)?)
}

/// veg's own verdict: parse (type errors, unknown fields) then `validate`.
pub fn rust_errors(object: &Value) -> Vec<FieldError> {
    match veg_api::parse_object::<VpcEgressGateway>(object) {
        Ok(parsed) => {
            let mut errors = parsed.unknown_fields;
            errors.extend(veg_api::validate(&parsed.value).err().unwrap_or_default());
            errors
        }
        Err(errors) => errors,
    }
}

/// Field paths (Kubernetes notation) the OpenAPI schema rejects, checked by a JSON-schema
/// validator as the apiserver's structural validation would.
pub fn schema_errors(schema: &Value, object: &Value) -> Result<Vec<String>> {
    let validator = jsonschema::validator_for(schema)
        .map_err(|error| anyhow::anyhow!("the CRD schema is not a valid JSON schema: {error}"))?;
    Ok(validator
        .iter_errors(object)
        .map(|error| pointer_to_field_path(&error.instance_path().to_string()))
        .collect())
}

/// `/spec/policies/0/ipBlocks` → `spec.policies[0].ipBlocks`.
fn pointer_to_field_path(pointer: &str) -> String {
    let mut path = String::new();
    for segment in pointer.split('/').filter(|segment| !segment.is_empty()) {
        if segment.bytes().all(|byte| byte.is_ascii_digit()) {
            path.push_str(&format!("[{segment}]"));
        } else {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(&segment.replace("~1", "/").replace("~0", "~"));
        }
    }
    path
}

/// The CEL rules of the CRD that fail on `object` (a create when `old` is `None`).
pub fn cel_errors(
    schema: &Value,
    object: &Value,
    old: Option<&Value>,
) -> Vec<kube_cel::ValidationError> {
    match kube_cel::validate(schema, object, old) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.into_vec(),
    }
}

/// Every CEL rule in a schema, in document order.
pub fn all_cel_rules(schema: &Value) -> Vec<String> {
    let mut rules = Vec::new();
    collect_rules(schema, &mut rules);
    rules
}

fn collect_rules(value: &Value, rules: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Array(validations)) = map.get("x-kubernetes-validations") {
                for validation in validations {
                    if let Some(rule) = validation["rule"].as_str() {
                        rules.push(rule.to_owned());
                    }
                }
            }
            map.values().for_each(|child| collect_rules(child, rules));
        }
        Value::Array(items) => items.iter().for_each(|child| collect_rules(child, rules)),
        _ => {}
    }
}
