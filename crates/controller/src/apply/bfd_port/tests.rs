//! The BFD port's LRP with its HA_Chassis_Group against a real ovsdb-server: create, follow
//! node changes, no-op, remove.

use k8s_openapi::api::core::v1::Node;
use serde_json::json;
use veg_ovsdb::Client;
use veg_ovsdb::nb::column;

use super::*;
use crate::fixtures::{bfd_nodes as nodes, bfd_vpc as vpc};
use crate::plan::bfd_port::plan;
use crate::test_server as server;

fn summary(client: &Client) -> (Vec<String>, Vec<(String, i64)>) {
    let replica = client.replica();
    let ports: Vec<String> = replica
        .table("Logical_Router_Port")
        .map(|(_, row)| {
            let networks: Vec<String> = row
                .get("networks")
                .map(Value::as_set)
                .unwrap_or_default()
                .iter()
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect();
            let bfd_only = row
                .get("options")
                .map(Value::as_map)
                .unwrap_or_default()
                .get(&Atom::string("bfd-only"))
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            format!(
                "{} {} bfd-only={bfd_only}",
                column::<String>(row, "name"),
                networks.join(",")
            )
        })
        .collect();
    let mut members: Vec<(String, i64)> = replica
        .table("HA_Chassis")
        .map(|(_, row)| {
            (
                column::<String>(row, "chassis_name"),
                row.get("priority")
                    .and_then(Value::as_atom)
                    .and_then(Atom::as_i64)
                    .unwrap_or(0),
            )
        })
        .collect();
    members.sort();
    (ports, members)
}

#[tokio::test]
async fn the_port_and_its_group_follow_the_nodes_and_go_when_disabled() -> anyhow::Result<()> {
    if !server::prerequisites() {
        return Ok(());
    }
    let (_servers, client) = crate::fixtures::test_nb().await?;
    let apply = |plan: Option<BfdPortPlan>| {
        let client = client.clone();
        async move {
            let ops = operations(
                &client.replica(),
                &client.schema(),
                "ovn-cluster",
                plan.as_ref(),
            );
            let count = ops.len();
            if !ops.is_empty() {
                let version = *client.subscribe().borrow();
                client.transact(&ops).await?;
                let mut changes = client.subscribe();
                while *changes.borrow_and_update() == version {
                    changes.changed().await?;
                }
            }
            anyhow::Ok(count)
        }
    };
    let nodes = nodes();
    let refs: Vec<&Node> = nodes.iter().collect();
    apply(plan(&vpc(None), &refs)).await?;
    let (ports, members) = summary(&client);
    anyhow::ensure!(
        ports == ["bfd@ovn-cluster 2001:db8:ff::254,203.0.113.254 bfd-only=true"],
        "{ports:?}"
    );
    anyhow::ensure!(
        members == [("ch-1".to_owned(), 100), ("ch-2".to_owned(), 99)],
        "{members:?}"
    );
    anyhow::ensure!(
        apply(plan(&vpc(None), &refs)).await? == 0,
        "a second apply must change nothing"
    );

    // The selector now picks worker2 and worker4: members and priorities follow.
    apply(plan(
        &vpc(Some(json!({"matchLabels": {"bfd": "yes"}}))),
        &refs,
    ))
    .await?;
    let (_, members) = summary(&client);
    anyhow::ensure!(
        members == [("ch-2".to_owned(), 100), ("ch-4".to_owned(), 99)],
        "{members:?}"
    );

    // Disabled: the port and the group go.
    apply(None).await?;
    let (ports, members) = summary(&client);
    anyhow::ensure!(
        ports.is_empty() && members.is_empty(),
        "{ports:?} {members:?}"
    );
    anyhow::ensure!(client.replica().table("HA_Chassis_Group").count() == 0);
    Ok(())
}
