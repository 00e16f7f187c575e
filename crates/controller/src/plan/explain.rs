//! Why a Pod does or does not leave through a gateway (pure), for `kubectl veg explain` and
//! `veg lab explain`: which gateway selects it and how (selectors or a policy), whether an
//! older overlapping gateway holds that one back, which instances can carry it now (BFD state,
//! `trafficPolicy: Local`), the source the outside world will see, and when nothing carries
//! it, why — from the same resolution the controller plans with, so the answer cannot drift
//! from what the controller does.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use veg_api::{BfdState, GatewayInstance, TrafficPolicy, VpcEgressGateway};

use crate::plan::conflict::{Claim, held_back, overlaps};
use crate::plan::context::{GatewayInputs, resolve};
use crate::plan::selector::matches;
use crate::plan::snapshot::Snapshot;
use crate::plan::tenancy::Tenancy;

/// The answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It leaves through `gateway`; the outside sees one of `sources` (its own address when
    /// the policy forwards without SNAT).
    Leaves {
        /// `<namespace>/<name>` of the gateway.
        gateway: String,
        /// The instances that can carry it.
        instances: Vec<String>,
        /// What the external side sees.
        sources: Vec<IpAddr>,
        /// Forwarded without SNAT.
        forwarded: bool,
    },
    /// `gateway` selects it but no instance can carry it now; `dropped` when the BFD drop
    /// policy catches it (BFD on), else it is not rerouted at all.
    NoInstance {
        gateway: String,
        /// Dropped by the 29090 policy.
        dropped: bool,
    },
    /// Only gateways held back by older overlapping ones select it.
    HeldBack {
        /// The held-back gateway.
        gateway: String,
        /// The older gateways it overlaps.
        by: Vec<String>,
    },
    /// No gateway selects it: it takes the VPC's normal route.
    NotSelected,
    /// The Pod cannot be explained (not found, not in an OVN VPC).
    Unknown(String),
}

/// A verdict and the facts behind it, one per line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    /// `<namespace>/<name>`.
    pub pod: String,
    /// The answer.
    pub verdict: Verdict,
    /// Why, line by line.
    pub details: Vec<String>,
}

