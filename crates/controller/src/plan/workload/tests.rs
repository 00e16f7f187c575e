//! The Deployment of the product description's gateways: Kube-OVN's annotations (IPAM, routes,
//! Multus, bandwidth), labels and affinity, and veg's unprivileged containers.

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::json;

use super::*;
use crate::fixtures::*;
use crate::plan::context::resolve;
use crate::plan::snapshot::MemorySnapshot;
use crate::plan::tenancy::Tenancy;

fn deployment(spec_patch: serde_json::Value) -> Deployment {
    let mut snapshot = cluster();
    snapshot.put_vpc(from(json!({
        "apiVersion": "kubeovn.io/v1", "kind": "Vpc", "metadata": {"name": "ovn-cluster"},
        "spec": {},
        "status": {"router": "ovn-cluster", "defaultLogicalSwitch": "ovn-default",
                   "bfdPort": {"name": "bfd@ovn-cluster", "ip": "203.0.113.254"}}
    })));
    snapshot.put_subnet(from(json!({
        "apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": "macvlan1"},
        "spec": {"cidrBlock": "198.51.100.0/24", "gateway": "198.51.100.1", "provider": "eth1.default"}})));
    snapshot.put_subnet(from(json!({
        "apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": "ovn-default"},
        "spec": {"cidrBlock": "198.18.0.0/16,2001:db8:18::/64", "gateway": "198.18.0.1,2001:db8:18::1",
                 "provider": "ovn"}})));
    render_in(&snapshot, spec_patch)
}

fn render_in(snapshot: &MemorySnapshot, spec_patch: serde_json::Value) -> Deployment {
    let mut spec = base_spec();
    merge(&mut spec, spec_patch);
    let gateway = gateway(spec);
    match resolve(&gateway, snapshot, &Tenancy::default()) {
        Ok(inputs) => render(&gateway, &inputs, "veg:test"),
        Err(problem) => panic!("does not resolve: {problem}"),
    }
}

/// gateway1 with BFD on, its VPC's BFD port at 198.18.0.253 inside the internal subnet, and
/// its inputs.
fn bfd_gateway() -> (veg_api::VpcEgressGateway, GatewayInputs) {
    let mut snapshot = cluster();
    snapshot.put_vpc(from(json!({
        "apiVersion": "kubeovn.io/v1", "kind": "Vpc", "metadata": {"name": "ovn-cluster"},
        "spec": {},
        "status": {"router": "ovn-cluster", "defaultLogicalSwitch": "ovn-default",
                   "bfdPort": {"name": "bfd@ovn-cluster", "ip": "198.18.0.253"}}
    })));
    snapshot.put_subnet(from(json!({
        "apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": "macvlan1"},
        "spec": {"cidrBlock": "198.51.100.0/24", "gateway": "198.51.100.1", "provider": "eth1.default"}})));
    snapshot.put_subnet(from(json!({
        "apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": "ovn-default"},
        "spec": {"cidrBlock": "198.18.0.0/16", "gateway": "198.18.0.1", "provider": "ovn"}})));
    let mut spec = base_spec();
    merge(&mut spec, json!({"bfd": {"enabled": true}}));
    let gateway = gateway(spec);
    let Ok(inputs) = resolve(&gateway, &snapshot, &Tenancy::default()) else {
        panic!("does not resolve");
    };
    (gateway, inputs)
}

/// Native mode: the BFD peers are router ports (routed even inside the subnet) and bfdd
/// signals a Path Down by silence; monitor mode neither.
#[test]
fn native_mode_routes_the_bfd_port_and_silences_path_down() {
    let (gateway, mut inputs) = bfd_gateway();
    for native in [false, true] {
        inputs.workload.bfd_routed = native;
        let deployment = render(&gateway, &inputs, "veg:test");
        let spec = pod(&deployment);
        let bfdd = spec.containers.iter().find(|c| c.name == "bfdd");
        let args = bfdd.and_then(|c| c.args.clone()).unwrap_or_default();
        assert_eq!(
            args.contains(&"--silent-path-down".to_owned()),
            native,
            "{args:?}"
        );
        let env: Vec<String> = spec.containers[0]
            .env
            .iter()
            .flatten()
            .map(|e| format!("{}={}", e.name, e.value.clone().unwrap_or_default()))
            .collect();
        assert_eq!(
            env.contains(&"VEG_GW_BFD_PEERS_ROUTED=true".to_owned()),
            native,
            "{env:?}"
        );
        // The route to the BFD address inside the subnet: through the router only in native.
        let routes = template_annotations(&deployment)
            .get("ovn.kubernetes.io/routes")
            .cloned()
            .unwrap_or_default();
        assert_eq!(routes.contains("198.18.0.253"), native, "{routes}");
    }
}

