//! The client's copy of the monitored tables, updated from `update2` / `update3`
//! notifications (ovsdb-server(7), "monitor_cond") and the initial dump of
//! `monitor_cond_since`. One notification is applied whole before anyone reads again.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value as Json;

use crate::nb::NbRow;
use crate::protocol::{Atom, Row, Value, row_from_json};
use crate::schema::{ColumnKind, Schema};

/// Rows by UUID, per table, with two indexes kept in step with the rows: by `name` and by
/// each `external_ids` pair. A cluster's NB holds a port per Pod; finding a gateway's rows or
/// ports by name must not cost a scan of every row.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Replica {
    /// Table → UUID → row.
    tables: BTreeMap<String, BTreeMap<String, Row>>,
    /// The last transaction id seen (`monitor_cond_since`), to resume after a reconnect.
    pub last_txn_id: Option<String>,
    indexes: Indexes,
}

/// Table → key → UUIDs.
type Index<K> = HashMap<String, HashMap<K, BTreeSet<String>>>;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Indexes {
    /// By the `name` column.
    names: Index<String>,
    /// By each `external_ids` pair.
    external_ids: Index<(String, String)>,
}

impl Indexes {
    fn keys(row: &Row) -> (Option<&String>, Vec<(&String, &String)>) {
        let name = match row.get("name") {
            Some(Value::Atom(Atom::String(name))) => Some(name),
            _ => None,
        };
        let pairs = match row.get("external_ids") {
            Some(Value::Map(ids)) => ids
                .iter()
                .filter_map(|pair| match pair {
                    (Atom::String(key), Atom::String(value)) => Some((key, value)),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        (name, pairs)
    }

    fn add(&mut self, table: &str, uuid: &str, row: &Row) {
        let (name, pairs) = Self::keys(row);
        if let Some(name) = name {
            add(&mut self.names, table, name.clone(), uuid);
        }
        for (key, value) in pairs {
            add(
                &mut self.external_ids,
                table,
                (key.clone(), value.clone()),
                uuid,
            );
        }
    }

    fn remove(&mut self, table: &str, uuid: &str, row: &Row) {
        let (name, pairs) = Self::keys(row);
        if let Some(name) = name {
            remove(&mut self.names, table, name, uuid);
        }
        for (key, value) in pairs {
            remove(
                &mut self.external_ids,
                table,
                &(key.clone(), value.clone()),
                uuid,
            );
        }
    }
}

fn add<K: std::hash::Hash + Eq>(index: &mut Index<K>, table: &str, key: K, uuid: &str) {
    if !index.contains_key(table) {
        index.insert(table.to_owned(), HashMap::new());
    }
    if let Some(keys) = index.get_mut(table) {
        keys.entry(key).or_default().insert(uuid.to_owned());
    }
}

fn remove<K: std::hash::Hash + Eq>(index: &mut Index<K>, table: &str, key: &K, uuid: &str) {
    if let Some(keys) = index.get_mut(table)
        && let Some(uuids) = keys.get_mut(key)
    {
        uuids.remove(uuid);
        if uuids.is_empty() {
            keys.remove(key);
        }
    }
}

impl Replica {
    /// The rows of a table.
    pub fn table(&self, table: &str) -> impl Iterator<Item = (&String, &Row)> {
        self.tables
            .get(table)
            .into_iter()
            .flat_map(|rows| rows.iter())
    }

    /// One row.
    pub fn row(&self, table: &str, uuid: &str) -> Option<&Row> {
        self.tables.get(table)?.get(uuid)
    }

    /// The rows of a table, typed.
    pub fn rows<T: NbRow>(&self) -> impl Iterator<Item = T> + '_ {
        self.table(T::TABLE)
            .map(|(uuid, row)| T::from_row(uuid, row))
    }

    /// One row, typed.
    pub fn get<T: NbRow>(&self, uuid: &str) -> Option<T> {
        self.row(T::TABLE, uuid).map(|row| T::from_row(uuid, row))
    }

    /// The first row whose `name` column is `name`, typed (routers, ports, groups: names are
    /// unique in those tables).
    pub fn named<T: NbRow>(&self, name: &str) -> Option<T> {
        let uuid = self.uuids_named(T::TABLE, name).next()?;
        self.get(uuid)
    }

    /// The UUIDs of the rows of `table` whose `name` column is `name`, in UUID order.
    pub fn uuids_named<'a>(&'a self, table: &str, name: &str) -> impl Iterator<Item = &'a String> {
        self.indexes
            .names
            .get(table)
            .and_then(|names| names.get(name))
            .into_iter()
            .flatten()
    }

