//! The planner's inputs as a read-only snapshot, so the kube adapter (reflector stores) and the
//! lab (manifests) feed the same code.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use veg_api::VpcEgressGateway;
use veg_api::kubeovn::{IPPool, Subnet, Vpc};
use veg_api::multus::NetworkAttachmentDefinition;

/// What the planner reads.
pub trait Snapshot {
    /// Every gateway.
    fn gateways(&self) -> Vec<&VpcEgressGateway>;
    /// A VPC by name.
    fn vpc(&self, name: &str) -> Option<&Vpc>;
    /// Every VPC.
    fn vpcs(&self) -> Vec<&Vpc>;
    /// A subnet by name.
    fn subnet(&self, name: &str) -> Option<&Subnet>;
    /// An IP pool by name.
    fn ip_pool(&self, name: &str) -> Option<&IPPool>;
    /// A NetworkAttachmentDefinition.
    fn nad(&self, namespace: &str, name: &str) -> Option<&NetworkAttachmentDefinition>;
    /// Every namespace.
    fn namespaces(&self) -> Vec<&Namespace>;
    /// The Pods of one namespace.
    fn pods_in(&self, namespace: &str) -> Vec<&Pod>;
    /// A node by name.
    fn node(&self, name: &str) -> Option<&Node>;
    /// Every node.
    fn nodes(&self) -> Vec<&Node>;
    fn deployment(&self, namespace: &str, name: &str) -> Option<&Deployment>;
}

fn name_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

fn namespace_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.namespace.clone().unwrap_or_default()
}

/// A snapshot held in memory (tests, the lab, benchmarks).
#[derive(Clone, Debug, Default)]
pub struct MemorySnapshot {
    gateways: BTreeMap<(String, String), VpcEgressGateway>,
    vpcs: BTreeMap<String, Vpc>,
    subnets: BTreeMap<String, Subnet>,
    ip_pools: BTreeMap<String, IPPool>,
    nads: BTreeMap<(String, String), NetworkAttachmentDefinition>,
    namespaces: BTreeMap<String, Namespace>,
    pods: BTreeMap<String, BTreeMap<String, Pod>>,
    nodes: BTreeMap<String, Node>,
    deployments: BTreeMap<(String, String), Deployment>,
}

impl MemorySnapshot {
    /// Adds or replaces an API object of any kind the controller reads, by its `kind`
    /// (manifests, `kubectl get -o json` items); other kinds are ignored.
    pub fn put_object(&mut self, value: serde_json::Value) -> Result<(), serde_json::Error> {
        let kind = value
            .get("kind")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        match kind.as_str() {
            "VpcEgressGateway" => self.put_gateway(serde_json::from_value(value)?),
            "Vpc" => self.put_vpc(serde_json::from_value(value)?),
            "Subnet" => self.put_subnet(serde_json::from_value(value)?),
            "IPPool" => self.put_ip_pool(serde_json::from_value(value)?),
            "NetworkAttachmentDefinition" => self.put_nad(serde_json::from_value(value)?),
            "Namespace" => self.put_namespace(serde_json::from_value(value)?),
            "Pod" => self.put_pod(serde_json::from_value(value)?),
            "Node" => self.put_node(serde_json::from_value(value)?),
            "Deployment" => self.put_deployment(serde_json::from_value(value)?),
            _ => {}
        }
        Ok(())
    }

    /// Adds or replaces a gateway.
    pub fn put_gateway(&mut self, gateway: VpcEgressGateway) {
        let key = (namespace_of(&gateway.metadata), name_of(&gateway.metadata));
        self.gateways.insert(key, gateway);
    }
    pub fn remove_gateway(&mut self, namespace: &str, name: &str) {
        self.gateways
            .remove(&(namespace.to_owned(), name.to_owned()));
    }
    /// Adds or replaces a VPC.
    pub fn put_vpc(&mut self, vpc: Vpc) {
        self.vpcs.insert(name_of(&vpc.metadata), vpc);
    }
    /// Adds or replaces a subnet.
    pub fn put_subnet(&mut self, subnet: Subnet) {
        self.subnets.insert(name_of(&subnet.metadata), subnet);
    }
    /// Adds or replaces an IP pool.
    pub fn put_ip_pool(&mut self, pool: IPPool) {
        self.ip_pools.insert(name_of(&pool.metadata), pool);
    }
    /// Adds or replaces a NAD.
    pub fn put_nad(&mut self, nad: NetworkAttachmentDefinition) {
        let key = (namespace_of(&nad.metadata), name_of(&nad.metadata));
        self.nads.insert(key, nad);
    }
    /// Adds or replaces a namespace.
    pub fn put_namespace(&mut self, namespace: Namespace) {
        self.namespaces
            .insert(name_of(&namespace.metadata), namespace);
    }
    /// Adds or replaces a Pod.
    pub fn put_pod(&mut self, pod: Pod) {
        self.pods
            .entry(namespace_of(&pod.metadata))
            .or_default()
            .insert(name_of(&pod.metadata), pod);
    }
    pub fn remove_pod(&mut self, namespace: &str, name: &str) {
        if let Some(pods) = self.pods.get_mut(namespace) {
            pods.remove(name);
        }
    }
    /// Adds or replaces a node.
    pub fn put_node(&mut self, node: Node) {
        self.nodes.insert(name_of(&node.metadata), node);
    }
    /// Adds or replaces a Deployment.
    pub fn put_deployment(&mut self, deployment: Deployment) {
        let key = (
            namespace_of(&deployment.metadata),
            name_of(&deployment.metadata),
        );
        self.deployments.insert(key, deployment);
    }
}

