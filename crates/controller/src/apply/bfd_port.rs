//! Writing a VPC's BFD port plan ([`crate::plan::bfd_port`]): the HA_Chassis_Group
//! `bfd@<vpc>` with its members, then the router port that refers to it, in one transaction;
//! or, when the port is off, the port and its group removed.

use std::collections::BTreeMap;

use veg_api::names;
use veg_ovsdb::nb::{HaChassis, HaChassisGroup, LogicalRouter, LogicalRouterPort, Uuids};
use veg_ovsdb::{
    Atom, Condition, Desired, Mutation, NbRow, Operation, Parent, Replica, Row, Schema, Value,
};

use crate::plan::bfd_port::{BfdPortPlan, mac};

fn vendor_ids(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut ids = BTreeMap::from([(
        names::EXTERNAL_ID_VENDOR.to_owned(),
        names::VENDOR.to_owned(),
    )]);
    ids.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    ids
}

/// The raw row `uuid` of `T`'s table, for diffing against (unmanaged columns included).
fn current<T: NbRow>(replica: &Replica, uuid: Option<&str>) -> BTreeMap<String, Row> {
    uuid.and_then(|uuid| Some((uuid.to_owned(), replica.row(T::TABLE, uuid)?.clone())))
        .into_iter()
        .collect()
}

/// The operations that make the NB hold `plan` for VPC `vpc` (`None`: the port removed).
pub fn operations(
    replica: &Replica,
    schema: &Schema,
    vpc: &str,
    plan: Option<&BfdPortPlan>,
) -> Vec<Operation> {
    let port = names::bfd_port(vpc);
    let group = replica.named::<HaChassisGroup>(&port);
    let lrp = replica.named::<LogicalRouterPort>(&port);
    let Some(plan) = plan else {
        return removal(group.as_ref(), lrp.as_ref());
    };
    let mut operations = Vec::new();

    // The group first (its members hang on it), then the port that refers to it.
    let group_row = HaChassisGroup {
        name: port.clone(),
        external_ids: vendor_ids(&[("lrp", port.as_str())]),
        ..HaChassisGroup::default()
    }
    .to_row_only(&["name", "external_ids"]);
    operations.extend(veg_ovsdb::diff(
        schema,
        &Desired {
            table: HaChassisGroup::TABLE,
            key: &["name"],
            rows: vec![group_row],
            parent: None,
            names: vec!["bfd_group".into()],
        },
        &current::<HaChassisGroup>(replica, group.as_ref().map(|g| g.uuid.as_str())),
    ));
    let members: BTreeMap<String, Row> = group
        .iter()
        .flat_map(|group| group.ha_chassis.0.iter())
        .filter_map(|uuid| Some((uuid.clone(), replica.row(HaChassis::TABLE, uuid)?.clone())))
        .collect();
    let member_rows = plan
        .chassis
        .iter()
        .enumerate()
        .map(|(index, chassis)| {
            HaChassis {
                chassis_name: chassis.clone(),
                priority: 100 - i64::try_from(index).unwrap_or(99),
                external_ids: vendor_ids(&[("group", port.as_str())]),
                ..HaChassis::default()
            }
            .to_row()
        })
        .collect();
    operations.extend(veg_ovsdb::diff(
        schema,
        &Desired {
            table: HaChassis::TABLE,
            key: &["chassis_name"],
            rows: member_rows,
            parent: Some(Parent {
                table: HaChassisGroup::TABLE.into(),
                conditions: vec![Condition::equals("name", Value::string(port.as_str()))],
                column: "ha_chassis".into(),
            }),
            names: Vec::new(),
        },
        &members,
    ));

    let mut lrp_row = LogicalRouterPort {
        name: port.clone(),
        mac: mac(&port),
        networks: plan.networks.iter().cloned().collect(),
        options: BTreeMap::from([("bfd-only".to_owned(), "true".to_owned())]),
        external_ids: vendor_ids(&[]),
        ..LogicalRouterPort::default()
    }
    // The MAC is chosen once, at creation (a port Kube-OVN made keeps its own).
    .to_row_only(if lrp.is_none() {
        &["name", "mac", "networks", "options", "external_ids"]
    } else {
        &["name", "networks", "options", "external_ids"]
    });
    // A group inserted by this very transaction is referred to by its name.
    let group_ref = group.as_ref().map_or_else(
        || Atom::NamedUuid("bfd_group".into()),
        |group| Atom::Uuid(group.uuid.clone()),
    );
    lrp_row.insert(
        "ha_chassis_group".to_owned(),
        Value::Set([group_ref].into()),
    );
    operations.extend(veg_ovsdb::diff(
        schema,
        &Desired {
            table: LogicalRouterPort::TABLE,
            key: &["name"],
            rows: vec![lrp_row],
            parent: Some(Parent {
                table: LogicalRouter::TABLE.into(),
                conditions: vec![Condition::equals("name", Value::string(plan.vpc.as_str()))],
                column: "ports".into(),
            }),
            names: Vec::new(),
        },
        &current::<LogicalRouterPort>(replica, lrp.as_ref().map(|p| p.uuid.as_str())),
    ));
    operations
}

/// The port unlinked from its router and its group deleted.
fn removal(group: Option<&HaChassisGroup>, lrp: Option<&LogicalRouterPort>) -> Vec<Operation> {
    let mut operations = Vec::new();
    if let Some(lrp) = lrp {
        // Drop the port's reference first: the group cannot go while it is referenced, even
        // by a port that this very transaction orphans.
        operations.push(Operation::Update {
            table: LogicalRouterPort::TABLE.into(),
            conditions: vec![Condition::uuid(lrp.uuid.as_str())],
            row: LogicalRouterPort::default().to_row_only(&["ha_chassis_group"]),
        });
        let reference = Uuids([lrp.uuid.clone()].into());
        operations.push(Operation::Mutate {
            table: LogicalRouter::TABLE.into(),
            conditions: vec![Condition::includes(
                "ports",
                veg_ovsdb::nb::Column::write(&reference),
            )],
            mutations: vec![Mutation::delete(
                "ports",
                veg_ovsdb::nb::Column::write(&reference),
            )],
        });
    }
    if let Some(group) = group {
        operations.push(Operation::Delete {
            table: HaChassisGroup::TABLE.into(),
            conditions: vec![Condition::uuid(group.uuid.as_str())],
        });
    }
    operations
}

#[cfg(test)]
mod tests;