fn join<T: ToString>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.verdict {
            Verdict::Leaves {
                gateway,
                instances,
                sources,
                forwarded,
            } => {
                if *forwarded {
                    writeln!(
                        f,
                        "{} leaves through gateway {gateway} without SNAT: the outside sees {}",
                        self.pod,
                        join(sources)
                    )?;
                } else {
                    writeln!(
                        f,
                        "{} leaves through gateway {gateway}, SNATed to {}{}",
                        self.pod,
                        if sources.len() > 1 { "one of " } else { "" },
                        join(sources)
                    )?;
                }
                writeln!(f, "  instances that can carry it: {}", join(instances))?;
            }
            Verdict::NoInstance { gateway, dropped } => writeln!(
                f,
                "{} is selected by gateway {gateway}, but no instance can carry it now: {}",
                self.pod,
                if *dropped {
                    "its traffic to the outside is dropped (BFD drop policy) until one is up"
                } else {
                    "its traffic is not rerouted (no reroute policy without instances)"
                }
            )?,
            Verdict::HeldBack { gateway, by } => writeln!(
                f,
                "{} is selected by gateway {gateway} only, which is held back by the older {} (overlapping sources): it does not leave through a gateway",
                self.pod,
                join(by)
            )?,
            Verdict::NotSelected => writeln!(
                f,
                "{} is not selected by any gateway: it takes its VPC's normal route",
                self.pod
            )?,
            Verdict::Unknown(why) => writeln!(f, "{}: {why}", self.pod)?,
        }
        for line in &self.details {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

/// How a resolved gateway selects a Pod, if it does.
fn selection(inputs: &GatewayInputs, port: &str, ips: &[IpAddr]) -> Option<(String, bool)> {
    let by_selectors = inputs.ports.contains(port);
    let mut by_policy = Vec::new();
    let mut forwarded = false;
    for family in inputs.families.values() {
        for ip in ips {
            // The most specific source names the policy that applies.
            if let Some(source) = family
                .sources
                .iter()
                .filter(|s| s.contains(ip))
                .max_by_key(|s| s.prefix_len())
            {
                by_policy.push(format!("{ip} in {source}"));
            }
            if family.forward_only.iter().any(|s| s.contains(ip)) {
                forwarded = true;
            }
        }
    }
    let how = match (by_selectors, by_policy.is_empty()) {
        (false, true) => return None,
        (true, true) => "its selectors".to_owned(),
        (false, false) => format!("a policy ({})", by_policy.join(", ")),
        (true, false) => format!("its selectors and a policy ({})", by_policy.join(", ")),
    };
    Some((how, forwarded))
}

fn labels_text(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "none".to_owned();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Why a resolved gateway does not select the Pod.
fn why_not(
    gateway: &VpcEgressGateway,
    pod_labels: &BTreeMap<String, String>,
    namespace_labels: &BTreeMap<String, String>,
    admitted: bool,
    ips: &[IpAddr],
) -> String {
    let spec = &gateway.spec;
    let selectors = if spec.selectors.is_empty() {
        "it has no selectors".to_owned()
    } else {
        let missed: Vec<String> = spec
            .selectors
            .iter()
            .enumerate()
            .map(|(index, selector)| {
                let namespace_ok =
                    matches(selector.namespace_selector.as_ref(), namespace_labels);
                let pod_ok = matches(selector.pod_selector.as_ref(), pod_labels);
                match (namespace_ok, pod_ok) {
                    (false, _) => format!(
                        "selector {} wants other namespace labels (the Pod's namespace has {})",
                        index + 1,
                        labels_text(namespace_labels)
                    ),
                    (true, false) => format!(
                        "selector {} wants other Pod labels (the Pod has {})",
                        index + 1,
                        labels_text(pod_labels)
                    ),
                    (true, true) if !admitted => format!(
                        "selector {} matches the labels, but the Pod's namespace does not admit gateways of namespace {} (annotation {})",
                        index + 1,
                        gateway.metadata.namespace.as_deref().unwrap_or_default(),
                        veg_api::names::ANNOTATION_ADMITS_GATEWAYS
                    ),
                    (true, true) => format!(
                        "selector {} matches the labels, but the Pod is not counted (not allocated, finished or being deleted)",
                        index + 1
                    ),
                }
            })
            .collect();
        missed.join("; ")
    };
    let policies = if spec.policies.is_empty() {
        "it has no policies".to_owned()
    } else {
        format!("no policy covers {}", join(ips))
    };
    format!(
        "gateway {} does not select it: {selectors}; {policies}",
        gateway.key()
    )
}

fn instance_addresses(instance: &GatewayInstance, families: &BTreeSet<bool>) -> Vec<IpAddr> {
    instance
        .external_ips
        .iter()
        .flat_map(|ips| veg_api::kubeovn::list_addresses(ips))
        .filter(|ip| families.contains(&ip.is_ipv4()))
        .collect()
}

/// Explains the Pod `<namespace>/<name>` against the snapshot (the gateways' statuses give the
/// instances' BFD states).
pub fn explain(
    snapshot: &dyn Snapshot,
    tenancy: &Tenancy,
    namespace: &str,
    name: &str,
) -> Explanation {
    let key = format!("{namespace}/{name}");
    let unknown = |why: String| Explanation {
        pod: key.clone(),
        verdict: Verdict::Unknown(why),
        details: Vec::new(),
    };
    let Some(pod) = snapshot
        .pods_in(namespace)
        .into_iter()
        .find(|p| p.metadata.name.as_deref() == Some(name))
    else {
        return unknown("no such Pod".into());
    };
    let no_labels = BTreeMap::new();
    let annotations = pod.metadata.annotations.as_ref().unwrap_or(&no_labels);
    let Some(router) = annotations.get(crate::plan::context::annotations::LOGICAL_ROUTER) else {
        return unknown(
            "not attached to an OVN VPC (no ovn.kubernetes.io/logical_router annotation)".into(),
        );
    };
    let ips: Vec<IpAddr> = crate::plan::snapshot::pod_ips(pod);
    let families: BTreeSet<bool> = ips.iter().map(IpAddr::is_ipv4).collect();
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default();
    let port = format!("{name}.{namespace}");
    let pod_labels = pod.metadata.labels.clone().unwrap_or_default();
    let namespace_labels = snapshot
        .namespaces()
        .into_iter()
        .find(|n| n.metadata.name.as_deref() == Some(namespace))
        .and_then(|n| n.metadata.labels.clone())
        .unwrap_or_default();

    let mut details = vec![format!(
        "Pod: {} on node {}, VPC router {router}",
        if ips.is_empty() {
            "no IP yet".to_owned()
        } else {
            join(&ips)
        },
        if node.is_empty() { "-" } else { &node }
    )];
    let mut resolved = Vec::new();
    let mut claims = Vec::new();
    for gateway in snapshot.gateways() {
        let gateway_key = gateway.key();
        match resolve(gateway, snapshot, tenancy) {
            Ok(inputs) => {
                if &inputs.router != router {
                    continue;
                }
                claims.push(Claim::of(
                    &inputs,
                    gateway.metadata.creation_timestamp.clone(),
                ));
                resolved.push((gateway, inputs));
            }
            Err(problem) => details.push(format!(
                "gateway {gateway_key} is not planned ({}: {problem}), so it carries nothing",
                problem.reason()
            )),
        }
    }
    let overlaps = overlaps(&claims);
    let mut selecting = Vec::new();
    for (gateway, inputs) in &resolved {
        match selection(inputs, &port, &ips) {
            Some((how, forwarded)) => selecting.push((*gateway, inputs, how, forwarded)),
            None => {
                let admitted = tenancy
                    .rules(snapshot, &inputs.namespace, &inputs.name)
                    .namespace_admits(namespace);
                details.push(why_not(
                    gateway,
                    &pod_labels,
                    &namespace_labels,
                    admitted,
                    &ips,
                ));
            }
        }
    }
    let held = |key: &str| overlaps.get(key).is_some_and(|o| held_back(o));
    let Some(&(gateway, inputs, ref how, forwarded)) = selecting
        .iter()
        .find(|(_, inputs, _, _)| !held(&inputs.key))
    else {
        let Some((_, inputs, _, _)) = selecting.first() else {
            return Explanation {
                pod: key,
                verdict: Verdict::NotSelected,
                details,
            };
        };
        let by = overlaps
            .get(&inputs.key)
            .into_iter()
            .flatten()
            .filter(|o| !o.wins)
            .map(|o| o.other.clone())
            .collect();
        return Explanation {
            pod: key,
            verdict: Verdict::HeldBack {
                gateway: inputs.key.clone(),
                by,
            },
            details,
        };
    };
    details.push(format!("selected by gateway {} through {how}", inputs.key));
    for (_, other, _, _) in selecting.iter().filter(|(_, o, _, _)| o.key != inputs.key) {
        details.push(format!(
            "gateway {} selects it too but is held back: the older gateway keeps overlapping sources",
            other.key
        ));
    }

    let bfd = inputs.bfd.is_some();
    let status = gateway.status.clone().unwrap_or_default();
    let carrying = carrying_instances(inputs, &status, &node, &mut details);
    if carrying.is_empty() {
        if status.gateways.is_empty() {
            details.push("the gateway has no instance yet".into());
        }
        return Explanation {
            pod: key,
            verdict: Verdict::NoInstance {
                gateway: inputs.key.clone(),
                dropped: bfd,
            },
            details,
        };
    }
    let instances = carrying
        .iter()
        .map(|i| match i.bfd {
            Some(state) => format!("{} (BFD {state:?})", i.pod),
            None => i.pod.clone(),
        })
        .collect();
    let sources = if forwarded {
        details.push("a policy with snat: false covers it: it keeps its own address (the outside needs a route back)".into());
        ips.clone()
    } else {
        let mut sources: Vec<IpAddr> = carrying
            .iter()
            .flat_map(|i| instance_addresses(i, &families))
            .collect();
        sources.sort();
        sources.dedup();
        sources
    };
    Explanation {
        pod: key,
        verdict: Verdict::Leaves {
            gateway: inputs.key.clone(),
            instances,
            sources,
            forwarded,
        },
        details,
    }
}

/// The instances that can carry the Pod, as the status reports them: BFD Up when BFD is on,
/// and the Pod's node's own under `trafficPolicy: Local` when there are any; why the others
/// cannot goes to `details`.
fn carrying_instances<'a>(
    inputs: &GatewayInputs,
    status: &'a veg_api::VpcEgressGatewayStatus,
    node: &str,
    details: &mut Vec<String>,
) -> Vec<&'a GatewayInstance> {
    let bfd = inputs.bfd.is_some();
    let mut carrying: Vec<&GatewayInstance> = status
        .gateways
        .iter()
        .filter(|i| !bfd || i.bfd == Some(BfdState::Up))
        .collect();
    for instance in status
        .gateways
        .iter()
        .filter(|i| bfd && i.bfd != Some(BfdState::Up))
    {
        details.push(format!(
            "instance {} cannot carry it: BFD {}",
            instance.pod,
            instance
                .bfd
                .map_or_else(|| "unknown".to_owned(), |s| format!("{s:?}"))
        ));
    }
    if inputs.traffic_policy == TrafficPolicy::Local && !node.is_empty() {
        let local: Vec<&GatewayInstance> = carrying
            .iter()
            .copied()
            .filter(|i| i.node == node)
            .collect();
        if local.is_empty() {
            details.push(format!(
                "trafficPolicy Local: no instance on node {node} can carry it, so any instance does"
            ));
        } else {
            details.push(format!(
                "trafficPolicy Local: the instances on node {node} carry it"
            ));
            carrying = local;
        }
    }
    carrying
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::fixtures::{base_spec, client, cluster, from, gateway};
    use crate::plan::snapshot::MemorySnapshot;

    fn with_status(mut g: VpcEgressGateway, instances: serde_json::Value) -> VpcEgressGateway {
        g.status = Some(from(json!({"gateways": instances})));
        g
    }

    fn snapshot(bfd: Option<[&str; 2]>) -> MemorySnapshot {
        let mut s = cluster();
        let mut spec = base_spec();
        if bfd.is_some() {
            spec["bfd"] = json!({"enabled": true, "minRX": 100, "minTX": 100, "multiplier": 3});
            let mut vpc: veg_api::kubeovn::Vpc = from(json!({
                "apiVersion": "kubeovn.io/v1", "kind": "Vpc", "metadata": {"name": "ovn-cluster"},
                "spec": {"bfdPort": {"enabled": true, "ip": "198.18.0.253"}},
                "status": {"router": "ovn-cluster", "defaultLogicalSwitch": "ovn-default",
                    "bfdPort": {"name": "bfd@ovn-cluster", "ip": "198.18.0.253"}}
            }));
            vpc.metadata.name = Some("ovn-cluster".into());
            s.put_vpc(vpc);
        }
        let states = bfd.unwrap_or(["", ""]);
        let mut instances = Vec::new();
        for (index, state) in states.iter().enumerate() {
            let mut entry = json!({"pod": format!("gateway1-{index}"), "node": format!("worker{}", index + 1),
                "internalIPs": [format!("198.18.0.{}", 10 + index)],
                "externalIPs": [format!("198.51.100.{}", 10 + index)]});
            if !state.is_empty() {
                entry["bfd"] = json!(state);
            }
            instances.push(entry);
        }
        s.put_gateway(with_status(gateway(spec), json!(instances)));
        for (ns, name, ip) in [
            ("default", "web", "198.18.0.21"),
            ("other", "db", "198.18.0.31"),
            ("other", "app", "198.18.16.5"),
            ("other", "legacy", "198.19.0.7"),
        ] {
            s.put_pod(client(
                ns,
                name,
                "ovn-cluster",
                json!({"status": {"podIPs": [{"ip": ip}]}}),
            ));
        }
        s
    }

    fn addresses(list: &[&str]) -> Vec<IpAddr> {
        list.iter().filter_map(|a| a.parse().ok()).collect()
    }

    #[test]
    fn a_selected_pod_leaves_snated_to_the_instances() {
        let s = snapshot(None);
        let e = explain(&s, &Tenancy::default(), "default", "web");
        assert_eq!(
            e.verdict,
            Verdict::Leaves {
                gateway: "default/gateway1".into(),
                instances: vec!["gateway1-0".into(), "gateway1-1".into()],
                sources: addresses(&["198.51.100.10", "198.51.100.11"]),
                forwarded: false
            },
            "{e}"
        );
        assert!(e.to_string().contains("through its selectors"), "{e}");
        let e = explain(&s, &Tenancy::default(), "other", "app");
        assert!(
            matches!(
                e.verdict,
                Verdict::Leaves {
                    forwarded: false,
                    ..
                }
            ),
            "{e}"
        );
        assert!(
            e.to_string().contains("198.18.16.5 in 198.18.16.0/20"),
            "{e}"
        );
    }

    #[test]
    fn a_forward_only_source_keeps_its_address() {
        let e = explain(&snapshot(None), &Tenancy::default(), "other", "legacy");
        assert_eq!(
            e.verdict,
            Verdict::Leaves {
                gateway: "default/gateway1".into(),
                instances: vec!["gateway1-0".into(), "gateway1-1".into()],
                sources: addresses(&["198.19.0.7"]),
                forwarded: true
            },
            "{e}"
        );
    }

    #[test]
    fn an_unselected_pod_is_told_why() {
        let e = explain(&snapshot(None), &Tenancy::default(), "other", "db");
        assert_eq!(e.verdict, Verdict::NotSelected, "{e}");
        let text = e.to_string();
        assert!(
            text.contains(
                "selector 1 wants other namespace labels (the Pod's namespace has team=red)"
            ) && text.contains("no policy covers 198.18.0.31"),
            "{text}"
        );
    }

    #[test]
    fn no_instance_up_means_dropped_with_bfd() {
        let e = explain(
            &snapshot(Some(["Down", "AdminDown"])),
            &Tenancy::default(),
            "default",
            "web",
        );
        assert_eq!(
            e.verdict,
            Verdict::NoInstance {
                gateway: "default/gateway1".into(),
                dropped: true
            },
            "{e}"
        );
        let text = e.to_string();
        assert!(
            text.contains("gateway1-1 cannot carry it: BFD AdminDown"),
            "{text}"
        );
        // One up: only that one carries it.
        let e = explain(
            &snapshot(Some(["Down", "Up"])),
            &Tenancy::default(),
            "default",
            "web",
        );
        assert_eq!(
            e.verdict,
            Verdict::Leaves {
                gateway: "default/gateway1".into(),
                instances: vec!["gateway1-1 (BFD Up)".into()],
                sources: addresses(&["198.51.100.11"]),
                forwarded: false
            },
            "{e}"
        );
    }

    #[test]
    fn overlapping_gateways_the_older_carries_the_newer_is_held_back() {
        let mut s = snapshot(None);
        let mut older: VpcEgressGateway = s
            .gateways()
            .into_iter()
            .next()
            .cloned()
            .unwrap_or_else(|| gateway(base_spec()));
        older.metadata.creation_timestamp = Some(from(json!("2026-01-01T00:00:00Z")));
        s.put_gateway(older);
        let mut newer = gateway(json!({
            "replicas": 1, "externalSubnet": "macvlan1",
            "selectors": [{"podSelector": {"matchLabels": {"app": "client"}}}]
        }));
        newer.metadata.name = Some("gateway2".into());
        newer.metadata.creation_timestamp = Some(from(json!("2026-06-01T00:00:00Z")));
        s.put_gateway(newer);
        let e = explain(&s, &Tenancy::default(), "default", "web");
        assert!(
            matches!(&e.verdict, Verdict::Leaves { gateway, .. } if gateway == "default/gateway1"),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains("gateway default/gateway2 selects it too but is held back"),
            "{e}"
        );
        // A Pod only the newer one selects: held back, by the older.
        let e = explain(&s, &Tenancy::default(), "other", "db");
        assert_eq!(
            e.verdict,
            Verdict::HeldBack {
                gateway: "default/gateway2".into(),
                by: vec!["default/gateway1".into()]
            },
            "{e}"
        );
    }

    #[test]
    fn local_traffic_prefers_the_same_node_and_unknown_pods_say_so() {
        let mut s = snapshot(None);
        let mut g = s
            .gateways()
            .into_iter()
            .next()
            .cloned()
            .unwrap_or_else(|| gateway(base_spec()));
        g.spec.traffic_policy = TrafficPolicy::Local;
        s.put_gateway(g);
        let e = explain(&s, &Tenancy::default(), "default", "web"); // on worker1, as gateway1-0
        assert!(
            matches!(&e.verdict, Verdict::Leaves { instances, .. } if instances == &vec!["gateway1-0".to_owned()]),
            "{e}"
        );
        assert_eq!(
            explain(&s, &Tenancy::default(), "default", "ghost").verdict,
            Verdict::Unknown("no such Pod".into())
        );
        let mut host = client("default", "host", "ovn-cluster", json!({}));
        host.metadata.annotations = None;
        s.put_pod(host);
        assert!(matches!(
            explain(&s, &Tenancy::default(), "default", "host").verdict,
            Verdict::Unknown(_)
        ));
    }
}
