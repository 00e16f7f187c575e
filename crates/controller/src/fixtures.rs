//! Test fixtures shared by the planner's unit tests: the product description's cluster as a
//! snapshot, gateway specs, client Pods and gateway Pods.
#![allow(dead_code)]

use serde_json::{Value, json};
use veg_api::VpcEgressGateway;

use crate::plan::snapshot::MemorySnapshot;

pub fn from<T: serde::de::DeserializeOwned>(value: Value) -> T {
    match serde_json::from_value(value) {
        Ok(object) => object,
        Err(error) => panic!("test object does not parse: {error}"),
    }
}

pub fn gateway(spec: Value) -> VpcEgressGateway {
    from(json!({
        "apiVersion": "kubeovn.io/v1", "kind": "VpcEgressGateway",
        "metadata": {"name": "gateway1", "namespace": "default"},
        "spec": spec
    }))
}

pub fn base_spec() -> Value {
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
/// IPv4-only macvlan external subnet and its NAD, two namespaces, two nodes. Under strict
/// tenancy everything `base_spec` names is `default`'s to use: subnet1 and the routed range of
/// its ipBlocks are bound to it, and namespace `other` admits its gateways.
pub fn cluster() -> MemorySnapshot {
    cluster_in(MemorySnapshot::default())
}

/// [`cluster`] in a given snapshot (a compact one, as the kube adapter keeps).
pub fn cluster_in(mut snapshot: MemorySnapshot) -> MemorySnapshot {
    snapshot.put_vpc(from(json!({
        "apiVersion": "kubeovn.io/v1", "kind": "Vpc", "metadata": {"name": "ovn-cluster"},
        "spec": {},
        "status": {"router": "ovn-cluster", "defaultLogicalSwitch": "ovn-default"}
    })));
    for (name, cidr, provider, namespaces) in [
        (
            "ovn-default",
            "198.18.0.0/16,2001:db8:18::/64",
            "ovn",
            json!([]),
        ),
        (
            "subnet1",
            "198.18.16.0/20,2001:db8:16::/64",
            "ovn",
            json!(["default"]),
        ),
        (
            "routed19",
            "198.19.0.0/16,2001:db8:19::/64",
            "ovn",
            json!(["default"]),
        ),
        ("macvlan1", "198.51.100.0/24", "eth1.default", json!([])),
    ] {
        snapshot.put_subnet(from(json!({
            "apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": name},
            "spec": {"cidrBlock": cidr, "provider": provider, "namespaces": namespaces}
        })));
    }
    snapshot.put_nad(from(json!({
        "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": "eth1", "namespace": "default"}, "spec": {"config": "{}"}
    })));
    for (name, team) in [("default", "blue"), ("other", "red")] {
        snapshot.put_namespace(from(json!({
            "metadata": {"name": name, "labels": {"team": team},
                "annotations": {veg_api::names::ANNOTATION_ADMITS_GATEWAYS: "default"}}
        })));
    }
    for node in ["worker1", "worker2"] {
        snapshot.put_node(from(json!({"metadata": {"name": node,
            "annotations": {"ovn.kubernetes.io/port_name": format!("node-{node}")}}})));
    }
    snapshot
}

pub fn client(
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

pub fn instance(
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

pub fn merge(target: &mut Value, extra: Value) {
    match (target, extra) {
        (Value::Object(target), Value::Object(extra)) => {
            for (key, value) in extra {
                merge(target.entry(key).or_insert(Value::Null), value);
            }
        }
        (target, extra) => *target = extra,
    }
}

/// A standalone NB (`ovsdb-server`) with NB_Global and the router `ovn-cluster`, and a client
/// keeping the controller's tables.
pub async fn test_nb() -> anyhow::Result<(crate::test_server::Servers, veg_ovsdb::Client)> {
    use veg_ovsdb::{Client, ClientConfig};
    let servers = crate::test_server::Servers::standalone()?;
    servers.seed_nb(0, "ovn-cluster", &[])?;
    let config = ClientConfig::northbound(
        &format!("unix:{}", servers.socket(0).display()),
        crate::apply::nb::monitor_spec(),
    )?;
    let client = Client::connect(config, std::time::Duration::from_secs(5)).await?;
    Ok((servers, client))
}

/// A node for the BFD port's choice, with Kube-OVN's chassis annotation when given.
pub fn node_with_chassis(
    name: &str,
    labels: serde_json::Value,
    chassis: Option<&str>,
) -> k8s_openapi::api::core::v1::Node {
    let mut annotations = json!({});
    if let Some(chassis) = chassis {
        annotations[crate::plan::bfd_port::CHASSIS_ANNOTATION] = json!(chassis);
    }
    from(json!({"metadata": {"name": name, "labels": labels, "annotations": annotations}}))
}

pub fn bfd_vpc(selector: Option<serde_json::Value>) -> veg_api::kubeovn::Vpc {
    let mut port = json!({"enabled": true, "ip": "203.0.113.254,2001:db8:ff::254"});
    if let Some(selector) = selector {
        port["nodeSelector"] = selector;
    }
    from(
        json!({"apiVersion": "kubeovn.io/v1", "kind": "Vpc", "metadata": {"name": "ovn-cluster"},
        "spec": {"bfdPort": port}}),
    )
}

pub fn bfd_nodes() -> Vec<k8s_openapi::api::core::v1::Node> {
    vec![
        node_with_chassis("worker4", json!({"bfd": "yes"}), Some("ch-4")),
        node_with_chassis("worker2", json!({"bfd": "yes"}), Some("ch-2")),
        node_with_chassis("worker1", json!({}), Some("ch-1")),
        node_with_chassis("worker3", json!({"bfd": "yes"}), None),
    ]
}
