//! The OVSDB data model and operations (RFC 7047 §5.1, §5.2): atoms, sets, maps, rows, and the
//! `transact` operations with their JSON encoding.
//!
//! ```text
//! atom   = integer | real | boolean | string | ["uuid", "<uuid>"] | ["named-uuid", "<id>"]
//! set    = atom (a set of one) | ["set", [atom…]]
//! map    = ["map", [[atom, atom]…]]
//! ```

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value as Json, json};

/// An atomic value.
#[derive(Clone, Debug)]
pub enum Atom {
    /// A 64-bit integer.
    Integer(i64),
    Real(f64),
    Boolean(bool),
    String(String),
    /// A row's UUID.
    Uuid(String),
    /// A row inserted earlier in the same transaction, by its `uuid-name`.
    NamedUuid(String),
}

/// A column value: an atom, a set or a map.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Value {
    /// A single atom (also a set of one).
    Atom(Atom),
    Set(BTreeSet<Atom>),
    Map(BTreeMap<Atom, Atom>),
}

/// A row: column name to value.
pub type Row = BTreeMap<String, Value>;

/// A condition of a `where` clause: `[column, function, value]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    /// The column (`_uuid` for the row's UUID).
    pub column: String,
    /// `==`, `!=`, `includes`, `excludes`, `<`, `<=`, `>`, `>=`.
    pub function: &'static str,
    /// The value compared with.
    pub value: Value,
}

/// A mutation: `[column, mutator, value]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mutation {
    pub column: String,
    /// `insert`, `delete`, `+=`, `-=`, `*=`, `/=`, `%=`.
    pub mutator: &'static str,
    /// The operand.
    pub value: Value,
}

/// A `transact` operation (RFC 7047 §5.2).
#[derive(Clone, Debug, PartialEq)]
pub enum Operation {
    /// Insert a row; `uuid_name` lets later operations refer to it.
    Insert {
        table: String,
        /// Columns.
        row: Row,
        /// Name for `named-uuid` references.
        uuid_name: Option<String>,
    },
    /// Set columns of matching rows.
    Update {
        table: String,
        /// Which rows.
        conditions: Vec<Condition>,
        /// New column values.
        row: Row,
    },
    /// Change set or map columns (or numbers) in place: the minimal write.
    Mutate {
        table: String,
        /// Which rows.
        conditions: Vec<Condition>,
        /// The changes.
        mutations: Vec<Mutation>,
    },
    /// Delete matching rows.
    Delete {
        table: String,
        /// Which rows.
        conditions: Vec<Condition>,
    },
    /// Read matching rows.
    Select {
        table: String,
        /// Which rows.
        conditions: Vec<Condition>,
        /// Columns wanted (all when `None`).
        columns: Option<Vec<String>>,
    },
    /// Abort the transaction unless the matching rows' `columns` equal `rows` (`==`) or not
    /// (`!=`): optimistic concurrency, and idempotent retries.
    Wait {
        table: String,
        /// Which rows.
        conditions: Vec<Condition>,
        /// Columns compared.
        columns: Vec<String>,
        /// `==` or `!=`.
        until: &'static str,
        /// Expected rows.
        rows: Vec<Row>,
    },
    /// A comment for the database log.
    Comment(String),
}

/// The result of one operation that succeeded.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct OperationResult {
    /// UUID of an inserted row.
    pub uuid: Option<String>,
    /// Rows counted by update, mutate, delete.
    pub count: Option<u64>,
    /// Rows returned by select.
    pub rows: Vec<Row>,
}

// ===== Atom =====

impl Atom {
    /// A string atom.
    pub fn string(text: impl Into<String>) -> Atom {
        Atom::String(text.into())
    }

    fn rank(&self) -> u8 {
        match self {
            Atom::Integer(_) => 0,
            Atom::Real(_) => 1,
            Atom::Boolean(_) => 2,
            Atom::String(_) => 3,
            Atom::Uuid(_) => 4,
            Atom::NamedUuid(_) => 5,
        }
    }

