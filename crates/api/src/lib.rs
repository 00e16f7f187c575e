//! The veg API: the `VpcEgressGateway` resource (Kube-OVN compatible), the fields veg reads from
//! Kube-OVN's `Vpc`, `Subnet` and `IPPool` and from Multus' `NetworkAttachmentDefinition`, the
//! generated CRD, validation, and the names every other crate derives from a gateway.
//!
//! # Layout
//! - `gateway` — `VpcEgressGateway` spec and status types, defaults.
//! - `schema` — CRD schema pieces schemars cannot derive: CEL rules, int-or-string, list types.
//! - `crd` — the generated CustomResourceDefinition and its YAML.
//! - `validate` — the same rules in Rust, with field paths ([`validate()`], [`FieldError`]).
//! - `manifest` — multi-document YAML into typed objects, reporting unknown fields.
//! - `kubeovn`, `multus` — read-only views of the resources veg consumes.
//! - `names` — constants and Kube-OVN-compatible names (OVN rows, labels, hashes).
//! - `error` — [`Error`].

mod crd;
mod error;
mod gateway;
pub mod kubeovn;
mod manifest;
pub mod multus;
pub mod names;
mod schema;
mod validate;

pub use crd::{crd, crd_yaml};
pub use error::Error;
pub use gateway::{
    Bandwidth, BandwidthRate, BfdConfig, BfdState, Condition, ConditionStatus, GatewayInstance,
    NodeSelector, Phase, PodAntiAffinity, Policy, Selector, TrafficPolicy, VpcEgressGateway,
    VpcEgressGatewaySpec, VpcEgressGatewayStatus, Workload,
};
pub use manifest::{Manifest, Parsed, parse_object, read_manifests};
pub use schema::{MAX_BANDWIDTH_MBPS, limits};
pub use validate::{
    BFD_INTERVAL_RANGE, BFD_MULTIPLIER_RANGE, FieldError, IpFormatError, MAX_REPLICAS, Rule,
    check_ip_block, check_ip_entry, is_dns_subdomain, validate, validate_update,
};
