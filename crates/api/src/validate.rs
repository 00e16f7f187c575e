//! Validation of a VpcEgressGateway in Rust: every rule of the CRD (so the controller and the
//! lab reject what the apiserver would, even when the installed CRD is older) plus checks the
//! apiserver leaves to the Deployment (selector operators, node selector terms).
//!
//! Every error names its field path, in Kubernetes' notation (`spec.policies[0].ipBlocks[1]`),
//! and the [`Rule`] it broke.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::{NodeSelectorRequirement, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::gateway::{
    BandwidthRate, NodeSelector, Policy, Selector, VpcEgressGateway, VpcEgressGatewaySpec,
};
use crate::names;
use crate::schema::{MAX_BANDWIDTH_MBPS, limits};

/// Most replicas a gateway may have.
pub const MAX_REPLICAS: i32 = 10;
/// Bounds of `bfd.minRX` / `bfd.minTX`, in ms.
pub const BFD_INTERVAL_RANGE: (i32, i32) = (1, 3_600_000);
/// Bounds of `bfd.multiplier`.
pub const BFD_MULTIPLIER_RANGE: (i32, i32) = (1, 255);
/// Longest object name Kubernetes accepts for a Deployment (a DNS-1123 subdomain).
const MAX_WORKLOAD_NAME: usize = 253;

// ===== errors =====

/// The rule a field broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rule {
    /// A required field is missing or empty.
    Required,
    /// The value is not of the expected type or enum (a parse error).
    Type,
    /// A field the API does not know.
    UnknownField,
    /// A number outside its bounds.
    Range,
    /// A string that does not have the expected form (IP, CIDR, name pattern, quantity).
    Format,
    /// A repeated entry in a set.
    Duplicate,
    /// Fewer fixed addresses than replicas.
    TooFewAddresses,
    /// Fixed addresses and an IP pool given together.
    MutuallyExclusive,
    /// Neither a policy nor a selector.
    NoTraffic,
    /// A field that may not change after creation.
    Immutable,
    /// An operator or value combination Kubernetes does not accept.
    Unsupported,
    /// A list longer than its `maxItems`.
    TooMany,
}

impl Rule {
    /// A short, stable name of the rule, for logs, metrics and tests.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Required => "required",
            Rule::Type => "type",
            Rule::UnknownField => "unknown-field",
            Rule::Range => "range",
            Rule::Format => "format",
            Rule::Duplicate => "duplicate",
            Rule::TooFewAddresses => "too-few-addresses",
            Rule::MutuallyExclusive => "mutually-exclusive",
            Rule::NoTraffic => "no-policy-or-selector",
            Rule::Immutable => "immutable",
            Rule::Unsupported => "unsupported",
            Rule::TooMany => "too-many",
        }
    }
}

/// One invalid field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// Path of the field, e.g. `spec.policies[0].ipBlocks[1]`.
    pub field: String,
    /// The rule it broke.
    pub rule: Rule,
    /// What is wrong, for people.
    pub message: String,
}

impl FieldError {
    fn new(field: impl Into<String>, rule: Rule, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            rule,
            message: message.into(),
        }
    }
}

/// Collects errors while walking an object.
#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, field: impl Into<String>, rule: Rule, message: impl Into<String>) {
        self.0.push(FieldError::new(field, rule, message));
    }

    fn into_result(self) -> Result<(), Vec<FieldError>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }
}

// ===== entry points =====

/// Checks a gateway; every broken rule is reported, not only the first.
pub fn validate(gateway: &VpcEgressGateway) -> Result<(), Vec<FieldError>> {
    let mut errors = Errors::default();
    let name = gateway.name_or_empty();
    if name.is_empty() {
        errors.push("metadata.name", Rule::Required, "a name is required");
    }
    validate_spec(&gateway.spec, name, &mut errors);
    errors.into_result()
}

/// Checks a change from `old` to `new`: `new` as [`validate`] does, plus the fields that may
/// not change.
pub fn validate_update(
    old: &VpcEgressGateway,
    new: &VpcEgressGateway,
) -> Result<(), Vec<FieldError>> {
    let mut errors = Errors(validate(new).err().unwrap_or_default());
    if old.spec.prefix != new.spec.prefix {
        errors.push(
            "spec.prefix",
            Rule::Immutable,
            format!(
                "This field is immutable. (was {:?}, now {:?})",
                old.spec.prefix, new.spec.prefix
            ),
        );
    }
    errors.into_result()
}

