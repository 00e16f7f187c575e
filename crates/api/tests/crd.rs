//! The generated CRD: committed copy up to date, identity (names, scope, subresources, printer
//! columns), strict decoding into k8s-openapi's type, defaults, and its OpenAPI schema against
//! the example manifests.

mod common;

use anyhow::{Context, Result, ensure};
use common::{base_gateway, crd_schema, merge, repo_root, schema_errors};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Value, json};

const COMMITTED: &str = "deploy/crds/vpc-egress-gateways.yaml";

/// `deploy/crds/` must hold exactly what `veg crd` prints. Regenerate with
/// `scripts/gen-crd.sh` (or `VEG_UPDATE_GOLDEN=1 cargo test`) and review the diff.
#[test]
fn committed_crd_is_current() -> Result<()> {
    let path = repo_root().join(COMMITTED);
    let generated = veg_api::crd_yaml()?;
    if std::env::var_os("VEG_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &generated)?;
    }
    let committed =
        std::fs::read_to_string(&path).with_context(|| format!("reading {COMMITTED}"))?;
    ensure!(
        committed == generated,
        "{COMMITTED} is stale: run scripts/gen-crd.sh and commit the result"
    );
    Ok(())
}

/// The committed YAML decodes into k8s-openapi's CustomResourceDefinition without a single
/// field the type does not know (a misspelt key would be dropped by the apiserver).
#[test]
fn crd_yaml_decodes_strictly_into_the_kubernetes_type() -> Result<()> {
    let text = std::fs::read_to_string(repo_root().join(COMMITTED))?;
    let value: Value = serde_saphyr::from_str(&text)?;
    let (crd, unknown) = decode_crd(&value)?;
    ensure!(
        unknown.is_empty(),
        "fields CustomResourceDefinition does not know: {unknown:?}"
    );
    ensure!(
        crd == veg_api::crd(),
        "the YAML does not round-trip to the generated CRD"
    );

    // The check itself can fail: a misspelt key deep in the CRD is caught.
    let mut misspelt = value.clone();
    misspelt["spec"]["versions"][0]["subresources"]["scale"]["specReplicaPath"] =
        json!(".spec.replicas");
    let (_, unknown) = decode_crd(&misspelt)?;
    ensure!(
        unknown.len() == 1 && unknown[0].ends_with("specReplicaPath"),
        "{unknown:?}"
    );
    Ok(())
}

fn decode_crd(value: &Value) -> Result<(CustomResourceDefinition, Vec<String>)> {
    let mut unknown = Vec::new();
    let crd = serde_ignored::deserialize(value, |path| unknown.push(path.to_string()))?;
    Ok((crd, unknown))
}

#[test]
fn identity_names_scope_and_subresources() -> Result<()> {
    let crd = veg_api::crd();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("vpc-egress-gateways.kubeovn.io")
    );
    assert_eq!(crd.spec.group, "kubeovn.io");
    assert_eq!(crd.spec.scope, "Namespaced");
    let names = &crd.spec.names;
    assert_eq!(names.kind, "VpcEgressGateway");
    assert_eq!(names.plural, "vpc-egress-gateways");
    assert_eq!(names.singular.as_deref(), Some("vpc-egress-gateway"));
    assert_eq!(
        names.short_names.as_deref(),
        Some(&["vpc-egress-gw".to_owned(), "veg".to_owned()][..])
    );

    ensure!(crd.spec.versions.len() == 1, "one version expected");
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1");
    assert!(version.served && version.storage);
    let subresources = version.subresources.as_ref().context("no subresources")?;
    ensure!(subresources.status.is_some(), "no status subresource");
    let scale = subresources
        .scale
        .as_ref()
        .context("no scale subresource")?;
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");
    assert_eq!(scale.status_replicas_path, ".status.replicas");
    assert_eq!(
        scale.label_selector_path.as_deref(),
        Some(".status.labelSelector")
    );
    Ok(())
}