/// Monitor mode with keyed SHA1: bfdd reads the key from the Secret, mounted read-only; the
/// agent does not see it. Without a Secret nothing of it is rendered.
#[test]
fn keyed_sha1_mounts_the_secret_into_bfdd_only() {
    let deployment_with = |secret: Option<&str>| {
        let (gateway, mut inputs) = bfd_gateway();
        inputs.workload.bfd_auth_secret = secret.map(str::to_owned);
        pod(&render(&gateway, &inputs, "veg:test"))
    };
    let spec = deployment_with(Some("veg-bfd-auth"));
    let bfdd = spec.containers.iter().find(|c| c.name == "bfdd");
    let args = bfdd.and_then(|c| c.args.clone()).unwrap_or_default();
    let at = args.iter().position(|a| a == "--auth-key-file");
    assert_eq!(
        at.and_then(|i| args.get(i + 1)).map(String::as_str),
        Some("/etc/veg/bfd-auth/key"),
        "{args:?}"
    );
    let mount = bfdd
        .and_then(|c| c.volume_mounts.clone())
        .unwrap_or_default()
        .into_iter()
        .find(|m| m.name == "bfd-auth");
    assert_eq!(mount.and_then(|m| m.read_only), Some(true));
    let volume = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "bfd-auth")
        .and_then(|v| v.secret.clone());
    assert_eq!(
        volume.and_then(|s| s.secret_name).as_deref(),
        Some("veg-bfd-auth")
    );
    assert!(
        spec.containers[0]
            .volume_mounts
            .iter()
            .flatten()
            .all(|m| m.name != "bfd-auth"),
        "the agent sees the key"
    );
    let plain = deployment_with(None);
    assert!(plain.volumes.iter().flatten().all(|v| v.name != "bfd-auth"));
    let args = plain
        .containers
        .iter()
        .find(|c| c.name == "bfdd")
        .and_then(|c| c.args.clone())
        .unwrap_or_default();
    assert!(!args.contains(&"--auth-key-file".to_owned()));
}

fn template_annotations(deployment: &Deployment) -> BTreeMap<String, String> {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default()
}

fn pod(deployment: &Deployment) -> PodSpec {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .unwrap_or_default()
}

#[test]
fn annotations_are_kube_ovns() {
    let deployment = deployment(json!({
        "bfd": {"enabled": true},
        "internalIPPool": "",
        "externalIPs": ["198.51.100.11", "198.51.100.12"],
        "bandwidth": {"ingress": 1000, "egress": "1Gi"}
    }));
    let annotations = template_annotations(&deployment);
    let get = |key: &str| annotations.get(key).cloned().unwrap_or_default();
    assert_eq!(get("k8s.v1.cni.cncf.io/networks"), "default/eth1");
    assert_eq!(get("ovn.kubernetes.io/logical_switch"), "ovn-default");
    // BFD peer and the sources outside the internal subnet (198.19.0.0/16; subnet1's
    // 198.18.16.0/20 is inside 198.18.0.0/16) via the internal gateway; IPv6 is not
    // carried (the external subnet is IPv4 only).
    assert_eq!(
        get("ovn.kubernetes.io/routes"),
        r#"[{"dst":"198.19.0.0/16","gw":"198.18.0.1"},{"dst":"203.0.113.254/32","gw":"198.18.0.1"}]"#
    );
    assert_eq!(
        get("eth1.default.kubernetes.io/routes"),
        r#"[{"dst":"0.0.0.0/0","gw":"198.51.100.1"}]"#
    );
    assert_eq!(
        get("eth1.default.kubernetes.io/ip_pool"),
        "198.51.100.11;198.51.100.12"
    );
    // Directions swapped on purpose; 1Gi bit/s rounds up to 1074 Mbps.
    assert_eq!(get("ovn.kubernetes.io/egress_rate"), "1000");
    assert_eq!(get("ovn.kubernetes.io/ingress_rate"), "1074");
    assert_eq!(get(HASH_ANNOTATION).len(), 12);
}