// ===== spec =====

fn validate_spec(spec: &VpcEgressGatewaySpec, name: &str, errors: &mut Errors) {
    for (field, length, limit) in [
        (
            "spec.internalIPs",
            spec.internal_ips.len(),
            limits::IP_ENTRIES,
        ),
        (
            "spec.externalIPs",
            spec.external_ips.len(),
            limits::IP_ENTRIES,
        ),
        ("spec.selectors", spec.selectors.len(), limits::SELECTORS),
        ("spec.policies", spec.policies.len(), limits::POLICIES),
        (
            "spec.nodeSelector",
            spec.node_selector.len(),
            limits::NODE_SELECTOR_TERMS,
        ),
        (
            "spec.tolerations",
            spec.tolerations.len(),
            limits::TOLERATIONS,
        ),
    ] {
        check_length(field, length, limit, errors);
    }
    if !(0..=MAX_REPLICAS).contains(&spec.replicas) {
        errors.push(
            "spec.replicas",
            Rule::Range,
            format!(
                "must be between 0 and {MAX_REPLICAS}, got {}",
                spec.replicas
            ),
        );
    }
    validate_prefix(&spec.prefix, name, errors);
    if spec.external_subnet.is_empty() {
        errors.push(
            "spec.externalSubnet",
            Rule::Required,
            "the subnet of the external leg is required",
        );
    }
    validate_addresses(
        "internal",
        &spec.internal_ips,
        &spec.internal_ip_pool,
        spec.replicas,
        errors,
    );
    validate_addresses(
        "external",
        &spec.external_ips,
        &spec.external_ip_pool,
        spec.replicas,
        errors,
    );
    if spec.policies.is_empty() && spec.selectors.is_empty() {
        errors.push(
            "spec",
            Rule::NoTraffic,
            "Each VPC Egress Gateway MUST have at least one policy or selector",
        );
    }
    for (index, policy) in spec.policies.iter().enumerate() {
        validate_policy(&format!("spec.policies[{index}]"), policy, errors);
    }
    for (index, selector) in spec.selectors.iter().enumerate() {
        validate_selector(&format!("spec.selectors[{index}]"), selector, errors);
    }
    validate_bfd(spec, errors);
    for (index, term) in spec.node_selector.iter().enumerate() {
        validate_node_selector(&format!("spec.nodeSelector[{index}]"), term, errors);
    }
    for (index, toleration) in spec.tolerations.iter().enumerate() {
        validate_toleration(&format!("spec.tolerations[{index}]"), toleration, errors);
    }
    if let Some(bandwidth) = &spec.bandwidth {
        for (field, rate) in [
            ("ingress", &bandwidth.ingress),
            ("egress", &bandwidth.egress),
        ] {
            if let Some(rate) = rate {
                validate_bandwidth(&format!("spec.bandwidth.{field}"), rate, errors);
            }
        }
    }
}

fn validate_prefix(prefix: &str, name: &str, errors: &mut Errors) {
    if !is_valid_prefix(prefix) {
        errors.push(
            "spec.prefix",
            Rule::Format,
            format!(
                "{prefix:?} must be lower-case DNS labels separated by '.', optionally ending in '-' or '.'"
            ),
        );
    }
    let workload = names::deployment_name(prefix, name);
    if workload.len() > MAX_WORKLOAD_NAME {
        errors.push(
            "spec.prefix",
            Rule::Format,
            format!(
                "the workload name <prefix><name> has {} characters, more than {MAX_WORKLOAD_NAME}",
                workload.len()
            ),
        );
    }
}

/// `internalIPs`/`externalIPs` with their pool: format, uniqueness, count, exclusivity.
fn validate_addresses(leg: &str, ips: &[String], pool: &str, replicas: i32, errors: &mut Errors) {
    let field = format!("spec.{leg}IPs");
    for (index, entry) in ips.iter().enumerate() {
        if let Err(error) = check_ip_entry(entry) {
            errors.push(format!("{field}[{index}]"), Rule::Format, error.to_string());
        }
    }
    check_set(&field, ips, errors);
    let count = ips.len();
    if count != 0 && i32::try_from(count).unwrap_or(i32::MAX) < replicas {
        let title = capitalize(leg);
        errors.push(
            field.clone(),
            Rule::TooFewAddresses,
            format!(
                "Size of {title} IPs MUST be equal to or greater than Replicas ({count} < {replicas})"
            ),
        );
    }
    if count != 0 && !pool.is_empty() {
        errors.push(
            format!("spec.{leg}IPPool"),
            Rule::MutuallyExclusive,
            format!("{leg}IPs and {leg}IPPool are mutually exclusive"),
        );
    }
}

