//! Desired rows of one owner against what the replica holds → the fewest operations that make
//! the database match: one small `mutate` per changed set or map (never a rewrite of a whole
//! 10 000-address set), `update` for changed scalars, `insert` for new rows, `delete` for rows
//! that are gone or duplicated. The caller runs them as one transaction.

use std::collections::{BTreeMap, BTreeSet};

use crate::protocol::{Atom, Condition, Mutation, Operation, Row, Value};
use crate::schema::{ColumnKind, Schema};

/// Where rows of a non-root table hang (e.g. `Logical_Router.policies`): new rows are linked
/// there, removed rows unlinked (OVSDB then deletes them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parent {
    /// The parent table.
    pub table: String,
    /// The parent row.
    pub conditions: Vec<Condition>,
    /// Its column of references.
    pub column: String,
}

/// The rows one owner wants in one table.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired<'a> {
    pub table: &'a str,
    /// Columns that identify a row (e.g. `name`, or `priority` + `match`).
    pub key: &'a [&'a str],
    /// The rows; only the columns given are managed.
    pub rows: Vec<Row>,
    /// For a non-root table, where its rows are referenced.
    pub parent: Option<Parent>,
    /// `uuid-name`s for inserted rows, by index in `rows`, so that other operations of the
    /// same transaction can refer to them; rows without one get `<table>_<index>` when they
    /// need a name (a parent link).
    pub names: Vec<String>,
}

/// The operations that turn `current` (the owner's rows now, by UUID) into `desired`.
pub fn diff(
    schema: &Schema,
    desired: &Desired<'_>,
    current: &BTreeMap<String, Row>,
) -> Vec<Operation> {
    let key_of = |row: &Row| -> Vec<Option<Value>> {
        desired
            .key
            .iter()
            .map(|column| row.get(*column).cloned())
            .collect()
    };
    let mut by_key: BTreeMap<Vec<Option<Value>>, Vec<&String>> = BTreeMap::new();
    for (uuid, row) in current {
        by_key.entry(key_of(row)).or_default().push(uuid);
    }
    let mut operations = Vec::new();
    let mut kept: BTreeSet<&String> = BTreeSet::new();
    for (index, row) in desired.rows.iter().enumerate() {
        match by_key.get(&key_of(row)).and_then(|uuids| uuids.first()) {
            Some(uuid) => {
                kept.insert(uuid);
                operations.extend(change_row(
                    schema,
                    desired.table,
                    uuid,
                    &current[*uuid],
                    row,
                ));
            }
            None => operations.extend(insert_row(desired, index, row)),
        }
    }
    for uuid in current.keys().filter(|uuid| !kept.contains(uuid)) {
        operations.push(match &desired.parent {
            Some(parent) => Operation::Mutate {
                table: parent.table.clone(),
                conditions: parent.conditions.clone(),
                mutations: vec![Mutation::delete(
                    parent.column.as_str(),
                    Value::Set([Atom::Uuid(uuid.clone())].into()),
                )],
            },
            None => Operation::Delete {
                table: desired.table.to_owned(),
                conditions: vec![Condition::uuid(uuid.as_str())],
            },
        });
    }
    operations
}

fn insert_row(desired: &Desired<'_>, index: usize, row: &Row) -> Vec<Operation> {
    let given = desired.names.get(index).cloned();
    let name = given
        .clone()
        .unwrap_or_else(|| format!("{}_{index}", desired.table));
    let mut operations = vec![Operation::Insert {
        table: desired.table.to_owned(),
        row: row.clone(),
        uuid_name: (given.is_some() || desired.parent.is_some()).then(|| name.clone()),
    }];
    if let Some(parent) = &desired.parent {
        operations.push(Operation::Mutate {
            table: parent.table.clone(),
            conditions: parent.conditions.clone(),
            mutations: vec![Mutation::insert(
                parent.column.as_str(),
                Value::Set([Atom::NamedUuid(name)].into()),
            )],
        });
    }
    operations
}

/// An `update` for scalars and one `mutate` with element changes for sets and maps.
fn change_row(
    schema: &Schema,
    table: &str,
    uuid: &str,
    current: &Row,
    desired: &Row,
) -> Vec<Operation> {
    let mut scalars = Row::new();
    let mut mutations = Vec::new();
    for (column, want) in desired {
        let have = current.get(column);
        let kind = schema.column(table, column).unwrap_or(ColumnKind::Scalar);
        match kind {
            ColumnKind::Scalar => {
                if have != Some(want) {
                    scalars.insert(column.clone(), want.clone());
                }
            }
            ColumnKind::Optional => {
                if have.map(Value::as_set).unwrap_or_default() != want.as_set() {
                    scalars.insert(column.clone(), want.clone());
                }
            }
            ColumnKind::Set => {
                let have = have.map(Value::as_set).unwrap_or_default();
                let want = want.as_set();
                let removed: BTreeSet<Atom> = have.difference(&want).cloned().collect();
                let added: BTreeSet<Atom> = want.difference(&have).cloned().collect();
                if !removed.is_empty() {
                    mutations.push(Mutation::delete(column.as_str(), Value::Set(removed)));
                }
                if !added.is_empty() {
                    mutations.push(Mutation::insert(column.as_str(), Value::Set(added)));
                }
            }
            ColumnKind::Map => {
                let have = have.map(Value::as_map).unwrap_or_default();
                let want = want.as_map();
                // Keys gone or whose value changes are deleted first; then the new pairs go in.
                let stale: BTreeSet<Atom> = have
                    .iter()
                    .filter(|(key, value)| want.get(key) != Some(value))
                    .map(|(key, _)| key.clone())
                    .collect();
                let fresh: BTreeMap<Atom, Atom> = want
                    .iter()
                    .filter(|(key, value)| have.get(key) != Some(value))
                    .map(|(key, value)| (key.clone(), value.clone()))
                    .collect();
                if !stale.is_empty() {
                    mutations.push(Mutation::delete(column.as_str(), Value::Set(stale)));
                }
                if !fresh.is_empty() {
                    mutations.push(Mutation::insert(column.as_str(), Value::Map(fresh)));
                }
            }
        }
    }
    let mut operations = Vec::new();
    if !scalars.is_empty() {
        operations.push(Operation::Update {
            table: table.to_owned(),
            conditions: vec![Condition::uuid(uuid)],
            row: scalars,
        });
    }
    if !mutations.is_empty() {
        operations.push(Operation::Mutate {
            table: table.to_owned(),
            conditions: vec![Condition::uuid(uuid)],
            mutations,
        });
    }
    operations
}

#[cfg(test)]
mod tests;
