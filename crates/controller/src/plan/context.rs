//! From a gateway and the snapshot around it to everything the OVN planner needs, or the
//! problem that stops it (a missing reference becomes a condition, and no NB write happens for
//! that gateway).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Pod;
use veg_api::names::{self, AddressFamily};
use veg_api::{TrafficPolicy, VpcEgressGateway};

use crate::plan::selector;
use crate::plan::snapshot::Snapshot;
use crate::plan::tenancy::{NotPermitted, Rules, Tenancy};

/// Kube-OVN's annotations and labels read here.
pub mod annotations {
    /// `true` once Kube-OVN allocated the Pod's addresses.
    pub const ALLOCATED: &str = "ovn.kubernetes.io/allocated";
    /// The router (VPC) of the Pod's primary network.
    pub const LOGICAL_ROUTER: &str = "ovn.kubernetes.io/logical_router";
    /// Multus' report of the Pod's attachments.
    pub const NETWORK_STATUS: &str = "k8s.v1.cni.cncf.io/network-status";
    /// A node's port in the join network, `node-<name>`: its Port_Group is the dotted form.
    pub const NODE_PORT_NAME: &str = "ovn.kubernetes.io/port_name";
}

/// Why a gateway cannot be planned; each maps to a condition reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The spec breaks a rule (veg-api validation).
    #[error("{0}")]
    InvalidSpec(String),
    /// The VPC does not exist.
    #[error("vpc {0} not found")]
    VpcNotFound(String),
    /// The VPC has no router yet.
    #[error("vpc {0} has no logical router in its status yet")]
    VpcNotReady(String),
    /// A subnet does not exist.
    #[error("subnet {0} not found")]
    SubnetNotFound(String),
    /// A subnet has no usable CIDR.
    #[error("subnet {name} has no valid cidrBlock ({cidr:?})")]
    SubnetInvalid {
        /// The subnet.
        name: String,
        /// Its cidrBlock.
        cidr: String,
    },
    /// The external subnet's provider names no attachment.
    #[error("external subnet {name} has provider {provider:?}, not <nad>.<namespace>")]
    ExternalProviderInvalid {
        /// The subnet.
        name: String,
        provider: String,
    },
    /// The NetworkAttachmentDefinition does not exist.
    #[error("network attachment definition {0} not found")]
    NadNotFound(String),
    /// An IP pool does not exist.
    #[error("ippool {0} not found")]
    IPPoolNotFound(String),
    /// An IP pool belongs to another subnet.
    #[error("ippool {pool} belongs to subnet {pool_subnet}, not {subnet}")]
    IPPoolMismatch {
        pool: String,
        pool_subnet: String,
        /// The subnet it must belong to.
        subnet: String,
    },
    /// BFD is on but the VPC has no BFD port.
    #[error("vpc {0} bfd port is not enabled or not ready")]
    VpcBfdPortNotEnabled(String),
    /// `trafficPolicy: Local` needs the node's port group.
    #[error("node {0} has no ovn.kubernetes.io/port_name annotation")]
    NodePortGroupMissing(String),
    /// The gateway's namespace may not use what a field names (strict tenancy).
    #[error("{}: {}", .0.field, .0.message)]
    NotPermitted(NotPermitted),
}

impl From<NotPermitted> for Problem {
    fn from(refused: NotPermitted) -> Self {
        Problem::NotPermitted(refused)
    }
}

impl Problem {
    /// The condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Problem::InvalidSpec(_) => "InvalidSpec",
            Problem::VpcNotFound(_) => "VpcNotFound",
            Problem::VpcNotReady(_) => "VpcNotReady",
            Problem::SubnetNotFound(_) => "SubnetNotFound",
            Problem::SubnetInvalid { .. } => "SubnetInvalid",
            Problem::ExternalProviderInvalid { .. } => "ExternalProviderInvalid",
            Problem::NadNotFound(_) => "NetworkAttachmentDefinitionNotFound",
            Problem::IPPoolNotFound(_) => "IPPoolNotFound",
            Problem::IPPoolMismatch { .. } => "IPPoolSubnetMismatch",
            Problem::VpcBfdPortNotEnabled(_) => "VpcBfdPortNotEnabled",
            Problem::NodePortGroupMissing(_) => "NodePortGroupMissing",
            Problem::NotPermitted(_) => "NotPermitted",
        }
    }
}

