//! Invalid and valid gateways against all three validators: veg's Rust rules (field path and
//! rule), the CRD's OpenAPI schema (a JSON-schema validator) and the CRD's CEL rules (evaluated
//! with Kubernetes' CEL libraries). The CRD and the Rust twin must agree on every case.

mod common;

use std::collections::BTreeSet;

use anyhow::{Result, ensure};
use common::{
    all_cel_rules, base_gateway, cel_errors, crd_schema, merge, rust_errors, schema_errors,
};
use serde_json::{Value, json};
use veg_api::Rule;

/// How the apiserver, with our CRD installed, rejects a case.
#[derive(Clone, Copy, Debug)]
enum Crd {
    /// A CEL rule fails at the case's field; its message contains this text.
    Cel(&'static str),
    /// The OpenAPI schema (type, enum, bounds, pattern, length, required) fails at this path.
    Schema(&'static str),
    /// The apiserver rejects it by means we cannot run here (list-type set, strict field
    /// validation, object name rules).
    Apiserver,
    /// Only veg rejects it up front; without veg the Deployment would fail later.
    VegOnly,
}

struct Case {
    name: &'static str,
    /// JSON merge patch on `gateway1` of examples/gateway.yaml.
    patch: Value,
    field: &'static str,
    rule: Rule,
    crd: Crd,
}

fn case(name: &'static str, patch: Value, field: &'static str, rule: Rule, crd: Crd) -> Case {
    Case {
        name,
        patch,
        field,
        rule,
        crd,
    }
}

const IP_MESSAGE: &str = "must be an IPv4 address, an IPv6 address, or one of each";
const BLOCK_MESSAGE: &str = "must be an IP address or a CIDR";
const RATE_MESSAGE: &str = "must be a whole number of Mbps";
const SELECTOR_MESSAGE: &str = "a selector must have matchLabels or matchExpressions";
const POLICY_MESSAGE: &str = "Each policy MUST have at least one ipBlocks or subnets";

fn invalid_cases() -> Vec<Case> {
    use Crd::*;
    vec![
        // addresses
        case(
            "IPv4 out of range",
            json!({"spec": {"internalIPs": ["198.51.100.300"]}}),
            "spec.internalIPs[0]",
            Rule::Format,
            Cel(IP_MESSAGE),
        ),
        case(
            "two addresses of one family",
            json!({"spec": {"internalIPs": ["198.18.16.11,198.18.16.12"]}}),
            "spec.internalIPs[0]",
            Rule::Format,
            Cel(IP_MESSAGE),
        ),
        case(
            "three addresses in one entry",
            json!({"spec": {"externalIPs": ["198.51.100.11,2001:db8::11,198.51.100.12"]}}),
            "spec.externalIPs[0]",
            Rule::Format,
            Cel(IP_MESSAGE),
        ),
        case(
            "a CIDR where an address belongs",
            json!({"spec": {"externalIPs": ["198.51.100.0/24"]}}),
            "spec.externalIPs[0]",
            Rule::Format,
            Cel(IP_MESSAGE),
        ),
        case(
            "a space after the comma",
            json!({"spec": {"externalIPs": ["198.51.100.11, 2001:db8::11"]}}),
            "spec.externalIPs[0]",
            Rule::Format,
            Cel(IP_MESSAGE),
        ),
        case(
            "IPv4-mapped IPv6 address",
            json!({"spec": {"internalIPs": ["::ffff:198.18.16.11"]}}),
            "spec.internalIPs[0]",
            Rule::Format,
            Cel(IP_MESSAGE),
        ),
        case(
            "fewer internal IPs than replicas",
            json!({"spec": {"replicas": 3, "internalIPs": ["198.18.16.11", "198.18.16.12"]}}),
            "spec.internalIPs",
            Rule::TooFewAddresses,
            Cel("Size of Internal IPs MUST be equal to or greater than Replicas"),
        ),
        case(
            "fewer external IPs than replicas",
            json!({"spec": {"replicas": 2, "externalIPs": ["198.51.100.11"]}}),
            "spec.externalIPs",
            Rule::TooFewAddresses,
            Cel("Size of External IPs MUST be equal to or greater than Replicas"),
        ),
        case(
            "internal IPs and pool together",
            json!({"spec": {"internalIPs": ["198.18.16.11"], "internalIPPool": "pool1"}}),
            "spec.internalIPPool",
            Rule::MutuallyExclusive,
            Cel("internalIPs and internalIPPool are mutually exclusive"),
        ),
        case(
            "external IPs and pool together",
            json!({"spec": {"externalIPs": ["198.51.100.11"], "externalIPPool": "pool1"}}),
            "spec.externalIPPool",
            Rule::MutuallyExclusive,
            Cel("externalIPs and externalIPPool are mutually exclusive"),
        ),
        case(
            "a repeated internal IP",
            json!({"spec": {"internalIPs": ["198.18.16.11", "198.18.16.11"]}}),
            "spec.internalIPs[1]",
            Rule::Duplicate,
            Apiserver,
        ),
        // policies and selectors
        case(
            "CIDR prefix too long",
            json!({"spec": {"policies": [{"ipBlocks": ["198.18.0.0/33"]}]}}),
            "spec.policies[0].ipBlocks[0]",
            Rule::Format,
            Cel(BLOCK_MESSAGE),
        ),
        case(
            "a name where a CIDR belongs",
            json!({"spec": {"policies": [{"ipBlocks": ["subnet1"]}]}}),
            "spec.policies[0].ipBlocks[0]",
            Rule::Format,
            Cel(BLOCK_MESSAGE),
        ),
        case(
            "IPv6 prefix too long",
            json!({"spec": {"policies": [{"snat": true, "ipBlocks": ["2001:db8::/129"]}]}}),
            "spec.policies[0].ipBlocks[0]",
            Rule::Format,
            Cel(BLOCK_MESSAGE),
        ),
        case(
            "no policy and no selector",
            json!({"spec": {"policies": null, "selectors": null}}),
            "spec",
            Rule::NoTraffic,
            Cel("Each VPC Egress Gateway MUST have at least one policy or selector"),
        ),
        case(
            "a policy with no source",
            json!({"spec": {"policies": [{"snat": true}]}}),
            "spec.policies[0]",
            Rule::Required,
            Cel(POLICY_MESSAGE),
        ),
        case(
            "a policy with empty source lists",
            json!({"spec": {"policies": [{"ipBlocks": [], "subnets": []}]}}),
            "spec.policies[0]",
            Rule::Required,
            Cel(POLICY_MESSAGE),
        ),
        case(
            "an empty subnet name",
            json!({"spec": {"policies": [{"subnets": [""]}]}}),
            "spec.policies[0].subnets[0]",
            Rule::Required,
            Schema("spec.policies[0].subnets[0]"),
        ),
        case(
            "an empty namespace selector",
            json!({"spec": {"selectors": [{"namespaceSelector": {}}]}}),
            "spec.selectors[0].namespaceSelector",
            Rule::Required,
            Cel(SELECTOR_MESSAGE),
        ),
        case(
            "an empty pod selector",
            json!({"spec": {"selectors": [{"podSelector": {}}]}}),
            "spec.selectors[0].podSelector",
            Rule::Required,
            Cel(SELECTOR_MESSAGE),
        ),
        case(
            "a selector operator without values",
            json!({"spec": {"selectors": [{"podSelector": {"matchExpressions": [{"key": "app", "operator": "In"}]}}]}}),
            "spec.selectors[0].podSelector.matchExpressions[0]",
            Rule::Unsupported,
            VegOnly,
        ),
        // scalar bounds and enums
        case(
            "replicas 11",
            json!({"spec": {"replicas": 11}}),
            "spec.replicas",
            Rule::Range,
            Schema("spec.replicas"),
        ),
        case(
            "negative replicas",
            json!({"spec": {"replicas": -1}}),
            "spec.replicas",
            Rule::Range,
            Schema("spec.replicas"),
        ),
        case(
            "replicas as text",
            json!({"spec": {"replicas": "two"}}),
            "spec.replicas",
            Rule::Type,
            Schema("spec.replicas"),
        ),
        case(
            "minRX 0",
            json!({"spec": {"bfd": {"enabled": true, "minRX": 0}}}),
            "spec.bfd.minRX",
            Rule::Range,
            Schema("spec.bfd.minRX"),
        ),
        case(
            "minTX above an hour",
            json!({"spec": {"bfd": {"minTX": 3_600_001}}}),
            "spec.bfd.minTX",
            Rule::Range,
            Schema("spec.bfd.minTX"),
        ),
        case(
            "multiplier wider than 8 bits",
            json!({"spec": {"bfd": {"multiplier": 256}}}),
            "spec.bfd.multiplier",
            Rule::Range,
            Schema("spec.bfd.multiplier"),
        ),
        case(
            "multiplier 0",
            json!({"spec": {"bfd": {"multiplier": 0}}}),
            "spec.bfd.multiplier",
            Rule::Range,
            Schema("spec.bfd.multiplier"),
        ),
        case(
            "BFD enabled as text",
            json!({"spec": {"bfd": {"enabled": "yes"}}}),
            "spec.bfd.enabled",
            Rule::Type,
            Schema("spec.bfd.enabled"),
        ),
        case(
            "unknown trafficPolicy",
            json!({"spec": {"trafficPolicy": "Nearest"}}),
            "spec.trafficPolicy",
            Rule::Type,
            Schema("spec.trafficPolicy"),
        ),
        case(
            "unknown podAntiAffinity",
            json!({"spec": {"podAntiAffinity": "Sometimes"}}),
            "spec.podAntiAffinity",
            Rule::Type,
            Schema("spec.podAntiAffinity"),
        ),
        case(
            "no external subnet",
            json!({"spec": {"externalSubnet": null}}),
            "spec.externalSubnet",
            Rule::Required,
            Schema("spec"),
        ),
        case(
            "an empty external subnet",
            json!({"spec": {"externalSubnet": ""}}),
            "spec.externalSubnet",
            Rule::Required,
            Schema("spec.externalSubnet"),
        ),
        case(
            "prefix with capitals",
            json!({"spec": {"prefix": "Veg-"}}),
            "spec.prefix",
            Rule::Format,
            Schema("spec.prefix"),
        ),
        case(
            "prefix ending in two dashes",
            json!({"spec": {"prefix": "veg--"}}),
            "spec.prefix",
            Rule::Format,
            Schema("spec.prefix"),
        ),
        // bandwidth
        case(
            "negative bandwidth",
            json!({"spec": {"bandwidth": {"ingress": -1}}}),
            "spec.bandwidth.ingress",
            Rule::Range,
            Cel(RATE_MESSAGE),
        ),
        case(
            "bandwidth beyond Kube-OVN's limit",
            json!({"spec": {"bandwidth": {"egress": 9_223_372_036_855_i64}}}),
            "spec.bandwidth.egress",
            Rule::Range,
            Cel(RATE_MESSAGE),
        ),
        case(
            "digit-only bandwidth beyond the limit",
            json!({"spec": {"bandwidth": {"ingress": "9223372036855"}}}),
            "spec.bandwidth.ingress",
            Rule::Range,
            Cel(RATE_MESSAGE),
        ),
        case(
            "bandwidth in an unknown unit",
            json!({"spec": {"bandwidth": {"egress": "1T"}}}),
            "spec.bandwidth.egress",
            Rule::Format,
            Cel(RATE_MESSAGE),
        ),
        // placement
        case(
            "an unknown node selector operator",
            json!({"spec": {"nodeSelector": [{"matchExpressions": [{"key": "zone", "operator": "Near", "values": ["a"]}]}]}}),
            "spec.nodeSelector[0].matchExpressions[0]",
            Rule::Unsupported,
            VegOnly,
        ),
        case(
            "an empty node selector term",
            json!({"spec": {"nodeSelector": [{}]}}),
            "spec.nodeSelector[0]",
            Rule::Required,
            VegOnly,
        ),
        case(
            "a field selector on a label",
            json!({"spec": {"nodeSelector": [{"matchFields": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}),
            "spec.nodeSelector[0].matchFields[0]",
            Rule::Unsupported,
            VegOnly,
        ),
        case(
            "a toleration Exists with a value",
            json!({"spec": {"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]}}),
            "spec.tolerations[0].value",
            Rule::Unsupported,
            VegOnly,
        ),
        // the object itself
        case(
            "a misspelt field",
            json!({"spec": {"externalSubent": "macvlan1"}}),
            "spec.externalSubent",
            Rule::UnknownField,
            Apiserver,
        ),
        case(
            "no name",
            json!({"metadata": {"name": null}}),
            "metadata.name",
            Rule::Required,
            Apiserver,
        ),
        // label selector syntax, as the apiserver checks labels (a CRD's selector is a plain
        // object to it, so only veg catches these)
        case(
            "a label key with a space",
            json!({"spec": {"selectors": [{"podSelector": {"matchLabels": {"app name": "web"}}}]}}),
            "spec.selectors[0].podSelector.matchLabels",
            Rule::Format,
            VegOnly,
        ),
        case(
            "a label value starting with a dash",
            json!({"spec": {"selectors": [{"podSelector": {"matchLabels": {"app": "-web"}}}]}}),
            "spec.selectors[0].podSelector.matchLabels[app]",
            Rule::Format,
            VegOnly,
        ),
        case(
            "an expression key with an uppercase prefix",
            json!({"spec": {"selectors": [{"namespaceSelector": {"matchExpressions": [
                {"key": "Team.example/name", "operator": "Exists"}]}}]}}),
            "spec.selectors[0].namespaceSelector.matchExpressions[0].key",
            Rule::Format,
            VegOnly,
        ),
        case(
            "a 64-character expression value",
            json!({"spec": {"selectors": [{"podSelector": {"matchExpressions": [
                {"key": "app", "operator": "In", "values": ["a".repeat(64)]}]}}]}}),
            "spec.selectors[0].podSelector.matchExpressions[0].values[0]",
            Rule::Format,
            VegOnly,
        ),
        // list sizes (Kube-OVN has no bound: 20 000 ipBlocks made a controller pass take 72 s)
        case(
            "513 ipBlocks in one policy",
            json!({"spec": {"policies": [{"snat": false, "ipBlocks": (0..513)
                .map(|i| format!("198.19.{}.{}", i / 256, i % 256))
                .collect::<Vec<_>>()}]}}),
            "spec.policies[0].ipBlocks",
            Rule::TooMany,
            Schema("spec.policies[0].ipBlocks"),
        ),
        case(
            "65 subnets in one policy",
            json!({"spec": {"policies": [{"snat": true, "subnets": (0..65)
                .map(|i| format!("subnet{i}"))
                .collect::<Vec<_>>()}]}}),
            "spec.policies[0].subnets",
            Rule::TooMany,
            Schema("spec.policies[0].subnets"),
        ),
        case(
            "33 policies",
            json!({"spec": {"policies": (0..33)
                .map(|i| json!({"snat": true, "ipBlocks": [format!("198.19.0.{i}")]}))
                .collect::<Vec<_>>()}}),
            "spec.policies",
            Rule::TooMany,
            Schema("spec.policies"),
        ),
        case(
            "33 selectors",
            json!({"spec": {"selectors": (0..33)
                .map(|i| json!({"podSelector": {"matchLabels": {"app": format!("a{i}")}}}))
                .collect::<Vec<_>>()}}),
            "spec.selectors",
            Rule::TooMany,
            Schema("spec.selectors"),
        ),
        case(
            "65 internal addresses",
            json!({"spec": {"internalIPs": (0..65)
                .map(|i| format!("198.18.16.{}", i + 11))
                .collect::<Vec<_>>()}}),
            "spec.internalIPs",
            Rule::TooMany,
            Schema("spec.internalIPs"),
        ),
    ]
}

#[test]
fn the_table_covers_at_least_25_invalid_specs() {
    assert!(
        invalid_cases().len() >= 25,
        "only {} cases",
        invalid_cases().len()
    );
}

#[test]
fn rust_rejects_each_case_with_its_field_and_rule_only() -> Result<()> {
    let base = base_gateway()?;
    for case in invalid_cases() {
        let object = merge(&base, &case.patch);
        let errors = rust_errors(&object);
        let found: Vec<(&str, Rule)> = errors.iter().map(|e| (e.field.as_str(), e.rule)).collect();
        ensure!(
            found == [(case.field, case.rule)],
            "{}: expected exactly [{} ({})], got {errors:#?}",
            case.name,
            case.field,
            case.rule.as_str()
        );
        ensure!(
            !errors[0].message.is_empty(),
            "{}: empty message",
            case.name
        );
    }
    Ok(())
}

#[test]
fn the_crd_rejects_each_case_where_the_apiserver_would() -> Result<()> {
    let schema = crd_schema()?;
    let base = base_gateway()?;
    for case in invalid_cases() {
        let object = merge(&base, &case.patch);
        let schema_paths = schema_errors(&schema, &object)?;
        match case.crd {
            Crd::Schema(path) => ensure!(
                schema_paths.iter().any(|found| found == path),
                "{}: the OpenAPI schema should reject {path}, it reported {schema_paths:?}",
                case.name
            ),
            Crd::Cel(message) => {
                ensure!(
                    schema_paths.is_empty(),
                    "{}: schema errors {schema_paths:?}",
                    case.name
                );
                let errors = cel_errors(&schema, &object, None);
                ensure!(
                    errors.len() == 1
                        && errors[0].field_path == case.field
                        && errors[0].message.contains(message),
                    "{}: expected one CEL failure at {} saying {message:?}, got {errors:#?}",
                    case.name,
                    case.field
                );
            }
            Crd::Apiserver | Crd::VegOnly => {
                ensure!(
                    schema_paths.is_empty(),
                    "{}: schema errors {schema_paths:?}",
                    case.name
                );
                let errors = cel_errors(&schema, &object, None);
                ensure!(
                    errors.is_empty(),
                    "{}: unexpected CEL failures {errors:#?}",
                    case.name
                );
            }
        }
    }
    Ok(())
}

/// Valid variants beyond the examples: edges of every rule.
fn valid_patches() -> Vec<Value> {
    vec![
        json!({}),
        json!({"spec": {"internalIPs": ["2001:db8:16::11"], "externalIPs": ["198.51.100.11"]}}),
        json!({"spec": {"internalIPs": ["2001:db8:16::11,198.18.16.11"]}}),
        json!({"spec": {"replicas": 2, "internalIPs": ["198.18.16.11", "198.18.16.12"]}}),
        json!({"spec": {"replicas": 0}}),
        json!({"spec": {"replicas": 10, "internalIPPool": "pool1", "externalIPPool": "pool2"}}),
        json!({"spec": {"policies": null}}),
        json!({"spec": {"selectors": null}}),
        json!({"spec": {"selectors": [{}, {"podSelector": {"matchLabels": {}}}]}}),
        json!({"spec": {"policies": [{"ipBlocks": ["198.51.100.7", "2001:db8::/32"]}, {"subnets": ["subnet1"]}]}}),
        json!({"spec": {"prefix": "veg."}}),
        json!({"spec": {"prefix": "a.b-c-"}}),
        json!({"spec": {"bandwidth": {"ingress": 0, "egress": "100M"}}}),
        json!({"spec": {"bandwidth": {"ingress": ".5Gi", "egress": "1.5G"}}}),
        json!({"spec": {"bandwidth": {"ingress": 9_223_372_036_854_i64, "egress": "9223372036854"}}}),
        json!({"spec": {"bfd": {"enabled": true, "minRX": 1, "minTX": 3_600_000, "multiplier": 255}}}),
        json!({"spec": {"trafficPolicy": "Local", "podAntiAffinity": "Preferred"}}),
        json!({"spec": {"nodeSelector": [{"matchLabels": {"a": "b"}}, {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node1"]}]}]}}),
        json!({"spec": {"tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}]}}),
        json!({"spec": {"resources": {"limits": {"cpu": "100m", "memory": "64Mi"}}}}),
    ]
}

#[test]
fn valid_gateways_pass_all_three_validators() -> Result<()> {
    let schema = crd_schema()?;
    let base = base_gateway()?;
    let mut objects = common::example_gateways()?;
    objects.extend(valid_patches().iter().map(|patch| merge(&base, patch)));
    for object in &objects {
        let rust = rust_errors(object);
        ensure!(rust.is_empty(), "veg rejects {object}: {rust:#?}");
        let schema_paths = schema_errors(&schema, object)?;
        ensure!(
            schema_paths.is_empty(),
            "the schema rejects {object}: {schema_paths:?}"
        );
        for old in [None, Some(object)] {
            let cel = cel_errors(&schema, object, old);
            ensure!(
                cel.is_empty(),
                "CEL rejects {object} (old: {}): {cel:#?}",
                old.is_some()
            );
        }
    }
    Ok(())
}

/// Prefix changes, as updates: (old prefix, new prefix), `None` for absent.
fn prefix_changes() -> [(Option<&'static str>, Option<&'static str>); 3] {
    [
        (Some("veg-"), Some("egress-")),
        (None, Some("veg-")),
        (Some("veg-"), None),
    ]
}

fn with_prefix(base: &Value, prefix: Option<&str>) -> Value {
    merge(base, &json!({"spec": {"prefix": prefix}}))
}

#[test]
fn the_prefix_is_immutable_in_both_validators() -> Result<()> {
    let schema = crd_schema()?;
    let base = base_gateway()?;
    let parse = |object: &Value| -> Result<veg_api::VpcEgressGateway> {
        Ok(serde_json::from_value(object.clone())?)
    };
    for (old_prefix, new_prefix) in prefix_changes() {
        let old = with_prefix(&base, old_prefix);
        let new = with_prefix(&base, new_prefix);
        let errors = veg_api::validate_update(&parse(&old)?, &parse(&new)?)
            .err()
            .unwrap_or_default();
        ensure!(
            errors.len() == 1
                && errors[0].field == "spec.prefix"
                && errors[0].rule == Rule::Immutable,
            "{old_prefix:?} -> {new_prefix:?}: {errors:#?}"
        );
        let cel = cel_errors(&schema, &new, Some(&old));
        ensure!(
            cel.len() == 1
                && cel[0].field_path == "spec.prefix"
                && cel[0].message == "This field is immutable.",
            "{old_prefix:?} -> {new_prefix:?}: {cel:#?}"
        );
    }
    let same = with_prefix(&base, Some("veg-"));
    ensure!(veg_api::validate_update(&parse(&same)?, &parse(&same)?).is_ok());
    ensure!(cel_errors(&schema, &same, Some(&same)).is_empty());
    Ok(())
}

/// Each CEL rule of the CRD fails for at least one case: a rule that can never fail, or that
/// does not compile, shows up here.
#[test]
fn every_cel_rule_is_exercised() -> Result<()> {
    let schema = crd_schema()?;
    let base = base_gateway()?;
    let declared: BTreeSet<String> = all_cel_rules(&schema).into_iter().collect();
    ensure!(
        declared.len() >= 11,
        "expected at least 11 distinct rules, found {declared:#?}"
    );

    let mut failed = BTreeSet::new();
    for case in invalid_cases() {
        let object = merge(&base, &case.patch);
        for error in cel_errors(&schema, &object, None) {
            ensure!(
                error.kind == kube_cel::ErrorKind::ValidationFailure,
                "{}: the rule did not evaluate: {error:#?}",
                case.name
            );
            failed.insert(error.rule);
        }
    }
    for (old_prefix, new_prefix) in prefix_changes() {
        let old = with_prefix(&base, old_prefix);
        for error in cel_errors(&schema, &with_prefix(&base, new_prefix), Some(&old)) {
            failed.insert(error.rule);
        }
    }
    let never_failed: Vec<&String> = declared.difference(&failed).collect();
    ensure!(
        never_failed.is_empty(),
        "rules no case makes fail: {never_failed:#?}"
    );
    Ok(())
}
