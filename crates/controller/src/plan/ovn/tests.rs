//! Kube-OVN's unit-test oracles ported: match strings, the BFD converge/remove sequence, no
//! nexthops → 29150/29100 gone and 29090 kept; plus monitor mode and the compatibility sets.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use veg_api::TrafficPolicy;
use veg_api::names::AddressFamily;

use super::*;
use crate::plan::context::{BfdInputs, FamilyInputs, GatewayInputs};

fn ip(text: &str) -> IpAddr {
    text.parse()
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

/// default/gateway1 (h = 8ca38ae7da18) with two instances on two nodes, IPv4.
fn inputs(nexthops: &[(&str, &str)], bfd: bool) -> GatewayInputs {
    let mut family = FamilyInputs {
        sources: ["198.19.0.0/16", "198.20.0.0/16"]
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect(),
        bfd_ip: bfd.then(|| ip("198.18.255.254")),
        ..FamilyInputs::default()
    };
    for (node, address) in nexthops {
        family
            .nexthops
            .entry((*node).to_owned())
            .or_default()
            .insert(ip(address));
        family
            .node_port_groups
            .insert((*node).to_owned(), format!("node.{node}"));
    }
    GatewayInputs {
        key: "default/gateway1".into(),
        namespace: "default".into(),
        name: "gateway1".into(),
        vpc: "ovn-cluster".into(),
        router: "ovn-cluster".into(),
        has_selectors: false,
        ports: BTreeSet::new(),
        selected_addresses: BTreeSet::new(),
        excluded_namespaces: 0,
        traffic_policy: TrafficPolicy::Cluster,
        bfd: bfd.then(|| BfdInputs {
            port: "bfd@ovn-cluster".into(),
            min_tx: 200,
            min_rx: 100,
            multiplier: 5,
        }),
        families: BTreeMap::from([(AddressFamily::V4, family)]),
        instances: vec![],
        messages: vec![],
        unschedulable: vec![],
        workload: Default::default(),
    }
}

fn summary(ovn: &GatewayOvn) -> Vec<String> {
    ovn.policies
        .iter()
        .map(|p| {
            let hops = p.nexthops.as_ref().map(|h| {
                h.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            });
            format!(
                "{} {} {} [{}]{}",
                p.priority,
                p.match_,
                p.action.as_str(),
                hops.unwrap_or_else(|| "monitor".into()),
                if p.bfd_sessions { " bfd" } else { "" }
            )
        })
        .collect()
}

#[test]
fn match_strings_are_kube_ovns() {
    assert_eq!(
        cluster_matches("default", "gateway1", AddressFamily::V4),
        [
            "ip4.src == $VEG.8ca38ae7da18.ipv4",
            "ip4.src == $VEG.8ca38ae7da18_ip4"
        ]
    );
    assert_eq!(
        local_matches(
            "default",
            "gateway1",
            AddressFamily::V6,
            "node.kube.ovn.worker"
        ),
        [
            "ip6.src == $node.kube.ovn.worker_ip6 && ip6.src == $VEG.8ca38ae7da18.ipv6",
            "ip6.src == $node.kube.ovn.worker_ip6 && ip6.src == $VEG.8ca38ae7da18_ip6"
        ]
    );
}

#[test]
fn cluster_without_bfd_reroutes_to_every_instance() {
    let ovn = plan(
        &inputs(&[("a", "198.18.0.12"), ("b", "198.18.0.13")], false),
        BfdMode::Native,
    );
    assert_eq!(
        summary(&ovn),
        [
            "29100 ip4.src == $VEG.8ca38ae7da18.ipv4 reroute [198.18.0.12,198.18.0.13]",
            "29100 ip4.src == $VEG.8ca38ae7da18_ip4 reroute [198.18.0.12,198.18.0.13]",
        ]
    );
    assert!(ovn.bfd.is_empty());
    let sets: Vec<(&str, usize)> = ovn
        .address_sets
        .iter()
        .map(|s| (s.name.as_str(), s.addresses.len()))
        .collect();
    // Without selectors the compatibility set keeps $VEG.<h>_ip4 defined, empty.
    assert_eq!(
        sets,
        [("VEG.8ca38ae7da18.ipv4", 2), ("VEG.8ca38ae7da18_ip4", 0)]
    );
    assert_eq!(ovn.port_group, None);
}

#[test]
fn bfd_rows_converge_with_the_instances_and_mirror_the_timers() {
    let two = plan(
        &inputs(&[("a", "198.18.0.12"), ("b", "198.18.0.13")], true),
        BfdMode::Native,
    );
    let rows: Vec<(IpAddr, i64, i64, i64)> = two
        .bfd
        .iter()
        .map(|b| (b.dst_ip, b.min_rx, b.min_tx, b.detect_mult))
        .collect();
    // min_rx = the Pod's minTX (200), min_tx = the Pod's minRX (100).
    assert_eq!(
        rows,
        [
            (ip("198.18.0.12"), 200, 100, 5),
            (ip("198.18.0.13"), 200, 100, 5)
        ]
    );
    assert!(two.bfd.iter().all(|b| b.logical_port == "bfd@ovn-cluster"));
    assert_eq!(
        summary(&two),
        [
            "29090 ip4.src == $VEG.8ca38ae7da18.ipv4 drop []",
            "29090 ip4.src == $VEG.8ca38ae7da18_ip4 drop []",
            "29100 ip4.src == $VEG.8ca38ae7da18.ipv4 reroute [198.18.0.12,198.18.0.13] bfd",
            "29100 ip4.src == $VEG.8ca38ae7da18_ip4 reroute [198.18.0.12,198.18.0.13] bfd",
        ]
    );
    // 2 → 1 instance: one BFD row goes.
    let one = plan(&inputs(&[("a", "198.18.0.12")], true), BfdMode::Native);
    assert_eq!(one.bfd.len(), 1);
    // BFD off: the ECMP nexthops stay, bfd_sessions and the rows go, and so does the drop.
    let off = plan(
        &inputs(&[("a", "198.18.0.12"), ("b", "198.18.0.13")], false),
        BfdMode::Native,
    );
    assert!(off.bfd.is_empty() && off.policies.iter().all(|p| !p.bfd_sessions));
    assert!(off.policies.iter().all(|p| p.action == Action::Reroute));
}

#[test]
fn no_nexthops_removes_the_reroutes_and_keeps_the_drop() {
    let mut local = inputs(&[], true);
    local.traffic_policy = TrafficPolicy::Local;
    let ovn = plan(&local, BfdMode::Native);
    assert_eq!(
        summary(&ovn),
        [
            "29090 ip4.src == $VEG.8ca38ae7da18.ipv4 drop []",
            "29090 ip4.src == $VEG.8ca38ae7da18_ip4 drop []",
        ]
    );
}

#[test]
fn local_prefers_the_instances_of_the_pods_node() {
    let mut local = inputs(&[("a", "198.18.0.12"), ("b", "198.18.0.13")], false);
    local.traffic_policy = TrafficPolicy::Local;
    let ovn = plan(&local, BfdMode::Native);
    assert_eq!(
        summary(&ovn),
        [
            "29100 ip4.src == $VEG.8ca38ae7da18.ipv4 reroute [198.18.0.12,198.18.0.13]",
            "29100 ip4.src == $VEG.8ca38ae7da18_ip4 reroute [198.18.0.12,198.18.0.13]",
            "29150 ip4.src == $node.a_ip4 && ip4.src == $VEG.8ca38ae7da18.ipv4 reroute [198.18.0.12]",
            "29150 ip4.src == $node.a_ip4 && ip4.src == $VEG.8ca38ae7da18_ip4 reroute [198.18.0.12]",
            "29150 ip4.src == $node.b_ip4 && ip4.src == $VEG.8ca38ae7da18.ipv4 reroute [198.18.0.13]",
            "29150 ip4.src == $node.b_ip4 && ip4.src == $VEG.8ca38ae7da18_ip4 reroute [198.18.0.13]",
        ]
    );
}

#[test]
fn selectors_give_a_port_group_instead_of_the_compatibility_set() {
    let mut selected = inputs(&[("a", "198.18.0.12")], false);
    selected.has_selectors = true;
    selected.ports = ["pod1.default".to_owned()].into();
    let ovn = plan(&selected, BfdMode::Native);
    assert_eq!(
        ovn.port_group,
        Some((
            "VEG.8ca38ae7da18".to_owned(),
            ["pod1.default".to_owned()].into()
        ))
    );
    assert!(ovn.address_sets.iter().all(|s| !s.name.ends_with("_ip4")));
}

#[test]
fn monitor_mode_publishes_candidates_and_leaves_nexthops_to_the_monitor() {
    let ovn = plan(
        &inputs(&[("a", "198.18.0.12"), ("b", "198.18.0.13")], true),
        BfdMode::Monitor,
    );
    assert!(ovn.bfd.is_empty(), "no OVN BFD rows in monitor mode");
    let reroutes: Vec<&PolicyRow> = ovn
        .policies
        .iter()
        .filter(|p| p.action == Action::Reroute)
        .collect();
    assert_eq!(reroutes.len(), 2);
    for policy in reroutes {
        assert_eq!(policy.nexthops, None);
        assert!(!policy.bfd_sessions);
        assert_eq!(
            policy.candidates,
            Some([ip("198.18.0.12"), ip("198.18.0.13")].into())
        );
        // The Pod's minTX 200 / minRX 100 mirrored: the monitor sends every 100 ms.
        assert_eq!(
            policy.timers.map(|t| t.encode()),
            Some("100/200/5".to_owned())
        );
    }
    // With no instance the reroutes stay (empty) for the monitor; the drop catches traffic.
    let empty = plan(&inputs(&[], true), BfdMode::Monitor);
    assert_eq!(empty.policies.len(), 4);
}

#[test]
fn auto_mode_is_native_only_with_bfd_sessions_and_the_operators_word() {
    use BfdModeSetting::*;
    assert_eq!(Auto.choose(true, true), BfdMode::Native);
    assert_eq!(Auto.choose(true, false), BfdMode::Monitor);
    assert_eq!(Auto.choose(false, true), BfdMode::Monitor);
    assert_eq!(Native.choose(false, false), BfdMode::Native);
    assert_eq!(Monitor.choose(true, true), BfdMode::Monitor);
}
