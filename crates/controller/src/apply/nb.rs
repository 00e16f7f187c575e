//! Applying a gateway's OVN rows with veg-ovsdb: the minimal diff against the replica, as one
//! transaction per gateway, and the cleanup that removes every row of a gateway from every
//! router it ever wrote to. Rows are found by their external_ids (and by their well-known
//! names, so rows Kube-OVN created are adopted, not duplicated); rows of other owners are never
//! touched.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use veg_api::names::{self, AddressFamily};
use veg_api::names::{EXTERNAL_ID_CANDIDATES, EXTERNAL_ID_MONITOR_TIMERS};
use veg_ovsdb::nb::{
    self as tables, AddressSet, Bfd, HaChassis, HaChassisGroup, LogicalRouter, LogicalRouterPolicy,
    LogicalRouterPort, LogicalSwitchPort, PortGroup, Uuids, column,
};
use veg_ovsdb::{
    Atom, Client, Condition, Desired, MonitorSpec, Mutation, NbRow, Operation, Parent, Replica,
    Row, Schema, Value,
};

use crate::plan::ovn::{self, GatewayOvn};

/// The tables and columns the controller keeps in its replica.
pub fn monitor_spec() -> MonitorSpec {
    // Every column of the rows whose state (BFD `status`) or schema-dependent columns
    // (`bfd_sessions`) are read; only the names of the many switch ports.
    let all = |table: &str| (table.to_owned(), Vec::new());
    MonitorSpec::from([
        tables::watch::<AddressSet>(&[]),
        tables::watch::<PortGroup>(&[]),
        all(Bfd::TABLE),
        all(LogicalRouterPolicy::TABLE),
        tables::watch::<LogicalRouter>(&["name", "policies", "ports"]),
        tables::watch::<LogicalSwitchPort>(&["name"]),
        // The VPCs' BFD ports.
        all(LogicalRouterPort::TABLE),
        all(HaChassisGroup::TABLE),
        all(HaChassis::TABLE),
    ])
}

fn owner(key: &str) -> BTreeMap<String, String> {
    ovn::external_ids(key, None)
}