#[test]
fn containers_are_unprivileged_and_bfdd_comes_with_bfd() {
    let plain = pod(&deployment(json!({})));
    let names: Vec<&str> = plain.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["gateway"]);
    let with_bfd = pod(&deployment(
        json!({"bfd": {"enabled": true, "minRX": 100, "minTX": 200, "multiplier": 5}}),
    ));
    let names: Vec<&str> = with_bfd
        .containers
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["gateway", "bfdd"]);
    let bfdd = &with_bfd.containers[1];
    let args = bfdd.args.clone().unwrap_or_default().join(" ");
    assert!(
        args.contains(
            "--allow 203.0.113.254 --min-tx-ms 200 --min-rx-ms 100 --multiplier 5 --min-ttl 254"
        ),
        "{args}"
    );
    let gateway_args = with_bfd.containers[0]
        .args
        .clone()
        .unwrap_or_default()
        .join(" ");
    assert!(
        gateway_args.ends_with("--bfd-control /run/veg/bfdd.sock"),
        "{gateway_args}"
    );
    // Least privilege that works on a stock runtime: a privileged init for the sysctls, the
    // agent as root with only NET_ADMIN/NET_RAW, bfdd as root with nothing.
    let security = |container: &k8s_openapi::api::core::v1::Container| {
        let security = container.security_context.clone().unwrap_or_default();
        let caps = security.capabilities.clone().unwrap_or_default();
        format!(
            "{} uid={:?} privileged={:?} escalation={:?} ro={:?} drop={:?} add={:?}",
            container.name,
            security.run_as_user,
            security.privileged,
            security.allow_privilege_escalation,
            security.read_only_root_filesystem,
            caps.drop,
            caps.add
        )
    };
    let all: Vec<String> = with_bfd
        .init_containers
        .iter()
        .flatten()
        .chain(with_bfd.containers.iter())
        .map(security)
        .collect();
    assert_eq!(
        all,
        [
            "init uid=Some(0) privileged=Some(true) escalation=None ro=Some(true) drop=None add=None",
            "gateway uid=Some(0) privileged=Some(false) escalation=Some(false) ro=Some(true) \
             drop=Some([\"ALL\"]) add=Some([\"NET_ADMIN\", \"NET_RAW\"])",
            "bfdd uid=Some(0) privileged=Some(false) escalation=Some(false) ro=Some(true) \
             drop=Some([\"ALL\"]) add=None",
        ]
    );
    let init = &with_bfd.init_containers.clone().unwrap_or_default()[0];
    let env: BTreeMap<String, String> = init
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect();
    assert_eq!(
        env.get("VEG_GW_INTERNAL_GATEWAY").map(String::as_str),
        Some("198.18.0.1")
    );
    assert_eq!(
        env.get("VEG_GW_EXTERNAL_GATEWAY").map(String::as_str),
        Some("198.51.100.1")
    );
    assert_eq!(
        env.get("VEG_GW_FORWARD_ONLY").map(String::as_str),
        Some("198.19.0.0/16")
    );
    assert_eq!(
        env.get("VEG_GW_SOURCES").map(String::as_str),
        Some("198.18.16.0/20,198.19.0.0/16")
    );
    // No sysctl in the Pod: none of them is in a stock kubelet's safe set.
    assert!(with_bfd.security_context.and_then(|s| s.sysctls).is_none());
}

/// What the kubelet runs to probe each container, as text.
fn probes(pod: &PodSpec) -> Vec<String> {
    let show = |probe: &Option<Probe>| match probe {
        None => "none".to_owned(),
        Some(probe) => match (&probe.http_get, &probe.exec) {
            (Some(get), None) => {
                format!("GET {:?}{}", get.port, get.path.clone().unwrap_or_default())
            }
            (None, Some(exec)) => exec.command.clone().unwrap_or_default().join(" "),
            _ => "both".to_owned(),
        },
    };
    pod.containers
        .iter()
        .map(|c| {
            format!(
                "{}: live {}; ready {}",
                c.name,
                show(&c.liveness_probe),
                show(&c.readiness_probe)
            )
        })
        .collect()
}

#[test]
fn the_kubelet_probes_default_vpc_gateways_over_http_and_custom_vpc_ones_from_inside() {
    let bfd = json!({"bfd": {"enabled": true}});
    assert_eq!(
        probes(&pod(&deployment(bfd.clone()))),
        [
            "gateway: live GET Int(10670)/livez; ready GET Int(10670)/readyz",
            "bfdd: live GET Int(10669)/livez; ready none",
        ]
    );
    // A custom VPC: the node has no route to the Pod's address.
    let mut snapshot = cluster();
    snapshot.put_vpc(from(json!({
        "apiVersion": "kubeovn.io/v1", "kind": "Vpc", "metadata": {"name": "vpc1"},
        "spec": {"namespaces": ["default"]},
        "status": {"router": "vpc1", "defaultLogicalSwitch": "vpc1-net",
                   "bfdPort": {"name": "bfd@vpc1", "ip": "198.18.200.254"}}
    })));
    snapshot.put_subnet(from(json!({
        "apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": "vpc1-net"},
        "spec": {"vpc": "vpc1", "cidrBlock": "198.18.200.0/24", "gateway": "198.18.200.1",
                 "provider": "ovn", "namespaces": ["default"]}})));
    let custom = render_in(
        &snapshot,
        json!({"vpc": "vpc1", "internalSubnet": "vpc1-net", "bfd": {"enabled": true},
               "selectors": [], "policies": [{"snat": true, "subnets": ["vpc1-net"]}]}),
    );
    assert_eq!(
        probes(&pod(&custom)),
        [
            "gateway: live veg gateway probe --port 10670 --path /livez; \
             ready veg gateway probe --port 10670 --path /readyz",
            "bfdd: live veg gateway probe --port 10669 --path /livez; ready none",
        ]
    );
}