/// Why an address field (`internalIPs`/`externalIPs` entry, `ipBlocks` entry, BFD port IP) is
/// not in the form the schema's CEL accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpFormatError {
    /// An address entry with more than two parts.
    #[error("{entry:?} {IP_ENTRY_FORMAT}")]
    TooManyParts {
        /// The entry as written.
        entry: String,
    },
    /// A part that is not an IP address.
    #[error("{entry:?} {IP_ENTRY_FORMAT}: {part:?} is not an IP address")]
    NotAnAddress {
        /// The entry as written.
        entry: String,
        /// The part that failed.
        part: String,
    },
    /// Two parts of one family.
    #[error("{entry:?} {IP_ENTRY_FORMAT}: both are of the same family")]
    SameFamily {
        /// The entry as written.
        entry: String,
    },
    /// An ipBlocks entry that is neither an address nor a CIDR.
    #[error("{block:?} must be an IP address or a CIDR")]
    NotABlock {
        /// The entry as written.
        block: String,
    },
}

const IP_ENTRY_FORMAT: &str =
    "must be an IPv4 address, an IPv6 address, or one of each separated by a comma";

/// One entry of `internalIPs`/`externalIPs`: `v4`, `v6` or one of each joined by a comma.
pub fn check_ip_entry(entry: &str) -> Result<Vec<IpAddr>, IpFormatError> {
    let parts: Vec<&str> = entry.split(',').collect();
    if parts.len() > 2 {
        return Err(IpFormatError::TooManyParts {
            entry: entry.to_owned(),
        });
    }
    let mut addresses = Vec::with_capacity(parts.len());
    for part in parts {
        match parse_k8s_ip(part) {
            Some(address) => addresses.push(address),
            None => {
                return Err(IpFormatError::NotAnAddress {
                    entry: entry.to_owned(),
                    part: part.to_owned(),
                });
            }
        }
    }
    if let [first, second] = addresses[..]
        && first.is_ipv4() == second.is_ipv4()
    {
        return Err(IpFormatError::SameFamily {
            entry: entry.to_owned(),
        });
    }
    Ok(addresses)
}

/// An IP as Kubernetes' CEL `isIP` accepts it: no zone, no IPv4-mapped IPv6.
fn parse_k8s_ip(text: &str) -> Option<IpAddr> {
    let address: IpAddr = text.parse().ok()?;
    match address {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => None,
        address => Some(address),
    }
}

/// An IP or a CIDR, as `isIP(x) || isCIDR(x)` accepts it.
pub fn check_ip_block(block: &str) -> Result<IpNet, IpFormatError> {
    if let Some(address) = parse_k8s_ip(block) {
        return Ok(IpNet::from(address));
    }
    match block.parse::<IpNet>() {
        Ok(net) if parse_k8s_ip(&net.addr().to_string()).is_some() && !block.contains('%') => {
            Ok(net)
        }
        _ => Err(IpFormatError::NotABlock {
            block: block.to_owned(),
        }),
    }
}

fn validate_policy(field: &str, policy: &Policy, errors: &mut Errors) {
    if policy.ip_blocks.is_empty() && policy.subnets.is_empty() {
        errors.push(
            field,
            Rule::Required,
            "Each policy MUST have at least one ipBlocks or subnets",
        );
    }
    for (index, block) in policy.ip_blocks.iter().enumerate() {
        if let Err(error) = check_ip_block(block) {
            errors.push(
                format!("{field}.ipBlocks[{index}]"),
                Rule::Format,
                error.to_string(),
            );
        }
    }
    check_set(&format!("{field}.ipBlocks"), &policy.ip_blocks, errors);
    check_length(
        &format!("{field}.ipBlocks"),
        policy.ip_blocks.len(),
        limits::IP_BLOCKS,
        errors,
    );
    check_length(
        &format!("{field}.subnets"),
        policy.subnets.len(),
        limits::SUBNETS,
        errors,
    );
    for (index, subnet) in policy.subnets.iter().enumerate() {
        if subnet.is_empty() {
            errors.push(
                format!("{field}.subnets[{index}]"),
                Rule::Required,
                "a subnet name must not be empty",
            );
        }
    }
    check_set(&format!("{field}.subnets"), &policy.subnets, errors);
}