    /// Rows of `table` whose `external_ids` include every pair of `owner`.
    pub fn owned_by<'a>(
        &'a self,
        table: &str,
        owner: &'a BTreeMap<String, String>,
    ) -> impl Iterator<Item = (&'a String, &'a Row)> {
        let owns = move |row: &Row| match row.get("external_ids") {
            Some(Value::Map(ids)) => owner.iter().all(|(key, value)| {
                ids.get(&Atom::string(key.as_str())) == Some(&Atom::string(value.as_str()))
            }),
            _ => owner.is_empty(),
        };
        // The rows holding the rarest of the pairs (a gateway's key, not the vendor's), from
        // the index; every row when there is no pair.
        let rows = self.tables.get(table);
        let pairs = self.indexes.external_ids.get(table);
        let candidates: Box<dyn Iterator<Item = (&'a String, &'a Row)> + 'a> = if owner.is_empty() {
            Box::new(rows.into_iter().flatten())
        } else {
            let rarest = owner
                .iter()
                .map(|(key, value)| {
                    pairs
                        .and_then(|pairs| pairs.get(&(key.clone(), value.clone())))
                        .map_or(0, BTreeSet::len)
                })
                .zip(owner.iter())
                .min_by_key(|(count, _)| *count)
                .and_then(|(_, (key, value))| pairs?.get(&(key.clone(), value.clone())));
            Box::new(
                rarest
                    .into_iter()
                    .flatten()
                    .filter_map(move |uuid| rows?.get_key_value(uuid)),
            )
        };
        candidates.filter(move |(_, row)| owns(row))
    }

    pub fn clear(&mut self) {
        self.tables.clear();
        self.indexes = Indexes::default();
    }

    /// Applies a `table-updates2` object (`update2`/`update3` notifications, or the result of
    /// `monitor_cond`/`monitor_cond_since`).
    pub fn apply(&mut self, schema: &Schema, updates: &Json) {
        self.for_each_update(updates, |stored, table, uuid, update| {
            if let Some(row) = update.get("initial").or_else(|| update.get("insert")) {
                stored.insert(uuid.to_owned(), row_from_json(row));
            } else if let Some(diff) = update.get("modify") {
                let row = stored.entry(uuid.to_owned()).or_default();
                apply_diff(schema, table, row, &row_from_json(diff));
            } else if update.get("delete").is_some() {
                stored.remove(uuid);
            }
        });
    }

    /// Applies RFC 7047 `table-updates` (`update` notifications and the result of plain
    /// `monitor`): `new` carries the row's monitored columns, only `old` means deleted.
    pub fn apply_rfc7047(&mut self, updates: &Json) {
        self.for_each_update(updates, |stored, _, uuid, update| match update.get("new") {
            Some(new) => stored
                .entry(uuid.to_owned())
                .or_default()
                .extend(row_from_json(new)),
            None => {
                stored.remove(uuid);
            }
        });
    }

    /// Calls `apply` with each table's rows, the table, and each row's UUID and update.
    fn for_each_update(
        &mut self,
        updates: &Json,
        mut apply: impl FnMut(&mut BTreeMap<String, Row>, &str, &str, &Json),
    ) {
        let Some(updates) = updates.as_object() else {
            return;
        };
        for (table, rows) in updates {
            let Some(rows) = rows.as_object() else {
                continue;
            };
            let stored = self.tables.entry(table.clone()).or_default();
            for (uuid, update) in rows {
                if let Some(old) = stored.get(uuid) {
                    self.indexes.remove(table, uuid, old);
                }
                apply(stored, table, uuid, update);
                if let Some(new) = stored.get(uuid) {
                    self.indexes.add(table, uuid, new);
                }
            }
        }
    }
}

