//! veg-ovsdb against real `ovsdb-server` (Debian's openvswitch-common) with OVN's NB schema.

use veg_testkit::ovsdb as server;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use server::{Servers, prerequisites};
use veg_ovsdb::{
    Atom, Client, ClientConfig, Condition, Error, Mutation, Operation, Remote, Row, Value,
};
use veg_ovsdb::{Desired, diff};

fn config(remotes: &str, tables: &[&str], leader_only: bool) -> Result<ClientConfig> {
    Ok(ClientConfig {
        remotes: Remote::parse_list(remotes)?,
        database: "OVN_Northbound".into(),
        leader_only,
        probe_interval: Duration::from_secs(5),
        monitor: tables
            .iter()
            .map(|table| (table.to_string(), Vec::new()))
            .collect(),
        tls: None,
        max_message: veg_ovsdb::jsonrpc::MAX_MESSAGE,
    })
}

/// `unix:<socket>` of the first member.
fn unix_remote(servers: &Servers) -> String {
    format!("unix:{}", servers.socket(0).display())
}

/// A leader-only client monitoring `tables`, connected within 5 s.
async fn connect(remote: &str, tables: &[&str]) -> Result<Client> {
    Ok(Client::connect(config(remote, tables, true)?, Duration::from_secs(5)).await?)
}

fn row(pairs: &[(&str, Value)]) -> Row {
    pairs
        .iter()
        .map(|(column, value)| (column.to_string(), value.clone()))
        .collect()
}

fn owner() -> Value {
    Value::string_map([
        ("vendor", "kube-ovn"),
        ("vpc-egress-gateway", "default/gateway1"),
        ("af", "4"),
    ])
}