fn validate_selector(field: &str, selector: &Selector, errors: &mut Errors) {
    for (member, label_selector) in [
        ("namespaceSelector", &selector.namespace_selector),
        ("podSelector", &selector.pod_selector),
    ] {
        if let Some(label_selector) = label_selector {
            validate_label_selector(&format!("{field}.{member}"), label_selector, errors);
        }
    }
}

fn validate_label_selector(field: &str, selector: &LabelSelector, errors: &mut Errors) {
    if selector.match_labels.is_none() && selector.match_expressions.is_none() {
        errors.push(
            field,
            Rule::Required,
            "a selector must have matchLabels or matchExpressions; omit it to select all",
        );
    }
    for (key, value) in selector.match_labels.iter().flatten() {
        if let Some(problem) = label_key_problem(key) {
            errors.push(
                format!("{field}.matchLabels"),
                Rule::Format,
                format!("key {key:?}: {problem}"),
            );
        }
        if let Some(problem) = label_value_problem(value) {
            errors.push(
                format!("{field}.matchLabels[{key}]"),
                Rule::Format,
                format!("value {value:?}: {problem}"),
            );
        }
    }
    for (index, requirement) in selector.match_expressions.iter().flatten().enumerate() {
        let at = format!("{field}.matchExpressions[{index}]");
        if let Some(problem) = label_key_problem(&requirement.key) {
            errors.push(
                format!("{at}.key"),
                Rule::Format,
                format!("key {:?}: {problem}", requirement.key),
            );
        }
        for (value_index, value) in requirement.values.iter().flatten().enumerate() {
            if let Some(problem) = label_value_problem(value) {
                errors.push(
                    format!("{at}.values[{value_index}]"),
                    Rule::Format,
                    format!("value {value:?}: {problem}"),
                );
            }
        }
        let values = requirement.values.as_deref().unwrap_or_default();
        let problem = match requirement.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => Some("In and NotIn need at least one value"),
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                Some("Exists and DoesNotExist take no values")
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => None,
            _ => Some("operator must be one of In, NotIn, Exists, DoesNotExist"),
        };
        if let Some(problem) = problem {
            errors.push(
                format!("{field}.matchExpressions[{index}]"),
                Rule::Unsupported,
                problem,
            );
        }
    }
}

/// The name part of a label key or a label value, as the apiserver checks it.
const LABEL_NAME_RULE: &str = "must be 63 characters or less, and consist of alphanumeric \
     characters, '-', '_' or '.', starting and ending with an alphanumeric character";

fn is_label_name(text: &str) -> bool {
    let bytes = text.as_bytes();
    let edge = |byte: &u8| byte.is_ascii_alphanumeric();
    text.len() <= 63
        && bytes.first().is_some_and(edge)
        && bytes.last().is_some_and(edge)
        && bytes
            .iter()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'))
}

/// Why `key` is not a label key (`[prefix/]name`, the prefix a DNS subdomain), if it is not.
fn label_key_problem(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && !is_dns_subdomain(prefix)
    {
        return Some(format!(
            "prefix {prefix:?} must be a lowercase DNS subdomain of 253 characters or less"
        ));
    }
    (!is_label_name(name)).then(|| format!("name part {LABEL_NAME_RULE}"))
}

/// Why `value` is not a label value (empty, or a name as above), if it is not.
fn label_value_problem(value: &str) -> Option<String> {
    (!value.is_empty() && !is_label_name(value)).then(|| format!("a label value {LABEL_NAME_RULE}"))
}

fn validate_bfd(spec: &VpcEgressGatewaySpec, errors: &mut Errors) {
    let bfd = &spec.bfd;
    let (low, high) = BFD_INTERVAL_RANGE;
    for (field, value) in [("minRX", bfd.min_rx), ("minTX", bfd.min_tx)] {
        if !(low..=high).contains(&value) {
            errors.push(
                format!("spec.bfd.{field}"),
                Rule::Range,
                format!("must be between {low} and {high} ms, got {value}"),
            );
        }
    }
    let (low, high) = BFD_MULTIPLIER_RANGE;
    if !(low..=high).contains(&bfd.multiplier) {
        errors.push(
            "spec.bfd.multiplier",
            Rule::Range,
            format!(
                "must be between {low} and {high} (an 8-bit BFD field), got {}",
                bfd.multiplier
            ),
        );
    }
}