/// BFD settings of a gateway whose VPC has a BFD port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BfdInputs {
    /// The VPC's BFD port (`bfd@<vpc>`).
    pub port: String,
    /// Pod-side desired min TX, ms.
    pub min_tx: i32,
    /// Pod-side required min RX, ms.
    pub min_rx: i32,
    /// Detect multiplier.
    pub multiplier: i32,
}

/// One address family the gateway carries (its internal and external subnets both have it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FamilyInputs {
    /// Policy sources: SNAT ∪ forward-only, CIDRs of this family.
    pub sources: BTreeSet<IpNet>,
    /// Forward-only sources.
    pub forward_only: BTreeSet<IpNet>,
    /// Gateway instances' internal addresses by node.
    pub nexthops: BTreeMap<String, BTreeSet<IpAddr>>,
    /// The node Port_Groups (`trafficPolicy: Local`), by node.
    pub node_port_groups: BTreeMap<String, String>,
    /// The VPC's BFD address of this family, when BFD is on.
    pub bfd_ip: Option<IpAddr>,
}

impl FamilyInputs {
    /// Every nexthop.
    pub fn all_nexthops(&self) -> BTreeSet<IpAddr> {
        self.nexthops.values().flatten().copied().collect()
    }
}

/// A gateway instance as the workload shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    /// Pod name.
    pub pod: String,
    pub node: String,
    /// Internal addresses.
    pub internal_ips: Vec<IpAddr>,
    /// External addresses (from the attachment's network status).
    pub external_ips: Vec<IpAddr>,
    /// The Pod's Ready condition.
    pub ready: bool,
}

/// What the workload rendering needs besides the spec.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkloadInputs {
    /// The internal subnet (spec, or the VPC's default logical switch).
    pub internal_subnet: String,
    pub internal_cidrs: Vec<IpNet>,
    /// Its gateways, per family present.
    pub internal_gateways: Vec<IpAddr>,
    /// The external subnet's gateways, per family present.
    pub external_gateways: Vec<IpAddr>,
    /// The external subnet's provider, `<nad>.<namespace>`.
    pub external_provider: String,
    /// The attachment network, `<namespace>/<nad>`.
    pub attachment: String,
    /// The VPC's BFD addresses (BFD on).
    pub bfd_ips: Vec<IpAddr>,
    /// They are OVN router ports (native mode), routed through the internal gateway even
    /// inside the internal subnet; otherwise an address inside it is a monitor, on-link.
    pub bfd_routed: bool,
    /// Monitor mode with keyed SHA1: the Secret (in the gateway's namespace) whose `key` the
    /// Pod's bfdd authenticates with.
    pub bfd_auth_secret: Option<String>,
}

/// Everything the OVN planner needs for one gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayInputs {
    /// `<namespace>/<name>`.
    pub key: String,
    pub namespace: String,
    pub name: String,
    pub vpc: String,
    /// Its logical router.
    pub router: String,
    /// Whether selectors are given (then a Port_Group holds the selected Pods' ports).
    pub has_selectors: bool,
    /// Logical switch ports of the selected Pods.
    pub ports: BTreeSet<String>,
    /// The selected Pods' addresses (another gateway's CIDR source may hold them).
    pub selected_addresses: BTreeSet<IpAddr>,
    /// Namespaces whose Pods the selectors match but which do not admit the gateway (strict
    /// tenancy): their Pods are left out.
    pub excluded_namespaces: usize,
    /// Cluster or Local.
    pub traffic_policy: TrafficPolicy,
    /// BFD, when enabled.
    pub bfd: Option<BfdInputs>,
    /// Families carried.
    pub families: BTreeMap<AddressFamily, FamilyInputs>,
    /// Instances with their network, and why others are not counted.
    pub instances: Vec<Instance>,
    /// Why a Pod of the workload is not an instance.
    pub messages: Vec<String>,
    /// Pods no node can take, each with the scheduler's reason.
    pub unschedulable: Vec<String>,
    /// For the Deployment.
    pub workload: WorkloadInputs,
}