fn names(replica: &veg_ovsdb::Replica, table: &str) -> Vec<String> {
    let mut names: Vec<String> = replica
        .table(table)
        .filter_map(|(_, row)| row.get("name")?.as_atom()?.as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

/// Inserts on every table veg manages come back through a second client's monitor, with
/// named-uuid references resolved, and mutations and deletions follow.
#[tokio::test]
async fn transact_and_monitor_round_trip_on_managed_tables() -> Result<()> {
    if !prerequisites() {
        return Ok(());
    }
    let servers = Servers::standalone()?;
    let remote = unix_remote(&servers);
    let tables = [
        "Logical_Router",
        "Logical_Router_Policy",
        "Logical_Router_Port",
        "Logical_Router_Static_Route",
        "Logical_Switch",
        "Logical_Switch_Port",
        "Address_Set",
        "Port_Group",
        "BFD",
        "HA_Chassis_Group",
        "HA_Chassis",
        "NB_Global",
    ];
    let writer = connect(&remote, &tables).await?;
    let reader = connect(&remote, &tables).await?;
    let schema = writer.schema();
    ensure!(schema.version == "7.0.0", "schema {}", schema.version);
    ensure!(
        !schema.has_column("Logical_Router_Policy", "bfd_sessions"),
        "Debian's NB 7.0.0 has no bfd_sessions"
    );

    let operations = vec![
        Operation::Insert {
            table: "NB_Global".into(),
            row: Row::new(),
            uuid_name: None,
        },
        Operation::Insert {
            table: "Logical_Switch_Port".into(),
            row: row(&[("name", Value::string("pod1.default"))]),
            uuid_name: Some("lsp".into()),
        },
        Operation::Insert {
            table: "Logical_Switch".into(),
            row: row(&[
                ("name", Value::string("ovn-default")),
                ("ports", Value::Set([Atom::NamedUuid("lsp".into())].into())),
            ]),
            uuid_name: None,
        },
        Operation::Insert {
            table: "Logical_Router_Policy".into(),
            row: row(&[
                ("priority", Value::integer(29100)),
                ("match", Value::string("ip4.src == $VEG.8ca38ae7da18.ipv4")),
                ("action", Value::string("reroute")),
                (
                    "nexthops",
                    Value::string_set(["198.18.0.12", "198.18.0.13"]),
                ),
                ("external_ids", owner()),
            ]),
            uuid_name: Some("policy".into()),
        },
        Operation::Insert {
            table: "Logical_Router_Static_Route".into(),
            row: row(&[
                ("ip_prefix", Value::string("0.0.0.0/0")),
                ("nexthop", Value::string("198.51.100.1")),
            ]),
            uuid_name: Some("route".into()),
        },
        Operation::Insert {
            table: "Logical_Router_Port".into(),
            row: row(&[
                ("name", Value::string("bfd@ovn-cluster")),
                ("mac", Value::string("00:00:5e:00:53:01")),
                ("networks", Value::string_set(["203.0.113.254"])),
            ]),
            uuid_name: Some("lrp".into()),
        },
        Operation::Insert {
            table: "Logical_Router".into(),
            row: row(&[
                ("name", Value::string("ovn-cluster")),
                (
                    "policies",
                    Value::Set([Atom::NamedUuid("policy".into())].into()),
                ),
                (
                    "static_routes",
                    Value::Set([Atom::NamedUuid("route".into())].into()),
                ),
                ("ports", Value::Set([Atom::NamedUuid("lrp".into())].into())),
            ]),
            uuid_name: None,
        },
        Operation::Insert {
            table: "Address_Set".into(),
            row: row(&[
                ("name", Value::string("VEG.8ca38ae7da18.ipv4")),
                ("addresses", Value::string_set(["198.18.16.0/20"])),
                ("external_ids", owner()),
            ]),
            uuid_name: None,
        },
        Operation::Insert {
            table: "Port_Group".into(),
            row: row(&[
                ("name", Value::string("VEG.8ca38ae7da18")),
                ("external_ids", owner()),
            ]),
            uuid_name: None,
        },
        Operation::Insert {
            table: "BFD".into(),
            row: row(&[
                ("logical_port", Value::string("bfd@ovn-cluster")),
                ("dst_ip", Value::string("198.18.0.12")),
                ("min_tx", Value::integer(100)),
                ("external_ids", owner()),
            ]),
            uuid_name: None,
        },
        Operation::Insert {
            table: "HA_Chassis".into(),
            row: row(&[
                ("chassis_name", Value::string("node1")),
                ("priority", Value::integer(100)),
            ]),
            uuid_name: Some("hac".into()),
        },
        Operation::Insert {
            table: "HA_Chassis_Group".into(),
            row: row(&[
                ("name", Value::string("bfd@ovn-cluster")),
                (
                    "ha_chassis",
                    Value::Set([Atom::NamedUuid("hac".into())].into()),
                ),
            ]),
            uuid_name: None,
        },
    ];
    let results = writer.transact(&operations).await?;
    ensure!(
        results.len() == operations.len() && results.iter().all(|r| r.uuid.is_some()),
        "{results:?}"
    );

    reader
        .wait_for(Duration::from_secs(5), |replica| {
            tables.iter().all(|table| replica.table(table).count() >= 1)
        })
        .await
        .context("the reader's monitor did not see every table")?;
    {
        let replica = reader.replica();
        let (_, router) = replica.table("Logical_Router").next().context("router")?;
        let policy_uuid = router["policies"]
            .as_atom()
            .and_then(Atom::as_uuid)
            .context("policy ref")?
            .to_owned();
        let policy = replica
            .row("Logical_Router_Policy", &policy_uuid)
            .context("policy row")?;
        ensure!(policy["nexthops"] == Value::string_set(["198.18.0.12", "198.18.0.13"]));
        ensure!(policy["priority"] == Value::integer(29100));
        let owned: BTreeMap<String, String> = [(
            "vpc-egress-gateway".to_owned(),
            "default/gateway1".to_owned(),
        )]
        .into();
        ensure!(replica.owned_by("Address_Set", &owned).count() == 1);
    }

    // A one-element mutation, and a deletion, reach the other replica.
    let set = Condition::equals("name", Value::string("VEG.8ca38ae7da18.ipv4"));
    writer
        .transact(&[Operation::Mutate {
            table: "Address_Set".into(),
            conditions: vec![set.clone()],
            mutations: vec![Mutation::insert(
                "addresses",
                Value::string_set(["198.19.0.0/16"]),
            )],
        }])
        .await?;
    reader
        .wait_for(Duration::from_secs(5), |replica| {
            replica.table("Address_Set").any(|(_, r)| {
                r["addresses"] == Value::string_set(["198.18.16.0/20", "198.19.0.0/16"])
            })
        })
        .await?;
    writer
        .transact(&[Operation::Delete {
            table: "Port_Group".into(),
            conditions: vec![],
        }])
        .await?;
    reader
        .wait_for(Duration::from_secs(5), |replica| {
            replica.table("Port_Group").count() == 0
        })
        .await?;

    // A failing operation names itself, its table and the server's error.
    let error = writer
        .transact(&[Operation::Insert {
            table: "Address_Set".into(),
            row: row(&[("name", Value::string("VEG.8ca38ae7da18.ipv4"))]),
            uuid_name: None,
        }])
        .await
        .err()
        .context("a duplicate name must fail")?;
    ensure!(matches!(error, Error::Transaction { .. }), "{error}");
    ensure!(
        error.to_string().contains("constraint violation"),
        "{error}"
    );
    Ok(())
}

/// The diff engine against the real server: one owner's address sets converge in one
/// transaction, other owners' rows are untouched, and a second diff is empty.
#[tokio::test]
async fn diffs_converge_on_the_server() -> Result<()> {
    if !prerequisites() {
        return Ok(());
    }
    let servers = Servers::standalone()?;
    let remote = unix_remote(&servers);
    let client = connect(&remote, &["Address_Set"]).await?;
    let set = |name: &str, owner: &str, addresses: &[&str]| -> Row {
        row(&[
            ("name", Value::string(name)),
            ("addresses", Value::string_set(addresses.iter().copied())),
            (
                "external_ids",
                Value::string_map([("vendor", "kube-ovn"), ("vpc-egress-gateway", owner)]),
            ),
        ])
    };
    let ours: BTreeMap<String, String> = [(
        "vpc-egress-gateway".to_owned(),
        "default/gateway1".to_owned(),
    )]
    .into();
    let current = |client: &Client| -> BTreeMap<String, Row> {
        client
            .replica()
            .owned_by("Address_Set", &ours)
            .map(|(uuid, row)| (uuid.clone(), row.clone()))
            .collect()
    };
    client
        .transact(&[
            Operation::Insert {
                table: "Address_Set".into(),
                row: set(
                    "VEG.a.ipv4",
                    "default/gateway1",
                    &["198.18.0.1", "198.18.0.2"],
                ),
                uuid_name: None,
            },
            Operation::Insert {
                table: "Address_Set".into(),
                row: set("VEG.a.ipv6", "default/gateway1", &["2001:db8::1"]),
                uuid_name: None,
            },
            Operation::Insert {
                table: "Address_Set".into(),
                row: set("VEG.z.ipv4", "default/other", &["198.18.9.9"]),
                uuid_name: None,
            },
        ])
        .await?;
    client
        .wait_for(Duration::from_secs(5), |replica| {
            replica.table("Address_Set").count() == 3
        })
        .await?;

    let wanted = Desired {
        table: "Address_Set",
        key: &["name"],
        rows: vec![
            set(
                "VEG.a.ipv4",
                "default/gateway1",
                &["198.18.0.2", "198.18.0.3"],
            ),
            set("VEG.a.pg", "default/gateway1", &[]),
        ],
        parent: None,
        names: Vec::new(),
    };
    let operations = diff(&client.schema(), &wanted, &current(&client));
    ensure!(
        operations.len() == 3,
        "mutate + insert + delete expected: {operations:?}"
    );
    client.transact(&operations).await?;
    client
        .wait_for(Duration::from_secs(5), |replica| {
            let mut names: Vec<String> = replica
                .table("Address_Set")
                .filter_map(|(_, r)| r["name"].as_atom()?.as_str().map(str::to_owned))
                .collect();
            names.sort();
            names == ["VEG.a.ipv4", "VEG.a.pg", "VEG.z.ipv4"]
        })
        .await?;
    let again = diff(&client.schema(), &wanted, &current(&client));
    ensure!(again.is_empty(), "a second diff should be empty: {again:?}");
    Ok(())
}

/// Debian's NB schema (7.0.0) plus `Logical_Router_Policy.bfd_sessions` as upstream OVN 24.03
/// has it (NB 7.2.1): the client sees the column and can write policies that use it.
#[tokio::test]
async fn a_schema_with_bfd_sessions_is_detected_and_used() -> Result<()> {
    if !prerequisites() {
        return Ok(());
    }
    let mut schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(server::NB_SCHEMA)?)?;
    schema["version"] = serde_json::json!("7.2.1");
    schema["tables"]["Logical_Router_Policy"]["columns"]["bfd_sessions"] = serde_json::json!({
        "type": {"key": {"type": "uuid", "refTable": "BFD", "refType": "weak"}, "min": 0, "max": "unlimited"}});
    let file = std::env::temp_dir().join(format!("vo{}-nb-7.2.1.ovsschema", std::process::id()));
    std::fs::write(&file, serde_json::to_vec(&schema)?)?;
    let servers = Servers::standalone_with_schema(&file);
    let _ = std::fs::remove_file(&file);
    let servers = servers?;
    let remote = unix_remote(&servers);
    let client = connect(&remote, &["Logical_Router_Policy", "BFD"]).await?;
    let detected = client.schema();
    ensure!(detected.version == "7.2.1");
    ensure!(
        detected.column("Logical_Router_Policy", "bfd_sessions")
            == Some(veg_ovsdb::ColumnKind::Set)
    );
    client
        .transact(&[
            Operation::Insert {
                table: "BFD".into(),
                row: row(&[
                    ("logical_port", Value::string("bfd@ovn-cluster")),
                    ("dst_ip", Value::string("198.18.0.12")),
                ]),
                uuid_name: Some("bfd".into()),
            },
            Operation::Insert {
                table: "Logical_Router_Policy".into(),
                row: row(&[
                    ("priority", Value::integer(29100)),
                    ("match", Value::string("ip4.src == $VEG.8ca38ae7da18.ipv4")),
                    ("action", Value::string("reroute")),
                    ("nexthops", Value::string_set(["198.18.0.12"])),
                    (
                        "bfd_sessions",
                        Value::Set([Atom::NamedUuid("bfd".into())].into()),
                    ),
                ]),
                uuid_name: Some("policy".into()),
            },
            Operation::Insert {
                table: "Logical_Router".into(),
                row: row(&[
                    ("name", Value::string("ovn-cluster")),
                    (
                        "policies",
                        Value::Set([Atom::NamedUuid("policy".into())].into()),
                    ),
                ]),
                uuid_name: None,
            },
        ])
        .await?;
    client
        .wait_for(Duration::from_secs(5), |replica| {
            replica.table("Logical_Router_Policy").any(|(_, policy)| {
                let bfd = policy
                    .get("bfd_sessions")
                    .and_then(|v| v.as_atom())
                    .and_then(Atom::as_uuid)
                    .map(str::to_owned);
                bfd.is_some_and(|uuid| replica.row("BFD", &uuid).is_some())
            })
        })
        .await
        .context("the policy's bfd_sessions did not reference the BFD row")?;
    Ok(())
}

/// An `ssl:` remote with CA, certificate and key files, as ovn-nbctl uses them; a client
/// whose certificate the server's CA did not sign is refused.
#[tokio::test]
async fn ssl_remotes_with_client_certificates() -> Result<()> {
    if !prerequisites() {
        return Ok(());
    }
    let servers = Servers::standalone()?;
    let pki = servers.root.join("pki");
    server::make_pki(&pki)?;
    let port = server::free_port()?;
    servers.add_ssl_remote(0, &pki, port)?;
    let tls = |client: &str| veg_ovsdb::TlsFiles {
        ca_certificate: pki.join("ca.crt"),
        certificate: pki.join(format!("{client}.crt")),
        private_key: pki.join(format!("{client}.key")),
        check_name: true,
    };
    let mut good = config(&format!("ssl:127.0.0.1:{port}"), &["Logical_Switch"], true)?;
    good.tls = Some(tls("client"));
    let client = Client::connect(good.clone(), Duration::from_secs(10)).await?;
    client
        .transact(&[Operation::Insert {
            table: "Logical_Switch".into(),
            row: row(&[("name", Value::string("over-tls"))]),
            uuid_name: None,
        }])
        .await?;
    client
        .wait_for(Duration::from_secs(5), |replica| {
            replica.table("Logical_Switch").count() == 1
        })
        .await?;

    let mut stranger = good.clone();
    stranger.tls = Some(tls("stranger"));
    ensure!(
        Client::connect(stranger, Duration::from_secs(2))
            .await
            .is_err(),
        "a certificate from another CA must be refused"
    );

    // The server's certificate names 127.0.0.1 only: reached as `localhost` it is refused,
    // unless only the CA is pinned (OVS PKI certificates name no host).
    let mut by_name = config(&format!("ssl:localhost:{port}"), &["Logical_Switch"], true)?;
    by_name.tls = Some(tls("client"));
    let refused = Client::connect(by_name.clone(), Duration::from_secs(2)).await;
    ensure!(
        refused
            .as_ref()
            .err()
            .is_some_and(|e| e.to_string().contains("not valid for name")),
        "a certificate for another host was accepted: {:?}",
        refused.map(|_| ())
    );
    by_name.tls = Some(veg_ovsdb::TlsFiles {
        check_name: false,
        ..tls("client")
    });
    Client::connect(by_name, Duration::from_secs(5)).await?;
    Ok(())
}

/// The server restarts in the middle of a monitor: the client reconnects by itself and its
/// replica converges to what the server holds, including writes made while it was away.
#[tokio::test]
async fn a_server_restart_during_a_monitor_converges() -> Result<()> {
    if !prerequisites() {
        return Ok(());
    }
    let servers = Servers::standalone()?;
    let remote = unix_remote(&servers);
    let watcher = connect(&remote, &["Logical_Switch"]).await?;
    let insert = |name: &str| Operation::Insert {
        table: "Logical_Switch".into(),
        row: row(&[("name", Value::string(name))]),
        uuid_name: None,
    };
    {
        let writer = connect(&remote, &[]).await?;
        writer
            .transact(&[insert("before-1"), insert("before-2")])
            .await?;
    }
    watcher
        .wait_for(Duration::from_secs(5), |replica| {
            replica.table("Logical_Switch").count() == 2
        })
        .await?;

    servers.stop(0, false)?;
    servers.start(0)?;
    let writer = connect(&remote, &[]).await?;
    writer
        .transact(&[
            insert("after-1"),
            Operation::Delete {
                table: "Logical_Switch".into(),
                conditions: vec![Condition::equals("name", Value::string("before-1"))],
            },
        ])
        .await?;
    let converged = watcher
        .wait_for(Duration::from_secs(10), |replica| {
            names(replica, "Logical_Switch") == ["after-1", "before-2"]
        })
        .await;
    ensure!(
        converged.is_ok(),
        "the replica did not converge after the restart: {:?} (connected to {:?}, last txn {:?})",
        names(&watcher.replica(), "Logical_Switch"),
        watcher.current_remote(),
        watcher.replica().last_txn_id
    );
    Ok(())
}

/// A writer commits 1000 numbered rows while the Raft leader is killed: every row exists
/// exactly once afterwards, and writes resume within 2 s of the kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_dies_during_1000_writes() -> Result<()> {
    if !prerequisites() {
        return Ok(());
    }
    let servers = Servers::cluster()?;
    let client = Client::connect(
        config(&servers.remotes(), &[], true)?,
        Duration::from_secs(10),
    )
    .await?;
    let mut killed_at: Option<Instant> = None;
    let mut resumed_after: Option<Duration> = None;
    let mut retries = 0u32;
    for number in 0..1000 {
        if number == 300 {
            let leader = servers.leader().context("no leader")?;
            let leader_socket = format!("unix:{}", servers.socket(leader).display());
            // The failover is only tested if the client writes to the member being killed.
            ensure!(
                veg_testkit::wait_until(Duration::from_secs(5), || client
                    .current_remote()
                    .as_deref()
                    == Some(leader_socket.as_str())),
                "the client is on {:?}, not on the leader {leader_socket}",
                client.current_remote()
            );
            servers.stop(leader, true)?;
            killed_at = Some(Instant::now());
        }
        let name = format!("row-{number:04}");
        // Idempotent: the insert happens only if no such row exists yet, so a retry after a
        // lost reply cannot duplicate it.
        let guarded = [
            Operation::Wait {
                table: "Logical_Switch".into(),
                conditions: vec![Condition::equals("name", Value::string(name.as_str()))],
                columns: vec!["name".into()],
                until: "==",
                rows: vec![],
            },
            Operation::Insert {
                table: "Logical_Switch".into(),
                row: row(&[("name", Value::string(name.as_str()))]),
                uuid_name: None,
            },
        ];
        loop {
            match client.transact(&guarded).await {
                Ok(_) => break,
                Err(Error::Transaction { ref error, .. }) if error == "timed out" => break, // committed before
                Err(error) if error.is_transient() => {
                    retries += 1;
                    ensure!(retries < 500, "too many retries: {error}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(error) => return Err(error.into()),
            }
        }
        if let (Some(killed), None) = (killed_at, resumed_after) {
            resumed_after = Some(killed.elapsed());
        }
    }
    let resumed = resumed_after.context("writes never resumed")?;
    eprintln!("writes resumed {resumed:?} after the leader was killed ({retries} retries)");
    ensure!(
        resumed < Duration::from_secs(2),
        "writes resumed only after {resumed:?}"
    );

    let rows = client
        .transact(&[Operation::Select {
            table: "Logical_Switch".into(),
            conditions: vec![],
            columns: Some(vec!["name".into()]),
        }])
        .await?;
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for found in &rows[0].rows {
        let name = found["name"]
            .as_atom()
            .and_then(Atom::as_str)
            .unwrap_or("")
            .to_owned();
        *counts.entry(name).or_default() += 1;
    }
    ensure!(counts.len() == 1000, "{} distinct rows", counts.len());
    let duplicated: Vec<_> = counts.iter().filter(|(_, count)| **count != 1).collect();
    ensure!(duplicated.is_empty(), "duplicated rows: {duplicated:?}");
    Ok(())
}

/// Every typed NB table: written from typed rows, read back typed through another client's
/// monitor, equal field by field.
#[tokio::test]
async fn typed_rows_round_trip_on_the_server() -> Result<()> {
    use veg_ovsdb::NbRow;
    use veg_ovsdb::nb::*;
    if !prerequisites() {
        return Ok(());
    }
    let servers = Servers::standalone()?;
    let remote = unix_remote(&servers);
    let tables = [
        NbGlobal::TABLE,
        LogicalRouter::TABLE,
        LogicalRouterPolicy::TABLE,
        LogicalRouterPort::TABLE,
        LogicalRouterStaticRoute::TABLE,
        LogicalSwitch::TABLE,
        LogicalSwitchPort::TABLE,
        AddressSet::TABLE,
        PortGroup::TABLE,
        Bfd::TABLE,
        HaChassisGroup::TABLE,
        HaChassis::TABLE,
    ];
    let writer = connect(&remote, &[]).await?;
    let reader = connect(&remote, &tables).await?;
    let ids = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let owner = ids(&[
        ("vendor", "kube-ovn"),
        ("vpc-egress-gateway", "default/gateway1"),
        ("af", "4"),
    ]);
    let global = NbGlobal {
        name: "veg-test".into(),
        options: ids(&[("northd_probe_interval", "5000")]),
        ..NbGlobal::default()
    };
    let policy = LogicalRouterPolicy {
        priority: 29100,
        match_: "ip4.src == $VEG.8ca38ae7da18.ipv4".into(),
        action: "reroute".into(),
        nexthops: ["198.18.0.12".to_owned(), "198.18.0.13".to_owned()].into(),
        external_ids: owner.clone(),
        ..Default::default()
    };
    let port = LogicalRouterPort {
        name: "bfd@ovn-cluster".into(),
        mac: "00:00:5e:00:53:01".into(),
        networks: ["203.0.113.254/32".to_owned()].into(),
        options: ids(&[("bfd-only", "true")]),
        ..Default::default()
    };
    let route = LogicalRouterStaticRoute {
        ip_prefix: "0.0.0.0/0".into(),
        nexthop: "198.51.100.1".into(),
        policy: Some("src-ip".into()),
        ..Default::default()
    };
    let lsp = LogicalSwitchPort {
        name: "pod1.default".into(),
        addresses: ["00:00:5e:00:53:02 198.18.16.5".to_owned()].into(),
        ..Default::default()
    };
    let address_set = AddressSet {
        name: "VEG.8ca38ae7da18.ipv4".into(),
        addresses: ["198.18.16.0/20".to_owned()].into(),
        external_ids: owner.clone(),
        ..Default::default()
    };
    let bfd = Bfd {
        logical_port: "bfd@ovn-cluster".into(),
        dst_ip: "198.18.0.12".into(),
        min_tx: Some(100),
        min_rx: Some(100),
        detect_mult: Some(5),
        external_ids: owner.clone(),
        ..Default::default()
    };
    let chassis = HaChassis {
        chassis_name: "node1".into(),
        priority: 100,
        ..Default::default()
    };
    let insert = |table: &str, row: Row, name: &str| Operation::Insert {
        table: table.into(),
        row,
        uuid_name: Some(name.into()),
    };
    let link = |table: &str, name: &str, column: &str, child: &str| Operation::Mutate {
        table: table.into(),
        conditions: vec![Condition::equals("name", Value::string(name))],
        mutations: vec![Mutation::insert(
            column,
            Value::Set([Atom::NamedUuid(child.into())].into()),
        )],
    };
    writer
        .transact(&[
            insert(NbGlobal::TABLE, global.to_row(), "g"),
            insert(LogicalRouterPolicy::TABLE, policy.to_row(), "policy"),
            insert(LogicalRouterPort::TABLE, port.to_row(), "lrp"),
            insert(LogicalRouterStaticRoute::TABLE, route.to_row(), "route"),
            insert(LogicalSwitchPort::TABLE, lsp.to_row(), "lsp"),
            insert(HaChassis::TABLE, chassis.to_row(), "hac"),
            insert(
                LogicalRouter::TABLE,
                LogicalRouter {
                    name: "ovn-cluster".into(),
                    ..Default::default()
                }
                .to_row(),
                "lr",
            ),
            insert(
                LogicalSwitch::TABLE,
                LogicalSwitch {
                    name: "ovn-default".into(),
                    ..Default::default()
                }
                .to_row(),
                "ls",
            ),
            insert(
                HaChassisGroup::TABLE,
                HaChassisGroup {
                    name: "bfd@ovn-cluster".into(),
                    ..Default::default()
                }
                .to_row(),
                "hcg",
            ),
            insert(AddressSet::TABLE, address_set.to_row(), "as"),
            insert(
                PortGroup::TABLE,
                PortGroup {
                    name: "VEG.8ca38ae7da18".into(),
                    external_ids: owner.clone(),
                    ..Default::default()
                }
                .to_row(),
                "pg",
            ),
            insert(Bfd::TABLE, bfd.to_row(), "bfd"),
            link(LogicalRouter::TABLE, "ovn-cluster", "policies", "policy"),
            link(LogicalRouter::TABLE, "ovn-cluster", "ports", "lrp"),
            link(
                LogicalRouter::TABLE,
                "ovn-cluster",
                "static_routes",
                "route",
            ),
            link(LogicalSwitch::TABLE, "ovn-default", "ports", "lsp"),
            link(
                HaChassisGroup::TABLE,
                "bfd@ovn-cluster",
                "ha_chassis",
                "hac",
            ),
            link(PortGroup::TABLE, "VEG.8ca38ae7da18", "ports", "lsp"),
        ])
        .await?;
    reader
        .wait_for(Duration::from_secs(5), |replica| {
            tables.iter().all(|t| replica.table(t).count() == 1)
        })
        .await?;

    fn only<T: NbRow>(client: &Client) -> Result<T> {
        let replica = client.replica();
        let (uuid, row) = replica.table(T::TABLE).next().context(T::TABLE)?;
        Ok(T::from_row(uuid, row))
    }
    let unstamped = |mut row: LogicalRouterPolicy| {
        row.uuid.clear();
        row
    };
    ensure!(unstamped(only::<LogicalRouterPolicy>(&reader)?) == policy);
    let mut got_port = only::<LogicalRouterPort>(&reader)?;
    got_port.uuid.clear();
    ensure!(got_port == port, "{got_port:?}");
    let mut got_route = only::<LogicalRouterStaticRoute>(&reader)?;
    got_route.uuid.clear();
    ensure!(got_route == route, "{got_route:?}");
    let mut got_lsp = only::<LogicalSwitchPort>(&reader)?;
    got_lsp.uuid.clear();
    ensure!(got_lsp == lsp, "{got_lsp:?}");
    let mut got_set = only::<AddressSet>(&reader)?;
    got_set.uuid.clear();
    ensure!(got_set == address_set);
    let mut got_bfd = only::<Bfd>(&reader)?;
    got_bfd.uuid.clear();
    ensure!(got_bfd == bfd, "{got_bfd:?}");
    let mut got_chassis = only::<HaChassis>(&reader)?;
    got_chassis.uuid.clear();
    ensure!(got_chassis == chassis);
    let mut got_global = only::<NbGlobal>(&reader)?;
    got_global.uuid.clear();
    ensure!(got_global == global);
    // References resolve to the rows they name.
    let router = only::<LogicalRouter>(&reader)?;
    ensure!(
        router
            .policies
            .0
            .contains(&only::<LogicalRouterPolicy>(&reader)?.uuid)
    );
    ensure!(
        router
            .ports
            .0
            .contains(&only::<LogicalRouterPort>(&reader)?.uuid)
    );
    ensure!(
        router
            .static_routes
            .0
            .contains(&only::<LogicalRouterStaticRoute>(&reader)?.uuid)
    );
    let lsp_uuid = only::<LogicalSwitchPort>(&reader)?.uuid;
    ensure!(only::<LogicalSwitch>(&reader)?.ports.0.contains(&lsp_uuid));
    ensure!(only::<PortGroup>(&reader)?.ports.0.contains(&lsp_uuid));
    ensure!(
        only::<HaChassisGroup>(&reader)?
            .ha_chassis
            .0
            .contains(&only::<HaChassis>(&reader)?.uuid)
    );
    Ok(())
}

/// A server that stops answering (frozen, the socket still open) is given up after one
/// unanswered echo probe; the client comes back by itself once the server answers again.
/// (Multi-threaded: the blocking wait below must not starve the client's own task.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_echo_probe_drops_the_connection_and_it_comes_back() -> Result<()> {
    if !prerequisites() {
        return Ok(());
    }
    let servers = Servers::standalone()?;
    let remote = unix_remote(&servers);
    let mut probing = config(&remote, &["Logical_Switch"], true)?;
    probing.probe_interval = Duration::from_millis(300);
    let client = Client::connect(probing, Duration::from_secs(5)).await?;
    servers.signal(0, "-STOP")?;
    let gave_up =
        veg_testkit::wait_until(Duration::from_secs(3), || client.current_remote().is_none());
    servers.signal(0, "-CONT")?;
    ensure!(gave_up, "the client kept a connection to a frozen server");
    let insert = Operation::Insert {
        table: "Logical_Switch".into(),
        row: row(&[("name", Value::string("after-thaw"))]),
        uuid_name: None,
    };
    client.transact(&[insert]).await?;
    client
        .wait_for(Duration::from_secs(5), |replica| {
            replica.table("Logical_Switch").count() == 1
        })
        .await?;
    Ok(())
}

/// A message longer than the client's limit closes the connection instead of being decoded
/// (a 32 MB reply cost 561 MB to decode): the initial dump of 200 switches (about 20 KB) with
/// a 4 KiB limit never syncs, and says why.
#[tokio::test]
async fn a_message_over_the_limit_is_refused() -> Result<()> {
    if !prerequisites() {
        return Ok(());
    }
    let servers = Servers::standalone()?;
    let remote = unix_remote(&servers);
    let writer = connect(&remote, &[]).await?;
    let inserts: Vec<Operation> = (0..200)
        .map(|n| Operation::Insert {
            table: "Logical_Switch".into(),
            row: row(&[(
                "name",
                Value::string(format!("switch-with-a-long-name-{n:04}")),
            )]),
            uuid_name: None,
        })
        .collect();
    writer.transact(&inserts).await?;
    let mut small = config(&remote, &["Logical_Switch"], true)?;
    small.max_message = 4096;
    let refused = Client::connect(small.clone(), Duration::from_secs(2)).await;
    ensure!(
        refused
            .as_ref()
            .err()
            .is_some_and(|e| e.to_string().contains("message longer than 4096 bytes")),
        "{:?}",
        refused.map(|_| ())
    );
    small.max_message = 1024 * 1024;
    let client = Client::connect(small, Duration::from_secs(5)).await?;
    ensure!(client.replica().table("Logical_Switch").count() == 200);
    Ok(())
}
