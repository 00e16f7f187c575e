//! Hand-written pieces of the CRD's OpenAPI schema: the CEL rules (`x-kubernetes-validations`)
//! and the shapes schemars cannot derive (int-or-string, list types).
//!
//! Kube-OVN's rules are kept word for word where they exist (so users see the messages they
//! know); the IP/CIDR format rules that Kube-OVN lost after v1.14 are back, written with the
//! Kubernetes CEL IP/CIDR library (`isIP`, `ip().family()`, `isCIDR`, Kubernetes ≥ 1.31).
//! The Rust twin of every rule is in `validate.rs`; tests evaluate both on the same objects.

use schemars::{Schema, SchemaGenerator, json_schema};
use serde_json::{Value, json};

/// A CEL rule as it appears in `x-kubernetes-validations`.
struct Rule {
    rule: &'static str,
    message: &'static str,
    field_path: Option<&'static str>,
}

impl Rule {
    fn to_json(&self) -> Value {
        let mut rule = json!({"rule": self.rule, "message": self.message});
        if let Some(path) = self.field_path {
            rule["fieldPath"] = json!(path);
        }
        rule
    }
}

fn rules(rules: &[Rule]) -> Value {
    Value::Array(rules.iter().map(Rule::to_json).collect())
}

/// Longest text an IP entry may hold: an IPv6 address, a comma and another (2 × 45 + 1),
/// rounded up. It bounds the CEL cost estimate the apiserver makes for the format rules.
const MAX_IP_ENTRY_LEN: u64 = 100;
/// Longest IP or CIDR text (an IPv6 CIDR is at most 43 characters).
const MAX_CIDR_LEN: u64 = 64;

/// Most entries each list of the spec may hold (Kube-OVN sets none). They bound the work one
/// object can ask of the apiserver's CEL checks and of every controller pass, far above what
/// a gateway needs: a large source set is a few subnets, not thousands of blocks.
pub mod limits {
    /// `internalIPs`, `externalIPs` (one entry per instance; replicas ≤ 10).
    pub const IP_ENTRIES: usize = 64;
    /// `selectors`.
    pub const SELECTORS: usize = 32;
    /// `policies`.
    pub const POLICIES: usize = 32;
    /// `policies[].ipBlocks`.
    pub const IP_BLOCKS: usize = 512;
    /// `policies[].subnets`.
    pub const SUBNETS: usize = 64;
    /// `nodeSelector`.
    pub const NODE_SELECTOR_TERMS: usize = 16;
    /// `tolerations`.
    pub const TOLERATIONS: usize = 32;
}

// ===== spec =====

/// Rules over the whole spec (Kube-OVN's five, plus prefix immutability).
pub(crate) fn spec_rules() -> Value {
    rules(&[
        Rule {
            rule: "!has(self.internalIPs) || size(self.internalIPs) == 0 || size(self.internalIPs) >= self.replicas",
            message: "Size of Internal IPs MUST be equal to or greater than Replicas",
            field_path: Some(".internalIPs"),
        },
        Rule {
            rule: "!has(self.externalIPs) || size(self.externalIPs) == 0 || size(self.externalIPs) >= self.replicas",
            message: "Size of External IPs MUST be equal to or greater than Replicas",
            field_path: Some(".externalIPs"),
        },
        Rule {
            rule: "!(has(self.internalIPs) && size(self.internalIPs) != 0 && has(self.internalIPPool) && size(self.internalIPPool) > 0)",
            message: "internalIPs and internalIPPool are mutually exclusive",
            field_path: Some(".internalIPPool"),
        },
        Rule {
            rule: "!(has(self.externalIPs) && size(self.externalIPs) != 0 && has(self.externalIPPool) && size(self.externalIPPool) > 0)",
            message: "externalIPs and externalIPPool are mutually exclusive",
            field_path: Some(".externalIPPool"),
        },
        Rule {
            rule: "(has(self.policies) && size(self.policies) != 0) || (has(self.selectors) && size(self.selectors) != 0)",
            message: "Each VPC Egress Gateway MUST have at least one policy or selector",
            field_path: None,
        },
        // Kube-OVN puts `self == oldSelf` on the field, which CEL skips when the field is added
        // or removed; comparing at the spec level closes that hole (the Deployment is named
        // after the prefix, so any change would orphan the old one).
        Rule {
            rule: "(has(self.prefix) ? self.prefix : '') == (has(oldSelf.prefix) ? oldSelf.prefix : '')",
            message: "This field is immutable.",
            field_path: Some(".prefix"),
        },
    ])
}

