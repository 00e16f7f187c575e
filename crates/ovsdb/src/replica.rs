//! The client's copy of the monitored tables, updated from `update2` / `update3`
//! notifications (ovsdb-server(7), "monitor_cond") and the initial dump of
//! `monitor_cond_since`. One notification is applied whole before anyone reads again.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::nb::NbRow;
use crate::protocol::{Atom, Row, Value, row_from_json};
use crate::schema::{ColumnKind, Schema};

/// Rows by UUID, per table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Replica {
    /// Table → UUID → row.
    pub tables: BTreeMap<String, BTreeMap<String, Row>>,
    /// The last transaction id seen (`monitor_cond_since`), to resume after a reconnect.
    pub last_txn_id: Option<String>,
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
        self.table(T::TABLE)
            .find(|(_, row)| {
                matches!(row.get("name").and_then(Value::as_atom), Some(Atom::String(n)) if n == name)
            })
            .map(|(uuid, row)| T::from_row(uuid, row))
    }

    /// Rows of `table` whose `external_ids` include every pair of `owner`.
    pub fn owned_by<'a>(
        &'a self,
        table: &str,
        owner: &'a BTreeMap<String, String>,
    ) -> impl Iterator<Item = (&'a String, &'a Row)> {
        // Looked up in place: this runs for every row of the table, often per NB update.
        self.table(table)
            .filter(move |(_, row)| match row.get("external_ids") {
                Some(Value::Map(ids)) => owner.iter().all(|(key, value)| {
                    ids.get(&Atom::string(key.as_str())) == Some(&Atom::string(value.as_str()))
                }),
                _ => owner.is_empty(),
            })
    }

    /// Replaces everything with a fresh dump (a resync).
    pub fn clear(&mut self) {
        self.tables.clear();
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
                apply(stored, table, uuid, update);
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
}
