//! Resolution against snapshots: the seed's example, every missing reference as a problem,
//! which workload Pods count as instances, which Pods the selectors pick, and which families
//! a gateway carries.

use serde_json::{Value, json};

use super::*;
use crate::snapshot::MemorySnapshot;

fn from<T: serde::de::DeserializeOwned>(value: Value) -> T {
    match serde_json::from_value(value) {
        Ok(object) => object,
        Err(error) => panic!("test object does not parse: {error}"),
    }
}

fn gateway(spec: Value) -> VpcEgressGateway {
    from(json!({
        "apiVersion": "kubeovn.io/v1", "kind": "VpcEgressGateway",
        "metadata": {"name": "gateway1", "namespace": "default"},
        "spec": spec
    }))
}

fn base_spec() -> Value {
    json!({
        "replicas": 2,
        "externalSubnet": "macvlan1",
        "selectors": [{"namespaceSelector": {"matchLabels": {"team": "blue"}}}],
        "policies": [
            {"snat": true, "subnets": ["subnet1"]},
            {"snat": false, "ipBlocks": ["198.19.0.0/16", "2001:db8:19::/64"]}
        ]
    })
}

/// The cluster of the product description: default VPC, a dual-stack internal subnet, an
/// IPv4-only macvlan external subnet and its NAD, two namespaces, two nodes.
fn cluster() -> MemorySnapshot {
    let mut snapshot = MemorySnapshot::default();
    snapshot.put_vpc(from(json!({
        "apiVersion": "kubeovn.io/v1", "kind": "Vpc", "metadata": {"name": "ovn-cluster"},
        "spec": {},
        "status": {"router": "ovn-cluster", "defaultLogicalSwitch": "ovn-default"}
    })));
    for (name, cidr, provider) in [
        ("ovn-default", "198.18.0.0/16,2001:db8:18::/64", "ovn"),
        ("subnet1", "198.18.16.0/20,2001:db8:16::/64", "ovn"),
        ("macvlan1", "198.51.100.0/24", "eth1.default"),
    ] {
        snapshot.put_subnet(from(json!({
            "apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": name},
            "spec": {"cidrBlock": cidr, "provider": provider}
        })));
    }
    snapshot.put_nad(from(json!({
        "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": "eth1", "namespace": "default"}, "spec": {"config": "{}"}
    })));
    for (name, team) in [("default", "blue"), ("other", "red")] {
        snapshot.put_namespace(from(json!({
            "metadata": {"name": name, "labels": {"team": team}}
        })));
    }
    for node in ["worker1", "worker2"] {
        snapshot.put_node(from(json!({"metadata": {"name": node,
            "annotations": {"ovn.kubernetes.io/port_name": format!("node-{node}")}}})));
    }
    snapshot
}

fn client(
    namespace: &str,
    name: &str,
    router: &str,
    extra: Value,
) -> k8s_openapi::api::core::v1::Pod {
    let mut pod = json!({
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "client"},
            "annotations": {"ovn.kubernetes.io/allocated": "true",
                            "ovn.kubernetes.io/logical_router": router}},
        "spec": {"containers": [], "nodeName": "worker1"},
        "status": {"phase": "Running"}
    });
    merge(&mut pod, extra);
    from(pod)
}

fn instance(
    name: &str,
    node: &str,
    ip: &str,
    external: Option<&str>,
    ready: bool,
) -> k8s_openapi::api::core::v1::Pod {
    let mut annotations = json!({});
    if let Some(external) = external {
        annotations["k8s.v1.cni.cncf.io/network-status"] = json!(
            json!([{"name": "ovn-default"}, {"name": "default/eth1", "ips": [external]}])
                .to_string()
        );
    }
    from(json!({
        "metadata": {"name": name, "namespace": "default",
            "labels": {"app": "vpc-egress-gateway", "ovn.kubernetes.io/vpc-egress-gateway": "gateway1"},
            "annotations": annotations},
        "spec": {"containers": [], "nodeName": node},
        "status": {"phase": "Running", "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
    }))
}

fn merge(target: &mut Value, extra: Value) {
    match (target, extra) {
        (Value::Object(target), Value::Object(extra)) => {
            for (key, value) in extra {
                merge(target.entry(key).or_insert(Value::Null), value);
            }
        }
        (target, extra) => *target = extra,
    }
}

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

    let inputs = resolve(&gateway(base_spec()), &snapshot)?;
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
        match resolve(&gateway(spec), &snapshot) {
            Err(problem) => assert_eq!(problem.reason(), reason, "{patch}: {problem}"),
            Ok(_) => panic!("{patch} resolved"),
        }
    }
    let mut no_nad = cluster();
    no_nad.put_subnet(from(json!({
        "apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": "macvlan1"},
        "spec": {"cidrBlock": "198.51.100.0/24", "provider": "eth9.default"}})));
    assert_eq!(
        resolve(&gateway(base_spec()), &no_nad)
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
        resolve(&gateway(spec), &pool).map_err(|p| p.reason()).err(),
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
    let inputs = resolve(&gateway(spec.clone()), &snapshot)?;
    assert_eq!(
        inputs.families[&AddressFamily::V4].node_port_groups,
        BTreeMap::from([("worker1".to_owned(), "node.worker1".to_owned())])
    );
    snapshot.put_node(from(json!({"metadata": {"name": "worker1"}})));
    assert_eq!(
        resolve(&gateway(spec), &snapshot)
            .map_err(|p| p.reason())
            .err(),
        Some("NodePortGroupMissing")
    );
    Ok(())
}
