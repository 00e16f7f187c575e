//! The `VpcEgressGateway` resource (`kubeovn.io/v1`), serde-compatible with Kube-OVN's JSON
//! (`pkg/apis/kubeovn/v1/vpc-egress-gateway.go`).
//!
//! Empty strings and lists are "unset", as in Go: they are skipped when serialising, so a
//! round trip of a Kube-OVN object gives the same JSON.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::schema;

// ===== spec =====

/// Desired state of a VPC egress gateway: which Pods of a VPC leave through it, how many
/// instances carry the traffic, where they run and how failures are detected.
// clippy reads the repeated `type_`/`priority` keys of the `printcolumn(...)` entries below as
// duplicated attributes; they belong to different columns.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "kubeovn.io",
    version = "v1",
    kind = "VpcEgressGateway",
    plural = "vpc-egress-gateways",
    singular = "vpc-egress-gateway",
    shortname = "vpc-egress-gw",
    shortname = "veg",
    namespaced,
    doc = "A VPC egress gateway: Pods of a VPC reach the outside through a group of gateway instances that SNAT to their external addresses.",
    status = "VpcEgressGatewayStatus",
    derive = "PartialEq",
    derive = "Default",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.labelSelector"
    ),
    printcolumn(name = "VPC", type_ = "string", json_path = ".spec.vpc"),
    printcolumn(name = "REPLICAS", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(
        name = "BFD ENABLED",
        type_ = "boolean",
        json_path = ".spec.bfd.enabled"
    ),
    printcolumn(
        name = "EXTERNAL SUBNET",
        type_ = "string",
        json_path = ".spec.externalSubnet"
    ),
    printcolumn(name = "PHASE", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "READY", type_ = "boolean", json_path = ".status.ready"),
    printcolumn(
        name = "INTERNAL IPS",
        type_ = "string",
        json_path = ".status.internalIPs",
        priority = 1
    ),
    printcolumn(
        name = "EXTERNAL IPS",
        type_ = "string",
        json_path = ".status.externalIPs",
        priority = 1
    ),
    printcolumn(
        name = "WORKING NODES",
        type_ = "string",
        json_path = ".status.workload.nodes",
        priority = 1
    ),
    printcolumn(
        name = "AGE",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
// `externalSubnet` is required by the schema but defaults to "" in Rust, so a manifest without
// it still gets every other problem reported by `validate` (serde stops at the first error).
#[schemars(extend(
    "x-kubernetes-validations" = schema::spec_rules(),
    "required" = ["externalSubnet"]
))]
pub struct VpcEgressGatewaySpec {
    /// VPC the gateway serves; empty means the default VPC (`ovn-cluster`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub vpc: String,

    /// Number of gateway instances (Pods). `kubectl scale veg` changes it.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 10))]
    pub replicas: i32,

    /// Prefix of the workload's name (`<prefix><name>`). Immutable.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(regex(
        pattern = r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*[-\.]?$"
    ))]
    pub prefix: String,

    /// Image of the gateway Pods; empty means the controller's default image.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image: String,

    /// Subnet of the internal leg (eth0); empty means the VPC's default subnet.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub internal_subnet: String,

    /// Subnet of the external leg (net1); its provider names the Multus attachment. Required.
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub external_subnet: String,

    /// Fixed internal addresses, one entry per instance (`v4`, `v6` or `v4,v6`); at least
    /// `replicas` of them, `replicas + 1` for rolling updates.
    #[serde(default, rename = "internalIPs", skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::ip_entry_list")]
    pub internal_ips: Vec<String>,

    /// Fixed external addresses, as `internalIPs`.
    #[serde(default, rename = "externalIPs", skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::ip_entry_list")]
    pub external_ips: Vec<String>,

    /// IPPool on the internal subnet to take internal addresses from.
    #[serde(
        default,
        rename = "internalIPPool",
        skip_serializing_if = "String::is_empty"
    )]
    pub internal_ip_pool: String,

    /// IPPool on the external subnet to take external addresses from.
    #[serde(
        default,
        rename = "externalIPPool",
        skip_serializing_if = "String::is_empty"
    )]
    pub external_ip_pool: String,

    /// Pods whose traffic uses the gateway, always SNATed. Entries are ORed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = schema::limits::SELECTORS))]
    pub selectors: Vec<Selector>,

    /// Which instances a Pod's traffic may use.
    #[serde(default)]
    pub traffic_policy: TrafficPolicy,

    /// Whether instances must run on distinct nodes.
    #[serde(default)]
    pub pod_anti_affinity: PodAntiAffinity,

    /// BFD between the VPC router and the instances.
    #[serde(default)]
    pub bfd: BfdConfig,

    /// Sources (CIDRs, subnets) whose traffic uses the gateway, with or without SNAT.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = schema::limits::POLICIES))]
    pub policies: Vec<Policy>,

    /// Where instances may run; the entries are ORed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = schema::limits::NODE_SELECTOR_TERMS))]
    pub node_selector: Vec<NodeSelector>,

    /// Tolerations of the gateway Pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = schema::limits::TOLERATIONS))]
    pub tolerations: Vec<Toleration>,

    /// Resources of the gateway container, replacing the controller's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Rate limits on the instances' VPC leg.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<Bandwidth>,
}

