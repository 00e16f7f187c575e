//! Each way one tenant could steer another's traffic (issue "Tenant isolation"), refused under
//! strict tenancy with the field named, permitted by the opt-ins, by an admin namespace and by
//! open tenancy.

use serde_json::{Value, json};

use super::*;
use crate::fixtures::{client, from};
use crate::plan::context::{Problem, resolve};
use crate::plan::snapshot::MemorySnapshot;

/// Two tenants on the default VPC, each with its own subnet, external attachment and Pods; a
/// tenant VPC of tenant-a; a shared external subnet whose attachment lives in kube-system.
fn two_tenants() -> MemorySnapshot {
    let mut snapshot = MemorySnapshot::default();
    snapshot.put_vpc(from(json!({
        "apiVersion": "kubeovn.io/v1", "kind": "Vpc", "metadata": {"name": "ovn-cluster"},
        "spec": {}, "status": {"router": "ovn-cluster", "defaultLogicalSwitch": "ovn-default"}
    })));
    snapshot.put_vpc(from(json!({
        "apiVersion": "kubeovn.io/v1", "kind": "Vpc", "metadata": {"name": "vpc-a"},
        "spec": {"namespaces": ["tenant-a"]},
        "status": {"router": "vpc-a", "defaultLogicalSwitch": "vpc-a-net"}
    })));
    for (name, cidr, provider, namespaces) in [
        ("ovn-default", "198.18.0.0/20", "ovn", json!([])),
        ("a-net", "198.18.16.0/20", "ovn", json!(["tenant-a"])),
        ("b-net", "198.18.48.0/20", "ovn", json!(["tenant-b"])),
        ("vpc-a-net", "198.19.0.0/20", "ovn", json!(["tenant-a"])),
        ("ext-a", "203.0.113.0/25", "eth1.tenant-a", json!([])),
        (
            "ext-shared",
            "203.0.113.128/25",
            "macvlan.kube-system",
            json!([]),
        ),
    ] {
        snapshot.put_subnet(from(json!({
            "apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": name},
            "spec": {"cidrBlock": cidr, "provider": provider, "namespaces": namespaces}
        })));
    }
    for (namespace, name) in [("tenant-a", "eth1"), ("kube-system", "macvlan")] {
        snapshot.put_nad(from(json!({
            "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": name, "namespace": namespace}, "spec": {"config": "{}"}
        })));
    }
    snapshot.put_ip_pool(from(json!({
        "apiVersion": "kubeovn.io/v1", "kind": "IPPool", "metadata": {"name": "pool-a"},
        "spec": {"subnet": "ext-shared", "ips": ["203.0.113.200"], "namespaces": ["tenant-a"]}
    })));
    for name in ["tenant-a", "tenant-b", "kube-system"] {
        snapshot.put_namespace(from(json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}}
        })));
    }
    snapshot.put_pod(client("tenant-a", "a-1", "ovn-cluster", json!({})));
    snapshot.put_pod(client("tenant-b", "b-1", "ovn-cluster", json!({})));
    snapshot
}

/// A gateway of `namespace` on the shared external subnet, with `extra` merged into its spec.
fn gateway_in(namespace: &str, extra: Value) -> veg_api::VpcEgressGateway {
    let mut spec = json!({"replicas": 1, "externalSubnet": "ext-shared"});
    crate::fixtures::merge(&mut spec, extra);
    from(json!({
        "apiVersion": "kubeovn.io/v1", "kind": "VpcEgressGateway",
        "metadata": {"name": "gw", "namespace": namespace},
        "spec": spec
    }))
}

fn admit(snapshot: &mut MemorySnapshot, namespace: &str, value: &str) {
    snapshot.put_namespace(from(json!({
        "metadata": {"name": namespace, "labels": {"kubernetes.io/metadata.name": namespace},
            "annotations": {names::ANNOTATION_ADMITS_GATEWAYS: value}}
    })));
}

