//! Applying a gateway's OVN rows with veg-ovsdb: the minimal diff against the replica, as one
//! transaction per gateway, and the cleanup that removes every row of a gateway from every
//! router it ever wrote to. Rows are found by their external_ids (and by their well-known
//! names, so rows Kube-OVN created are adopted, not duplicated); rows of other owners are never
//! touched.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use veg_api::names::{self, AddressFamily};
use veg_ovsdb::nb::{Uuids, column};
use veg_ovsdb::{
    Atom, Client, Condition, Desired, MonitorSpec, Mutation, Operation, Parent, Replica, Row,
    Schema, Value,
};

use crate::plan::ovn::{self, GatewayOvn};
use veg_api::names::{EXTERNAL_ID_CANDIDATES, EXTERNAL_ID_MONITOR_TIMERS};

const ADDRESS_SET: &str = "Address_Set";
const PORT_GROUP: &str = "Port_Group";
const BFD: &str = "BFD";
const POLICY: &str = "Logical_Router_Policy";
const ROUTER: &str = "Logical_Router";
const SWITCH_PORT: &str = "Logical_Switch_Port";

/// The tables and columns the controller keeps in its replica.
pub fn monitor_spec() -> MonitorSpec {
    let columns = |list: &[&str]| list.iter().map(|c| (*c).to_owned()).collect::<Vec<_>>();
    MonitorSpec::from([
        (
            ADDRESS_SET.to_owned(),
            columns(&["name", "addresses", "external_ids"]),
        ),
        (
            PORT_GROUP.to_owned(),
            columns(&["name", "ports", "external_ids"]),
        ),
        (BFD.to_owned(), Vec::new()),
        (POLICY.to_owned(), Vec::new()),
        (ROUTER.to_owned(), columns(&["name", "policies", "ports"])),
        (SWITCH_PORT.to_owned(), columns(&["name"])),
        // The VPCs' BFD ports.
        ("Logical_Router_Port".to_owned(), Vec::new()),
        ("HA_Chassis_Group".to_owned(), Vec::new()),
        ("HA_Chassis".to_owned(), Vec::new()),
    ])
}

fn ids(key: &str, family: Option<AddressFamily>) -> Value {
    Value::string_map(ovn::external_ids(key, family))
}

fn owner(key: &str) -> BTreeMap<String, String> {
    ovn::external_ids(key, None)
}

/// Rows of `table` owned by `key`, or named like one of `names` (adopted).
fn current(
    replica: &Replica,
    table: &str,
    key: &str,
    adopt: impl Fn(&Row) -> bool,
) -> BTreeMap<String, Row> {
    let owned = owner(key);
    let mut rows: BTreeMap<String, Row> = replica
        .owned_by(table, &owned)
        .map(|(uuid, row)| (uuid.clone(), row.clone()))
        .collect();
    for (uuid, row) in replica.table(table) {
        if adopt(row) {
            rows.insert(uuid.clone(), row.clone());
        }
    }
    rows
}