/// `kubectl get veg` and `-o wide` print the columns Kube-OVN users know, in that order.
#[test]
fn printer_columns() -> Result<()> {
    let crd = veg_api::crd();
    let columns = crd.spec.versions[0]
        .additional_printer_columns
        .as_ref()
        .context("no printer columns")?;
    let found: Vec<(&str, &str, &str, i32)> = columns
        .iter()
        .map(|c| {
            (
                c.name.as_str(),
                c.json_path.as_str(),
                c.type_.as_str(),
                c.priority.unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            ("VPC", ".spec.vpc", "string", 0),
            ("REPLICAS", ".spec.replicas", "integer", 0),
            ("BFD ENABLED", ".spec.bfd.enabled", "boolean", 0),
            ("EXTERNAL SUBNET", ".spec.externalSubnet", "string", 0),
            ("PHASE", ".status.phase", "string", 0),
            ("READY", ".status.ready", "boolean", 0),
            ("INTERNAL IPS", ".status.internalIPs", "string", 1),
            ("EXTERNAL IPS", ".status.externalIPs", "string", 1),
            ("WORKING NODES", ".status.workload.nodes", "string", 1),
            ("AGE", ".metadata.creationTimestamp", "date", 0),
        ]
    );
    Ok(())
}

/// Defaults live in the schema, so the apiserver fills them in; Kube-OVN's values.
#[test]
fn schema_defaults_and_required_fields() -> Result<()> {
    let schema = crd_schema()?;
    let spec = &schema["properties"]["spec"];
    let properties = &spec["properties"];
    assert_eq!(properties["replicas"]["default"], json!(1));
    assert_eq!(properties["replicas"]["minimum"], json!(0.0));
    assert_eq!(properties["replicas"]["maximum"], json!(10.0));
    assert_eq!(properties["trafficPolicy"]["default"], json!("Cluster"));
    assert_eq!(
        properties["trafficPolicy"]["enum"],
        json!(["Cluster", "Local"])
    );
    assert_eq!(properties["podAntiAffinity"]["default"], json!("Required"));
    assert_eq!(
        properties["podAntiAffinity"]["enum"],
        json!(["Required", "Preferred"])
    );
    let bfd = &properties["bfd"]["properties"];
    assert_eq!(bfd["enabled"]["default"], json!(false));
    assert_eq!(bfd["minRX"]["default"], json!(1000));
    assert_eq!(bfd["minTX"]["default"], json!(1000));
    assert_eq!(bfd["multiplier"]["default"], json!(3));
    assert_eq!(spec["required"], json!(["externalSubnet"]));
    assert_eq!(
        properties["internalIPs"]["x-kubernetes-list-type"],
        json!("set")
    );
    let status = &schema["properties"]["status"]["properties"];
    assert_eq!(status["conditions"]["x-kubernetes-list-type"], json!("map"));
    assert_eq!(
        status["conditions"]["x-kubernetes-list-map-keys"],
        json!(["type"])
    );
    assert_eq!(
        status["phase"]["enum"],
        json!(["Pending", "Processing", "Completed"])
    );
    ensure!(
        !serde_json::to_string(&schema)?.contains("nullable"),
        "no field should be nullable"
    );
    Ok(())
}

/// The seed's manifests pass the CRD's OpenAPI schema; wrong types do not.
#[test]
fn openapi_schema_accepts_the_examples_and_rejects_wrong_types() -> Result<()> {
    let schema = crd_schema()?;
    for gateway in common::example_gateways()? {
        let errors = schema_errors(&schema, &gateway)?;
        ensure!(
            errors.is_empty(),
            "{}: {errors:?}",
            gateway["metadata"]["name"]
        );
    }
    let base = base_gateway()?;
    for (patch, path) in [
        (json!({"spec": {"replicas": "1"}}), "spec.replicas"),
        (
            json!({"spec": {"policies": {"snat": true}}}),
            "spec.policies",
        ),
        (
            json!({"spec": {"policies": [{"snat": "yes", "subnets": ["subnet1"]}]}}),
            "spec.policies[0].snat",
        ),
        (
            json!({"spec": {"selectors": [{"namespaceSelector": {"matchLabels": ["a"]}}]}}),
            "spec.selectors[0].namespaceSelector.matchLabels",
        ),
        (
            json!({"spec": {"bandwidth": {"ingress": true}}}),
            "spec.bandwidth.ingress",
        ),
        (
            json!({"spec": {"internalIPs": "198.18.16.11"}}),
            "spec.internalIPs",
        ),
        (
            json!({"spec": {"nodeSelector": [{"matchExpressions": [{"operator": "In"}]}]}}),
            "spec.nodeSelector[0].matchExpressions[0]",
        ),
    ] {
        let object = merge(&base, &patch);
        let errors = schema_errors(&schema, &object)?;
        ensure!(
            errors.iter().any(|found| found == path),
            "{patch}: expected an error at {path}, got {errors:?}"
        );
    }
    Ok(())
}

/// Every example parses and validates in Rust, and round-trips through the typed object.
#[test]
fn the_examples_parse_validate_and_round_trip() -> Result<()> {
    let manifests = common::example_manifests()?;
    let kinds: Vec<&str> = manifests.iter().map(|(_, m)| m.kind()).collect();
    for kind in [
        "NetworkAttachmentDefinition",
        "Subnet",
        "VpcEgressGateway",
        "Vpc",
    ] {
        ensure!(kinds.contains(&kind), "examples/ lacks a {kind}");
    }
    for (file, manifest) in &manifests {
        match manifest.kind() {
            "VpcEgressGateway" => {
                let parsed = manifest
                    .parse::<veg_api::VpcEgressGateway>()
                    .map_err(|errors| anyhow::anyhow!("{file}: {errors:?}"))?;
                ensure!(
                    parsed.unknown_fields.is_empty(),
                    "{file}: {:?}",
                    parsed.unknown_fields
                );
                veg_api::validate(&parsed.value)
                    .map_err(|errors| anyhow::anyhow!("{file}: {errors:?}"))?;
                // Serialising again gives the manifest back, plus the defaults it left out.
                let again = serde_json::to_value(&parsed.value)?;
                let with_defaults = merge(
                    &json!({"spec": {"bfd": {"enabled": false, "minRX": 1000, "minTX": 1000, "multiplier": 3},
                                     "trafficPolicy": "Cluster", "podAntiAffinity": "Required"}}),
                    &manifest.object,
                );
                ensure!(
                    again == with_defaults,
                    "{file}: round trip changed the object:\n{again}\n!=\n{with_defaults}"
                );
            }
            "Subnet" => {
                manifest
                    .parse::<veg_api::kubeovn::Subnet>()
                    .map_err(|e| anyhow::anyhow!("{file}: {e:?}"))?;
            }
            "Vpc" => {
                manifest
                    .parse::<veg_api::kubeovn::Vpc>()
                    .map_err(|e| anyhow::anyhow!("{file}: {e:?}"))?;
            }
            "NetworkAttachmentDefinition" => {
                let nad = manifest
                    .parse::<veg_api::multus::NetworkAttachmentDefinition>()
                    .map_err(|e| anyhow::anyhow!("{file}: {e:?}"))?;
                let config = nad
                    .value
                    .cni_config()
                    .context("the NAD config is not JSON")?;
                ensure!(
                    config["ipam"]["provider"] == "eth1.default",
                    "{file}: provider {config}"
                );
            }
            other => anyhow::bail!("{file}: unexpected kind {other}"),
        }
    }
    Ok(())
}
