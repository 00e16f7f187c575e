//! The BFD port: deterministic node choice, chassis from annotations, and the LRP with its
//! HA_Chassis_Group against a real ovsdb-server (create, follow node changes, no-op, remove).

use serde_json::json;
use veg_ovsdb::Client;

use super::*;
use crate::fixtures::from;

use crate::test_server as server;

fn node(name: &str, labels: serde_json::Value, chassis: Option<&str>) -> Node {
    let mut annotations = json!({});
    if let Some(chassis) = chassis {
        annotations[CHASSIS_ANNOTATION] = json!(chassis);
    }
    from(json!({"metadata": {"name": name, "labels": labels, "annotations": annotations}}))
}

fn vpc(selector: Option<serde_json::Value>) -> Vpc {
    let mut port = json!({"enabled": true, "ip": "203.0.113.254,2001:db8:ff::254"});
    if let Some(selector) = selector {
        port["nodeSelector"] = selector;
    }
    from(
        json!({"apiVersion": "kubeovn.io/v1", "kind": "Vpc", "metadata": {"name": "ovn-cluster"},
        "spec": {"bfdPort": port}}),
    )
}

fn nodes() -> Vec<Node> {
    vec![
        node("worker4", json!({"bfd": "yes"}), Some("ch-4")),
        node("worker2", json!({"bfd": "yes"}), Some("ch-2")),
        node("worker1", json!({}), Some("ch-1")),
        node("worker3", json!({"bfd": "yes"}), None),
    ]
}

#[test]
fn nodes_are_chosen_deterministically() {
    let nodes = nodes();
    let refs: Vec<&Node> = nodes.iter().collect();
    // No selector: the first three by name, whatever the list order.
    let plan = plan(&vpc(None), &refs);
    let chosen = plan.as_ref().map(|p| {
        (
            p.nodes.clone(),
            p.chassis.clone(),
            p.missing_chassis.clone(),
        )
    });
    assert_eq!(
        chosen,
        Some((
            vec!["worker1".to_owned(), "worker2".to_owned()],
            vec!["ch-1".to_owned(), "ch-2".to_owned()],
            vec!["worker3".to_owned()]
        ))
    );
    let reversed: Vec<&Node> = nodes.iter().rev().collect();
    assert_eq!(super::plan(&vpc(None), &reversed), plan);
    // A selector: every match, sorted.
    let selected = super::plan(&vpc(Some(json!({"matchLabels": {"bfd": "yes"}}))), &refs);
    assert_eq!(
        selected.map(|p| p.nodes),
        Some(vec!["worker2".to_owned(), "worker4".to_owned()])
    );
    assert_eq!(
        plan.map(|p| p.networks),
        Some(vec![
            "203.0.113.254".to_owned(),
            "2001:db8:ff::254".to_owned()
        ])
    );
    let disabled: Vpc = from(json!({"apiVersion": "kubeovn.io/v1", "kind": "Vpc",
        "metadata": {"name": "v"}, "spec": {"bfdPort": {"enabled": false}}}));
    assert_eq!(super::plan(&disabled, &refs), None);
    assert_eq!(mac("bfd@ovn-cluster"), mac("bfd@ovn-cluster"));
    assert!(mac("bfd@ovn-cluster").starts_with(|c: char| c.is_ascii_hexdigit()));
}

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

#[test]
fn a_node_change_reaches_the_vpcs_whose_port_it_may_move() {
    let selected = vpc(Some(json!({"matchLabels": {"bfd": "yes"}})));
    let mut chosen: Vpc = vpc(Some(json!({"matchLabels": {"bfd": "yes"}})));
    chosen.metadata.name = Some("vpc1".into());
    chosen.status = Some(from(
        json!({"bfdPort": {"name": "bfd@vpc1", "ip": "203.0.113.254",
        "nodes": ["worker1"]}}),
    ));
    let vpcs = [&selected, &chosen];
    // Gains the label: the selecting VPCs.
    let labelled = node("worker9", json!({"bfd": "yes"}), Some("ch-9"));
    assert_eq!(affected_by_node(&vpcs, &labelled).len(), 2);
    // Lost the label but was chosen for vpc1: vpc1 must drop it.
    let unlabelled = node("worker1", json!({}), Some("ch-1"));
    assert_eq!(
        affected_by_node(&vpcs, &unlabelled)
            .into_iter()
            .collect::<Vec<_>>(),
        ["vpc1"]
    );
    // Unrelated.
    let other = node("worker5", json!({}), None);
    assert!(affected_by_node(&vpcs, &other).is_empty());
}