/// An empty label (or annotation) map, for objects without one.
static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

fn family_of(net: &IpNet) -> AddressFamily {
    match net {
        IpNet::V4(_) => AddressFamily::V4,
        IpNet::V6(_) => AddressFamily::V6,
    }
}

fn cidrs(snapshot: &dyn Snapshot, name: &str) -> Result<Vec<IpNet>, Problem> {
    let subnet = snapshot
        .subnet(name)
        .ok_or_else(|| Problem::SubnetNotFound(name.to_owned()))?;
    let nets = subnet.spec.cidrs();
    match nets {
        Some(nets) if !nets.is_empty() => Ok(nets),
        _ => Err(Problem::SubnetInvalid {
            name: name.to_owned(),
            cidr: subnet.spec.cidr_block.clone(),
        }),
    }
}

/// Resolves a gateway against the snapshot, within what `tenancy` lets its namespace use.
pub fn resolve(
    gateway: &VpcEgressGateway,
    snapshot: &dyn Snapshot,
    tenancy: &Tenancy,
) -> Result<GatewayInputs, Problem> {
    if let Err(errors) = veg_api::validate(gateway) {
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        return Err(Problem::InvalidSpec(text.join("; ")));
    }
    let namespace = gateway.metadata.namespace.clone().unwrap_or_default();
    let name = gateway.metadata.name.clone().unwrap_or_default();
    let spec = &gateway.spec;
    let vpc_name = gateway.vpc_name().to_owned();
    let vpc = snapshot
        .vpc(&vpc_name)
        .ok_or_else(|| Problem::VpcNotFound(vpc_name.clone()))?;
    let rules = tenancy.rules(snapshot, &namespace, &name);
    rules.image(&spec.image)?;
    rules.vpc(vpc)?;
    let vpc_status = vpc.status.clone().unwrap_or_default();
    let router = if vpc_status.router.is_empty() {
        return Err(Problem::VpcNotReady(vpc_name));
    } else {
        vpc_status.router.clone()
    };

    let internal_subnet = if spec.internal_subnet.is_empty() {
        vpc_status.default_logical_switch.clone()
    } else {
        spec.internal_subnet.clone()
    };
    let internal_cidrs = cidrs(snapshot, &internal_subnet)?;
    if let Some(subnet) = snapshot.subnet(&internal_subnet) {
        rules.internal_subnet(subnet, vpc)?;
    }
    let external_cidrs = cidrs(snapshot, &spec.external_subnet)?;
    let external = snapshot
        .subnet(&spec.external_subnet)
        .ok_or_else(|| Problem::SubnetNotFound(spec.external_subnet.clone()))?;
    let (nad_namespace, nad_name) =
        external
            .attachment_network()
            .ok_or_else(|| Problem::ExternalProviderInvalid {
                name: spec.external_subnet.clone(),
                provider: external.spec.provider.clone(),
            })?;
    let attachment = format!("{nad_namespace}/{nad_name}");
    if snapshot.nad(&nad_namespace, &nad_name).is_none() {
        return Err(Problem::NadNotFound(attachment));
    }
    rules.external_subnet(external, &nad_namespace)?;
    check_ip_pools(snapshot, spec, &internal_subnet, &rules)?;
    let gateways_of = |name: &str| -> Vec<IpAddr> {
        snapshot
            .subnet(name)
            .map(|subnet| subnet.spec.gateways())
            .unwrap_or_default()
    };
    let bfd = bfd_of(spec, &vpc_status, &vpc_name)?;
    let mut families = sources(
        snapshot,
        spec,
        &internal_cidrs,
        &external_cidrs,
        bfd.as_ref(),
        &rules,
    )?;
    let Selection {
        ports,
        addresses: selected_addresses,
        excluded_namespaces,
    } = selected_ports(snapshot, spec, &vpc_name, &rules);
    let (instances, messages, unschedulable) = instances(snapshot, &namespace, &name, &attachment);
    add_nexthops(&instances, &mut families);
    if spec.traffic_policy == TrafficPolicy::Local {
        add_node_port_groups(snapshot, &instances, &mut families)?;
    }

    let workload = WorkloadInputs {
        internal_gateways: gateways_of(&internal_subnet),
        external_gateways: gateways_of(&spec.external_subnet),
        internal_subnet,
        internal_cidrs,
        external_provider: external.spec.provider.clone(),
        attachment,
        bfd_ips: bfd.as_ref().map(|(_, ips)| ips.clone()).unwrap_or_default(),
        bfd_routed: false,
        bfd_auth_secret: None,
    };
    Ok(GatewayInputs {
        key: names::gateway_key(&namespace, &name),
        namespace,
        name,
        vpc: vpc_name,
        router,
        has_selectors: !spec.selectors.is_empty(),
        ports,
        selected_addresses,
        excluded_namespaces,
        traffic_policy: spec.traffic_policy,
        bfd: bfd.map(|(inputs, _)| inputs),
        families,
        instances,
        messages,
        unschedulable,
        workload,
    })
}