/// `modify` in `update2`: scalars are replaced; a set lists the elements to toggle; a map
/// lists pairs that are removed when equal, replaced when the key exists, inserted otherwise.
fn apply_diff(schema: &Schema, table: &str, row: &mut Row, diff: &Row) {
    for (column, change) in diff {
        let kind = schema.column(table, column).unwrap_or(match change {
            Value::Map(_) => ColumnKind::Map,
            Value::Set(_) => ColumnKind::Set,
            Value::Atom(_) => ColumnKind::Scalar,
        });
        match kind {
            // An optional value's diff is its new value (ovsdb-server(7), `update2`).
            ColumnKind::Scalar | ColumnKind::Optional => {
                row.insert(column.clone(), change.clone());
            }
            ColumnKind::Set => {
                let mut set = row.get(column).map(Value::as_set).unwrap_or_default();
                for element in change.as_set() {
                    if !set.remove(&element) {
                        set.insert(element);
                    }
                }
                row.insert(column.clone(), Value::Set(set));
            }
            ColumnKind::Map => {
                let mut map = row.get(column).map(Value::as_map).unwrap_or_default();
                for (key, value) in change.as_map() {
                    match map.get(&key) {
                        Some(current) if *current == value => {
                            map.remove(&key);
                        }
                        _ => {
                            map.insert(key, value);
                        }
                    }
                }
                row.insert(column.clone(), Value::Map(map));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema() -> Schema {
        Schema::from_json(&json!({"tables": {"Address_Set": {"columns": {
            "name": {"type": "string"},
            "addresses": {"type": {"key": "string", "min": 0, "max": "unlimited"}},
            "external_ids": {"type": {"key": "string", "value": "string", "min": 0, "max": "unlimited"}}}}}}))
    }

    #[test]
    fn applies_rfc_7047_updates() {
        let mut replica = Replica::default();
        replica.apply_rfc7047(&json!({"Address_Set": {
            "u1": {"new": {"name": "a", "addresses": ["set", ["198.18.0.1"]]}},
            "u2": {"new": {"name": "b"}}}}));
        replica.apply_rfc7047(&json!({"Address_Set": {
            "u1": {"old": {"addresses": ["set", ["198.18.0.1"]]}, "new": {"name": "a", "addresses": "198.18.0.9"}},
            "u2": {"old": {"name": "b"}}}}));
        assert_eq!(replica.table("Address_Set").count(), 1);
        let row = replica
            .row("Address_Set", "u1")
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            row["addresses"].as_set(),
            Value::string_set(["198.18.0.9"]).as_set()
        );
    }

    #[test]
    fn applies_initial_insert_modify_delete() {
        let schema = schema();
        let mut replica = Replica::default();
        replica.apply(
            &schema,
            &json!({"Address_Set": {
            "u1": {"initial": {"name": "a", "addresses": ["set", ["198.18.0.1", "198.18.0.2"]],
                               "external_ids": ["map", [["vendor", "kube-ovn"], ["af", "4"]]]}}}}),
        );
        // A bare atom in a set column toggles that one element.
        replica.apply(&schema, &json!({"Address_Set": {
            "u1": {"modify": {"addresses": "198.18.0.1", "external_ids": ["map", [["af", "4"], ["owner", "x"]]]}},
            "u2": {"insert": {"name": "b"}}}}));
        let row = replica
            .row("Address_Set", "u1")
            .cloned()
            .unwrap_or_default();
        assert_eq!(row["addresses"], Value::string_set(["198.18.0.2"]));
        assert_eq!(
            row["external_ids"],
            Value::string_map([("owner", "x"), ("vendor", "kube-ovn")])
        );
        let owner = BTreeMap::from([("vendor".to_owned(), "kube-ovn".to_owned())]);
        assert_eq!(replica.owned_by("Address_Set", &owner).count(), 1);
        replica.apply(&schema, &json!({"Address_Set": {"u2": {"delete": null}}}));
        assert_eq!(replica.table("Address_Set").count(), 1);
    }

    /// ovsdb-server 3.1 sends an optional column's new value in `modify`, not a toggle:
    /// `{"modify": {"detect_mult": 5, "min_rx": 50}}` after 3 → 5 and 100 → 50 (captured).
    #[test]
    fn an_optional_columns_modify_is_its_new_value() {
        let schema = Schema::from_json(&json!({"tables": {"BFD": {"columns": {
            "detect_mult": {"type": {"key": {"type": "integer", "minInteger": 1}, "min": 0, "max": 1}},
            "min_rx": {"type": {"key": {"type": "integer"}, "min": 0, "max": 1}}}}}}));
        let mut replica = Replica::default();
        replica.apply(
            &schema,
            &json!({"BFD": {"u1": {"insert": {"detect_mult": 3, "min_rx": 100}}}}),
        );
        replica.apply(
            &schema,
            &json!({"BFD": {"u1": {"modify": {"detect_mult": 5, "min_rx": 50}}}}),
        );
        replica.apply(
            &schema,
            &json!({"BFD": {"u1": {"modify": {"min_rx": ["set", []]}}}}),
        );
        let row = replica.row("BFD", "u1").cloned().unwrap_or_default();
        assert_eq!(row["detect_mult"].as_set(), [Atom::Integer(5)].into());
        assert!(row["min_rx"].as_set().is_empty());
    }

    /// The name and external_ids indexes follow inserts, modifications (a rename, a pair
    /// changed) and deletes, and give what a scan of the rows gives.
    #[test]
    fn the_indexes_follow_the_rows() {
        let schema = schema();
        let mut replica = Replica::default();
        replica.apply(
            &schema,
            &json!({"Address_Set": {
                "u1": {"insert": {"name": "a", "external_ids": ["map", [["vendor", "veg"], ["gw", "ns/one"]]]}},
                "u2": {"insert": {"name": "b", "external_ids": ["map", [["vendor", "veg"], ["gw", "ns/two"]]]}},
                "u3": {"insert": {"name": "a"}}}}),
        );
        let named = |replica: &Replica, name: &str| -> Vec<String> {
            replica.uuids_named("Address_Set", name).cloned().collect()
        };
        let owned = |replica: &Replica, gateway: &str| -> Vec<String> {
            let owner = BTreeMap::from([
                ("vendor".to_owned(), "veg".to_owned()),
                ("gw".to_owned(), gateway.to_owned()),
            ]);
            replica
                .owned_by("Address_Set", &owner)
                .map(|(uuid, _)| uuid.clone())
                .collect()
        };
        assert_eq!(named(&replica, "a"), ["u1", "u3"]);
        assert_eq!(owned(&replica, "ns/one"), ["u1"]);
        // Renamed, moved to another gateway, deleted.
        replica.apply(
            &schema,
            &json!({"Address_Set": {
                "u1": {"modify": {"name": "c", "external_ids": ["map", [["gw", "ns/two"]]]}},
                "u3": {"delete": null}}}),
        );
        assert!(named(&replica, "a").is_empty());
        assert_eq!(named(&replica, "c"), ["u1"]);
        assert!(owned(&replica, "ns/one").is_empty());
        assert_eq!(owned(&replica, "ns/two"), ["u1", "u2"]);
        // The same as scanning.
        let scanned: Vec<String> = replica
            .table("Address_Set")
            .filter(|(_, row)| {
                row.get("external_ids").is_some_and(|ids| {
                    ids.as_map().get(&Atom::string("gw")) == Some(&Atom::string("ns/two"))
                })
            })
            .map(|(uuid, _)| uuid.clone())
            .collect();
        assert_eq!(owned(&replica, "ns/two"), scanned);
        assert_eq!(replica.owned_by("Address_Set", &BTreeMap::new()).count(), 2);
        replica.clear();
        assert!(named(&replica, "c").is_empty() && owned(&replica, "ns/two").is_empty());
    }
}
