//! The controller's NB apply against a real `ovsdb-server` with OVN's Northbound schema
//! (Debian's 7.0.0, and the same plus `Logical_Router_Policy.bfd_sessions` as OVN 24.03 has):
//! rows as Kube-OVN writes them, a second apply is a no-op, BFD timers change in place, an
//! interrupted apply converges without duplicates, a `spec.vpc` change and a delete leave
//! nothing behind, and rows of other owners are untouched.

use veg_testkit::ovsdb as server;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Result, ensure};
use server::{Servers, prerequisites};
use veg_api::TrafficPolicy;
use veg_api::names::AddressFamily;
use veg_controller::BfdMode;
use veg_controller::apply::nb;
use veg_controller::plan::context::{BfdInputs, FamilyInputs, GatewayInputs};
use veg_controller::plan::ovn;
use veg_ovsdb::{Atom, Client, ClientConfig, Operation, Row, Value};

fn ip(text: &str) -> IpAddr {
    text.parse()
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

/// default/gateway1 (h = 8ca38ae7da18): SNAT 198.19.0.0/16, selected Pod web.default, two
/// instances; BFD when `bfd`.
fn inputs(router: &str, nexthops: &[&str], bfd: Option<(i32, i32, i32)>) -> GatewayInputs {
    let mut family = FamilyInputs {
        sources: ["198.19.0.0/16".parse().ok()]
            .into_iter()
            .flatten()
            .collect(),
        bfd_ip: bfd.map(|_| ip("198.18.255.254")),
        ..FamilyInputs::default()
    };
    for (index, hop) in nexthops.iter().enumerate() {
        family
            .nexthops
            .entry(format!("worker{index}"))
            .or_default()
            .insert(ip(hop));
    }
    GatewayInputs {
        key: "default/gateway1".into(),
        namespace: "default".into(),
        name: "gateway1".into(),
        vpc: router.into(),
        router: router.into(),
        has_selectors: true,
        ports: ["web.default".to_owned(), "missing.default".to_owned()].into(),
        selected_addresses: BTreeSet::new(),
        excluded_namespaces: 0,
        traffic_policy: TrafficPolicy::Cluster,
        bfd: bfd.map(|(min_tx, min_rx, multiplier)| BfdInputs {
            port: format!("bfd@{router}"),
            min_tx,
            min_rx,
            multiplier,
        }),
        families: BTreeMap::from([(AddressFamily::V4, family)]),
        instances: vec![],
        messages: vec![],
        unschedulable: vec![],
        workload: Default::default(),
    }
}

struct Nb {
    _servers: Servers,
    remote: String,
}

impl Nb {
    /// A standalone NB with two routers, a switch with the Pod's port, and rows of other
    /// owners that must survive.
    async fn new(schema: Option<&Path>) -> Result<Nb> {
        let servers = match schema {
            Some(schema) => Servers::standalone_with_schema(schema)?,
            None => Servers::standalone()?,
        };
        let nb = Nb {
            remote: format!("unix:{}", servers.socket(0).display()),
            _servers: servers,
        };
        let client = nb.client().await?;
        let row = |pairs: Vec<(&str, Value)>| -> Row {
            pairs.into_iter().map(|(c, v)| (c.to_owned(), v)).collect()
        };
        let foreign_ids = Value::string_map([("vendor", "someone-else")]);
        client
            .transact(&[
                Operation::Insert {
                    table: "NB_Global".into(),
                    row: Row::new(),
                    uuid_name: None,
                },
                Operation::Insert {
                    table: "Logical_Switch_Port".into(),
                    row: row(vec![("name", Value::string("web.default"))]),
                    uuid_name: Some("lsp".into()),
                },
                Operation::Insert {
                    table: "Logical_Switch".into(),
                    row: row(vec![
                        ("name", Value::string("ovn-default")),
                        ("ports", Value::Set([Atom::NamedUuid("lsp".into())].into())),
                    ]),
                    uuid_name: None,
                },
                Operation::Insert {
                    table: "Logical_Router_Policy".into(),
                    row: row(vec![
                        ("priority", Value::integer(31000)),
                        ("match", Value::string("ip4.dst == 198.18.0.0/16")),
                        ("action", Value::string("allow")),
                        ("external_ids", foreign_ids.clone()),
                    ]),
                    uuid_name: Some("allow".into()),
                },
                Operation::Insert {
                    table: "Logical_Router".into(),
                    row: row(vec![
                        ("name", Value::string("ovn-cluster")),
                        (
                            "policies",
                            Value::Set([Atom::NamedUuid("allow".into())].into()),
                        ),
                    ]),
                    uuid_name: None,
                },
                Operation::Insert {
                    table: "Logical_Router".into(),
                    row: row(vec![("name", Value::string("vpc1"))]),
                    uuid_name: None,
                },
                Operation::Insert {
                    table: "Address_Set".into(),
                    row: row(vec![
                        ("name", Value::string("other")),
                        ("external_ids", foreign_ids),
                    ]),
                    uuid_name: None,
                },
            ])
            .await?;
        Ok(nb)
    }

    async fn client(&self) -> Result<Client> {
        let config = ClientConfig::northbound(&self.remote, nb::monitor_spec())?;
        Ok(Client::connect(config, Duration::from_secs(5)).await?)
    }
}

fn text(row: &Row, column: &str) -> String {
    row.get(column)
        .and_then(Value::as_atom)
        .and_then(Atom::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn strings(row: &Row, column: &str) -> Vec<String> {
    row.get(column)
        .map(Value::as_set)
        .unwrap_or_default()
        .iter()
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect()
}

fn map(row: &Row, column: &str) -> BTreeMap<String, String> {
    row.get(column)
        .map(Value::as_map)
        .unwrap_or_default()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.as_str()?.to_owned())))
        .collect()
}

