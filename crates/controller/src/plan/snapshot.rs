//! The planner's inputs as a read-only snapshot, so the kube adapter (reflector stores) and the
//! lab (manifests) feed the same code.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

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
    /// Every subnet.
    fn subnets(&self) -> Vec<&Subnet>;
    /// An IP pool by name.
    fn ip_pool(&self, name: &str) -> Option<&IPPool>;
    /// A NetworkAttachmentDefinition.
    fn nad(&self, namespace: &str, name: &str) -> Option<&NetworkAttachmentDefinition>;
    /// Every namespace.
    fn namespaces(&self) -> Vec<&Namespace>;
    /// A namespace by name.
    fn namespace(&self, name: &str) -> Option<&Namespace>;
    /// The namespaces whose label `key` is `value`, by name.
    fn namespaces_labelled(&self, key: &str, value: &str) -> Vec<&Namespace>;
    /// The Pods of one namespace kept whole: all of them, or in a compact snapshot only the
    /// gateway Pods (label `app=vpc-egress-gateway`).
    fn pods_in(&self, namespace: &str) -> Vec<&Pod>;
    /// What selecting reads of every Pod of one namespace.
    fn pod_summaries_in(&self, namespace: &str) -> Vec<&PodSummary>;
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

/// What selecting a Pod reads of it: the controller keeps this for every Pod of the cluster
/// and the whole Pod only for gateway Pods (a compact snapshot), about 100 bytes a Pod instead
/// of 4 KiB. Label maps are shared between the Pods that have the same ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodSummary {
    pub name: String,
    pub labels: Arc<BTreeMap<String, String>>,
    /// Its `logical_router` annotation.
    pub router: Option<Arc<str>>,
    /// A live Pod of that router's primary network whose port exists: allocated, not on the
    /// host network, not deleted, not finished (Kube-OVN's exclusions).
    pub attached: bool,
    /// Its addresses (`status.podIPs`): a CIDR source of another gateway may hold them.
    pub ips: Box<[IpAddr]>,
}

impl PodSummary {
    /// Whether it is a Pod of VPC `vpc`'s primary network whose port exists.
    pub fn is_vpc_pod(&self, vpc: &str) -> bool {
        self.attached && self.router.as_deref() == Some(vpc)
    }
}

/// A Pod's addresses (`status.podIPs`).
pub fn pod_ips(pod: &Pod) -> Vec<IpAddr> {
    pod.status
        .as_ref()
        .and_then(|status| status.pod_ips.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|ip| ip.ip.parse().ok())
        .collect()
}

/// Whether `pod` is a live Pod of its router's primary network whose port exists.
fn attached(pod: &Pod) -> bool {
    use crate::plan::context::annotations;
    let allocated = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(annotations::ALLOCATED))
        .is_some_and(|v| v == "true");
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or_default();
    let restart = spec
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always");
    let finished = (phase == "Succeeded" && restart != "Always")
        || (phase == "Failed" && restart == "Never")
        || (phase == "Failed" && status.and_then(|s| s.reason.as_deref()) == Some("Evicted"));
    !spec.and_then(|s| s.host_network).unwrap_or(false)
        && allocated
        && pod.metadata.deletion_timestamp.is_none()
        && !finished
}

fn is_gateway_pod(pod: &Pod) -> bool {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(veg_api::names::LABEL_APP))
        .is_some_and(|v| v == veg_api::names::LABEL_APP_VALUE)
}