/// The kinds a snapshot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKind {
    /// VpcEgressGateway.
    Gateway,
    Vpc,
    Subnet,
    IPPool,
    /// NetworkAttachmentDefinition.
    Nad,
    Namespace,
    Pod,
    Node,
    /// Deployment (the gateways' own).
    Deployment,
}

impl ObjectKind {
    /// Every kind.
    pub const ALL: [ObjectKind; 9] = [
        ObjectKind::Gateway,
        ObjectKind::Vpc,
        ObjectKind::Subnet,
        ObjectKind::IPPool,
        ObjectKind::Nad,
        ObjectKind::Namespace,
        ObjectKind::Pod,
        ObjectKind::Node,
        ObjectKind::Deployment,
    ];
}

impl MemorySnapshot {
    pub fn remove_vpc(&mut self, name: &str) {
        self.vpcs.remove(name);
    }
    pub fn remove_subnet(&mut self, name: &str) {
        self.subnets.remove(name);
    }
    /// Removes an IP pool.
    pub fn remove_ip_pool(&mut self, name: &str) {
        self.ip_pools.remove(name);
    }
    pub fn remove_nad(&mut self, namespace: &str, name: &str) {
        self.nads.remove(&(namespace.to_owned(), name.to_owned()));
    }
    pub fn remove_namespace(&mut self, name: &str) {
        self.namespaces.remove(name);
    }
    pub fn remove_node(&mut self, name: &str) {
        self.nodes.remove(name);
    }
    pub fn remove_deployment(&mut self, namespace: &str, name: &str) {
        self.deployments
            .remove(&(namespace.to_owned(), name.to_owned()));
    }
    pub fn pod(&self, namespace: &str, name: &str) -> Option<&Pod> {
        self.pods.get(namespace)?.get(name)
    }
    pub fn namespace(&self, name: &str) -> Option<&Namespace> {
        self.namespaces.get(name)
    }
    /// Forgets every object of a kind (before a relist puts them back).
    pub fn clear(&mut self, kind: ObjectKind) {
        match kind {
            ObjectKind::Gateway => self.gateways.clear(),
            ObjectKind::Vpc => self.vpcs.clear(),
            ObjectKind::Subnet => self.subnets.clear(),
            ObjectKind::IPPool => self.ip_pools.clear(),
            ObjectKind::Nad => self.nads.clear(),
            ObjectKind::Namespace => self.namespaces.clear(),
            ObjectKind::Pod => self.pods.clear(),
            ObjectKind::Node => self.nodes.clear(),
            ObjectKind::Deployment => self.deployments.clear(),
        }
    }
}

impl Snapshot for MemorySnapshot {
    fn gateways(&self) -> Vec<&VpcEgressGateway> {
        self.gateways.values().collect()
    }
    fn vpc(&self, name: &str) -> Option<&Vpc> {
        self.vpcs.get(name)
    }
    fn vpcs(&self) -> Vec<&Vpc> {
        self.vpcs.values().collect()
    }
    fn subnet(&self, name: &str) -> Option<&Subnet> {
        self.subnets.get(name)
    }
    fn ip_pool(&self, name: &str) -> Option<&IPPool> {
        self.ip_pools.get(name)
    }
    fn nad(&self, namespace: &str, name: &str) -> Option<&NetworkAttachmentDefinition> {
        self.nads.get(&(namespace.to_owned(), name.to_owned()))
    }
    fn namespaces(&self) -> Vec<&Namespace> {
        self.namespaces.values().collect()
    }
    fn pods_in(&self, namespace: &str) -> Vec<&Pod> {
        self.pods
            .get(namespace)
            .map(|pods| pods.values().collect())
            .unwrap_or_default()
    }
    fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.get(name)
    }
    fn nodes(&self) -> Vec<&Node> {
        self.nodes.values().collect()
    }
    fn deployment(&self, namespace: &str, name: &str) -> Option<&Deployment> {
        self.deployments
            .get(&(namespace.to_owned(), name.to_owned()))
    }
}