/// `internalIPPool` / `externalIPPool` exist and belong to the gateway's subnets.
fn check_ip_pools(
    snapshot: &dyn Snapshot,
    spec: &veg_api::VpcEgressGatewaySpec,
    internal_subnet: &str,
    rules: &Rules<'_>,
) -> Result<(), Problem> {
    for (field, pool, subnet) in [
        (
            "spec.internalIPPool",
            &spec.internal_ip_pool,
            internal_subnet,
        ),
        (
            "spec.externalIPPool",
            &spec.external_ip_pool,
            spec.external_subnet.as_str(),
        ),
    ] {
        if pool.is_empty() {
            continue;
        }
        let found = snapshot
            .ip_pool(pool)
            .ok_or_else(|| Problem::IPPoolNotFound(pool.clone()))?;
        if found.spec.subnet != subnet {
            return Err(Problem::IPPoolMismatch {
                pool: pool.clone(),
                pool_subnet: found.spec.subnet.clone(),
                subnet: subnet.to_owned(),
            });
        }
        rules.ip_pool(field, found)?;
    }
    Ok(())
}

/// The BFD settings and the VPC BFD port's addresses, when BFD is on (it needs the port).
fn bfd_of(
    spec: &veg_api::VpcEgressGatewaySpec,
    vpc_status: &veg_api::kubeovn::VpcStatus,
    vpc_name: &str,
) -> Result<Option<(BfdInputs, Vec<IpAddr>)>, Problem> {
    if !spec.bfd.enabled {
        return Ok(None);
    }
    let port = vpc_status
        .bfd_port
        .as_ref()
        .filter(|port| !port.ip.is_empty() && !port.name.is_empty())
        .ok_or_else(|| Problem::VpcBfdPortNotEnabled(vpc_name.to_owned()))?;
    Ok(Some((
        BfdInputs {
            port: port.name.clone(),
            min_tx: spec.bfd.min_tx,
            min_rx: spec.bfd.min_rx,
            multiplier: spec.bfd.multiplier,
        },
        port.addresses(),
    )))
}