fn default_replicas() -> i32 {
    1
}

/// A set of Pods picked by labels: Pods matching `podSelector` in namespaces matching
/// `namespaceSelector`. An absent selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Selector {
    /// Namespaces of the Pods; absent means every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = schema::label_selector_rules()))]
    pub namespace_selector: Option<LabelSelector>,

    /// Pods within those namespaces; absent means every Pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = schema::label_selector_rules()))]
    pub pod_selector: Option<LabelSelector>,
}

/// Sources whose traffic uses the gateway.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = schema::policy_rules()))]
pub struct Policy {
    /// Masquerade the sources to the instance's external address; without it the traffic is
    /// forwarded unchanged.
    #[serde(default)]
    pub snat: bool,

    /// Source IPs or CIDRs, either family.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::ip_block_list")]
    pub ip_blocks: Vec<String>,

    /// Source subnets of the VPC, by name; their CIDRs are used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::subnet_name_list")]
    pub subnets: Vec<String>,
}

/// Which gateway instances carry a Pod's traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TrafficPolicy {
    /// Every ready instance, spread by ECMP.
    #[default]
    Cluster,
    /// The instances on the Pod's own node first, then the others.
    Local,
}

/// How strictly instances are kept on distinct nodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PodAntiAffinity {
    /// Never two instances on one node.
    #[default]
    Required,
    /// Spread when possible; instances may share a node.
    Preferred,
}

/// BFD settings of a gateway. Intervals are in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BfdConfig {
    /// Run BFD between the VPC's BFD port and every instance (needs `Vpc.spec.bfdPort`).
    #[serde(default)]
    pub enabled: bool,

    /// Slowest receive interval the instance asks for, ms.
    #[serde(default = "default_bfd_interval", rename = "minRX")]
    #[schemars(range(min = 1, max = 3_600_000))]
    pub min_rx: i32,

    /// Fastest transmit interval the instance offers, ms.
    #[serde(default = "default_bfd_interval", rename = "minTX")]
    #[schemars(range(min = 1, max = 3_600_000))]
    pub min_tx: i32,

    /// Detection multiplier. Kube-OVN's schema allows up to 3600000 and fails at runtime above
    /// 255; the BFD field is 8 bits wide, so veg rejects it up front.
    #[serde(default = "default_bfd_multiplier")]
    #[schemars(range(min = 1, max = 255))]
    pub multiplier: i32,
}

impl Default for BfdConfig {
    fn default() -> Self {
        BfdConfig {
            enabled: false,
            min_rx: default_bfd_interval(),
            min_tx: default_bfd_interval(),
            multiplier: default_bfd_multiplier(),
        }
    }
}

fn default_bfd_interval() -> i32 {
    1000
}

fn default_bfd_multiplier() -> i32 {
    3
}

/// One node selector term; the terms of `nodeSelector` are ORed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeSelector {
    /// Node labels that must all match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Requirements on node labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<NodeSelectorRequirement>,
    /// Requirements on node fields.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_fields: Vec<NodeSelectorRequirement>,
}

/// Rate limits of the instances. The names are from the VPC's point of view: `ingress` is
/// traffic into the VPC, `egress` traffic leaving it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Bandwidth {
    /// Limit of traffic into the VPC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::bandwidth_rate")]
    pub ingress: Option<BandwidthRate>,
    /// Limit of traffic out of the VPC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::bandwidth_rate")]
    pub egress: Option<BandwidthRate>,
}

/// A rate: a whole number of Mbps, or a quantity string in bit/s (`100M`, `1.5G`, `1Gi`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BandwidthRate {
    /// Mbps.
    Mbps(i64),
    /// A quantity in bit/s.
    Quantity(String),
}