/// The operations that make the NB hold `desired` for its gateway (empty when it does).
pub fn operations(replica: &Replica, schema: &Schema, desired: &GatewayOvn) -> Vec<Operation> {
    let key = desired.key.as_str();
    let mut operations = Vec::new();

    // Address sets.
    let set_names: BTreeSet<&str> = desired
        .address_sets
        .iter()
        .map(|set| set.name.as_str())
        .collect();
    let rows = desired
        .address_sets
        .iter()
        .map(|set| {
            Row::from([
                ("name".to_owned(), Value::string(set.name.as_str())),
                ("addresses".to_owned(), Value::string_set(&set.addresses)),
                ("external_ids".to_owned(), ids(key, Some(set.family))),
            ])
        })
        .collect();
    let have = current(replica, ADDRESS_SET, key, |row| {
        set_names.contains(column::<String>(row, "name").as_str())
    });
    operations.extend(veg_ovsdb::diff(
        schema,
        &Desired {
            table: ADDRESS_SET,
            key: &["name"],
            rows,
            parent: None,
            names: Vec::new(),
        },
        &have,
    ));

    // Port group: the selected Pods' ports that exist (unknown ports are skipped).
    // Only the wanted names are looked up (a cluster has many more ports than a gateway).
    let wanted: std::collections::HashSet<&str> = desired
        .port_group
        .iter()
        .flat_map(|(_, ports)| ports.iter().map(String::as_str))
        .collect();
    let ports_by_name: BTreeMap<String, String> = if wanted.is_empty() {
        BTreeMap::new()
    } else {
        replica
            .table(SWITCH_PORT)
            .filter_map(|(uuid, row)| {
                let name: String = column(row, "name");
                wanted.contains(name.as_str()).then(|| (name, uuid.clone()))
            })
            .collect()
    };
    let group_name = desired.port_group.as_ref().map(|(name, _)| name.clone());
    let rows = desired
        .port_group
        .iter()
        .map(|(name, ports)| {
            let uuids: BTreeSet<Atom> = ports
                .iter()
                .filter_map(|port| ports_by_name.get(port))
                .map(|uuid| Atom::Uuid(uuid.clone()))
                .collect();
            Row::from([
                ("name".to_owned(), Value::string(name.as_str())),
                ("ports".to_owned(), Value::Set(uuids)),
                ("external_ids".to_owned(), ids(key, None)),
            ])
        })
        .collect();
    let have = current(replica, PORT_GROUP, key, |row| {
        group_name.as_deref() == Some(column::<String>(row, "name").as_str())
    });
    operations.extend(veg_ovsdb::diff(
        schema,
        &Desired {
            table: PORT_GROUP,
            key: &["name"],
            rows,
            parent: None,
            names: Vec::new(),
        },
        &have,
    ));

    // BFD rows: existing ones keep their UUID, new ones get a name the policies refer to.
    let bfd_keys: BTreeSet<(String, String)> = desired
        .bfd
        .iter()
        .map(|b| (b.logical_port.clone(), b.dst_ip.to_string()))
        .collect();
    let have_bfd = current(replica, BFD, key, |row| {
        bfd_keys.contains(&(
            column::<String>(row, "logical_port"),
            column::<String>(row, "dst_ip"),
        ))
    });
    let mut bfd_refs: BTreeMap<String, Atom> = BTreeMap::new();
    let mut bfd_rows = Vec::new();
    let mut bfd_names = Vec::new();
    for (index, bfd) in desired.bfd.iter().enumerate() {
        let dst = bfd.dst_ip.to_string();
        let existing = have_bfd.iter().find(|(_, row)| {
            column::<String>(row, "logical_port") == bfd.logical_port
                && column::<String>(row, "dst_ip") == dst
        });
        let name = format!("bfd_{index}");
        bfd_refs.insert(
            dst.clone(),
            existing.map_or_else(
                || Atom::NamedUuid(name.clone()),
                |(uuid, _)| Atom::Uuid(uuid.clone()),
            ),
        );
        bfd_names.push(name);
        bfd_rows.push(Row::from([
            (
                "logical_port".to_owned(),
                Value::string(bfd.logical_port.as_str()),
            ),
            ("dst_ip".to_owned(), Value::string(dst)),
            (
                "min_rx".to_owned(),
                Value::Set([Atom::Integer(bfd.min_rx)].into()),
            ),
            (
                "min_tx".to_owned(),
                Value::Set([Atom::Integer(bfd.min_tx)].into()),
            ),
            (
                "detect_mult".to_owned(),
                Value::Set([Atom::Integer(bfd.detect_mult)].into()),
            ),
            ("external_ids".to_owned(), ids(key, Some(bfd.family))),
        ]));
    }
    let bfd_operations = veg_ovsdb::diff(
        schema,
        &Desired {
            table: BFD,
            key: &["logical_port", "dst_ip"],
            rows: bfd_rows,
            parent: None,
            names: bfd_names,
        },
        &have_bfd,
    );
    // Inserts and updates before the policies that refer to them, deletes after.
    let (bfd_deletes, bfd_changes): (Vec<Operation>, Vec<Operation>) = bfd_operations
        .into_iter()
        .partition(|op| matches!(op, Operation::Delete { .. }));
    operations.extend(bfd_changes);

    // Policies on the gateway's router; its policies on other routers are unlinked there.
    let has_bfd_sessions = schema.has_column(POLICY, "bfd_sessions");
    let rows = desired
        .policies
        .iter()
        .map(|policy| {
            let mut row = Row::from([
                ("priority".to_owned(), Value::integer(policy.priority)),
                ("match".to_owned(), Value::string(policy.match_.as_str())),
                ("action".to_owned(), Value::string(policy.action.as_str())),
            ]);
            let mut external_ids = ovn::external_ids(key, Some(policy.family));
            if let Some(candidates) = &policy.candidates {
                let list: Vec<String> = candidates.iter().map(ToString::to_string).collect();
                external_ids.insert(EXTERNAL_ID_CANDIDATES.to_owned(), list.join(","));
            }
            if let Some(timers) = &policy.timers {
                external_ids.insert(EXTERNAL_ID_MONITOR_TIMERS.to_owned(), timers.encode());
            }
            row.insert("external_ids".to_owned(), Value::string_map(external_ids));
            if let Some(nexthops) = &policy.nexthops {
                let hops: Vec<String> = nexthops.iter().map(ToString::to_string).collect();
                row.insert("nexthops".to_owned(), Value::string_set(&hops));
            }
            if has_bfd_sessions {
                let sessions: BTreeSet<Atom> = if policy.bfd_sessions {
                    policy
                        .nexthops
                        .iter()
                        .flatten()
                        .filter_map(|hop| bfd_refs.get(&hop.to_string()).cloned())
                        .collect()
                } else {
                    BTreeSet::new()
                };
                row.insert("bfd_sessions".to_owned(), Value::Set(sessions));
            }
            row
        })
        .collect();
    let router_uuid = replica
        .table(ROUTER)
        .find(|(_, row)| column::<String>(row, "name") == desired.router)
        .map(|(uuid, _)| uuid.clone());
    let on_router: BTreeSet<String> = router_uuid
        .as_ref()
        .and_then(|uuid| replica.row(ROUTER, uuid))
        .map(|row| column::<Uuids>(row, "policies").0)
        .unwrap_or_default();
    let owned = current(replica, POLICY, key, |_| false);
    let (here, elsewhere): (BTreeMap<String, Row>, BTreeMap<String, Row>) = owned
        .into_iter()
        .partition(|(uuid, _)| on_router.contains(uuid));
    operations.extend(veg_ovsdb::diff(
        schema,
        &Desired {
            table: POLICY,
            key: &["priority", "match"],
            rows,
            parent: Some(Parent {
                table: ROUTER.to_owned(),
                conditions: vec![Condition::equals(
                    "name",
                    Value::string(desired.router.as_str()),
                )],
                column: "policies".to_owned(),
            }),
            names: Vec::new(),
        },
        &here,
    ));
    operations.extend(unlink_policies(replica, elsewhere.keys()));
    operations.extend(bfd_deletes);
    operations
}