/// `policies[]`: a policy must name some source.
pub(crate) fn policy_rules() -> Value {
    rules(&[Rule {
        rule: "(has(self.ipBlocks) && size(self.ipBlocks) != 0) || (has(self.subnets) && size(self.subnets) != 0)",
        message: "Each policy MUST have at least one ipBlocks or subnets",
        field_path: None,
    }])
}

/// `selectors[].namespaceSelector` / `podSelector`: a present selector must say something;
/// omit it to select everything.
pub(crate) fn label_selector_rules() -> Value {
    rules(&[Rule {
        rule: "has(self.matchLabels) || has(self.matchExpressions)",
        message: "a selector must have matchLabels or matchExpressions; omit it to select all",
        field_path: None,
    }])
}

// ===== field shapes =====

/// `internalIPs` / `externalIPs`: a set of entries, one per instance, each `v4`, `v6` or `v4,v6`.
pub(crate) fn ip_entry_list(_: &mut SchemaGenerator) -> Schema {
    let item_rules = rules(&[Rule {
        rule: "self.split(',').size() <= 2 && self.split(',').all(a, isIP(a)) && (self.split(',').size() == 1 || ip(self.split(',')[0]).family() != ip(self.split(',')[1]).family())",
        message: "must be an IPv4 address, an IPv6 address, or one of each separated by a comma",
        field_path: None,
    }]);
    json_schema!({
        "type": "array",
        "x-kubernetes-list-type": "set",
        "maxItems": limits::IP_ENTRIES,
        "items": {
            "type": "string",
            "maxLength": MAX_IP_ENTRY_LEN,
            "x-kubernetes-validations": item_rules,
        },
    })
}

/// `policies[].ipBlocks`: a set of IPs or CIDRs of either family.
pub(crate) fn ip_block_list(_: &mut SchemaGenerator) -> Schema {
    let item_rules = rules(&[Rule {
        rule: "isIP(self) || isCIDR(self)",
        message: "must be an IP address or a CIDR",
        field_path: None,
    }]);
    json_schema!({
        "type": "array",
        "x-kubernetes-list-type": "set",
        "maxItems": limits::IP_BLOCKS,
        "items": {
            "type": "string",
            "maxLength": MAX_CIDR_LEN,
            "x-kubernetes-validations": item_rules,
        },
    })
}

/// `policies[].subnets`: a set of Subnet names.
pub(crate) fn subnet_name_list(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "x-kubernetes-list-type": "set",
        "maxItems": limits::SUBNETS,
        "items": {"type": "string", "minLength": 1},
    })
}

/// Largest integer bandwidth Kube-OVN accepts, in Mbps (`MaxInt64 / 1e6`).
pub const MAX_BANDWIDTH_MBPS: i64 = 9_223_372_036_854;

/// `bandwidth.ingress` / `egress`: an integer in Mbps or a quantity string in bit/s. A
/// digit-only string is Mbps too (Kube-OVN reads it so), and gets the same bound. Written
/// without `type()` so that portable CEL evaluators check it as the apiserver does.
pub(crate) fn bandwidth_rate(_: &mut SchemaGenerator) -> Schema {
    let rate_rules = rules(&[Rule {
        rule: "string(self).matches('^([0-9]+|([0-9]+([.][0-9]+)?|[.][0-9]+)(M|Mi|G|Gi))$') && (!string(self).matches('^[0-9]+$') || (size(string(self)) <= 13 && int(string(self)) <= 9223372036854))",
        message: "must be a whole number of Mbps between 0 and 9223372036854, or a quantity such as 100M, 1.5G or 1Gi",
        field_path: None,
    }]);
    json_schema!({
        "x-kubernetes-int-or-string": true,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "x-kubernetes-validations": rate_rules,
    })
}

/// A list that is a map keyed by `type` (`status.conditions`), so server-side apply merges
/// per item.
pub(crate) fn list_keyed_by_type(item: Schema) -> Schema {
    json_schema!({
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
        "items": item,
    })
}