// ===== status =====

/// Observed state of a gateway.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VpcEgressGatewayStatus {
    /// Replicas of the workload, for the scale subresource.
    #[serde(default)]
    pub replicas: i32,
    /// Label selector of the workload's Pods, for the scale subresource.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub label_selector: String,
    /// Whether every instance is up and the OVN rows are in place.
    #[serde(default)]
    pub ready: bool,
    /// Progress of the reconciliation.
    #[serde(default)]
    pub phase: Phase,
    /// Internal addresses of the counted instances, one entry each (`v4,v6` when dual-stack).
    #[serde(default, rename = "internalIPs", skip_serializing_if = "Vec::is_empty")]
    pub internal_ips: Vec<String>,
    /// External addresses of the counted instances, one entry each.
    #[serde(default, rename = "externalIPs", skip_serializing_if = "Vec::is_empty")]
    pub external_ips: Vec<String>,
    /// Conditions, one per type.
    #[serde(default)]
    #[schemars(schema_with = "condition_list")]
    pub conditions: Vec<Condition>,
    /// The workload that runs the instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<Workload>,
    /// Every instance with its addresses and BFD state (veg only; Kube-OVN has no such list).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<GatewayInstance>,
}

/// Progress of a gateway's reconciliation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    /// Not looked at yet.
    #[default]
    Pending,
    /// Being reconciled, or waiting for the workload.
    Processing,
    /// Reconciled and ready.
    Completed,
}

/// `status.conditions`' schema (schemars cannot say "a map keyed by type" itself).
fn condition_list(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schema::list_keyed_by_type(generator.subschema_for::<Condition>())
}

/// A status condition, with Kube-OVN's `lastUpdateTime` beside the usual fields.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type, e.g. `Ready`, `Validated`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// Machine-readable reason in CamelCase.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// `metadata.generation` the condition was computed from.
    #[serde(default)]
    pub observed_generation: i64,
    /// When any field of the condition last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<Time>,
    /// When `status` last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
}

/// Value of a condition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// It does not.
    False,
    /// It cannot be told.
    #[default]
    Unknown,
}

/// The workload that runs a gateway's instances.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Workload {
    /// `apps/v1`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    /// `Deployment`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// `<prefix><name>`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Nodes that run a counted instance, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
}

/// One gateway instance as the controller last saw it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayInstance {
    /// Pod name.
    pub pod: String,
    /// Node the Pod runs on.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    /// The Pod's internal addresses (one per family).
    #[serde(default, rename = "internalIPs", skip_serializing_if = "Vec::is_empty")]
    pub internal_ips: Vec<String>,
    /// The Pod's external addresses (one per family).
    #[serde(default, rename = "externalIPs", skip_serializing_if = "Vec::is_empty")]
    pub external_ips: Vec<String>,
    /// BFD session state towards the instance; absent when BFD is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bfd: Option<BfdState>,
    /// When `bfd` last changed, or when the instance was first counted if BFD is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
}

/// State of a BFD session as status reports it (RFC 5880 §4.1 states, plus `Unknown` before
/// the first report).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum BfdState {
    /// Administratively down, e.g. the instance lost its uplink.
    AdminDown,
    /// Down.
    Down,
    /// Coming up.
    Init,
    /// Up: the instance carries traffic.
    Up,
    /// No report yet.
    Unknown,
}

// ===== impl VpcEgressGateway =====

impl VpcEgressGateway {
    /// The VPC the gateway serves, with the default applied.
    pub fn vpc_name(&self) -> &str {
        if self.spec.vpc.is_empty() {
            crate::names::DEFAULT_VPC
        } else {
            &self.spec.vpc
        }
    }

    /// `metadata.namespace`, empty when unset.
    pub fn namespace_or_empty(&self) -> &str {
        self.metadata.namespace.as_deref().unwrap_or("")
    }

    /// `metadata.name`, empty when unset.
    pub fn name_or_empty(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or("")
    }

    /// `<namespace>/<name>` ([`crate::names::gateway_key`]): how veg names the gateway in
    /// OVN rows, logs and queues.
    pub fn key(&self) -> String {
        crate::names::gateway_key(self.namespace_or_empty(), self.name_or_empty())
    }
}

// ===== schemars for BandwidthRate =====

impl JsonSchema for BandwidthRate {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "BandwidthRate".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schema::bandwidth_rate(generator)
    }
}