/// A snapshot held in memory: the kube adapter's (compact), the lab's, tests', benchmarks'.
#[derive(Clone, Debug, Default)]
pub struct MemorySnapshot {
    /// Keep only gateway Pods whole (the others as summaries).
    compact: bool,
    summaries: BTreeMap<String, BTreeMap<String, PodSummary>>,
    /// Each distinct label map and router name once.
    interned_labels: HashSet<Arc<BTreeMap<String, String>>>,
    interned_routers: HashSet<Arc<str>>,
    /// Namespace names by label pair.
    namespaces_by_label:
        std::collections::HashMap<(String, String), std::collections::BTreeSet<String>>,
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
    /// A snapshot that keeps whole only the Pods the planner reads whole (gateway Pods).
    pub fn compact() -> Self {
        Self {
            compact: true,
            ..Self::default()
        }
    }

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
        let name = name_of(&namespace.metadata);
        self.remove_namespace(&name);
        for (key, value) in namespace.metadata.labels.iter().flatten() {
            self.namespaces_by_label
                .entry((key.clone(), value.clone()))
                .or_default()
                .insert(name.clone());
        }
        self.namespaces.insert(name, namespace);
    }
    /// Adds or replaces a Pod.
    pub fn put_pod(&mut self, pod: Pod) {
        let namespace = namespace_of(&pod.metadata);
        let name = name_of(&pod.metadata);
        let labels = self.intern_labels(pod.metadata.labels.as_ref());
        let router = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(crate::plan::context::annotations::LOGICAL_ROUTER))
            .map(|router| self.intern_router(router));
        let summary = PodSummary {
            name: name.clone(),
            labels,
            router,
            attached: attached(&pod),
            ips: pod_ips(&pod).into(),
        };
        self.remove_pod(&namespace, &name);
        self.summaries
            .entry(namespace.clone())
            .or_default()
            .insert(name.clone(), summary);
        if !self.compact || is_gateway_pod(&pod) {
            self.pods.entry(namespace).or_default().insert(name, pod);
        }
    }
    pub fn remove_pod(&mut self, namespace: &str, name: &str) {
        if let Some(pods) = self.pods.get_mut(namespace) {
            pods.remove(name);
            if pods.is_empty() {
                self.pods.remove(namespace);
            }
        }
        let mut removed = None;
        if let Some(summaries) = self.summaries.get_mut(namespace) {
            removed = summaries.remove(name);
            if summaries.is_empty() {
                self.summaries.remove(namespace);
            }
        }
        if let Some(summary) = removed {
            // The last user of an interned value lets it go (the set holds the other count).
            if Arc::strong_count(&summary.labels) == 2 {
                self.interned_labels.remove(&summary.labels);
            }
            if let Some(router) = summary.router
                && Arc::strong_count(&router) == 2
            {
                self.interned_routers.remove(&router);
            }
        }
    }

    fn intern_labels(
        &mut self,
        labels: Option<&BTreeMap<String, String>>,
    ) -> Arc<BTreeMap<String, String>> {
        let empty = BTreeMap::new();
        let labels = labels.unwrap_or(&empty);
        if let Some(shared) = self.interned_labels.get(labels) {
            return shared.clone();
        }
        let shared = Arc::new(labels.clone());
        self.interned_labels.insert(shared.clone());
        shared
    }

    fn intern_router(&mut self, router: &str) -> Arc<str> {
        if let Some(shared) = self.interned_routers.get(router) {
            return shared.clone();
        }
        let shared: Arc<str> = Arc::from(router);
        self.interned_routers.insert(shared.clone());
        shared
    }

    /// The Pod as a watch event's `old` needs it: whole when kept whole, else rebuilt from its
    /// summary (name, namespace, labels, router: what the triggers read).
    pub fn pod_for_change(&self, namespace: &str, name: &str) -> Option<Pod> {
        if let Some(pod) = self.pods.get(namespace).and_then(|pods| pods.get(name)) {
            return Some(pod.clone());
        }
        let summary = self.summaries.get(namespace)?.get(name)?;
        Some(Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(summary.name.clone()),
                namespace: Some(namespace.to_owned()),
                labels: Some((*summary.labels).clone()),
                annotations: summary.router.as_ref().map(|router| {
                    BTreeMap::from([(
                        crate::plan::context::annotations::LOGICAL_ROUTER.to_owned(),
                        router.to_string(),
                    )])
                }),
                ..Default::default()
            },
            status: (!summary.ips.is_empty()).then(|| k8s_openapi::api::core::v1::PodStatus {
                pod_ips: Some(
                    summary
                        .ips
                        .iter()
                        .map(|ip| k8s_openapi::api::core::v1::PodIP { ip: ip.to_string() })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Pod::default()
        })
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
        let Some(namespace) = self.namespaces.remove(name) else {
            return;
        };
        for (key, value) in namespace.metadata.labels.iter().flatten() {
            let pair = (key.clone(), value.clone());
            if let Some(names) = self.namespaces_by_label.get_mut(&pair) {
                names.remove(name);
                if names.is_empty() {
                    self.namespaces_by_label.remove(&pair);
                }
            }
        }
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
    /// Forgets every object of a kind (before a relist puts them back).
    pub fn clear(&mut self, kind: ObjectKind) {
        match kind {
            ObjectKind::Gateway => self.gateways.clear(),
            ObjectKind::Vpc => self.vpcs.clear(),
            ObjectKind::Subnet => self.subnets.clear(),
            ObjectKind::IPPool => self.ip_pools.clear(),
            ObjectKind::Nad => self.nads.clear(),
            ObjectKind::Namespace => {
                self.namespaces.clear();
                self.namespaces_by_label.clear();
            }
            ObjectKind::Pod => {
                self.pods.clear();
                self.summaries.clear();
                self.interned_labels.clear();
                self.interned_routers.clear();
            }
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
    fn subnets(&self) -> Vec<&Subnet> {
        self.subnets.values().collect()
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
    fn namespace(&self, name: &str) -> Option<&Namespace> {
        self.namespaces.get(name)
    }
    fn namespaces_labelled(&self, key: &str, value: &str) -> Vec<&Namespace> {
        self.namespaces_by_label
            .get(&(key.to_owned(), value.to_owned()))
            .into_iter()
            .flatten()
            .filter_map(|name| self.namespaces.get(name))
            .collect()
    }
    fn pods_in(&self, namespace: &str) -> Vec<&Pod> {
        self.pods
            .get(namespace)
            .map(|pods| pods.values().collect())
            .unwrap_or_default()
    }
    fn pod_summaries_in(&self, namespace: &str) -> Vec<&PodSummary> {
        self.summaries
            .get(namespace)
            .map(|summaries| summaries.values().collect())
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(name: &str, labels: serde_json::Value, extra: serde_json::Value) -> Pod {
        let mut value = json!({"metadata": {"name": name, "namespace": "team", "labels": labels,
            "annotations": {"ovn.kubernetes.io/allocated": "true",
                            "ovn.kubernetes.io/logical_router": "vpc-a"}},
            "spec": {"containers": []}, "status": {"phase": "Running"}});
        crate::fixtures::merge(&mut value, extra);
        serde_json::from_value(value).unwrap_or_default()
    }

    /// A compact snapshot keeps a summary of every Pod and only gateway Pods whole; equal label
    /// maps are stored once and let go with their last Pod; a watch event's `old` is rebuilt
    /// from the summary with what the triggers read.
    #[test]
    fn a_compact_snapshot_summarises_pods_and_shares_their_labels() {
        let mut snapshot = MemorySnapshot::compact();
        snapshot.put_pod(pod("web-1", json!({"app": "web"}), json!({})));
        snapshot.put_pod(pod("web-2", json!({"app": "web"}), json!({})));
        snapshot.put_pod(pod("gw-0", json!({"app": "vpc-egress-gateway"}), json!({})));
        snapshot.put_pod(pod(
            "done",
            json!({"app": "job"}),
            json!({"spec": {"restartPolicy": "Never"}, "status": {"phase": "Succeeded"}}),
        ));
        snapshot.put_pod(pod(
            "host",
            json!({"app": "web"}),
            json!({"spec": {"hostNetwork": true}}),
        ));
        let whole: Vec<_> = snapshot
            .pods_in("team")
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        assert_eq!(whole, ["gw-0"]);
        let summaries = snapshot.pod_summaries_in("team");
        assert_eq!(summaries.len(), 5);
        let attached: Vec<&str> = summaries
            .iter()
            .filter(|s| s.is_vpc_pod("vpc-a"))
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(attached, ["gw-0", "web-1", "web-2"]);
        assert!(summaries.iter().all(|s| !s.is_vpc_pod("vpc-b")));
        let web: Vec<_> = summaries
            .iter()
            .filter(|s| s.name.starts_with("web"))
            .collect();
        assert!(
            Arc::ptr_eq(&web[0].labels, &web[1].labels),
            "label maps not shared"
        );
        assert_eq!(snapshot.interned_labels.len(), 3);

        let old = snapshot.pod_for_change("team", "web-1").unwrap_or_default();
        assert_eq!(
            old.metadata.labels,
            Some(BTreeMap::from([("app".into(), "web".into())]))
        );
        assert_eq!(
            old.metadata
                .annotations
                .and_then(|a| a.get("ovn.kubernetes.io/logical_router").cloned()),
            Some("vpc-a".into())
        );

        for name in ["web-1", "web-2", "host"] {
            snapshot.remove_pod("team", name);
        }
        assert_eq!(
            snapshot.interned_labels.len(),
            2,
            "the web labels were kept"
        );
        // Namespaces by label follow relabels and removals.
        let namespace = |labels: serde_json::Value| -> Namespace {
            serde_json::from_value(json!({"metadata": {"name": "team", "labels": labels}}))
                .unwrap_or_default()
        };
        snapshot.put_namespace(namespace(json!({"group": "a"})));
        assert_eq!(snapshot.namespaces_labelled("group", "a").len(), 1);
        snapshot.put_namespace(namespace(json!({"group": "b"})));
        assert!(snapshot.namespaces_labelled("group", "a").is_empty());
        assert_eq!(snapshot.namespaces_labelled("group", "b").len(), 1);
        snapshot.remove_namespace("team");
        assert!(snapshot.namespaces_labelled("group", "b").is_empty());
        // A full snapshot keeps every Pod whole.
        let mut full = MemorySnapshot::default();
        full.put_pod(pod("web-1", json!({"app": "web"}), json!({})));
        assert_eq!(full.pods_in("team").len(), 1);
    }
}