    /// The JSON form.
    pub fn to_json(&self) -> Json {
        match self {
            Atom::Integer(value) => json!(value),
            Atom::Real(value) => json!(value),
            Atom::Boolean(value) => json!(value),
            Atom::String(value) => json!(value),
            Atom::Uuid(value) => json!(["uuid", value]),
            Atom::NamedUuid(value) => json!(["named-uuid", value]),
        }
    }

    /// Reads an atom; `None` when `json` is not one.
    pub fn from_json(json: &Json) -> Option<Atom> {
        match json {
            Json::Bool(value) => Some(Atom::Boolean(*value)),
            Json::String(value) => Some(Atom::String(value.clone())),
            Json::Number(number) => number
                .as_i64()
                .map(Atom::Integer)
                .or_else(|| number.as_f64().map(Atom::Real)),
            Json::Array(pair) if pair.len() == 2 => match (pair[0].as_str(), pair[1].as_str()) {
                (Some("uuid"), Some(uuid)) => Some(Atom::Uuid(uuid.to_owned())),
                (Some("named-uuid"), Some(name)) => Some(Atom::NamedUuid(name.to_owned())),
                _ => None,
            },
            _ => None,
        }
    }

    /// The string, if this is a string atom.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Atom::String(value) => Some(value),
            _ => None,
        }
    }

    /// The UUID, if this is a UUID atom.
    pub fn as_uuid(&self) -> Option<&str> {
        match self {
            Atom::Uuid(value) => Some(value),
            _ => None,
        }
    }

    /// The integer, if this is an integer atom.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Atom::Integer(value) => Some(*value),
            _ => None,
        }
    }
}