fn validate_node_selector(field: &str, term: &NodeSelector, errors: &mut Errors) {
    if term.match_labels.is_empty()
        && term.match_expressions.is_empty()
        && term.match_fields.is_empty()
    {
        errors.push(
            field,
            Rule::Required,
            "an empty node selector term matches no node; give matchLabels, matchExpressions or matchFields",
        );
    }
    for (index, requirement) in term.match_expressions.iter().enumerate() {
        if let Some(problem) = node_expression_problem(requirement) {
            errors.push(
                format!("{field}.matchExpressions[{index}]"),
                Rule::Unsupported,
                problem,
            );
        }
    }
    for (index, requirement) in term.match_fields.iter().enumerate() {
        if let Some(problem) = node_field_problem(requirement) {
            errors.push(
                format!("{field}.matchFields[{index}]"),
                Rule::Unsupported,
                problem,
            );
        }
    }
}

/// Kubernetes' rules for a node affinity label requirement.
fn node_expression_problem(requirement: &NodeSelectorRequirement) -> Option<String> {
    let values = requirement.values.as_deref().unwrap_or_default();
    match requirement.operator.as_str() {
        "In" | "NotIn" if values.is_empty() => Some("In and NotIn need at least one value".into()),
        "Exists" | "DoesNotExist" if !values.is_empty() => {
            Some("Exists and DoesNotExist take no values".into())
        }
        "Gt" | "Lt" if values.len() != 1 || values[0].parse::<i64>().is_err() => {
            Some("Gt and Lt take exactly one integer value".into())
        }
        "In" | "NotIn" | "Exists" | "DoesNotExist" | "Gt" | "Lt" => None,
        other => Some(format!(
            "operator {other:?} must be one of In, NotIn, Exists, DoesNotExist, Gt, Lt"
        )),
    }
}

/// Kubernetes' rules for a node affinity field requirement: only `metadata.name`, In/NotIn,
/// one value.
fn node_field_problem(requirement: &NodeSelectorRequirement) -> Option<String> {
    let values = requirement.values.as_deref().unwrap_or_default();
    if requirement.key != "metadata.name" {
        return Some(format!(
            "key {:?} is not supported; only metadata.name",
            requirement.key
        ));
    }
    match requirement.operator.as_str() {
        "In" | "NotIn" if values.len() == 1 => None,
        "In" | "NotIn" => Some("In and NotIn on metadata.name take exactly one value".into()),
        other => Some(format!("operator {other:?} must be In or NotIn")),
    }
}

fn validate_toleration(field: &str, toleration: &Toleration, errors: &mut Errors) {
    let operator = toleration.operator.as_deref().unwrap_or("Equal");
    let value = toleration.value.as_deref().unwrap_or("");
    match operator {
        "Exists" if !value.is_empty() => errors.push(
            format!("{field}.value"),
            Rule::Unsupported,
            "must be empty when the operator is Exists",
        ),
        "Exists" | "Equal" => {}
        other => errors.push(
            format!("{field}.operator"),
            Rule::Unsupported,
            format!("{other:?} must be Exists or Equal"),
        ),
    }
    if let Some(effect) = toleration.effect.as_deref()
        && !matches!(effect, "" | "NoSchedule" | "PreferNoSchedule" | "NoExecute")
    {
        errors.push(
            format!("{field}.effect"),
            Rule::Unsupported,
            format!("{effect:?} must be NoSchedule, PreferNoSchedule or NoExecute"),
        );
    }
}

fn validate_bandwidth(field: &str, rate: &BandwidthRate, errors: &mut Errors) {
    let mbps = match rate {
        BandwidthRate::Mbps(mbps) => Some(*mbps),
        BandwidthRate::Quantity(quantity) if !is_bandwidth_quantity(quantity) => {
            errors.push(
                field,
                Rule::Format,
                format!(
                    "{quantity:?} must be a whole number of Mbps or a quantity such as 100M, 1.5G or 1Gi"
                ),
            );
            return;
        }
        // A digit-only string is Mbps; past i64 it is out of range as well.
        BandwidthRate::Quantity(quantity) if quantity.bytes().all(|b| b.is_ascii_digit()) => {
            Some(quantity.parse::<i64>().unwrap_or(i64::MAX))
        }
        BandwidthRate::Quantity(_) => None,
    };
    if let Some(mbps) = mbps
        && !(0..=MAX_BANDWIDTH_MBPS).contains(&mbps)
    {
        errors.push(
            field,
            Rule::Range,
            format!("must be between 0 and {MAX_BANDWIDTH_MBPS} Mbps, got {mbps}"),
        );
    }
}

