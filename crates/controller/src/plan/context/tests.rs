//! Resolution against snapshots: the seed's example, every missing reference as a problem,
//! which workload Pods count as instances, which Pods the selectors pick, and which families
//! a gateway carries.

use serde_json::{Value, json};

use super::*;
use crate::fixtures::*;

#[test]
fn the_seed_gateway_resolves_with_sources_instances_and_selected_ports() -> Result<(), Problem> {
    let mut snapshot = cluster();
    snapshot.put_pod(client("default", "web", "ovn-cluster", json!({})));
    snapshot.put_pod(client("other", "db", "ovn-cluster", json!({})));
    snapshot.put_pod(client(
        "default",
        "host",
        "ovn-cluster",
        json!({"spec": {"hostNetwork": true}}),
    ));
    snapshot.put_pod(client("default", "custom", "vpc1", json!({})));
    snapshot.put_pod(client(
        "default",
        "fresh",
        "ovn-cluster",
        json!({"metadata": {"annotations": {"ovn.kubernetes.io/allocated": "false"}}}),
    ));
    snapshot.put_pod(instance(
        "gw-a",
        "worker1",
        "198.18.0.12",
        Some("198.51.100.11"),
        true,
    ));
    // NotReady but networked: still an instance (Kube-OVN #7209).
    snapshot.put_pod(instance(
        "gw-b",
        "worker2",
        "198.18.0.13",
        Some("198.51.100.12"),
        false,
    ));
    // Multus did not attach net1: not an instance, said why.
    snapshot.put_pod(instance("gw-c", "worker2", "198.18.0.14", None, true));

    let inputs = resolve(&gateway(base_spec()), &snapshot, &Tenancy::default())?;
    assert_eq!(inputs.key, "default/gateway1");
    assert_eq!(inputs.router, "ovn-cluster");
    assert_eq!(inputs.ports, ["web.default".to_owned()].into());
    // The external subnet is IPv4 only: IPv6 is not carried (no rows, no reroute).
    assert_eq!(
        inputs.families.keys().copied().collect::<Vec<_>>(),
        [AddressFamily::V4]
    );
    let v4 = &inputs.families[&AddressFamily::V4];
    let nets =
        |list: &[&str]| -> BTreeSet<IpNet> { list.iter().filter_map(|n| n.parse().ok()).collect() };
    assert_eq!(v4.sources, nets(&["198.18.16.0/20", "198.19.0.0/16"]));
    assert_eq!(v4.forward_only, nets(&["198.19.0.0/16"]));
    assert_eq!(
        v4.all_nexthops(),
        [
            "198.18.0.12"
                .parse()
                .map_err(|_| Problem::VpcNotFound(String::new()))?,
            "198.18.0.13"
                .parse()
                .map_err(|_| Problem::VpcNotFound(String::new()))?
        ]
        .into()
    );
    let ready: Vec<(String, bool)> = inputs
        .instances
        .iter()
        .map(|i| (i.pod.clone(), i.ready))
        .collect();
    assert_eq!(
        ready,
        [("gw-a".to_owned(), true), ("gw-b".to_owned(), false)]
    );
    assert_eq!(
        inputs.messages,
        ["pod default/gw-c has no address on network default/eth1 (network-status)"]
    );
    Ok(())
}

#[test]
fn missing_references_are_problems_with_reasons() {
    let snapshot = cluster();
    let cases: Vec<(Value, &str)> = vec![
        (json!({"vpc": "vpc9"}), "VpcNotFound"),
        (json!({"externalSubnet": "nope"}), "SubnetNotFound"),
        (json!({"internalSubnet": "nope"}), "SubnetNotFound"),
        (
            json!({"policies": [{"snat": true, "subnets": ["nope"]}]}),
            "SubnetNotFound",
        ),
        (json!({"bfd": {"enabled": true}}), "VpcBfdPortNotEnabled"),
        (json!({"internalIPPool": "pool9"}), "IPPoolNotFound"),
        (json!({"replicas": -1}), "InvalidSpec"),
    ];
    for (patch, reason) in cases {
        let mut spec = base_spec();
        merge(&mut spec, patch.clone());
        match resolve(&gateway(spec), &snapshot, &Tenancy::default()) {
            Err(problem) => assert_eq!(problem.reason(), reason, "{patch}: {problem}"),
            Ok(_) => panic!("{patch} resolved"),
        }
    }
    let mut no_nad = cluster();
    no_nad.put_subnet(from(json!({
        "apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": "macvlan1"},
        "spec": {"cidrBlock": "198.51.100.0/24", "provider": "eth9.default"}})));
    assert_eq!(
        resolve(&gateway(base_spec()), &no_nad, &Tenancy::default())
            .map_err(|p| p.to_string())
            .err(),
        Some("network attachment definition default/eth9 not found".to_owned())
    );
    let mut pool = cluster();
    pool.put_ip_pool(from(
        json!({"apiVersion": "kubeovn.io/v1", "kind": "IPPool",
        "metadata": {"name": "pool1"}, "spec": {"subnet": "subnet1"}}),
    ));
    let mut spec = base_spec();
    merge(&mut spec, json!({"externalIPPool": "pool1", "replicas": 1}));
    assert_eq!(
        resolve(&gateway(spec), &pool, &Tenancy::default())
            .map_err(|p| p.reason())
            .err(),
        Some("IPPoolSubnetMismatch")
    );
}

#[test]
fn local_needs_each_instance_nodes_port_group() -> Result<(), Problem> {
    let mut snapshot = cluster();
    snapshot.put_pod(instance(
        "gw-a",
        "worker1",
        "198.18.0.12",
        Some("198.51.100.11"),
        true,
    ));
    let mut spec = base_spec();
    merge(&mut spec, json!({"trafficPolicy": "Local"}));
    let inputs = resolve(&gateway(spec.clone()), &snapshot, &Tenancy::default())?;
    assert_eq!(
        inputs.families[&AddressFamily::V4].node_port_groups,
        BTreeMap::from([("worker1".to_owned(), "node.worker1".to_owned())])
    );
    snapshot.put_node(from(json!({"metadata": {"name": "worker1"}})));
    assert_eq!(
        resolve(&gateway(spec), &snapshot, &Tenancy::default())
            .map_err(|p| p.reason())
            .err(),
        Some("NodePortGroupMissing")
    );
    Ok(())
}