impl PartialEq for Atom {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Atom {}

impl PartialOrd for Atom {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Atom {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Atom::Integer(a), Atom::Integer(b)) => a.cmp(b),
            (Atom::Real(a), Atom::Real(b)) => a.total_cmp(b),
            (Atom::Boolean(a), Atom::Boolean(b)) => a.cmp(b),
            (Atom::String(a), Atom::String(b))
            | (Atom::Uuid(a), Atom::Uuid(b))
            | (Atom::NamedUuid(a), Atom::NamedUuid(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

// ===== Value =====

impl Value {
    /// A string value.
    pub fn string(text: impl Into<String>) -> Value {
        Value::Atom(Atom::String(text.into()))
    }

    /// An integer value.
    pub fn integer(value: i64) -> Value {
        Value::Atom(Atom::Integer(value))
    }

    /// A UUID value.
    pub fn uuid(uuid: impl Into<String>) -> Value {
        Value::Atom(Atom::Uuid(uuid.into()))
    }

    /// A set of strings.
    pub fn string_set<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> Value {
        Value::Set(
            items
                .into_iter()
                .map(|item| Atom::String(item.into()))
                .collect(),
        )
    }

    /// A string-to-string map.
    pub fn string_map<I: IntoIterator<Item = (K, V)>, K: Into<String>, V: Into<String>>(
        items: I,
    ) -> Value {
        Value::Map(
            items
                .into_iter()
                .map(|(key, value)| (Atom::String(key.into()), Atom::String(value.into())))
                .collect(),
        )
    }

    /// The JSON form.
    pub fn to_json(&self) -> Json {
        match self {
            Value::Atom(atom) => atom.to_json(),
            Value::Set(atoms) => {
                json!(["set", atoms.iter().map(Atom::to_json).collect::<Vec<_>>()])
            }
            Value::Map(pairs) => json!([
                "map",
                pairs
                    .iter()
                    .map(|(k, v)| json!([k.to_json(), v.to_json()]))
                    .collect::<Vec<_>>()
            ]),
        }
    }

    /// Reads a value; `None` when `json` is not one.
    pub fn from_json(json: &Json) -> Option<Value> {
        if let Json::Array(pair) = json
            && pair.len() == 2
        {
            match (pair[0].as_str(), &pair[1]) {
                (Some("set"), Json::Array(items)) => {
                    return items
                        .iter()
                        .map(Atom::from_json)
                        .collect::<Option<_>>()
                        .map(Value::Set);
                }
                (Some("map"), Json::Array(items)) => {
                    return items
                        .iter()
                        .map(|item| match item {
                            Json::Array(kv) if kv.len() == 2 => {
                                Some((Atom::from_json(&kv[0])?, Atom::from_json(&kv[1])?))
                            }
                            _ => None,
                        })
                        .collect::<Option<_>>()
                        .map(Value::Map);
                }
                _ => {}
            }
        }
        Atom::from_json(json).map(Value::Atom)
    }

    /// The value as a set (an atom is a set of one).
    pub fn as_set(&self) -> BTreeSet<Atom> {
        match self {
            Value::Atom(atom) => BTreeSet::from([atom.clone()]),
            Value::Set(atoms) => atoms.clone(),
            Value::Map(_) => BTreeSet::new(),
        }
    }

    /// The value as a map (empty unless it is one).
    pub fn as_map(&self) -> BTreeMap<Atom, Atom> {
        match self {
            Value::Map(map) => map.clone(),
            _ => BTreeMap::new(),
        }
    }

    /// The single atom, if the value is one (or a set of exactly one).
    pub fn as_atom(&self) -> Option<&Atom> {
        match self {
            Value::Atom(atom) => Some(atom),
            Value::Set(atoms) if atoms.len() == 1 => atoms.iter().next(),
            _ => None,
        }
    }
}

/// Reads a row from JSON (columns that are not values are skipped).
pub fn row_from_json(json: &Json) -> Row {
    json.as_object()
        .map(|object| {
            object
                .iter()
                .filter_map(|(column, value)| Some((column.clone(), Value::from_json(value)?)))
                .collect()
        })
        .unwrap_or_default()
}

fn row_to_json(row: &Row) -> Json {
    Json::Object(
        row.iter()
            .map(|(column, value)| (column.clone(), value.to_json()))
            .collect(),
    )
}

// ===== Condition, Mutation, Operation =====

impl Condition {
    /// `column == value`.
    pub fn equals(column: impl Into<String>, value: Value) -> Condition {
        Condition {
            column: column.into(),
            function: "==",
            value,
        }
    }

    /// `column includes value` (set or map inclusion).
    pub fn includes(column: impl Into<String>, value: Value) -> Condition {
        Condition {
            column: column.into(),
            function: "includes",
            value,
        }
    }

    /// The row with this UUID.
    pub fn uuid(uuid: impl Into<String>) -> Condition {
        Condition::equals("_uuid", Value::uuid(uuid))
    }

    fn to_json(&self) -> Json {
        json!([self.column, self.function, self.value.to_json()])
    }
}

impl Mutation {
    /// Adds elements to a set, or pairs to a map.
    pub fn insert(column: impl Into<String>, value: Value) -> Mutation {
        Mutation {
            column: column.into(),
            mutator: "insert",
            value,
        }
    }

    /// Removes elements from a set, or keys (a set) / pairs (a map) from a map.
    pub fn delete(column: impl Into<String>, value: Value) -> Mutation {
        Mutation {
            column: column.into(),
            mutator: "delete",
            value,
        }
    }

    fn to_json(&self) -> Json {
        json!([self.column, self.mutator, self.value.to_json()])
    }
}

impl Operation {
    /// The `op` name.
    pub fn name(&self) -> &'static str {
        match self {
            Operation::Insert { .. } => "insert",
            Operation::Update { .. } => "update",
            Operation::Mutate { .. } => "mutate",
            Operation::Delete { .. } => "delete",
            Operation::Select { .. } => "select",
            Operation::Wait { .. } => "wait",
            Operation::Comment(_) => "comment",
        }
    }

    /// The table, when the operation has one.
    pub fn table(&self) -> Option<&str> {
        match self {
            Operation::Insert { table, .. }
            | Operation::Update { table, .. }
            | Operation::Mutate { table, .. }
            | Operation::Delete { table, .. }
            | Operation::Select { table, .. }
            | Operation::Wait { table, .. } => Some(table),
            Operation::Comment(_) => None,
        }
    }

    /// The JSON form.
    pub fn to_json(&self) -> Json {
        let conditions = |conditions: &[Condition]| {
            Json::Array(conditions.iter().map(Condition::to_json).collect())
        };
        match self {
            Operation::Insert {
                table,
                row,
                uuid_name,
            } => {
                let mut op = json!({"op": "insert", "table": table, "row": row_to_json(row)});
                if let Some(name) = uuid_name {
                    op["uuid-name"] = json!(name);
                }
                op
            }
            Operation::Update {
                table,
                conditions: c,
                row,
            } => {
                json!({"op": "update", "table": table, "where": conditions(c), "row": row_to_json(row)})
            }
            Operation::Mutate {
                table,
                conditions: c,
                mutations,
            } => json!({
                "op": "mutate", "table": table, "where": conditions(c),
                "mutations": mutations.iter().map(Mutation::to_json).collect::<Vec<_>>(),
            }),
            Operation::Delete {
                table,
                conditions: c,
            } => json!({"op": "delete", "table": table, "where": conditions(c)}),
            Operation::Select {
                table,
                conditions: c,
                columns,
            } => {
                let mut op = json!({"op": "select", "table": table, "where": conditions(c)});
                if let Some(columns) = columns {
                    op["columns"] = json!(columns);
                }
                op
            }
            Operation::Wait {
                table,
                conditions: c,
                columns,
                until,
                rows,
            } => json!({
                "op": "wait", "table": table, "where": conditions(c), "columns": columns,
                "until": until, "rows": rows.iter().map(row_to_json).collect::<Vec<_>>(), "timeout": 0,
            }),
            Operation::Comment(comment) => json!({"op": "comment", "comment": comment}),
        }
    }
}

impl OperationResult {
    /// Reads one element of a `transact` result array (one that is not an error).
    pub fn from_json(json: &Json) -> OperationResult {
        OperationResult {
            uuid: json["uuid"]
                .get(1)
                .and_then(Json::as_str)
                .map(str::to_owned),
            count: json["count"].as_u64(),
            rows: json["rows"]
                .as_array()
                .map(|rows| rows.iter().map(row_from_json).collect())
                .unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn any_atom() -> impl Strategy<Value = Atom> {
        prop_oneof![
            any::<i64>().prop_map(Atom::Integer),
            (-1e9f64..1e9).prop_map(|r| Atom::Real(r + 0.5)),
            any::<bool>().prop_map(Atom::Boolean),
            ".*".prop_map(Atom::String),
            "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}".prop_map(Atom::Uuid),
            "row[0-9]{1,3}".prop_map(Atom::NamedUuid),
        ]
    }

    fn any_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            any_atom().prop_map(Value::Atom),
            proptest::collection::btree_set(any_atom(), 0..5).prop_map(Value::Set),
            proptest::collection::btree_map(any_atom(), any_atom(), 0..5).prop_map(Value::Map),
        ]
    }

    proptest! {
        #[test]
        fn values_round_trip_through_json(value in any_value()) {
            prop_assert_eq!(Value::from_json(&value.to_json()), Some(value));
        }
    }

    #[test]
    fn encodes_rfc_7047_forms() {
        assert_eq!(Value::uuid("u1").to_json(), json!(["uuid", "u1"]));
        assert_eq!(
            Value::string_set(["b", "a"]).to_json(),
            json!(["set", ["a", "b"]])
        );
        assert_eq!(
            Value::string_map([("k", "v")]).to_json(),
            json!(["map", [["k", "v"]]])
        );
        let op = Operation::Mutate {
            table: "Address_Set".into(),
            conditions: vec![Condition::equals("name", Value::string("VEG.x.ipv4"))],
            mutations: vec![Mutation::insert(
                "addresses",
                Value::string_set(["198.18.0.1"]),
            )],
        };
        assert_eq!(
            op.to_json(),
            json!({"op": "mutate", "table": "Address_Set", "where": [["name", "==", "VEG.x.ipv4"]],
                   "mutations": [["addresses", "insert", ["set", ["198.18.0.1"]]]]})
        );
    }

    #[test]
    fn a_bare_atom_is_a_set_of_one() {
        assert_eq!(
            Value::string("a").as_set(),
            Value::string_set(["a"]).as_set()
        );
        assert_eq!(Value::Set(BTreeSet::new()).as_atom(), None);
    }
}