/// The refused field, or `None` when the gateway resolves.
fn refused(snapshot: &MemorySnapshot, tenancy: &Tenancy, extra: Value) -> Option<String> {
    match resolve(&gateway_in("tenant-b", extra), snapshot, tenancy) {
        Ok(_) => None,
        Err(Problem::NotPermitted(refusal)) => Some(refusal.field),
        Err(other) => panic!("expected NotPermitted or success, got {other}"),
    }
}

/// Every capture the issue lists, as one spec each (gateway of tenant-b).
fn captures() -> Vec<(&'static str, Value)> {
    vec![
        (
            "spec.policies[0].ipBlocks[0]",
            json!({"policies": [{"snat": true, "ipBlocks": ["0.0.0.0/0"]}]}),
        ),
        (
            "spec.policies[0].ipBlocks[1]",
            json!({"policies": [{"snat": true, "ipBlocks": ["198.18.48.0/24", "198.18.16.7"]}]}),
        ),
        (
            "spec.policies[1].subnets[0]",
            json!({"policies": [{"snat": true, "subnets": ["b-net"]},
                                {"snat": true, "subnets": ["a-net"]}]}),
        ),
        // The default subnet binds nobody: its address space is shared, so nobody's to steer.
        (
            "spec.policies[0].subnets[0]",
            json!({"policies": [{"snat": true, "subnets": ["ovn-default"]}]}),
        ),
        (
            "spec.vpc",
            json!({"vpc": "vpc-a", "policies": [{"snat": true, "subnets": ["b-net"]}]}),
        ),
        (
            "spec.internalSubnet",
            json!({"internalSubnet": "a-net", "policies": [{"snat": true, "subnets": ["b-net"]}]}),
        ),
        (
            "spec.externalSubnet",
            json!({"externalSubnet": "ext-a", "policies": [{"snat": true, "subnets": ["b-net"]}]}),
        ),
        (
            "spec.externalIPPool",
            json!({"externalIPPool": "pool-a", "policies": [{"snat": true, "subnets": ["b-net"]}]}),
        ),
        // Run with NET_ADMIN: a tenant's own image is not the controller's.
        (
            "spec.image",
            json!({"image": "registry.example/tenant-b/gw:1", "policies": [{"snat": true, "subnets": ["b-net"]}]}),
        ),
    ]
}

#[test]
fn strict_tenancy_refuses_every_capture_and_names_the_field() {
    let snapshot = two_tenants();
    for (field, spec) in captures() {
        assert_eq!(
            refused(&snapshot, &Tenancy::default(), spec.clone()).as_deref(),
            Some(field),
            "{spec}"
        );
    }
    // What tenant-b may do: its own subnet and address space, the shared attachment.
    assert_eq!(
        refused(
            &snapshot,
            &Tenancy::default(),
            json!({"policies": [{"snat": true, "subnets": ["b-net"], "ipBlocks": ["198.18.48.0/24"]}]})
        ),
        None
    );
}

#[test]
fn open_tenancy_and_admin_namespaces_refuse_nothing() {
    let snapshot = two_tenants();
    for (_, spec) in captures() {
        assert_eq!(
            refused(&snapshot, &Tenancy::open(), spec.clone()),
            None,
            "{spec}"
        );
        assert_eq!(
            refused(&snapshot, &Tenancy::strict(["tenant-b"]), spec.clone()),
            None,
            "{spec}"
        );
    }
}

#[test]
fn images_the_operator_lists_may_be_named() {
    let snapshot = two_tenants();
    let spec = json!({"image": "veg:1.2", "policies": [{"snat": true, "subnets": ["b-net"]}]});
    let mut tenancy = Tenancy::default();
    assert_eq!(
        refused(&snapshot, &tenancy, spec.clone()).as_deref(),
        Some("spec.image")
    );
    tenancy.images.insert("veg:1.2".to_owned());
    assert_eq!(refused(&snapshot, &tenancy, spec), None);
}