/// Which rows not owned by a gateway are its own nevertheless (Kube-OVN made them).
enum Adopt<'a> {
    Nothing,
    /// Those of these names (found through the replica's name index) that no gateway owns:
    /// a row of the name owned by another gateway (a hash collision, found or crafted: the
    /// name holds 48 bits of the key's hash) is never taken or deleted.
    Named(Vec<&'a str>),
    /// Those that match (a scan of the table).
    Matching(&'a dyn Fn(&Row) -> bool),
}

/// Rows of `table` owned by `key`, or adopted.
fn current(replica: &Replica, table: &str, key: &str, adopt: Adopt<'_>) -> BTreeMap<String, Row> {
    let owned = owner(key);
    let mut rows: BTreeMap<String, Row> = replica
        .owned_by(table, &owned)
        .map(|(uuid, row)| (uuid.clone(), row.clone()))
        .collect();
    match adopt {
        Adopt::Nothing => {}
        Adopt::Named(names) => {
            for name in names {
                for uuid in replica.uuids_named(table, name) {
                    if let Some(row) = replica.row(table, uuid)
                        && owner_of(row).is_none()
                    {
                        rows.insert(uuid.clone(), row.clone());
                    }
                }
            }
        }
        Adopt::Matching(matches) => {
            for (uuid, row) in replica.table(table) {
                if matches(row) {
                    rows.insert(uuid.clone(), row.clone());
                }
            }
        }
    }
    rows
}

/// The gateway a row belongs to (its external_ids `vpc-egress-gateway`), if any.
fn owner_of(row: &Row) -> Option<String> {
    row.get("external_ids")?
        .as_map()
        .get(&veg_ovsdb::Atom::string(names::EXTERNAL_ID_GATEWAY))
        .and_then(|value| value.as_str().map(str::to_owned))
}

/// Rows that carry one of `desired`'s names but belong to another gateway: `(table, name,
/// owner)`. Writing would fail on the name's uniqueness, or worse take the other's row.
pub fn taken_names(replica: &Replica, desired: &GatewayOvn) -> Vec<(String, String, String)> {
    let named = desired
        .address_sets
        .iter()
        .map(|set| (AddressSet::TABLE, set.name.as_str()))
        .chain(
            desired
                .port_group
                .iter()
                .map(|(name, _)| (PortGroup::TABLE, name.as_str())),
        );
    let mut taken = Vec::new();
    for (table, name) in named {
        for uuid in replica.uuids_named(table, name) {
            if let Some(owner) = replica.row(table, uuid).and_then(owner_of)
                && owner != desired.key
            {
                taken.push((table.to_owned(), name.to_owned(), owner));
            }
        }
    }
    taken
}

/// The operations that make the NB hold `desired` for its gateway (empty when it does).
pub fn operations(replica: &Replica, schema: &Schema, desired: &GatewayOvn) -> Vec<Operation> {
    let mut operations = address_set_operations(replica, schema, desired);
    operations.extend(port_group_operations(replica, schema, desired));
    let bfd = bfd_operations(replica, schema, desired);
    operations.extend(bfd.changes);
    operations.extend(policy_operations(replica, schema, desired, &bfd.refs));
    operations.extend(bfd.deletes);
    operations
}

/// The gateway's address sets (adopted by name when Kube-OVN made them).
fn address_set_operations(
    replica: &Replica,
    schema: &Schema,
    desired: &GatewayOvn,
) -> Vec<Operation> {
    let key = desired.key.as_str();
    let set_names: BTreeSet<&str> = desired
        .address_sets
        .iter()
        .map(|set| set.name.as_str())
        .collect();
    let rows = desired
        .address_sets
        .iter()
        .map(|set| {
            AddressSet {
                name: set.name.clone(),
                addresses: set.addresses.iter().cloned().collect(),
                external_ids: ovn::external_ids(key, Some(set.family)),
                ..AddressSet::default()
            }
            .to_row()
        })
        .collect();
    let have = current(
        replica,
        AddressSet::TABLE,
        key,
        Adopt::Named(set_names.iter().copied().collect()),
    );
    veg_ovsdb::diff(
        schema,
        &Desired {
            table: AddressSet::TABLE,
            key: &["name"],
            rows,
            parent: None,
            names: Vec::new(),
        },
        &have,
    )
}

/// The gateway's port group: the selected Pods' ports that exist (unknown ports are
/// skipped; only the wanted names are looked up, a cluster has many more ports than a gateway).
fn port_group_operations(
    replica: &Replica,
    schema: &Schema,
    desired: &GatewayOvn,
) -> Vec<Operation> {
    let key = desired.key.as_str();
    let wanted: std::collections::HashSet<&str> = desired
        .port_group
        .iter()
        .flat_map(|(_, ports)| ports.iter().map(String::as_str))
        .collect();
    let ports_by_name: BTreeMap<&str, String> = wanted
        .iter()
        .filter_map(|name| {
            let uuid = replica.uuids_named(LogicalSwitchPort::TABLE, name).next()?;
            Some((*name, uuid.clone()))
        })
        .collect();
    let group_name = desired.port_group.as_ref().map(|(name, _)| name.clone());
    let rows = desired
        .port_group
        .iter()
        .map(|(name, ports)| {
            PortGroup {
                name: name.clone(),
                ports: Uuids(
                    ports
                        .iter()
                        .filter_map(|port| ports_by_name.get(port.as_str()).cloned())
                        .collect(),
                ),
                external_ids: ovn::external_ids(key, None),
                ..PortGroup::default()
            }
            .to_row()
        })
        .collect();
    let have = current(
        replica,
        PortGroup::TABLE,
        key,
        Adopt::Named(group_name.as_deref().into_iter().collect()),
    );
    veg_ovsdb::diff(
        schema,
        &Desired {
            table: PortGroup::TABLE,
            key: &["name"],
            rows,
            parent: None,
            names: Vec::new(),
        },
        &have,
    )
}

/// The BFD rows' operations, split around the policies that refer to them.
struct BfdOperations {
    /// Inserts and updates: before the policies.
    changes: Vec<Operation>,
    /// Deletes: after the policies stop referring to them.
    deletes: Vec<Operation>,
    /// Each instance address's row: its UUID, or the name an insert gives it.
    refs: BTreeMap<String, Atom>,
}

/// The BFD rows: existing ones keep their UUID, new ones get a name the policies refer to.
fn bfd_operations(replica: &Replica, schema: &Schema, desired: &GatewayOvn) -> BfdOperations {
    let key = desired.key.as_str();
    let bfd_keys: BTreeSet<(String, String)> = desired
        .bfd
        .iter()
        .map(|b| (b.logical_port.clone(), b.dst_ip.to_string()))
        .collect();
    let adopted = |row: &Row| {
        bfd_keys.contains(&(
            column::<String>(row, "logical_port"),
            column::<String>(row, "dst_ip"),
        ))
    };
    let have_bfd = current(replica, Bfd::TABLE, key, Adopt::Matching(&adopted));
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
        // `options` and `status` are OVN's.
        bfd_rows.push(
            Bfd {
                logical_port: bfd.logical_port.clone(),
                dst_ip: dst,
                min_rx: Some(bfd.min_rx),
                min_tx: Some(bfd.min_tx),
                detect_mult: Some(bfd.detect_mult),
                external_ids: ovn::external_ids(key, Some(bfd.family)),
                ..Bfd::default()
            }
            .to_row_only(&[
                "logical_port",
                "dst_ip",
                "min_rx",
                "min_tx",
                "detect_mult",
                "external_ids",
            ]),
        );
    }
    let bfd_operations = veg_ovsdb::diff(
        schema,
        &Desired {
            table: Bfd::TABLE,
            key: &["logical_port", "dst_ip"],
            rows: bfd_rows,
            parent: None,
            names: bfd_names,
        },
        &have_bfd,
    );
    // Inserts and updates before the policies that refer to them, deletes after.
    let (deletes, changes) = bfd_operations
        .into_iter()
        .partition(|op| matches!(op, Operation::Delete { .. }));
    BfdOperations {
        changes,
        deletes,
        refs: bfd_refs,
    }
}

