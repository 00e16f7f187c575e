//! Update notifications of any shape against the replica built from Kube-OVN's real NB schema
//! (`fuzz/ovn-nb.ovsschema`, from the pinned OVN build): applying never panics, the typed NB
//! rows read back from whatever it holds, and the indexes agree with the rows.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use veg_ovsdb::nb::{AddressSet, LogicalRouter, LogicalRouterPolicy, PortGroup};
use veg_ovsdb::{Replica, Schema};

static SCHEMA: LazyLock<Schema> = LazyLock::new(|| {
    let text = include_str!("../ovn-nb.ovsschema");
    Schema::from_json(&serde_json::from_str(text).unwrap_or_default())
});

fuzz_target!(|data: &[u8]| {
    let Ok(updates) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let mut replica = Replica::default();
    replica.apply(&SCHEMA, &updates);
    replica.apply_rfc7047(&updates);
    let _ = replica.rows::<LogicalRouter>().count();
    let _ = replica.rows::<LogicalRouterPolicy>().count();
    for set in replica.rows::<AddressSet>() {
        assert!(
            replica
                .uuids_named("Address_Set", &set.name)
                .any(|uuid| *uuid == set.uuid),
            "the name index lost {}",
            set.name
        );
    }
    let _ = replica.rows::<PortGroup>().count();
    // Applying the same update2 again leaves the same rows present (inserts and deletes are
    // idempotent; a modify changes contents only).
    let mut again = Replica::default();
    again.apply(&SCHEMA, &updates);
    let before: Vec<_> = again
        .table("Address_Set")
        .map(|(uuid, _)| uuid.clone())
        .collect();
    again.apply(&SCHEMA, &updates);
    let after: Vec<_> = again
        .table("Address_Set")
        .map(|(uuid, _)| uuid.clone())
        .collect();
    assert_eq!(before, after);
});