/// Removes policies from whichever routers reference them (OVSDB then deletes them).
fn unlink_policies<'a>(
    replica: &Replica,
    policies: impl Iterator<Item = &'a String>,
) -> Vec<Operation> {
    let policies: BTreeSet<&String> = policies.collect();
    let mut operations = Vec::new();
    for (router, row) in replica.table(ROUTER) {
        let linked: BTreeSet<Atom> = row
            .get("policies")
            .map(Value::as_set)
            .unwrap_or_default()
            .into_iter()
            .filter(|atom| {
                atom.as_uuid()
                    .is_some_and(|uuid| policies.contains(&uuid.to_owned()))
            })
            .collect();
        if !linked.is_empty() {
            operations.push(Operation::Mutate {
                table: ROUTER.to_owned(),
                conditions: vec![Condition::uuid(router.as_str())],
                mutations: vec![Mutation::delete("policies", Value::Set(linked))],
            });
        }
    }
    operations
}

/// The operations that remove every row of gateway `namespace/name`, on every router.
pub fn cleanup_operations(replica: &Replica, namespace: &str, name: &str) -> Vec<Operation> {
    let key = names::gateway_key(namespace, name);
    let mut set_names: BTreeSet<String> = BTreeSet::new();
    for family in AddressFamily::ALL {
        set_names.insert(names::policy_address_set(namespace, name, family));
        set_names.insert(names::port_group_address_set(namespace, name, family));
    }
    let group = names::port_group(namespace, name);
    let mut operations = Vec::new();
    let policies = current(replica, POLICY, &key, |_| false);
    operations.extend(unlink_policies(replica, policies.keys()));
    // Rows are ours by external_ids, or by the names Kube-OVN gives them.
    let ours_by_name = |table: &str, row: &Row| match table {
        ADDRESS_SET => set_names.contains(&column::<String>(row, "name")),
        PORT_GROUP => column::<String>(row, "name") == group,
        _ => false,
    };
    for table in [ADDRESS_SET, PORT_GROUP, BFD] {
        for uuid in current(replica, table, &key, |row| ours_by_name(table, row)).keys() {
            operations.push(Operation::Delete {
                table: table.to_owned(),
                conditions: vec![Condition::uuid(uuid.as_str())],
            });
        }
    }
    operations
}

/// Applies `desired` in one transaction; returns how many operations it took (0: in sync).
pub async fn apply(client: &Client, desired: &GatewayOvn) -> Result<usize, veg_ovsdb::Error> {
    let operations = operations(&client.replica(), &client.schema(), desired);
    commit(client, operations).await
}

/// Removes every row of a gateway in one transaction; returns how many operations it took.
pub async fn cleanup(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<usize, veg_ovsdb::Error> {
    let operations = cleanup_operations(&client.replica(), namespace, name);
    commit(client, operations).await
}

/// Runs `operations` as one transaction and waits until the replica shows it.
pub(crate) async fn commit(
    client: &Client,
    operations: Vec<Operation>,
) -> Result<usize, veg_ovsdb::Error> {
    if operations.is_empty() {
        return Ok(0);
    }
    let count = operations.len();
    let version = *client.subscribe().borrow();
    client.transact(&operations).await?;
    // The next pass must see this transaction in the replica, or it would diff again.
    let mut changes = client.subscribe();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while *changes.borrow_and_update() == version {
            if changes.changed().await.is_err() {
                break;
            }
        }
    })
    .await;
    Ok(count)
}
