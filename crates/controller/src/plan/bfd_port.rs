//! A VPC's BFD port (`Vpc.spec.bfdPort`): the logical router port `bfd@<vpc>` that carries
//! OVN's BFD sessions to the gateways (native mode), pinned to chosen nodes by an
//! HA_Chassis_Group. The choice is deterministic (Kube-OVN's is the lister's order): nodes
//! matching the selector, or the first three by name, sorted, priorities 100, 99, 98, …
//!
//! Node → chassis comes from Kube-OVN's node annotation `ovn.kubernetes.io/chassis` (the
//! controller talks to the Northbound database only).

use std::collections::BTreeSet;

use crate::plan::selector;
use k8s_openapi::api::core::v1::Node;
use veg_api::kubeovn::Vpc;
use veg_api::names;

/// The chassis annotation Kube-OVN puts on nodes.
pub const CHASSIS_ANNOTATION: &str = "ovn.kubernetes.io/chassis";
/// Nodes chosen when the port has no node selector.
pub const DEFAULT_NODES: usize = 3;

/// The planned BFD port of a VPC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BfdPortPlan {
    /// The VPC (and its router).
    pub vpc: String,
    /// `bfd@<vpc>`: the port and its HA_Chassis_Group.
    pub port: String,
    /// Its addresses, as given (OVN reads bare IPs as /32 and /128).
    pub networks: Vec<String>,
    /// The chosen nodes, sorted.
    pub nodes: Vec<String>,
    /// Their chassis, in node order, each once.
    pub chassis: Vec<String>,
    /// Chosen nodes without a chassis annotation (left out, reported).
    pub missing_chassis: Vec<String>,
}

/// The BFD port a VPC asks for, or `None` when it is disabled.
pub fn plan(vpc: &Vpc, nodes: &[&Node]) -> Option<BfdPortPlan> {
    let name = vpc.metadata.name.clone().unwrap_or_default();
    let spec = vpc.spec.bfd_port.as_ref().filter(|port| port.enabled)?;
    let mut candidates: Vec<&Node> = nodes
        .iter()
        .copied()
        .filter(|node| {
            let labels = node.metadata.labels.clone().unwrap_or_default();
            spec.node_selector.is_none() || selector::matches(spec.node_selector.as_ref(), &labels)
        })
        .collect();
    candidates.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    if spec.node_selector.is_none() {
        candidates.truncate(DEFAULT_NODES);
    }
    let mut plan = BfdPortPlan {
        port: names::bfd_port(&name),
        vpc: name,
        networks: spec.networks(),
        nodes: Vec::new(),
        chassis: Vec::new(),
        missing_chassis: Vec::new(),
    };
    for node in candidates {
        let node_name = node.metadata.name.clone().unwrap_or_default();
        match node
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(CHASSIS_ANNOTATION))
        {
            Some(chassis) => {
                plan.nodes.push(node_name);
                // Nodes sharing a chassis (one-host labs) make one HA_Chassis member.
                if !plan.chassis.contains(chassis) {
                    plan.chassis.push(chassis.clone());
                }
            }
            None => plan.missing_chassis.push(node_name),
        }
    }
    Some(plan)
}

/// A locally administered MAC derived from the port name, stable across restarts (Kube-OVN
/// picks a random one once).
pub fn mac(port: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(port.as_bytes());
    let mut bytes = [0u8; 6];
    bytes.copy_from_slice(&digest[..6]);
    bytes[0] = (bytes[0] & 0xfe) | 0x02;
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The nodes whose change may move the port: the chosen ones and any the selector matches.
pub fn affected_by_node(vpcs: &[&Vpc], node: &Node) -> BTreeSet<String> {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    vpcs.iter()
        .filter(|vpc| {
            let Some(port) = vpc.spec.bfd_port.as_ref().filter(|p| p.enabled) else {
                return false;
            };
            let chosen = vpc
                .status
                .as_ref()
                .and_then(|s| s.bfd_port.as_ref())
                .is_some_and(|s| {
                    s.nodes
                        .iter()
                        .any(|n| Some(n) == node.metadata.name.as_ref())
                });
            chosen
                || port.node_selector.is_none()
                || selector::matches(port.node_selector.as_ref(), &labels)
        })
        .filter_map(|vpc| vpc.metadata.name.clone())
        .collect()
}

#[cfg(test)]
mod tests;
