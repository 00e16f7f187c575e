//! Typed rows of the OVN Northbound tables veg manages (ovn-nb(5), schema 7.0.0 plus
//! `Logical_Router_Policy.bfd_sessions` from 7.2.1). Each type reads from and writes to the
//! generic [`Row`]; only the columns listed are managed, the rest of a row is left alone.

use std::collections::{BTreeMap, BTreeSet};

use crate::protocol::{Atom, Row, Value};

/// A typed NB row.
pub trait NbRow: Sized {
    const TABLE: &'static str;
    /// The managed columns (what a monitor of this table must ask for).
    const COLUMNS: &'static [&'static str];
    /// Reads a row (missing columns take their empty value).
    fn from_row(uuid: &str, row: &Row) -> Self;
    /// The managed columns as a row (without `_uuid`).
    fn to_row(&self) -> Row;
    /// Only `columns` of the row: what a writer sets when other columns belong to someone
    /// else (another writer, or OVSDB mutations such as a parent's reference set).
    fn to_row_only(&self, columns: &[&str]) -> Row {
        let mut row = self.to_row();
        row.retain(|column, _| columns.contains(&column.as_str()));
        row
    }
}

/// A reference to another row (a UUID).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Uuid(pub String);

/// A set of references.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Uuids(pub BTreeSet<String>);

/// How one column type reads from and writes to a [`Value`].
pub trait Column: Sized {
    /// Reads it; `None` when the column is absent.
    fn read(value: Option<&Value>) -> Self;
    /// Writes it.
    fn write(&self) -> Value;
}

impl Column for String {
    fn read(value: Option<&Value>) -> Self {
        value
            .and_then(Value::as_atom)
            .and_then(Atom::as_str)
            .unwrap_or("")
            .to_owned()
    }
    fn write(&self) -> Value {
        Value::string(self.as_str())
    }
}

impl Column for i64 {
    fn read(value: Option<&Value>) -> Self {
        value
            .and_then(Value::as_atom)
            .and_then(Atom::as_i64)
            .unwrap_or(0)
    }
    fn write(&self) -> Value {
        Value::integer(*self)
    }
}

impl Column for Option<i64> {
    fn read(value: Option<&Value>) -> Self {
        value.and_then(Value::as_atom).and_then(Atom::as_i64)
    }
    fn write(&self) -> Value {
        Value::Set(self.iter().map(|v| Atom::Integer(*v)).collect())
    }
}

impl Column for Option<String> {
    fn read(value: Option<&Value>) -> Self {
        value
            .and_then(Value::as_atom)
            .and_then(Atom::as_str)
            .map(str::to_owned)
    }
    fn write(&self) -> Value {
        Value::Set(self.iter().map(|v| Atom::String(v.clone())).collect())
    }
}

impl Column for Option<Uuid> {
    fn read(value: Option<&Value>) -> Self {
        value
            .and_then(Value::as_atom)
            .and_then(Atom::as_uuid)
            .map(|uuid| Uuid(uuid.to_owned()))
    }
    fn write(&self) -> Value {
        Value::Set(self.iter().map(|uuid| Atom::Uuid(uuid.0.clone())).collect())
    }
}

impl Column for BTreeSet<String> {
    fn read(value: Option<&Value>) -> Self {
        value
            .map(Value::as_set)
            .unwrap_or_default()
            .iter()
            .filter_map(|atom| atom.as_str().map(str::to_owned))
            .collect()
    }
    fn write(&self) -> Value {
        Value::string_set(self.iter().cloned())
    }
}

impl Column for Uuids {
    fn read(value: Option<&Value>) -> Self {
        Uuids(
            value
                .map(Value::as_set)
                .unwrap_or_default()
                .iter()
                .filter_map(|atom| atom.as_uuid().map(str::to_owned))
                .collect(),
        )
    }
    fn write(&self) -> Value {
        Value::Set(self.0.iter().map(|uuid| Atom::Uuid(uuid.clone())).collect())
    }
}

impl Column for BTreeMap<String, String> {
    fn read(value: Option<&Value>) -> Self {
        value
            .map(Value::as_map)
            .unwrap_or_default()
            .iter()
            .filter_map(|(key, value)| Some((key.as_str()?.to_owned(), value.as_str()?.to_owned())))
            .collect()
    }
    fn write(&self) -> Value {
        Value::string_map(self.iter().map(|(k, v)| (k.clone(), v.clone())))
    }
}