// ===== helpers =====

/// Reports entries that repeat in a list Kubernetes treats as a set.
/// A list within its `maxItems` (the CRD says the same).
fn check_length(field: &str, length: usize, limit: usize, errors: &mut Errors) {
    if length > limit {
        errors.push(
            field,
            Rule::TooMany,
            format!("Too many: {length}: must have at most {limit} items"),
        );
    }
}

fn check_set(field: &str, entries: &[String], errors: &mut Errors) {
    let mut seen = BTreeSet::new();
    for (index, entry) in entries.iter().enumerate() {
        if !seen.insert(entry) {
            errors.push(
                format!("{field}[{index}]"),
                Rule::Duplicate,
                format!("{entry:?} is listed more than once"),
            );
        }
    }
}

/// `^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*[-\.]?$`, by hand.
fn is_valid_prefix(prefix: &str) -> bool {
    if prefix.is_empty() {
        return true;
    }
    let body = prefix
        .strip_suffix('-')
        .or_else(|| prefix.strip_suffix('.'))
        .unwrap_or(prefix);
    !body.is_empty() && body.split('.').all(is_dns_label)
}

/// Whether `name` is a DNS-1123 subdomain, the form of most Kubernetes object names (so it
/// holds no `/` and is never `.` or `..`: safe as a file name).
pub fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_dns_label)
}

fn is_dns_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    let alphanumeric = |byte: &u8| byte.is_ascii_lowercase() || byte.is_ascii_digit();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            alphanumeric(first)
                && alphanumeric(last)
                && bytes.iter().all(|byte| alphanumeric(byte) || *byte == b'-')
        }
        _ => false,
    }
}

/// `^([0-9]+|([0-9]+(\.[0-9]+)?|\.[0-9]+)(M|Mi|G|Gi))$`, by hand.
fn is_bandwidth_quantity(text: &str) -> bool {
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_digit());
    if digits(text) {
        return true;
    }
    let Some(number) = ["Mi", "Gi", "M", "G"]
        .iter()
        .find_map(|suffix| text.strip_suffix(suffix))
    else {
        return false;
    };
    match number.split_once('.') {
        None => digits(number),
        Some((whole, fraction)) => (whole.is_empty() || digits(whole)) && digits(fraction),
    }
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_pattern() {
        for good in ["", "a", "veg-", "veg.", "a.b", "a-b.c-d-", "0", "x9."] {
            assert!(is_valid_prefix(good), "{good:?} should be accepted");
        }
        for bad in [
            "-", ".", "A", "a--", "a.-", "-a", "a..b", "a_b", "a-.", "a b",
        ] {
            assert!(!is_valid_prefix(bad), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn bandwidth_quantities() {
        for good in ["100", "100M", "1.5G", ".5Gi", "1Gi", "10Mi"] {
            assert!(is_bandwidth_quantity(good), "{good:?} should be accepted");
        }
        for bad in [
            "", "M", "1.G", "1.5", "100K", "1e3M", "-1M", "1.5.5G", "1 G",
        ] {
            assert!(!is_bandwidth_quantity(bad), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn ip_entries() {
        assert!(check_ip_entry("198.51.100.10").is_ok());
        assert!(check_ip_entry("2001:db8::10").is_ok());
        assert_eq!(
            check_ip_entry("198.51.100.10,2001:db8::10").map(|ips| ips.len()),
            Ok(2)
        );
        for bad in [
            "",
            "198.51.100.10,198.51.100.11",
            "2001:db8::1,2001:db8::2",
            "198.51.100.10,2001:db8::10,198.51.100.11",
            "198.51.100.0/24",
            "::ffff:198.51.100.1",
            "198.51.100.256",
            "198.51.100.10, 2001:db8::10",
        ] {
            assert!(check_ip_entry(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn ip_blocks() {
        for good in [
            "198.18.0.0/15",
            "198.51.100.7",
            "2001:db8::/32",
            "2001:db8::1",
            "198.51.100.7/24",
        ] {
            assert!(check_ip_block(good).is_ok(), "{good:?} should be accepted");
        }
        for bad in [
            "198.18.0.0/33",
            "2001:db8::/129",
            "subnet1",
            "",
            "::ffff:198.51.100.0/120",
        ] {
            assert!(check_ip_block(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