/// Every policy on `router`: "priority match action [nexthops] af".
fn policies(client: &Client, router: &str) -> Vec<String> {
    let replica = client.replica();
    let Some((_, router)) = replica
        .table("Logical_Router")
        .find(|(_, row)| text(row, "name") == router)
    else {
        return vec![];
    };
    let mut out: Vec<String> = router
        .get("policies")
        .map(Value::as_set)
        .unwrap_or_default()
        .iter()
        .filter_map(|uuid| replica.row("Logical_Router_Policy", uuid.as_uuid()?))
        .map(|row| {
            format!(
                "{} {} {} [{}] {}",
                row.get("priority")
                    .and_then(Value::as_atom)
                    .and_then(Atom::as_i64)
                    .unwrap_or(0),
                text(row, "match"),
                text(row, "action"),
                strings(row, "nexthops").join(","),
                map(row, "external_ids")
                    .get("af")
                    .cloned()
                    .unwrap_or_default()
            )
        })
        .collect();
    out.sort();
    out
}

/// (table, name-ish) of every row in the monitored tables, to compare whole databases.
fn dump(client: &Client) -> BTreeSet<String> {
    let replica = client.replica();
    let mut rows = BTreeSet::new();
    for table in ["Address_Set", "Port_Group", "BFD", "Logical_Router_Policy"] {
        for (_, row) in replica.table(table) {
            let mut fields: Vec<String> = row
                .iter()
                .filter(|(column, _)| {
                    !["ports", "bfd_sessions", "status", "_version"].contains(&column.as_str())
                })
                .map(|(column, value)| {
                    // One value has two spellings (a bare atom, a set of one): use one.
                    let value = match value {
                        Value::Set(set) if set.len() == 1 => set
                            .iter()
                            .next()
                            .cloned()
                            .map_or(value.clone(), Value::Atom),
                        other => other.clone(),
                    };
                    format!("{column}={value:?}")
                })
                .collect();
            fields.sort();
            rows.insert(format!("{table} {}", fields.join(" ")));
        }
    }
    rows
}

fn count(client: &Client, table: &str) -> usize {
    client.replica().table(table).count()
}

