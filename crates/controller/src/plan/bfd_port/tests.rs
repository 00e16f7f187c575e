//! The BFD port's plan: deterministic node choice, chassis from annotations, the nodes whose
//! change reaches a VPC.

use serde_json::json;

use super::*;
use crate::fixtures::{bfd_nodes as nodes, bfd_vpc as vpc, from, node_with_chassis as node};

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

#[test]
fn nodes_sharing_a_chassis_make_one_member() {
    let nodes = [
        node("node-a", json!({}), Some("host")),
        node("node-b", json!({}), Some("host")),
        node("node-c", json!({}), Some("other")),
    ];
    let refs: Vec<&Node> = nodes.iter().collect();
    let plan = plan(&vpc(None), &refs);
    assert_eq!(
        plan.map(|p| (p.nodes, p.chassis)),
        Some((
            vec![
                "node-a".to_owned(),
                "node-b".to_owned(),
                "node-c".to_owned()
            ],
            vec!["host".to_owned(), "other".to_owned()]
        ))
    );
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