#[test]
fn labels_affinity_and_strategy() {
    let deployment = deployment(json!({
        "prefix": "veg-",
        "podAntiAffinity": "Preferred",
        "nodeSelector": [{"matchLabels": {"zone": "a"},
            "matchExpressions": [{"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}]}]
    }));
    assert_eq!(deployment.metadata.name.as_deref(), Some("veg-gateway1"));
    let spec = deployment.spec.clone().unwrap_or_default();
    assert_eq!(spec.replicas, Some(2));
    assert_eq!(
        spec.selector.match_labels,
        Some(BTreeMap::from([
            ("app".to_owned(), "vpc-egress-gateway".to_owned()),
            (
                "ovn.kubernetes.io/vpc-egress-gateway".to_owned(),
                "gateway1".to_owned()
            ),
        ]))
    );
    let rolling = spec
        .strategy
        .and_then(|s| s.rolling_update)
        .unwrap_or_default();
    assert_eq!(rolling.max_surge, Some(IntOrString::Int(0)));
    assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(1)));
    let affinity = pod(&deployment).affinity.unwrap_or_default();
    let anti = affinity.pod_anti_affinity.unwrap_or_default();
    assert!(
        anti.required_during_scheduling_ignored_during_execution
            .is_none()
    );
    assert_eq!(
        anti.preferred_during_scheduling_ignored_during_execution
            .map(|terms| terms[0].weight),
        Some(100)
    );
    let terms = affinity
        .node_affinity
        .and_then(|n| n.required_during_scheduling_ignored_during_execution)
        .map(|s| s.node_selector_terms)
        .unwrap_or_default();
    let keys: Vec<String> = terms[0]
        .match_expressions
        .iter()
        .flatten()
        .map(|e| format!("{} {} {:?}", e.key, e.operator, e.values))
        .collect();
    // Expressions first, then each matchLabels key as In [value] (Kube-OVN's mergeNodeSelector).
    assert_eq!(
        keys,
        [
            "kubernetes.io/os In Some([\"linux\"])",
            "zone In Some([\"a\"])"
        ]
    );
    // The same inputs render the same Deployment (hash included): no spurious rollouts.
    assert_eq!(
        deployment.metadata.annotations,
        super::tests::deployment(json!({
            "prefix": "veg-",
            "podAntiAffinity": "Preferred",
            "nodeSelector": [{"matchLabels": {"zone": "a"},
                "matchExpressions": [{"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}]}]
        }))
        .metadata
        .annotations
    );
}

#[test]
fn bandwidth_quantities_become_mbps() {
    let cases = [
        (BandwidthRate::Mbps(100), Some(100)),
        (BandwidthRate::Quantity("250".into()), Some(250)),
        (BandwidthRate::Quantity("1Gi".into()), Some(1074)),
        (BandwidthRate::Quantity("500M".into()), Some(500)),
        (BandwidthRate::Quantity("1.5G".into()), Some(1500)),
        (BandwidthRate::Quantity("10x".into()), None),
    ];
    for (rate, want) in cases {
        assert_eq!(mbps(&rate), want, "{rate:?}");
    }
}

#[test]
fn an_on_link_bfd_address_gets_no_route_via_the_router() {
    let mut snapshot = cluster();
    snapshot.put_vpc(from(json!({
        "apiVersion": "kubeovn.io/v1", "kind": "Vpc", "metadata": {"name": "ovn-cluster"},
        "spec": {},
        "status": {"router": "ovn-cluster", "defaultLogicalSwitch": "ovn-default",
                   "bfdPort": {"name": "bfd@ovn-cluster", "ip": "198.18.0.253"}}
    })));
    snapshot.put_subnet(from(json!({
        "apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": "ovn-default"},
        "spec": {"cidrBlock": "198.18.0.0/16", "gateway": "198.18.0.1", "provider": "ovn"}})));
    snapshot.put_subnet(from(json!({
        "apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": "macvlan1"},
        "spec": {"cidrBlock": "198.51.100.0/24", "gateway": "198.51.100.1", "provider": "eth1.default"}})));
    let mut spec = base_spec();
    merge(&mut spec, json!({"bfd": {"enabled": true}}));
    let gateway = gateway(spec);
    let inputs = match resolve(&gateway, &snapshot, &Tenancy::default()) {
        Ok(inputs) => inputs,
        Err(problem) => panic!("{problem}"),
    };
    let deployment = render(&gateway, &inputs, "veg:test");
    let routes = template_annotations(&deployment)
        .get("ovn.kubernetes.io/routes")
        .cloned()
        .unwrap_or_default();
    assert!(!routes.contains("198.18.0.253"), "{routes}");
}
