use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::json;

use super::*;

fn schema() -> Schema {
    Schema::from_json(&json!({"tables": {"Address_Set": {"columns": {
        "name": {"type": "string"},
        "addresses": {"type": {"key": "string", "min": 0, "max": "unlimited"}},
        "external_ids": {"type": {"key": "string", "value": "string", "min": 0, "max": "unlimited"}},
        "priority": {"type": "integer"}}}}}))
}

const KEY: &[&str] = &["name"];

fn desired(rows: Vec<Row>) -> Desired<'static> {
    Desired {
        table: "Address_Set",
        key: KEY,
        rows,
        parent: None,
        names: Vec::new(),
    }
}

/// Applies the operations the diff emits (root table only) the way ovsdb-server would.
fn apply(schema: &Schema, rows: &mut BTreeMap<String, Row>, operations: &[Operation]) {
    let target = |conditions: &[Condition]| {
        conditions
            .first()
            .and_then(|c| c.value.as_atom()?.as_uuid().map(str::to_owned))
    };
    for (index, operation) in operations.iter().enumerate() {
        match operation {
            Operation::Insert { row, .. } => {
                rows.insert(format!("new-{index}-{}", rows.len()), row.clone());
            }
            Operation::Update {
                conditions, row, ..
            } => {
                let uuid = target(conditions).unwrap_or_default();
                rows.entry(uuid).or_default().extend(row.clone());
            }
            Operation::Mutate {
                conditions,
                mutations,
                table,
            } => {
                let uuid = target(conditions).unwrap_or_default();
                let current = rows.entry(uuid).or_default();
                for mutation in mutations {
                    let kind = schema.column(table, &mutation.column);
                    let value = current
                        .get(&mutation.column)
                        .cloned()
                        .unwrap_or(Value::Set(Default::default()));
                    let next = match (kind, mutation.mutator, &mutation.value) {
                        (Some(ColumnKind::Set), "insert", operand) => {
                            Value::Set(value.as_set().union(&operand.as_set()).cloned().collect())
                        }
                        (Some(ColumnKind::Set), "delete", operand) => Value::Set(
                            value
                                .as_set()
                                .difference(&operand.as_set())
                                .cloned()
                                .collect(),
                        ),
                        (Some(ColumnKind::Map), "insert", operand) => {
                            let mut map = value.as_map();
                            for (key, item) in operand.as_map() {
                                map.entry(key).or_insert(item);
                            }
                            Value::Map(map)
                        }
                        (Some(ColumnKind::Map), "delete", Value::Set(keys)) => {
                            let mut map = value.as_map();
                            map.retain(|key, _| !keys.contains(key));
                            Value::Map(map)
                        }
                        other => panic!("unexpected mutation {other:?}"),
                    };
                    current.insert(mutation.column.clone(), next);
                }
            }
            Operation::Delete { conditions, .. } => {
                rows.remove(&target(conditions).unwrap_or_default());
            }
            other => panic!("unexpected operation {other:?}"),
        }
    }
}

/// The rows projected on the desired columns, sorted, for comparison.
fn projected(rows: &BTreeMap<String, Row>, columns: &[&str]) -> Vec<Vec<Option<Value>>> {
    let mut all: Vec<Vec<Option<Value>>> = rows
        .values()
        .map(|row| columns.iter().map(|c| row.get(*c).cloned()).collect())
        .collect();
    all.sort_by_key(|row| format!("{row:?}"));
    all
}

fn address_set(name: &str, addresses: &[String], owner: &[(&str, &str)], priority: i64) -> Row {
    let mut row = Row::new();
    row.insert("name".into(), Value::string(name));
    row.insert(
        "addresses".into(),
        Value::string_set(addresses.iter().cloned()),
    );
    row.insert(
        "external_ids".into(),
        Value::string_map(owner.iter().copied()),
    );
    row.insert("priority".into(), Value::integer(priority));
    row
}

prop_compose! {
    fn any_row(names: &'static [&'static str])(
        name in proptest::sample::select(names),
        addresses in proptest::collection::vec("198\\.18\\.[0-3]\\.[0-3]", 0..6),
        af in proptest::sample::select(&["4", "6"][..]),
        extra in proptest::option::of(proptest::sample::select(&["x", "y"][..])),
        priority in 0i64..3,
    ) -> Row {
        let mut owner = vec![("vendor", "kube-ovn"), ("af", af)];
        if let Some(extra) = extra { owner.push(("extra", extra)); }
        address_set(name, &addresses, &owner, priority)
    }
}

const NAMES: &[&str] = &["VEG.a.ipv4", "VEG.a.ipv6", "VEG.b.ipv4", "VEG.c.ipv4"];