/// The families both subnets carry, each with its sources (policy blocks and subnets) and the
/// BFD port's address of that family.
fn sources(
    snapshot: &dyn Snapshot,
    spec: &veg_api::VpcEgressGatewaySpec,
    internal_cidrs: &[IpNet],
    external_cidrs: &[IpNet],
    bfd: Option<&(BfdInputs, Vec<IpAddr>)>,
    rules: &Rules<'_>,
) -> Result<BTreeMap<AddressFamily, FamilyInputs>, Problem> {
    let mut families: BTreeMap<AddressFamily, FamilyInputs> = BTreeMap::new();
    for family in AddressFamily::ALL {
        let carried = internal_cidrs.iter().any(|net| family_of(net) == family)
            && external_cidrs.iter().any(|net| family_of(net) == family);
        if carried {
            let bfd_ip = bfd.and_then(|(_, ips)| {
                ips.iter()
                    .copied()
                    .find(|ip| AddressFamily::of(*ip) == family)
            });
            families.insert(
                family,
                FamilyInputs {
                    bfd_ip,
                    ..FamilyInputs::default()
                },
            );
        }
    }
    // Computed once: every ipBlock is checked against it.
    let space = if spec.policies.iter().any(|p| !p.ip_blocks.is_empty()) {
        rules.address_space()
    } else {
        Vec::new()
    };
    for (index, policy) in spec.policies.iter().enumerate() {
        let mut nets: Vec<IpNet> = Vec::new();
        for (block_index, block) in policy.ip_blocks.iter().enumerate() {
            if let Some(net) = veg_api::kubeovn::parse_network(block) {
                let field = format!("spec.policies[{index}].ipBlocks[{block_index}]");
                rules.ip_block(&field, net, &space)?;
                nets.push(net);
            }
        }
        for (subnet_index, subnet) in policy.subnets.iter().enumerate() {
            nets.extend(cidrs(snapshot, subnet)?);
            if let Some(found) = snapshot.subnet(subnet) {
                let field = format!("spec.policies[{index}].subnets[{subnet_index}]");
                rules.source_subnet(&field, found)?;
            }
        }
        for net in nets {
            if let Some(family) = families.get_mut(&family_of(&net)) {
                family.sources.insert(net);
                if !policy.snat {
                    family.forward_only.insert(net);
                }
            }
        }
    }
    Ok(families)
}

/// What the selectors choose.
struct Selection {
    /// The ports (`<pod>.<namespace>`) of the VPC's Pods chosen in the namespaces that admit
    /// the gateway.
    ports: BTreeSet<String>,
    /// Their addresses.
    addresses: BTreeSet<IpAddr>,
    /// How many other namespaces hold Pods the selectors match.
    excluded_namespaces: usize,
}

fn selected_ports(
    snapshot: &dyn Snapshot,
    spec: &veg_api::VpcEgressGatewaySpec,
    vpc_name: &str,
    rules: &Rules<'_>,
) -> Selection {
    let mut ports = BTreeSet::new();
    let mut addresses = BTreeSet::new();
    let mut excluded = BTreeSet::new();
    for selection in &spec.selectors {
        // Through the namespaces' label index when the selector requires a label.
        let candidates = match selector::required_label(selection.namespace_selector.as_ref()) {
            Some((key, value)) => snapshot.namespaces_labelled(key, value),
            None => snapshot.namespaces(),
        };
        for namespace in candidates {
            let labels = namespace.metadata.labels.as_ref().unwrap_or(&NO_LABELS);
            if !selector::matches(selection.namespace_selector.as_ref(), labels) {
                continue;
            }
            let namespace_name = namespace.metadata.name.clone().unwrap_or_default();
            let admits = rules.namespace_admits(&namespace_name);
            for pod in snapshot.pod_summaries_in(&namespace_name) {
                if pod.is_vpc_pod(vpc_name)
                    && selector::matches(selection.pod_selector.as_ref(), &pod.labels)
                {
                    if !admits {
                        excluded.insert(namespace_name.clone());
                        break;
                    }
                    ports.insert(format!("{}.{namespace_name}", pod.name));
                    addresses.extend(pod.ips.iter().copied());
                }
            }
        }
    }
    Selection {
        ports,
        addresses,
        excluded_namespaces: excluded.len(),
    }
}

/// The gateway's instances (its Pods not being deleted), by Pod name, why some Pods are not
/// instances yet, and the Pods the scheduler could not place (with its reason).
fn instances(
    snapshot: &dyn Snapshot,
    namespace: &str,
    name: &str,
    attachment: &str,
) -> (Vec<Instance>, Vec<String>, Vec<String>) {
    let mut instances = Vec::new();
    let mut messages = Vec::new();
    let mut unschedulable = Vec::new();
    let label_value = names::normalize_label_value(name);
    for pod in snapshot.pods_in(namespace) {
        let labels = pod.metadata.labels.as_ref().unwrap_or(&NO_LABELS);
        if labels.get(names::LABEL_APP).map(String::as_str) != Some(names::LABEL_APP_VALUE)
            || labels.get(names::LABEL_GATEWAY) != Some(&label_value)
            || pod.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        if let Some(reason) = unscheduled(pod) {
            unschedulable.push(format!(
                "pod {} cannot be scheduled: {reason}",
                pod.metadata.name.as_deref().unwrap_or_default()
            ));
            continue;
        }
        match instance_of(pod, attachment) {
            Ok(instance) => instances.push(instance),
            Err(message) => messages.push(message),
        }
    }
    instances.sort_by(|a, b| a.pod.cmp(&b.pod));
    (instances, messages, unschedulable)
}