/// Declares a typed row: `Type, "Table" { field: Type = "column", … }`.
macro_rules! nb_table {
    ($(#[$doc:meta])* $name:ident, $table:literal { $($(#[$field_doc:meta])* $field:ident: $kind:ty = $column:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default, PartialEq, Eq)]
        pub struct $name {
            /// The row's UUID (empty for a row not yet inserted).
            pub uuid: String,
            $($(#[$field_doc])* pub $field: $kind,)*
        }

        impl NbRow for $name {
            const TABLE: &'static str = $table;
            const COLUMNS: &'static [&'static str] = &[$($column),*];

            fn from_row(uuid: &str, row: &Row) -> Self {
                $name { uuid: uuid.to_owned(), $($field: <$kind as Column>::read(row.get($column)),)* }
            }

            fn to_row(&self) -> Row {
                let mut row = Row::new();
                $(row.insert($column.to_owned(), Column::write(&self.$field));)*
                row
            }
        }
    };
}

nb_table!(
    /// `NB_Global`: the one global row.
    NbGlobal, "NB_Global" {
        name: String = "name",
        options: BTreeMap<String, String> = "options",
        /// `external_ids`.
        external_ids: BTreeMap<String, String> = "external_ids",
    }
);

nb_table!(
    /// `Logical_Router`: a VPC's router.
    LogicalRouter, "Logical_Router" {
        name: String = "name",
        /// `ports` (Logical_Router_Port).
        ports: Uuids = "ports",
        /// `static_routes` (Logical_Router_Static_Route).
        static_routes: Uuids = "static_routes",
        /// `policies` (Logical_Router_Policy).
        policies: Uuids = "policies",
        /// `external_ids`.
        external_ids: BTreeMap<String, String> = "external_ids",
    }
);

nb_table!(
    /// `Logical_Router_Policy`: the 29150/29100/29090 reroutes and drops.
    LogicalRouterPolicy, "Logical_Router_Policy" {
        priority: i64 = "priority",
        match_: String = "match",
        /// `action`: `allow`, `drop` or `reroute`.
        action: String = "action",
        nexthops: BTreeSet<String> = "nexthops",
        options: BTreeMap<String, String> = "options",
        /// `external_ids`.
        external_ids: BTreeMap<String, String> = "external_ids",
    }
);

nb_table!(
    /// `Logical_Router_Port`, e.g. `bfd@<vpc>`.
    LogicalRouterPort, "Logical_Router_Port" {
        name: String = "name",
        mac: String = "mac",
        networks: BTreeSet<String> = "networks",
        /// `ha_chassis_group`.
        ha_chassis_group: Option<Uuid> = "ha_chassis_group",
        options: BTreeMap<String, String> = "options",
        /// `external_ids`.
        external_ids: BTreeMap<String, String> = "external_ids",
    }
);

nb_table!(
    /// `Logical_Router_Static_Route`.
    LogicalRouterStaticRoute, "Logical_Router_Static_Route" {
        /// `ip_prefix`.
        ip_prefix: String = "ip_prefix",
        nexthop: String = "nexthop",
        /// `output_port`.
        output_port: Option<String> = "output_port",
        /// `policy`: `src-ip` or `dst-ip`.
        policy: Option<String> = "policy",
        /// `external_ids`.
        external_ids: BTreeMap<String, String> = "external_ids",
    }
);

nb_table!(
    /// `Logical_Switch`: a subnet.
    LogicalSwitch, "Logical_Switch" {
        name: String = "name",
        /// `ports` (Logical_Switch_Port).
        ports: Uuids = "ports",
        /// `other_config`.
        other_config: BTreeMap<String, String> = "other_config",
        /// `external_ids`.
        external_ids: BTreeMap<String, String> = "external_ids",
    }
);

nb_table!(
    /// `Logical_Switch_Port`: a Pod's port.
    LogicalSwitchPort, "Logical_Switch_Port" {
        /// `name` (`<pod>.<namespace>` in Kube-OVN).
        name: String = "name",
        type_: String = "type",
        addresses: BTreeSet<String> = "addresses",
        options: BTreeMap<String, String> = "options",
        /// `external_ids`.
        external_ids: BTreeMap<String, String> = "external_ids",
    }
);

nb_table!(
    /// `Address_Set`, e.g. `VEG.<hash>.ipv4`.
    AddressSet, "Address_Set" {
        name: String = "name",
        addresses: BTreeSet<String> = "addresses",
        /// `external_ids`.
        external_ids: BTreeMap<String, String> = "external_ids",
    }
);

nb_table!(
    /// `Port_Group`, e.g. `VEG.<hash>`.
    PortGroup, "Port_Group" {
        name: String = "name",
        /// `ports` (Logical_Switch_Port).
        ports: Uuids = "ports",
        /// `external_ids`.
        external_ids: BTreeMap<String, String> = "external_ids",
    }
);

nb_table!(
    /// `BFD`: one session from a router port to a gateway instance.
    Bfd, "BFD" {
        /// `logical_port`.
        logical_port: String = "logical_port",
        /// `dst_ip`.
        dst_ip: String = "dst_ip",
        /// `min_tx`, ms.
        min_tx: Option<i64> = "min_tx",
        /// `min_rx`, ms.
        min_rx: Option<i64> = "min_rx",
        /// `detect_mult`.
        detect_mult: Option<i64> = "detect_mult",
        options: BTreeMap<String, String> = "options",
        /// `external_ids`.
        external_ids: BTreeMap<String, String> = "external_ids",
    }
);

nb_table!(
    /// `HA_Chassis_Group`, e.g. `bfd@<vpc>`.
    HaChassisGroup, "HA_Chassis_Group" {
        name: String = "name",
        /// `ha_chassis` (HA_Chassis).
        ha_chassis: Uuids = "ha_chassis",
        /// `external_ids`.
        external_ids: BTreeMap<String, String> = "external_ids",
    }
);

nb_table!(
    /// `HA_Chassis`: a member of a group with its priority.
    HaChassis, "HA_Chassis" {
        /// `chassis_name`.
        chassis_name: String = "chassis_name",
        priority: i64 = "priority",
        /// `external_ids`.
        external_ids: BTreeMap<String, String> = "external_ids",
    }
);

/// A monitor entry for `T`: its table and `columns`, or every managed column when `columns` is
/// empty (for [`MonitorSpec`](crate::MonitorSpec)).
pub fn watch<T: NbRow>(columns: &[&str]) -> (String, Vec<String>) {
    let columns = if columns.is_empty() {
        T::COLUMNS
    } else {
        columns
    };
    (
        T::TABLE.to_owned(),
        columns.iter().map(|c| (*c).to_owned()).collect(),
    )
}

/// One column of a generic row as `T` (its empty value when the column is absent), for code
/// that reads a few columns without a typed row.
pub fn column<T: Column>(row: &Row, name: &str) -> T {
    T::read(row.get(name))
}

/// `BFD.status` is written by OVN, never by us: read it separately.
pub fn bfd_status(row: &Row) -> Option<String> {
    <Option<String> as Column>::read(row.get("status"))
}

/// `Logical_Router_Policy.bfd_sessions` (NB ≥ 7.2.1): read it when the schema has it.
pub fn policy_bfd_sessions(row: &Row) -> Uuids {
    Uuids::read(row.get("bfd_sessions"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_rows_round_trip_through_generic_rows() {
        let policy = LogicalRouterPolicy {
            uuid: "u1".into(),
            priority: 29100,
            match_: "ip4.src == $VEG.8ca38ae7da18.ipv4".into(),
            action: "reroute".into(),
            nexthops: ["198.18.0.12".to_owned(), "198.18.0.13".to_owned()].into(),
            options: BTreeMap::new(),
            external_ids: [("af".to_owned(), "4".to_owned())].into(),
        };
        assert_eq!(
            LogicalRouterPolicy::from_row("u1", &policy.to_row()),
            policy
        );
        let port = LogicalRouterPort {
            uuid: "u2".into(),
            name: "bfd@ovn-cluster".into(),
            mac: "00:00:5e:00:53:01".into(),
            networks: ["203.0.113.254/32".to_owned()].into(),
            ha_chassis_group: Some(Uuid("g1".into())),
            options: [("bfd-only".to_owned(), "true".to_owned())].into(),
            external_ids: BTreeMap::new(),
        };
        assert_eq!(LogicalRouterPort::from_row("u2", &port.to_row()), port);
        let bfd = Bfd {
            uuid: "u3".into(),
            logical_port: "bfd@ovn-cluster".into(),
            dst_ip: "198.18.0.12".into(),
            min_tx: Some(100),
            ..Bfd::default()
        };
        assert_eq!(Bfd::from_row("u3", &bfd.to_row()), bfd);
        assert_eq!(bfd.to_row()["min_rx"], Value::Set(BTreeSet::new()));
    }
}
