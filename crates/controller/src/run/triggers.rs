//! Which gateways a change affects (pure): every trigger Kube-OVN misses (Pod delete and label
//! change, Namespace labels, Subnet CIDR, IPPool, Vpc BFD port, Node labels and annotations,
//! gateway Pod readiness), answered from an index of the gateways' references rather than by
//! reconciling everything.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use veg_api::names;
use veg_api::{TrafficPolicy, VpcEgressGateway};

use crate::plan::context::annotations;
use crate::plan::selector;
use crate::plan::snapshot::Snapshot;

/// A change the controller saw. Updates carry the old and the new object (either may be absent
/// for a create or a delete), so a Pod that stops matching is noticed.
#[derive(Clone, Debug)]
pub enum Change<'a> {
    /// A Pod was created, updated or deleted.
    Pod {
        /// Before.
        old: Option<&'a Pod>,
        /// After.
        new: Option<&'a Pod>,
    },
    /// A Namespace's labels may have changed.
    Namespace {
        /// Before.
        old: Option<&'a Namespace>,
        /// After.
        new: Option<&'a Namespace>,
    },
    /// A Subnet changed.
    Subnet(&'a str),
    /// An IPPool changed.
    IPPool(&'a str),
    /// A Vpc changed (its router, its BFD port).
    Vpc(&'a str),
    /// A NetworkAttachmentDefinition changed.
    Nad { namespace: &'a str, name: &'a str },
    /// A Node changed or went away.
    Node(&'a str),
}

/// The gateways' references, by what they refer to.
#[derive(Clone, Debug, Default)]
pub struct Index {
    by_vpc: BTreeMap<String, BTreeSet<String>>,
    by_subnet: BTreeMap<String, BTreeSet<String>>,
    by_pool: BTreeMap<String, BTreeSet<String>>,
    by_nad: BTreeMap<(String, String), BTreeSet<String>>,
    /// Gateways with selectors, by VPC (a Pod of that VPC may be selected).
    selecting: BTreeMap<String, BTreeSet<String>>,
    /// Gateways with `trafficPolicy: Local` (node port groups matter).
    local: BTreeSet<String>,
    /// Gateways by (namespace, label value) of their workload Pods.
    by_workload: BTreeMap<(String, String), String>,
    gateways: BTreeMap<String, VpcEgressGateway>,
    /// Gateways with ipBlocks: strict tenancy checks them against every subnet.
    with_ip_blocks: BTreeSet<String>,
    /// Each VPC's gateways with CIDR sources (ipBlocks, policy subnets), and the CIDRs: a
    /// Pod selected by another gateway inside one of them is an overlap both must see.
    cidr_sources: BTreeMap<String, Vec<(String, Vec<ipnet::IpNet>)>>,
}

impl Index {
    /// Builds the index from the snapshot's gateways.
    pub fn build(snapshot: &dyn Snapshot) -> Self {
        let mut index = Index::default();
        for gateway in snapshot.gateways() {
            let key = gateway.key();
            let spec = &gateway.spec;
            let vpc = gateway.vpc_name().to_owned();
            index
                .by_vpc
                .entry(vpc.clone())
                .or_default()
                .insert(key.clone());
            let internal = if spec.internal_subnet.is_empty() {
                snapshot
                    .vpc(&vpc)
                    .and_then(|v| v.status.as_ref())
                    .map(|s| s.default_logical_switch.clone())
                    .unwrap_or_default()
            } else {
                spec.internal_subnet.clone()
            };
            let subnets = spec
                .policies
                .iter()
                .flat_map(|p| p.subnets.iter().cloned())
                .chain([internal, spec.external_subnet.clone()]);
            for subnet in subnets.filter(|s| !s.is_empty()) {
                index
                    .by_subnet
                    .entry(subnet)
                    .or_default()
                    .insert(key.clone());
            }
            for pool in [&spec.internal_ip_pool, &spec.external_ip_pool] {
                if !pool.is_empty() {
                    index
                        .by_pool
                        .entry(pool.clone())
                        .or_default()
                        .insert(key.clone());
                }
            }
            if let Some((namespace, nad)) = snapshot
                .subnet(&spec.external_subnet)
                .and_then(|s| s.attachment_network())
            {
                index
                    .by_nad
                    .entry((namespace, nad))
                    .or_default()
                    .insert(key.clone());
            }
            if !spec.selectors.is_empty() {
                index
                    .selecting
                    .entry(vpc.clone())
                    .or_default()
                    .insert(key.clone());
            }
            if spec.traffic_policy == TrafficPolicy::Local {
                index.local.insert(key.clone());
            }
            if spec.policies.iter().any(|p| !p.ip_blocks.is_empty()) {
                index.with_ip_blocks.insert(key.clone());
            }
            let cidrs: Vec<ipnet::IpNet> = spec
                .policies
                .iter()
                .flat_map(|p| {
                    let blocks = p
                        .ip_blocks
                        .iter()
                        .filter_map(|b| veg_api::kubeovn::parse_network(b));
                    let subnets = p.subnets.iter().flat_map(|name| {
                        snapshot
                            .subnet(name)
                            .and_then(|s| s.spec.cidrs())
                            .unwrap_or_default()
                    });
                    blocks.chain(subnets).collect::<Vec<_>>()
                })
                .collect();
            if !cidrs.is_empty() {
                index
                    .cidr_sources
                    .entry(vpc.clone())
                    .or_default()
                    .push((key.clone(), cidrs));
            }
            let namespace = gateway.metadata.namespace.clone().unwrap_or_default();
            let label =
                names::normalize_label_value(gateway.metadata.name.as_deref().unwrap_or_default());
            index.by_workload.insert((namespace, label), key.clone());
            index.gateways.insert(key, gateway.clone());
        }
        index
    }

    /// The gateways `change` affects.
    pub fn affected(&self, snapshot: &dyn Snapshot, change: &Change<'_>) -> BTreeSet<String> {
        let all = |map: &BTreeMap<String, BTreeSet<String>>, key: &str| {
            map.get(key).cloned().unwrap_or_default()
        };
        match change {
            Change::Subnet(name) => {
                let mut out = all(&self.by_subnet, name);
                out.extend(self.with_ip_blocks.iter().cloned());
                out
            }
            Change::IPPool(name) => all(&self.by_pool, name),
            Change::Vpc(name) => all(&self.by_vpc, name),
            Change::Nad { namespace, name } => self
                .by_nad
                .get(&((*namespace).to_owned(), (*name).to_owned()))
                .cloned()
                .unwrap_or_default(),
            Change::Node(node) => {
                // Local gateways' node port groups, and gateways with an instance on the node
                // (its readiness is the stale-BFD guard's second opinion, `plan::stale`).
                let mut out = self.local.clone();
                let namespaces: BTreeSet<&str> = self
                    .by_workload
                    .keys()
                    .map(|(namespace, _)| namespace.as_str())
                    .collect();
                for namespace in namespaces {
                    for pod in snapshot.pods_in(namespace) {
                        if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node) {
                            out.extend(self.pod_affects(snapshot, pod));
                        }
                    }
                }
                out
            }
            Change::Pod { old, new } => {
                let mut out = BTreeSet::new();
                for pod in old.iter().chain(new.iter()) {
                    let selecting = self.pod_affects(snapshot, pod);
                    if !selecting.is_empty() {
                        out.extend(self.cidrs_holding(pod));
                    }
                    out.extend(selecting);
                }
                out
            }
            Change::Namespace { old, new } => {
                let mut out = self.admission_changed(*old, *new);
                for namespace in old.iter().chain(new.iter()) {
                    let labels = namespace.metadata.labels.clone().unwrap_or_default();
                    for keys in self.selecting.values() {
                        for key in keys {
                            let selects = self.gateways.get(key).is_some_and(|g| {
                                g.spec.selectors.iter().any(|s| {
                                    selector::matches(s.namespace_selector.as_ref(), &labels)
                                })
                            });
                            if selects {
                                out.insert(key.clone());
                            }
                        }
                    }
                }
                out
            }
        }
    }

    /// The gateways of the Pod's VPC whose CIDR sources hold one of its addresses.
    fn cidrs_holding(&self, pod: &Pod) -> BTreeSet<String> {
        let Some(vpc) = router_of(pod) else {
            return BTreeSet::new();
        };
        let ips = crate::plan::snapshot::pod_ips(pod);
        self.cidr_sources
            .get(vpc)
            .into_iter()
            .flatten()
            .filter(|(_, cidrs)| {
                cidrs
                    .iter()
                    .any(|net| ips.iter().any(|ip| net.contains(ip)))
            })
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// The gateways of the namespaces a change of the admission annotation adds or removes
    /// (strict tenancy: what they may select and use changed).
    fn admission_changed(
        &self,
        old: Option<&Namespace>,
        new: Option<&Namespace>,
    ) -> BTreeSet<String> {
        let value = |namespace: Option<&Namespace>| -> String {
            namespace
                .and_then(|n| n.metadata.annotations.as_ref())
                .and_then(|a| a.get(names::ANNOTATION_ADMITS_GATEWAYS))
                .cloned()
                .unwrap_or_default()
        };
        let (before, after) = (value(old), value(new));
        if before == after {
            return BTreeSet::new();
        }
        let named: BTreeSet<&str> = veg_api::kubeovn::list_items(&before)
            .chain(veg_api::kubeovn::list_items(&after))
            .map(|entry| entry.split_once('/').map_or(entry, |(ns, _)| ns.trim()))
            .collect();
        self.gateways
            .iter()
            .filter(|(_, g)| named.contains(g.metadata.namespace.as_deref().unwrap_or_default()))
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// The gateway a workload Pod belongs to, and the gateways whose selectors pick the Pod.
    fn pod_affects(&self, snapshot: &dyn Snapshot, pod: &Pod) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        if labels.get(names::LABEL_APP).map(String::as_str) == Some(names::LABEL_APP_VALUE)
            && let Some(value) = labels.get(names::LABEL_GATEWAY)
            && let Some(key) = self.by_workload.get(&(namespace.clone(), value.clone()))
        {
            out.insert(key.clone());
            return out;
        }
        let Some(vpc) = router_of(pod) else {
            return out;
        };
        let namespace_labels = snapshot
            .namespace(&namespace)
            .and_then(|n| n.metadata.labels.clone())
            .unwrap_or_default();
        for key in self.selecting.get(vpc).into_iter().flatten() {
            let selects = self.gateways.get(key).is_some_and(|g| {
                g.spec.selectors.iter().any(|s| {
                    selector::matches(s.namespace_selector.as_ref(), &namespace_labels)
                        && selector::matches(s.pod_selector.as_ref(), &labels)
                })
            });
            if selects {
                out.insert(key.clone());
            }
        }
        out
    }
}

/// The router (VPC) of a Pod's primary network, from Kube-OVN's annotation.
fn router_of(pod: &Pod) -> Option<&String> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(annotations::LOGICAL_ROUTER))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::fixtures::*;

    fn snapshot() -> crate::plan::snapshot::MemorySnapshot {
        let mut snapshot = cluster();
        // gateway1: selects namespaces team=blue, policy subnet subnet1, external macvlan1.
        snapshot.put_gateway(gateway(base_spec()));
        // gateway2 in vpc1: another VPC, Local, no selectors.
        let mut other = base_spec();
        merge(
            &mut other,
            json!({"vpc": "vpc1", "trafficPolicy": "Local", "selectors": [],
            "internalSubnet": "subnet9", "policies": [{"snat": true, "subnets": ["subnet9"]}]}),
        );
        let mut second = gateway(other);
        second.metadata.name = Some("gateway2".into());
        snapshot.put_gateway(second);
        snapshot
    }

    #[test]
    fn references_map_to_their_gateways() {
        let snapshot = snapshot();
        let index = Index::build(&snapshot);
        let keys = |change: Change<'_>| -> Vec<String> {
            index.affected(&snapshot, &change).into_iter().collect()
        };
        assert_eq!(keys(Change::Subnet("subnet1")), ["default/gateway1"]);
        assert_eq!(
            keys(Change::Subnet("macvlan1")),
            ["default/gateway1", "default/gateway2"]
        );
        // gateway1 has ipBlocks: any subnet may change what they may name (strict tenancy).
        assert_eq!(
            keys(Change::Subnet("subnet9")),
            ["default/gateway1", "default/gateway2"]
        );
        assert_eq!(keys(Change::Subnet("ovn-default")), ["default/gateway1"]);
        assert_eq!(keys(Change::Vpc("vpc1")), ["default/gateway2"]);
        assert_eq!(
            keys(Change::Nad {
                namespace: "default",
                name: "eth1"
            })
            .len(),
            2
        );
        assert_eq!(keys(Change::Node("worker1")), ["default/gateway2"]);
        assert!(keys(Change::IPPool("pool1")).is_empty());
    }

    #[test]
    fn a_selected_pod_reaches_the_gateways_whose_cidrs_hold_its_address() {
        let mut snapshot = snapshot();
        let mut spec = base_spec();
        merge(
            &mut spec,
            json!({"selectors": [], "policies": [{"snat": true, "ipBlocks": ["198.19.7.0/24"]}]}),
        );
        let mut cidr = gateway(spec);
        cidr.metadata.name = Some("gateway3".into());
        snapshot.put_gateway(cidr);
        let index = Index::build(&snapshot);
        let affected = |pod: &Pod| -> Vec<String> {
            index
                .affected(
                    &snapshot,
                    &Change::Pod {
                        old: None,
                        new: Some(pod),
                    },
                )
                .into_iter()
                .collect()
        };
        let address = json!({"status": {"podIPs": [{"ip": "198.19.7.9"}]}});
        // Selected by gateway1, inside gateway3's block: both (gateway1's own 198.19.0.0/16
        // holds it too).
        let selected = client("default", "web", "ovn-cluster", address.clone());
        assert_eq!(
            affected(&selected),
            ["default/gateway1", "default/gateway3"]
        );
        // Selected by nobody: no overlap is possible, nothing.
        let unselected = client("third", "web", "ovn-cluster", address);
        assert!(affected(&unselected).is_empty());
        // Selected, but its address is in no CIDR source of its VPC: the selector only.
        let elsewhere = client(
            "default",
            "web",
            "ovn-cluster",
            json!({"status": {"podIPs": [{"ip": "198.20.0.9"}]}}),
        );
        assert_eq!(affected(&elsewhere), ["default/gateway1"]);
    }

    #[test]
    fn a_node_change_reaches_the_gateways_with_an_instance_on_it() {
        let mut snapshot = snapshot();
        snapshot.put_pod(crate::fixtures::instance(
            "gateway1-0",
            "worker3",
            "198.18.0.12",
            None,
            true,
        ));
        let index = Index::build(&snapshot);
        let keys = |node: &str| -> Vec<String> {
            index
                .affected(&snapshot, &Change::Node(node))
                .into_iter()
                .collect()
        };
        // worker3 hosts gateway1's instance (its readiness matters to the stale-BFD guard);
        // gateway2 is Local, so every node matters to it.
        assert_eq!(keys("worker3"), ["default/gateway1", "default/gateway2"]);
        assert_eq!(keys("worker4"), ["default/gateway2"]);
    }

    #[test]
    fn pods_and_namespaces_reach_the_gateways_that_select_them_before_or_after() {
        let snapshot = snapshot();
        let index = Index::build(&snapshot);
        let before = client("default", "web", "ovn-cluster", json!({}));
        // Moved to another VPC: selected before, not after — still a trigger.
        let after = client("default", "web", "vpc1", json!({}));
        let change = Change::Pod {
            old: Some(&before),
            new: Some(&after),
        };
        assert_eq!(
            index
                .affected(&snapshot, &change)
                .into_iter()
                .collect::<Vec<_>>(),
            ["default/gateway1"]
        );
        // Deleted: a trigger too.
        let deleted = Change::Pod {
            old: Some(&before),
            new: None,
        };
        assert_eq!(index.affected(&snapshot, &deleted).len(), 1);
        // In a namespace nobody selects: nothing.
        let red = client("other", "db", "ovn-cluster", json!({}));
        assert!(
            index
                .affected(
                    &snapshot,
                    &Change::Pod {
                        old: None,
                        new: Some(&red)
                    }
                )
                .is_empty()
        );
        // The namespace gets the selected label: gateway1.
        let old: Namespace =
            from(json!({"metadata": {"name": "other", "labels": {"team": "red"}}}));
        let new: Namespace =
            from(json!({"metadata": {"name": "other", "labels": {"team": "blue"}}}));
        let change = Change::Namespace {
            old: Some(&old),
            new: Some(&new),
        };
        assert_eq!(
            index
                .affected(&snapshot, &change)
                .into_iter()
                .collect::<Vec<_>>(),
            ["default/gateway1"]
        );
        // The admission annotation of a namespace nobody selects: the gateways of the
        // namespaces it names, before or after.
        let plain: Namespace = from(json!({"metadata": {"name": "third"}}));
        let admitting: Namespace = from(json!({"metadata": {"name": "third",
            "annotations": {veg_api::names::ANNOTATION_ADMITS_GATEWAYS: "elsewhere, default/gateway2"}}}));
        for (old, new) in [(&plain, &admitting), (&admitting, &plain)] {
            let change = Change::Namespace {
                old: Some(old),
                new: Some(new),
            };
            assert_eq!(
                index
                    .affected(&snapshot, &change)
                    .into_iter()
                    .collect::<Vec<_>>(),
                ["default/gateway1", "default/gateway2"]
            );
        }
        let unchanged = Change::Namespace {
            old: Some(&admitting),
            new: Some(&admitting),
        };
        assert!(index.affected(&snapshot, &unchanged).is_empty());
        // A gateway's own Pod: only its gateway.
        let own = instance("gw-a", "worker1", "198.18.0.12", None, false);
        let change = Change::Pod {
            old: None,
            new: Some(&own),
        };
        assert_eq!(
            index
                .affected(&snapshot, &change)
                .into_iter()
                .collect::<Vec<_>>(),
            ["default/gateway1"]
        );
    }
}