/// The scheduler's reason when a Pod is Pending with `PodScheduled` false (`Unschedulable`).
fn unscheduled(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Pending") {
        return None;
    }
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        .map(|c| {
            c.message
                .clone()
                .unwrap_or_else(|| c.reason.clone().unwrap_or_default())
        })
}

/// Each family's nexthops by node: the first address of that family of every instance.
fn add_nexthops(instances: &[Instance], families: &mut BTreeMap<AddressFamily, FamilyInputs>) {
    for instance in instances {
        // The first address of each family of every instance. Kube-OVN keeps one per node,
        // so with `podAntiAffinity: Preferred` two instances on a node share one nexthop.
        for family_kind in AddressFamily::ALL {
            let first = instance
                .internal_ips
                .iter()
                .find(|ip| AddressFamily::of(**ip) == family_kind);
            if let (Some(ip), Some(family)) = (first, families.get_mut(&family_kind)) {
                family
                    .nexthops
                    .entry(instance.node.clone())
                    .or_default()
                    .insert(*ip);
            }
        }
    }
}

/// `trafficPolicy: Local`: the port group of each node with an instance (Kube-OVN's
/// `node-<name>` group, from the node's annotation).
fn add_node_port_groups(
    snapshot: &dyn Snapshot,
    instances: &[Instance],
    families: &mut BTreeMap<AddressFamily, FamilyInputs>,
) -> Result<(), Problem> {
    let nodes: BTreeSet<String> = instances.iter().map(|i| i.node.clone()).collect();
    for node in nodes {
        let Some(found) = snapshot.node(&node) else {
            continue; // gone: its instances are about to go too
        };
        let port_name = found
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(annotations::NODE_PORT_NAME))
            .ok_or_else(|| Problem::NodePortGroupMissing(node.clone()))?;
        for family in families.values_mut() {
            family
                .node_port_groups
                .insert(node.clone(), port_name.replace('-', "."));
        }
    }
    Ok(())
}

/// A gateway Pod as an instance, or why it is not one yet.
fn instance_of(pod: &Pod, attachment: &str) -> Result<Instance, String> {
    let name = format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    );
    let status = pod.status.clone().unwrap_or_default();
    if status.phase.as_deref() != Some("Running") {
        return Err(format!("pod {name} is not running"));
    }
    let internal_ips: Vec<IpAddr> = status
        .pod_ips
        .iter()
        .flatten()
        .filter_map(|ip| ip.ip.parse().ok())
        .collect();
    if internal_ips.is_empty() {
        return Err(format!("pod {name} has no IP"));
    }
    let network_status = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(annotations::NETWORK_STATUS))
        .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
        .unwrap_or_default();
    let external_ips: Vec<IpAddr> = network_status
        .as_array()
        .into_iter()
        .flatten()
        .filter(|entry| entry.get("name").and_then(|n| n.as_str()) == Some(attachment))
        .flat_map(|entry| {
            entry
                .get("ips")
                .and_then(|ips| ips.as_array())
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|ip| ip.as_str().and_then(|ip| ip.parse().ok()))
        .collect();
    if external_ips.is_empty() {
        return Err(format!(
            "pod {name} has no address on network {attachment} (network-status)"
        ));
    }
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    Ok(Instance {
        pod: pod.metadata.name.clone().unwrap_or_default(),
        node: pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default(),
        internal_ips,
        external_ips,
        ready,
    })
}

#[cfg(test)]
mod tests;
