//! A VPC's BFD port (`Vpc.spec.bfdPort`): the logical router port `bfd@<vpc>` that carries
//! OVN's BFD sessions to the gateways (native mode), pinned to chosen nodes by an
//! HA_Chassis_Group. The choice is deterministic (Kube-OVN's is the lister's order): nodes
//! matching the selector, or the first three by name, sorted, priorities 100, 99, 98, …
//!
//! Node → chassis comes from Kube-OVN's node annotation `ovn.kubernetes.io/chassis` (the
//! controller talks to the Northbound database only).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Node;
use veg_api::kubeovn::Vpc;
use veg_api::names;
use veg_ovsdb::nb::{Uuids, column};
use veg_ovsdb::{Atom, Condition, Desired, Operation, Parent, Replica, Row, Schema, Value};

use crate::selector;

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
    /// Their chassis, in node order.
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
        networks: spec
            .ip
            .split(',')
            .map(str::trim)
            .filter(|ip| !ip.is_empty())
            .map(str::to_owned)
            .collect(),
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
                plan.chassis.push(chassis.clone());
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

fn vendor_ids(extra: &[(&str, &str)]) -> Value {
    let mut ids = BTreeMap::from([(names::EXTERNAL_ID_VENDOR, names::VENDOR)]);
    ids.extend(extra.iter().copied());
    Value::string_map(ids)
}

/// The operations that make the NB hold `plan` for VPC `vpc` (`None`: the port removed).
pub fn operations(
    replica: &Replica,
    schema: &Schema,
    vpc: &str,
    plan: Option<&BfdPortPlan>,
) -> Vec<Operation> {
    let port = names::bfd_port(vpc);
    let mut operations = Vec::new();
    let group = replica
        .table("HA_Chassis_Group")
        .find(|(_, row)| column::<String>(row, "name") == port)
        .map(|(uuid, row)| (uuid.clone(), row.clone()));
    let lrp = replica
        .table("Logical_Router_Port")
        .find(|(_, row)| column::<String>(row, "name") == port)
        .map(|(uuid, row)| (uuid.clone(), row.clone()));

    let Some(plan) = plan else {
        if let Some((uuid, _)) = &lrp {
            // Drop the port's reference first: the group cannot go while it is referenced,
            // even by a port that this very transaction orphans.
            operations.push(Operation::Update {
                table: "Logical_Router_Port".into(),
                conditions: vec![Condition::uuid(uuid.as_str())],
                row: Row::from([(
                    "ha_chassis_group".to_owned(),
                    Value::Set(Default::default()),
                )]),
            });
            operations.push(Operation::Mutate {
                table: "Logical_Router".into(),
                conditions: vec![Condition::includes(
                    "ports",
                    Value::Set([Atom::Uuid(uuid.clone())].into()),
                )],
                mutations: vec![veg_ovsdb::Mutation::delete(
                    "ports",
                    Value::Set([Atom::Uuid(uuid.clone())].into()),
                )],
            });
        }
        if let Some((uuid, _)) = &group {
            operations.push(Operation::Delete {
                table: "HA_Chassis_Group".into(),
                conditions: vec![Condition::uuid(uuid.as_str())],
            });
        }
        return operations;
    };

    // The group first (its members hang on it), then the port that refers to it.
    let group_row = Row::from([
        ("name".to_owned(), Value::string(port.as_str())),
        (
            "external_ids".to_owned(),
            vendor_ids(&[("lrp", port.as_str())]),
        ),
    ]);
    let current_group: BTreeMap<String, Row> = group.clone().into_iter().collect();
    operations.extend(veg_ovsdb::diff(
        schema,
        &Desired {
            table: "HA_Chassis_Group",
            key: &["name"],
            rows: vec![group_row],
            parent: None,
            names: vec!["bfd_group".into()],
        },
        &current_group,
    ));
    let members: BTreeMap<String, Row> = group
        .as_ref()
        .map(|(_, row)| {
            column::<Uuids>(row, "ha_chassis")
                .0
                .into_iter()
                .filter_map(|uuid| {
                    let member = replica.row("HA_Chassis", &uuid)?.clone();
                    Some((uuid, member))
                })
                .collect()
        })
        .unwrap_or_default();
    let member_rows = plan
        .chassis
        .iter()
        .enumerate()
        .map(|(index, chassis)| {
            Row::from([
                ("chassis_name".to_owned(), Value::string(chassis.as_str())),
                (
                    "priority".to_owned(),
                    Value::integer(100 - i64::try_from(index).unwrap_or(99)),
                ),
                (
                    "external_ids".to_owned(),
                    vendor_ids(&[("group", port.as_str())]),
                ),
            ])
        })
        .collect();
    operations.extend(veg_ovsdb::diff(
        schema,
        &Desired {
            table: "HA_Chassis",
            key: &["chassis_name"],
            rows: member_rows,
            parent: Some(Parent {
                table: "HA_Chassis_Group".into(),
                conditions: vec![Condition::equals("name", Value::string(port.as_str()))],
                column: "ha_chassis".into(),
            }),
            names: Vec::new(),
        },
        &members,
    ));

    let group_ref = group.as_ref().map_or_else(
        || Atom::NamedUuid("bfd_group".into()),
        |(uuid, _)| Atom::Uuid(uuid.clone()),
    );
    let mut lrp_row = Row::from([
        ("name".to_owned(), Value::string(port.as_str())),
        ("networks".to_owned(), Value::string_set(&plan.networks)),
        (
            "options".to_owned(),
            Value::string_map([("bfd-only", "true")]),
        ),
        ("external_ids".to_owned(), vendor_ids(&[])),
        (
            "ha_chassis_group".to_owned(),
            Value::Set([group_ref].into()),
        ),
    ]);
    if lrp.is_none() {
        lrp_row.insert("mac".to_owned(), Value::string(mac(&port)));
    }
    let current_lrp: BTreeMap<String, Row> = lrp.into_iter().collect();
    operations.extend(veg_ovsdb::diff(
        schema,
        &Desired {
            table: "Logical_Router_Port",
            key: &["name"],
            rows: vec![lrp_row],
            parent: Some(Parent {
                table: "Logical_Router".into(),
                conditions: vec![Condition::equals("name", Value::string(plan.vpc.as_str()))],
                column: "ports".into(),
            }),
            names: Vec::new(),
        },
        &current_lrp,
    ));
    operations
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