#[tokio::test]
async fn rows_are_kube_ovns_and_a_second_apply_is_a_no_op() -> Result<()> {
    if !prerequisites() {
        return Ok(());
    }
    let nb = Nb::new(None).await?;
    let client = nb.client().await?;
    let desired = ovn::plan(
        &inputs("ovn-cluster", &["198.18.0.12", "198.18.0.13"], None),
        BfdMode::Native,
    );
    ensure!(nb::apply(&client, &desired).await? > 0);
    ensure!(
        policies(&client, "ovn-cluster")
            == [
                "29100 ip4.src == $VEG.8ca38ae7da18.ipv4 reroute [198.18.0.12,198.18.0.13] 4",
                "29100 ip4.src == $VEG.8ca38ae7da18_ip4 reroute [198.18.0.12,198.18.0.13] 4",
                "31000 ip4.dst == 198.18.0.0/16 allow [] ",
            ],
        "policies: {:#?}",
        policies(&client, "ovn-cluster")
    );
    {
        let replica = client.replica();
        let set = replica
            .table("Address_Set")
            .find(|(_, row)| text(row, "name") == "VEG.8ca38ae7da18.ipv4")
            .map(|(_, row)| row.clone())
            .unwrap_or_default();
        ensure!(strings(&set, "addresses") == ["198.19.0.0/16"]);
        ensure!(
            map(&set, "external_ids")
                == BTreeMap::from([
                    ("af".to_owned(), "4".to_owned()),
                    ("vendor".to_owned(), "kube-ovn".to_owned()),
                    (
                        "vpc-egress-gateway".to_owned(),
                        "default/gateway1".to_owned()
                    ),
                ])
        );
        let (_, group) = replica
            .table("Port_Group")
            .find(|(_, row)| text(row, "name") == "VEG.8ca38ae7da18")
            .ok_or_else(|| anyhow::anyhow!("no port group"))?;
        let lsp = replica
            .table("Logical_Switch_Port")
            .find(|(_, row)| text(row, "name") == "web.default")
            .map(|(uuid, _)| uuid.clone())
            .unwrap_or_default();
        // The unknown port is skipped, the known one is in.
        ensure!(group.get("ports").map(Value::as_set) == Some([Atom::Uuid(lsp)].into()));
    }
    ensure!(
        nb::apply(&client, &desired).await? == 0,
        "a second apply must change nothing: {:?}",
        nb::operations(&client.replica(), &client.schema(), &desired)
    );
    // A fresh controller (new connection, new replica) agrees.
    let restarted = nb.client().await?;
    ensure!(nb::apply(&restarted, &desired).await? == 0);
    Ok(())
}

/// Debian's NB 7.0.0 plus `Logical_Router_Policy.bfd_sessions`, as OVN 24.03 has it.
fn schema_with_bfd_sessions() -> Result<std::path::PathBuf> {
    let mut schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(server::NB_SCHEMA)?)?;
    schema["version"] = serde_json::json!("7.2.1");
    schema["tables"]["Logical_Router_Policy"]["columns"]["bfd_sessions"] = serde_json::json!({
        "type": {"key": {"type": "uuid", "refTable": "BFD", "refType": "weak"},
                 "min": 0, "max": "unlimited"}});
    let file = std::env::temp_dir().join(format!("vc{}-nb-7.2.1.ovsschema", std::process::id()));
    std::fs::write(&file, serde_json::to_vec(&schema)?)?;
    Ok(file)
}

/// (dst_ip, min_rx, min_tx, detect_mult, uuid) of every BFD row.
fn bfd_rows(client: &Client) -> Vec<(String, i64, i64, i64, String)> {
    let replica = client.replica();
    let number = |row: &Row, column: &str| {
        row.get(column)
            .map(Value::as_set)
            .unwrap_or_default()
            .iter()
            .find_map(Atom::as_i64)
            .unwrap_or(-1)
    };
    let mut rows: Vec<_> = replica
        .table("BFD")
        .map(|(uuid, row)| {
            (
                text(row, "dst_ip"),
                number(row, "min_rx"),
                number(row, "min_tx"),
                number(row, "detect_mult"),
                uuid.clone(),
            )
        })
        .collect();
    rows.sort();
    rows
}

