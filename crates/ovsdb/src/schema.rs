//! What the server's schema says about tables and columns: whether they exist (e.g.
//! `Logical_Router_Policy.bfd_sessions`, absent from Debian's NB 7.0.0) and whether a column
//! holds one value, a set or a map (which decides how an `update2` diff applies).

use std::collections::BTreeMap;

use serde_json::Value as Json;

/// How a column holds its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnKind {
    /// Exactly one atom.
    Scalar,
    /// An optional single value (a set with min 0, max 1): `update2` sends its new value,
    /// not a difference, and it is written whole.
    Optional,
    /// A set of any other size.
    Set,
    Map,
}

/// A database schema, as far as the client needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schema {
    /// Database name.
    pub name: String,
    /// Schema version.
    pub version: String,
    /// Tables, with their columns.
    pub tables: BTreeMap<String, BTreeMap<String, ColumnKind>>,
}

impl Schema {
    /// Reads the result of `get_schema`.
    pub fn from_json(json: &Json) -> Schema {
        let tables = json["tables"]
            .as_object()
            .map(|tables| {
                tables
                    .iter()
                    .map(|(name, table)| {
                        let columns = table["columns"]
                            .as_object()
                            .map(|columns| {
                                columns
                                    .iter()
                                    .map(|(column, spec)| {
                                        (column.clone(), column_kind(&spec["type"]))
                                    })
                                    .collect()
                            })
                            .unwrap_or_default();
                        (name.clone(), columns)
                    })
                    .collect()
            })
            .unwrap_or_default();
        Schema {
            name: json["name"].as_str().unwrap_or("").to_owned(),
            version: json["version"].as_str().unwrap_or("").to_owned(),
            tables,
        }
    }

    /// Whether the table exists.
    pub fn has_table(&self, table: &str) -> bool {
        self.tables.contains_key(table)
    }

    /// Whether the column exists.
    pub fn has_column(&self, table: &str, column: &str) -> bool {
        self.column(table, column).is_some()
    }

    /// The column's kind, if it exists.
    pub fn column(&self, table: &str, column: &str) -> Option<ColumnKind> {
        self.tables.get(table)?.get(column).copied()
    }
}

/// RFC 7047 §3.2 `<type>`: a bare atomic type name, or `{key, value?, min?, max?}`.
fn column_kind(kind: &Json) -> ColumnKind {
    if kind.is_string() {
        return ColumnKind::Scalar;
    }
    if !kind["value"].is_null() {
        return ColumnKind::Map;
    }
    let min = kind["min"].as_u64().unwrap_or(1);
    let max_is_one = kind["max"].is_null() || kind["max"].as_u64() == Some(1);
    match (min, max_is_one) {
        (1, true) => ColumnKind::Scalar,
        (0, true) => ColumnKind::Optional,
        _ => ColumnKind::Set,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn column_kinds() {
        let schema = Schema::from_json(
            &json!({"name": "OVN_Northbound", "version": "7.0.0", "tables": {
            "Logical_Router_Policy": {"columns": {
                "priority": {"type": {"key": {"type": "integer", "minInteger": 0, "maxInteger": 32767}}},
                "match": {"type": "string"},
                "nexthop": {"type": {"key": "string", "min": 0, "max": 1}},
                "nexthops": {"type": {"key": "string", "min": 0, "max": "unlimited"}},
                "external_ids": {"type": {"key": "string", "value": "string", "min": 0, "max": "unlimited"}}}}}}),
        );
        assert_eq!(
            schema.column("Logical_Router_Policy", "priority"),
            Some(ColumnKind::Scalar)
        );
        assert_eq!(
            schema.column("Logical_Router_Policy", "match"),
            Some(ColumnKind::Scalar)
        );
        assert_eq!(
            schema.column("Logical_Router_Policy", "nexthop"),
            Some(ColumnKind::Optional)
        );
        assert_eq!(
            schema.column("Logical_Router_Policy", "nexthops"),
            Some(ColumnKind::Set)
        );
        assert_eq!(
            schema.column("Logical_Router_Policy", "external_ids"),
            Some(ColumnKind::Map)
        );
        assert!(!schema.has_column("Logical_Router_Policy", "bfd_sessions"));
        assert_eq!(schema.version, "7.0.0");
    }
}