/// The policies on the gateway's router; its policies on other routers are unlinked there.
fn policy_operations(
    replica: &Replica,
    schema: &Schema,
    desired: &GatewayOvn,
    bfd_refs: &BTreeMap<String, Atom>,
) -> Vec<Operation> {
    let key = desired.key.as_str();
    let has_bfd_sessions = schema.has_column(LogicalRouterPolicy::TABLE, "bfd_sessions");
    let rows = desired
        .policies
        .iter()
        .map(|policy| {
            let mut external_ids = ovn::external_ids(key, Some(policy.family));
            if let Some(candidates) = &policy.candidates {
                external_ids.insert(
                    EXTERNAL_ID_CANDIDATES.to_owned(),
                    names::encode_candidates(candidates),
                );
            }
            if let Some(timers) = &policy.timers {
                external_ids.insert(EXTERNAL_ID_MONITOR_TIMERS.to_owned(), timers.encode());
            }
            let typed = LogicalRouterPolicy {
                priority: policy.priority,
                match_: policy.match_.clone(),
                action: policy.action.as_str().to_owned(),
                nexthops: policy
                    .nexthops
                    .iter()
                    .flatten()
                    .map(ToString::to_string)
                    .collect(),
                external_ids,
                ..LogicalRouterPolicy::default()
            };
            // Without nexthops in the plan (monitor mode), they are the monitor's to write;
            // `options` are never ours.
            let mut row = if policy.nexthops.is_some() {
                typed.to_row_only(&["priority", "match", "action", "nexthops", "external_ids"])
            } else {
                typed.to_row_only(&["priority", "match", "action", "external_ids"])
            };
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
    let on_router: BTreeSet<String> = replica
        .named::<LogicalRouter>(&desired.router)
        .map(|router| router.policies.0)
        .unwrap_or_default();
    let owned = current(replica, LogicalRouterPolicy::TABLE, key, Adopt::Nothing);
    let (here, elsewhere): (BTreeMap<String, Row>, BTreeMap<String, Row>) = owned
        .into_iter()
        .partition(|(uuid, _)| on_router.contains(uuid));
    let mut operations = veg_ovsdb::diff(
        schema,
        &Desired {
            table: LogicalRouterPolicy::TABLE,
            key: &["priority", "match"],
            rows,
            parent: Some(Parent {
                table: LogicalRouter::TABLE.to_owned(),
                conditions: vec![Condition::equals(
                    "name",
                    Value::string(desired.router.as_str()),
                )],
                column: "policies".to_owned(),
            }),
            names: Vec::new(),
        },
        &here,
    );
    operations.extend(unlink_policies(replica, elsewhere.keys()));
    operations
}

/// Removes policies from whichever routers reference them (OVSDB then deletes them).
fn unlink_policies<'a>(
    replica: &Replica,
    policies: impl Iterator<Item = &'a String>,
) -> Vec<Operation> {
    let policies: BTreeSet<&String> = policies.collect();
    let mut operations = Vec::new();
    if policies.is_empty() {
        // The common case: no router needs reading.
        return operations;
    }
    for router in replica.rows::<LogicalRouter>() {
        let linked = Uuids(
            router
                .policies
                .0
                .into_iter()
                .filter(|uuid| policies.contains(uuid))
                .collect(),
        );
        if !linked.0.is_empty() {
            operations.push(Operation::Mutate {
                table: LogicalRouter::TABLE.to_owned(),
                conditions: vec![Condition::uuid(router.uuid.as_str())],
                mutations: vec![Mutation::delete("policies", tables::Column::write(&linked))],
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
    let policies = current(replica, LogicalRouterPolicy::TABLE, &key, Adopt::Nothing);
    operations.extend(unlink_policies(replica, policies.keys()));
    // Rows are ours by external_ids, or by the names Kube-OVN gives them.
    let ours_by_name = |table: &str| match table {
        AddressSet::TABLE => Adopt::Named(set_names.iter().map(String::as_str).collect()),
        PortGroup::TABLE => Adopt::Named(vec![group.as_str()]),
        _ => Adopt::Nothing,
    };
    for table in [AddressSet::TABLE, PortGroup::TABLE, Bfd::TABLE] {
        for uuid in current(replica, table, &key, ours_by_name(table)).keys() {
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

/// Makes this controller the NB's writer: puts `token` (unique to this leadership term) under
/// NB_Global's [`names::EXTERNAL_ID_WRITER`], replacing a former leader's, and fences every
/// later transaction of `client` on it. A deposed leader whose write is still on its way (its
/// Lease lost while an NB call was pending, a pause) then fails on the token instead of
/// overwriting the new leader's rows.
pub async fn take_writer_token(client: &Client, token: &str) -> Result<(), veg_ovsdb::Error> {
    client.set_fence(None);
    let found = client
        .transact(&[Operation::Select {
            table: "NB_Global".into(),
            conditions: Vec::new(),
            columns: Some(vec!["_uuid".into()]),
        }])
        .await?;
    let key = names::EXTERNAL_ID_WRITER;
    let existing = found
        .first()
        .and_then(|result| result.rows.first())
        .and_then(|row| row.get("_uuid"))
        .and_then(|value| value.as_atom())
        .and_then(|atom| atom.as_uuid())
        .map(str::to_owned);
    let uuid = match existing {
        Some(uuid) => {
            client
                .transact(&[Operation::Mutate {
                    table: "NB_Global".into(),
                    conditions: vec![Condition::uuid(uuid.as_str())],
                    mutations: vec![
                        veg_ovsdb::Mutation::delete(
                            "external_ids",
                            Value::Set([veg_ovsdb::Atom::string(key)].into()),
                        ),
                        veg_ovsdb::Mutation::insert(
                            "external_ids",
                            Value::string_map([(key, token)]),
                        ),
                    ],
                }])
                .await?;
            uuid
        }
        // northd makes the row; an NB without one gets it with the token.
        None => client
            .transact(&[Operation::Insert {
                table: "NB_Global".into(),
                row: [("external_ids".to_owned(), Value::string_map([(key, token)]))]
                    .into_iter()
                    .collect(),
                uuid_name: None,
            }])
            .await?
            .first()
            .and_then(|result| result.uuid.clone())
            .unwrap_or_default(),
    };
    client.set_fence(Some(Operation::Wait {
        table: "NB_Global".into(),
        conditions: vec![
            Condition::uuid(uuid.as_str()),
            Condition::includes("external_ids", Value::string_map([(key, token)])),
        ],
        columns: vec!["_uuid".into()],
        until: "==",
        rows: vec![
            [("_uuid".to_owned(), Value::uuid(uuid.as_str()))]
                .into_iter()
                .collect(),
        ],
    }));
    Ok(())
}