proptest! {
    #[test]
    fn applying_the_diff_yields_the_desired_rows_and_a_second_diff_is_empty(
        current in proptest::collection::vec(any_row(NAMES), 0..6),
        wanted in proptest::collection::vec(any_row(NAMES), 0..4),
    ) {
        let schema = schema();
        // Desired rows have distinct keys; current rows may repeat one (duplicates are cleaned).
        let mut seen = std::collections::BTreeSet::new();
        let wanted: Vec<Row> = wanted.into_iter().filter(|row| seen.insert(format!("{:?}", row["name"]))).collect();
        let mut rows: BTreeMap<String, Row> = current.into_iter().enumerate().map(|(i, row)| (format!("u{i}"), row)).collect();
        let operations = diff(&schema, &desired(wanted.clone()), &rows);
        apply(&schema, &mut rows, &operations);
        let columns = ["name", "addresses", "external_ids", "priority"];
        let expected: BTreeMap<String, Row> = wanted.iter().enumerate().map(|(i, row)| (format!("w{i}"), row.clone())).collect();
        prop_assert_eq!(projected(&rows, &columns), projected(&expected, &columns));
        prop_assert_eq!(diff(&schema, &desired(wanted), &rows), Vec::<Operation>::new());
    }
}

#[test]
fn one_address_changed_in_ten_thousand_is_one_small_mutate() {
    let schema = schema();
    let addresses: Vec<String> = (0..10_000)
        .map(|i| format!("198.18.{}.{}", i / 256, i % 256))
        .collect();
    let owner = [("vendor", "kube-ovn")];
    let current = BTreeMap::from([(
        "u1".to_owned(),
        address_set("VEG.a.ipv4", &addresses, &owner, 0),
    )]);
    let mut changed = addresses.clone();
    changed[1234] = "198.19.0.1".into();
    let operations = diff(
        &schema,
        &desired(vec![address_set("VEG.a.ipv4", &changed, &owner, 0)]),
        &current,
    );
    assert_eq!(operations.len(), 1, "{operations:?}");
    let Operation::Mutate { mutations, .. } = &operations[0] else {
        panic!("{operations:?}")
    };
    assert_eq!(mutations.len(), 2);
    let size = serde_json::to_string(&operations[0].to_json())
        .map(|text| text.len())
        .unwrap_or(usize::MAX);
    assert!(size < 250, "the mutate is {size} bytes");
}

#[test]
fn non_root_rows_are_linked_and_unlinked_through_their_parent() {
    let schema = Schema::from_json(&json!({"tables": {"Logical_Router_Policy": {"columns": {
        "priority": {"type": "integer"}, "match": {"type": "string"},
        "nexthops": {"type": {"key": "string", "min": 0, "max": "unlimited"}}}}}}));
    let parent = Parent {
        table: "Logical_Router".into(),
        conditions: vec![Condition::equals("name", Value::string("ovn-cluster"))],
        column: "policies".into(),
    };
    let policy = |matching: &str| -> Row {
        [
            ("priority".to_owned(), Value::integer(29100)),
            ("match".to_owned(), Value::string(matching)),
            ("nexthops".to_owned(), Value::string_set(["198.18.0.12"])),
        ]
        .into()
    };
    let current = BTreeMap::from([("old".to_owned(), policy("ip4.src == $old"))]);
    let wanted = Desired {
        table: "Logical_Router_Policy",
        key: &["priority", "match"],
        rows: vec![policy("ip4.src == $new")],
        parent: Some(parent),
        names: Vec::new(),
    };
    let operations: Vec<serde_json::Value> = diff(&schema, &wanted, &current)
        .iter()
        .map(Operation::to_json)
        .collect();
    assert_eq!(operations.len(), 3);
    assert_eq!(operations[0]["op"], "insert");
    assert_eq!(operations[0]["uuid-name"], "Logical_Router_Policy_0");
    assert_eq!(
        operations[1]["mutations"],
        json!([[
            "policies",
            "insert",
            ["set", [["named-uuid", "Logical_Router_Policy_0"]]]
        ]])
    );
    assert_eq!(
        operations[2]["mutations"],
        json!([["policies", "delete", ["set", [["uuid", "old"]]]]])
    );
}

/// An optional value (min 0, max 1) is written whole with `update`, never toggled with a
/// `mutate` (whose `update2` echo would carry the new value, not a difference).
#[test]
fn an_optional_value_is_updated_whole() {
    let schema = Schema::from_json(&json!({"tables": {"BFD": {"columns": {
        "dst_ip": {"type": "string"},
        "detect_mult": {"type": {"key": {"type": "integer", "minInteger": 1}, "min": 0, "max": 1}}}}}}));
    let row = |mult: i64| -> Row {
        Row::from([
            ("dst_ip".to_owned(), Value::string("198.18.0.12")),
            ("detect_mult".to_owned(), Value::Atom(Atom::Integer(mult))),
        ])
    };
    let current = BTreeMap::from([("u1".to_owned(), row(3))]);
    let wanted = Desired {
        table: "BFD",
        key: &["dst_ip"],
        rows: vec![Row::from([
            ("dst_ip".to_owned(), Value::string("198.18.0.12")),
            (
                "detect_mult".to_owned(),
                Value::Set([Atom::Integer(5)].into()),
            ),
        ])],
        parent: None,
        names: Vec::new(),
    };
    let operations = diff(&schema, &wanted, &current);
    assert!(
        matches!(operations.as_slice(), [Operation::Update { row, .. }]
            if row.get("detect_mult").map(Value::as_set) == Some([Atom::Integer(5)].into())),
        "{operations:?}"
    );
    // The same value in another shape (a bare atom vs a set of one) is no change.
    let same = BTreeMap::from([("u1".to_owned(), row(5))]);
    assert!(diff(&schema, &wanted, &same).is_empty());
}