/// The BFD uuids linked from the 29100 policies.
fn linked_sessions(client: &Client) -> BTreeSet<String> {
    let replica = client.replica();
    replica
        .table("Logical_Router_Policy")
        .filter(|(_, row)| text(row, "action") == "reroute")
        .flat_map(|(_, row)| {
            row.get("bfd_sessions")
                .map(Value::as_set)
                .unwrap_or_default()
        })
        .filter_map(|atom| atom.as_uuid().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn native_bfd_rows_are_linked_and_follow_timers_and_instances() -> Result<()> {
    if !prerequisites() {
        return Ok(());
    }
    let schema = schema_with_bfd_sessions()?;
    let nb = Nb::new(Some(&schema)).await;
    let _ = std::fs::remove_file(&schema);
    let nb = nb?;
    let client = nb.client().await?;
    let two = ovn::plan(
        &inputs(
            "ovn-cluster",
            &["198.18.0.12", "198.18.0.13"],
            Some((100, 200, 3)),
        ),
        BfdMode::Native,
    );
    nb::apply(&client, &two).await?;
    let rows = bfd_rows(&client);
    // min_rx mirrors the Pod's minTX (100), min_tx its minRX (200).
    ensure!(
        rows.iter()
            .map(|r| (r.0.as_str(), r.1, r.2, r.3))
            .collect::<Vec<_>>()
            == [("198.18.0.12", 100, 200, 3), ("198.18.0.13", 100, 200, 3)],
        "{rows:?}"
    );
    let uuids: BTreeSet<String> = rows.iter().map(|r| r.4.clone()).collect();
    ensure!(linked_sessions(&client) == uuids, "sessions not linked");
    ensure!(
        policies(&client, "ovn-cluster")
            .iter()
            .filter(|p| p.contains(" drop "))
            .count()
            == 2,
        "no 29090 drop rows"
    );
    ensure!(
        nb::apply(&client, &two).await? == 0,
        "BFD apply not idempotent"
    );

    // Timer change: the same rows, updated in place (Kube-OVN never applies it).
    let faster = ovn::plan(
        &inputs(
            "ovn-cluster",
            &["198.18.0.12", "198.18.0.13"],
            Some((50, 50, 5)),
        ),
        BfdMode::Native,
    );
    nb::apply(&client, &faster).await?;
    let rows = bfd_rows(&client);
    // A fresh replica (a full dump) agrees with the one kept by updates.
    ensure!(
        bfd_rows(&nb.client().await?) == rows,
        "replica drift: {rows:?}"
    );
    ensure!(
        rows.iter().all(|r| (r.1, r.2, r.3) == (50, 50, 5)),
        "{rows:?}"
    );
    ensure!(rows.iter().map(|r| r.4.clone()).collect::<BTreeSet<_>>() == uuids);

    // One instance gone: its row and its link go.
    let one = ovn::plan(
        &inputs("ovn-cluster", &["198.18.0.12"], Some((50, 50, 5))),
        BfdMode::Native,
    );
    nb::apply(&client, &one).await?;
    let rows = bfd_rows(&client);
    ensure!(rows.len() == 1 && rows[0].0 == "198.18.0.12", "{rows:?}");
    ensure!(linked_sessions(&client) == BTreeSet::from([rows[0].4.clone()]));

    // No instance: reroutes go, the drops stay, no BFD row.
    let none = ovn::plan(
        &inputs("ovn-cluster", &[], Some((50, 50, 5))),
        BfdMode::Native,
    );
    nb::apply(&client, &none).await?;
    ensure!(count(&client, "BFD") == 0);
    let left = policies(&client, "ovn-cluster");
    ensure!(
        left.iter()
            .filter(|p| p.starts_with("29"))
            .all(|p| p.contains(" drop ")),
        "{left:?}"
    );
    Ok(())
}

#[tokio::test]
async fn interrupted_applies_converge_without_duplicates() -> Result<()> {
    if !prerequisites() {
        return Ok(());
    }
    let nb = Nb::new(None).await?;
    let desired = ovn::plan(
        &inputs("ovn-cluster", &["198.18.0.12", "198.18.0.13"], None),
        BfdMode::Native,
    );
    // The reference: one clean apply on a twin database.
    let twin = Nb::new(None).await?;
    let reference_client = twin.client().await?;
    nb::apply(&reference_client, &desired).await?;
    let reference = dump(&reference_client);

    // 20 controllers killed mid-apply (the future dropped 0-3 ms in, before or after the
    // transaction went out), each followed by a restart on a fresh connection. Applies
    // alternate between two states so that every one has work to do.
    let other = ovn::plan(
        &inputs("ovn-cluster", &["198.18.0.14"], None),
        BfdMode::Native,
    );
    let mut interrupted = 0;
    for attempt in 0..20u64 {
        let client = nb.client().await?;
        let target = if attempt % 2 == 0 { &other } else { &desired };
        let cut = Duration::from_micros(attempt * 150);
        if tokio::time::timeout(cut, nb::apply(&client, target))
            .await
            .is_err()
        {
            interrupted += 1;
        }
        drop(client);
    }
    let client = nb.client().await?;
    nb::apply(&client, &desired).await?;
    ensure!(
        interrupted > 0,
        "no apply was interrupted; the test proves nothing"
    );
    ensure!(
        dump(&client) == reference,
        "after {interrupted} interruptions the NB differs:\n{:#?}\nvs\n{:#?}",
        dump(&client),
        reference
    );
    ensure!(
        count(&client, "Logical_Router_Policy") == 3,
        "duplicate policies"
    );
    ensure!(nb::apply(&client, &desired).await? == 0);
    Ok(())
}

#[tokio::test]
async fn a_vpc_change_and_a_delete_leave_nothing_behind() -> Result<()> {
    if !prerequisites() {
        return Ok(());
    }
    let nb = Nb::new(None).await?;
    let client = nb.client().await?;
    let on_cluster = ovn::plan(
        &inputs("ovn-cluster", &["198.18.0.12"], None),
        BfdMode::Native,
    );
    nb::apply(&client, &on_cluster).await?;
    ensure!(policies(&client, "ovn-cluster").len() == 3);

    // spec.vpc: ovn-cluster → vpc1. Nothing of the gateway stays on the old router.
    let on_vpc1 = ovn::plan(&inputs("vpc1", &["198.18.0.12"], None), BfdMode::Native);
    nb::apply(&client, &on_vpc1).await?;
    ensure!(
        policies(&client, "ovn-cluster") == ["31000 ip4.dst == 198.18.0.0/16 allow [] "],
        "left on the old router: {:?}",
        policies(&client, "ovn-cluster")
    );
    ensure!(policies(&client, "vpc1").len() == 2);
    ensure!(count(&client, "Logical_Router_Policy") == 3);

    // Delete: every row of the gateway goes; the other owner's rows stay.
    let operations = nb::cleanup(&client, "default", "gateway1").await?;
    ensure!(operations > 0);
    ensure!(policies(&client, "vpc1").is_empty());
    ensure!(count(&client, "Port_Group") == 0);
    let sets: Vec<String> = client
        .replica()
        .table("Address_Set")
        .map(|(_, row)| text(row, "name"))
        .collect();
    ensure!(sets == ["other"], "address sets left: {sets:?}");
    ensure!(count(&client, "Logical_Router_Policy") == 1);
    ensure!(nb::cleanup(&client, "default", "gateway1").await? == 0);
    Ok(())
}

/// The child of `killed_controllers_leave_a_whole_state_and_converge`: with
/// `VEG_NB_CHILD_REMOTE` set it applies two plans in turn until it is killed; run normally it
/// does nothing.
#[tokio::test]
async fn child_applier() -> Result<()> {
    let Ok(remote) = std::env::var("VEG_NB_CHILD_REMOTE") else {
        return Ok(());
    };
    let config = ClientConfig::northbound(&remote, nb::monitor_spec())?;
    let client = Client::connect(config, Duration::from_secs(5)).await?;
    let desired = ovn::plan(
        &inputs("ovn-cluster", &["198.18.0.12", "198.18.0.13"], None),
        BfdMode::Native,
    );
    let other = ovn::plan(
        &inputs("ovn-cluster", &["198.18.0.14"], None),
        BfdMode::Native,
    );
    loop {
        nb::apply(&client, &other).await?;
        nb::apply(&client, &desired).await?;
    }
}

/// 20 controller processes SIGKILLed while applying: after each kill the NB holds one whole
/// state or the other, never a mix; a restarted controller converges with no duplicates.
#[tokio::test]
async fn killed_controllers_leave_a_whole_state_and_converge() -> Result<()> {
    if !prerequisites() {
        return Ok(());
    }
    let desired = ovn::plan(
        &inputs("ovn-cluster", &["198.18.0.12", "198.18.0.13"], None),
        BfdMode::Native,
    );
    let other = ovn::plan(
        &inputs("ovn-cluster", &["198.18.0.14"], None),
        BfdMode::Native,
    );
    let mut references = Vec::new();
    for plan in [&desired, &other] {
        let twin = Nb::new(None).await?;
        let client = twin.client().await?;
        nb::apply(&client, plan).await?;
        references.push(dump(&client));
    }
    let nb = Nb::new(None).await?;
    let observer = nb.client().await?;
    let mut states = std::collections::BTreeMap::new();
    for attempt in 0..20u64 {
        let mut child = std::process::Command::new(std::env::current_exe()?)
            .args([
                "--exact",
                "child_applier",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("VEG_NB_CHILD_REMOTE", &nb.remote)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        tokio::time::sleep(Duration::from_millis(40 + (attempt * 37) % 60)).await;
        child.kill()?;
        child.wait()?;
        // Let the observer catch up with whatever committed last.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = dump(&observer);
        let which = references.iter().position(|reference| *reference == now);
        ensure!(
            which.is_some() || attempt == 0 && count(&observer, "Logical_Router_Policy") == 1,
            "after kill {attempt} the NB holds neither whole state:\nmissing from desired: {:#?}\nextra: {:#?}\nmissing from other: {:#?}\nextra: {:#?}",
            references[0].difference(&now).collect::<Vec<_>>(),
            now.difference(&references[0]).collect::<Vec<_>>(),
            references[1].difference(&now).collect::<Vec<_>>(),
            now.difference(&references[1]).collect::<Vec<_>>()
        );
        *states.entry(which).or_insert(0) += 1;
    }
    eprintln!("states after the kills (0: desired, 1: other): {states:?}");
    let client = nb.client().await?;
    nb::apply(&client, &desired).await?;
    ensure!(dump(&client) == references[0], "did not converge");
    ensure!(
        count(&client, "Logical_Router_Policy") == 3,
        "duplicate policies"
    );
    ensure!(nb::apply(&client, &desired).await? == 0);
    Ok(())
}

/// The rows' names carry 48 bits of a hash of the gateway's key, so another gateway (a
/// collision, found or crafted by a tenant) can own a row of this gateway's name. It is never
/// taken, changed or deleted: the apply says whose it is, the cleanup leaves it.
#[tokio::test]
async fn a_row_of_our_name_owned_by_another_gateway_is_left_alone() -> Result<()> {
    if !prerequisites() {
        return Ok(());
    }
    let nb = Nb::new(None).await?;
    let client = nb.client().await?;
    let desired = ovn::plan(
        &inputs("ovn-cluster", &["198.18.0.12"], None),
        BfdMode::Native,
    );
    let name = desired
        .address_sets
        .first()
        .map(|set| set.name.clone())
        .unwrap_or_default();
    let theirs = Value::string_map([
        ("vendor", "kube-ovn"),
        ("vpc-egress-gateway", "tenant-b/twin"),
    ]);
    client
        .transact(&[Operation::Insert {
            table: "Address_Set".into(),
            row: [
                ("name".to_owned(), Value::string(name.as_str())),
                (
                    "addresses".to_owned(),
                    Value::string_set(["203.0.113.0/24".to_owned()]),
                ),
                ("external_ids".to_owned(), theirs),
            ]
            .into_iter()
            .collect(),
            uuid_name: None,
        }])
        .await?;
    client
        .wait_for(Duration::from_secs(5), |replica| {
            replica.uuids_named("Address_Set", &name).next().is_some()
        })
        .await?;
    let before = dump(&client);
    let taken = nb::taken_names(&client.replica(), &desired);
    ensure!(
        taken
            == [(
                "Address_Set".to_owned(),
                name.clone(),
                "tenant-b/twin".to_owned()
            )],
        "{taken:?}"
    );
    ensure!(
        nb::cleanup(&client, "default", "gateway1").await? == 0,
        "the cleanup touched the other gateway's row"
    );
    ensure!(dump(&client) == before, "the NB changed");
    Ok(())
}

/// Two controllers that both believe they lead (the old one's Lease lost while its NB call was
/// on its way): once the new one has taken the writer token, the old one's writes fail on it
/// and the new one's go through.
#[tokio::test]
async fn a_deposed_leaders_writes_fail_on_the_new_leaders_token() -> Result<()> {
    if !prerequisites() {
        return Ok(());
    }
    let nb = Nb::new(None).await?;
    let old = nb.client().await?;
    let new = nb.client().await?;
    nb::take_writer_token(&old, "veg-controller-0/1").await?;
    let one = ovn::plan(
        &inputs("ovn-cluster", &["198.18.0.12"], None),
        BfdMode::Native,
    );
    ensure!(
        nb::apply(&old, &one).await? > 0,
        "the leader could not write"
    );
    nb::take_writer_token(&new, "veg-controller-1/2").await?;
    let two = ovn::plan(
        &inputs("ovn-cluster", &["198.18.0.12", "198.18.0.13"], None),
        BfdMode::Native,
    );
    let before = dump(&old);
    let refused = nb::apply(&old, &two).await;
    ensure!(
        matches!(refused, Err(veg_ovsdb::Error::Transaction { .. })),
        "the deposed leader wrote: {refused:?}"
    );
    ensure!(
        nb::cleanup(&old, "default", "gateway1").await.is_err(),
        "the deposed leader deleted"
    );
    ensure!(
        dump(&old) == before,
        "the NB changed under the deposed leader"
    );
    ensure!(
        nb::apply(&new, &two).await? > 0,
        "the new leader could not write"
    );
    Ok(())
}