#[test]
fn the_refusal_says_what_would_permit_it() {
    let snapshot = two_tenants();
    let spec = json!({"policies": [{"snat": true, "subnets": ["a-net"]}]});
    let Err(problem) = resolve(
        &gateway_in("tenant-b", spec),
        &snapshot,
        &Tenancy::default(),
    ) else {
        panic!("resolved");
    };
    assert_eq!(problem.reason(), "NotPermitted");
    let text = problem.to_string();
    assert!(
        text.starts_with("spec.policies[0].subnets[0]: subnet a-net"),
        "{text}"
    );
    assert!(text.contains("[tenant-a]"), "{text}");
    assert!(
        text.contains("veg.kubeovn.io/egress-gateways=tenant-b"),
        "{text}"
    );
}

#[test]
fn selectors_pick_only_pods_of_namespaces_that_admit_the_gateway() -> Result<(), Problem> {
    let mut snapshot = two_tenants();
    let policies = json!({"policies": [{"snat": true, "subnets": ["b-net"]}]});
    // `selectors: [{}]` and a podSelector without namespaceSelector: every namespace.
    for selectors in [
        json!([{}]),
        json!([{"podSelector": {"matchLabels": {"app": "client"}}}]),
    ] {
        let mut spec = policies.clone();
        spec["selectors"] = selectors;
        let strict = resolve(
            &gateway_in("tenant-b", spec.clone()),
            &snapshot,
            &Tenancy::default(),
        )?;
        assert_eq!(strict.ports, ["b-1.tenant-b".to_owned()].into());
        assert_eq!(strict.excluded_namespaces, 1);
        let open = resolve(&gateway_in("tenant-b", spec), &snapshot, &Tenancy::open())?;
        assert_eq!(
            open.ports,
            ["a-1.tenant-a".to_owned(), "b-1.tenant-b".to_owned()].into()
        );
        assert_eq!(open.excluded_namespaces, 0);
    }

    // tenant-a admits another gateway of tenant-b only: still left out.
    let mut spec = policies;
    spec["selectors"] = json!([{}]);
    admit(&mut snapshot, "tenant-a", "tenant-b/other-gateway");
    let inputs = resolve(
        &gateway_in("tenant-b", spec.clone()),
        &snapshot,
        &Tenancy::default(),
    )?;
    assert_eq!(inputs.ports.len(), 1);
    // Admitting this gateway by name lets it select tenant-a's Pods.
    admit(&mut snapshot, "tenant-a", "tenant-c, tenant-b/gw");
    let inputs = resolve(
        &gateway_in("tenant-b", spec),
        &snapshot,
        &Tenancy::default(),
    )?;
    assert_eq!(inputs.ports.len(), 2);
    assert_eq!(inputs.excluded_namespaces, 0);
    Ok(())
}

#[test]
fn a_namespace_that_admits_the_gateway_lends_it_what_is_bound_to_it() {
    let mut snapshot = two_tenants();
    admit(&mut snapshot, "tenant-a", "tenant-b");
    // Everything bound to tenant-a alone (not the shared default subnet, 0.0.0.0/0 or an
    // image: those are not tenant-a's to lend).
    for (field, spec) in captures() {
        let expected = match field {
            "spec.policies[0].ipBlocks[0]" | "spec.policies[0].subnets[0]" | "spec.image" => {
                Some(field)
            }
            _ => None,
        };
        assert_eq!(
            refused(&snapshot, &Tenancy::default(), spec.clone()).as_deref(),
            expected,
            "{spec}"
        );
    }
}

#[test]
fn the_default_vpc_and_its_unbound_subnet_serve_every_namespace() -> Result<(), Problem> {
    let snapshot = two_tenants();
    let spec = json!({"selectors": [{}]});
    let inputs = resolve(
        &gateway_in("tenant-b", spec),
        &snapshot,
        &Tenancy::default(),
    )?;
    assert_eq!(inputs.workload.internal_subnet, "ovn-default");
    // A custom VPC binds its namespaces: tenant-a's own.
    let spec = json!({"vpc": "vpc-a", "selectors": [{}]});
    let inputs = resolve(
        &gateway_in("tenant-a", spec),
        &snapshot,
        &Tenancy::default(),
    )?;
    assert_eq!(inputs.workload.internal_subnet, "vpc-a-net");
    Ok(())
}
