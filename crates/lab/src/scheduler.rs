//! The lab's scheduler (pure): which node a new Pod goes to, as kube-scheduler filters and
//! scores — the Pod's `nodeSelector` and required node affinity, its required pod
//! anti-affinity on `kubernetes.io/hostname`, no dead node — then the fewest preferred
//! anti-affinity matches. Ties go to the first node from `start` on, so replicas spread in
//! order. A Pod no node fits gets the scheduler's `FailedScheduling` wording.

use std::collections::BTreeMap;

use serde_json::Value as Json;

/// A node as the scheduler sees it.
#[derive(Clone, Debug, Default)]
pub struct NodeView {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Its kubelet stopped posting status (the node controller's taints keep Pods off).
    pub down: bool,
    /// The Pods on it: namespace and labels.
    pub pods: Vec<(String, BTreeMap<String, String>)>,
}

/// The node for a Pod of `template` in `namespace`, or why none fits.
pub fn schedule(
    template: &Json,
    namespace: &str,
    nodes: &[NodeView],
    start: usize,
) -> Result<String, String> {
    let spec = &template["spec"];
    let anti = &spec["affinity"]["podAntiAffinity"];
    let mut reasons: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut fits: Vec<(usize, i64)> = Vec::new();
    for (index, node) in nodes.iter().enumerate() {
        let reason = if node.down {
            Some("node(s) had untolerated taint {node.kubernetes.io/unreachable: }")
        } else if !node_selected(spec, node) {
            Some("node(s) didn't match Pod's node affinity/selector")
        } else if terms(&anti["requiredDuringSchedulingIgnoredDuringExecution"])
            .any(|term| term_matches_on(term, namespace, node))
        {
            Some("node(s) didn't match pod anti-affinity rules")
        } else {
            None
        };
        match reason {
            Some(reason) => *reasons.entry(reason).or_default() += 1,
            None => {
                let penalty: i64 = terms(&anti["preferredDuringSchedulingIgnoredDuringExecution"])
                    .filter(|weighted| {
                        term_matches_on(&weighted["podAffinityTerm"], namespace, node)
                    })
                    .map(|weighted| weighted["weight"].as_i64().unwrap_or(1))
                    .sum();
                fits.push((index, penalty));
            }
        }
    }
    let count = nodes.len().max(1);
    fits.into_iter()
        .min_by_key(|(index, penalty)| (*penalty, (index + count - start % count) % count))
        .map(|(index, _)| nodes[index].name.clone())
        .ok_or_else(|| {
            let mut parts: Vec<String> = reasons
                .iter()
                .map(|(reason, count)| format!("{count} {reason}"))
                .collect();
            parts.sort();
            format!(
                "0/{} nodes are available: {}.",
                nodes.len(),
                parts.join(", ")
            )
        })
}

fn terms(list: &Json) -> impl Iterator<Item = &Json> {
    list.as_array().into_iter().flatten()
}

/// `nodeSelector` (every label) and required node affinity (any term, every expression).
fn node_selected(spec: &Json, node: &NodeView) -> bool {
    let selector_ok = spec["nodeSelector"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(key, value)| node.labels.get(key).map(String::as_str) == value.as_str());
    let required = &spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"];
    let affinity_ok = match required.as_array() {
        None => true,
        Some(terms) => terms.iter().any(|term| {
            terms_all(&term["matchExpressions"], |key| {
                node.labels.get(key).cloned()
            }) && terms_all(&term["matchFields"], |key| {
                (key == "metadata.name").then(|| node.name.clone())
            })
        }),
    };
    selector_ok && affinity_ok
}

/// Every requirement of a list holds for the values `get` finds.
fn terms_all(requirements: &Json, get: impl Fn(&str) -> Option<String>) -> bool {
    terms(requirements).all(|requirement| {
        let key = requirement["key"].as_str().unwrap_or_default();
        let values: Vec<&str> = terms(&requirement["values"])
            .filter_map(Json::as_str)
            .collect();
        let value = get(key);
        let number = |v: &str| v.parse::<i64>().ok();
        match requirement["operator"].as_str().unwrap_or_default() {
            "In" => value.is_some_and(|v| values.contains(&v.as_str())),
            "NotIn" => value.is_none_or(|v| !values.contains(&v.as_str())),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            "Gt" => value
                .and_then(|v| number(&v))
                .zip(values.first().and_then(|v| number(v)))
                .is_some_and(|(v, bound)| v > bound),
            "Lt" => value
                .and_then(|v| number(&v))
                .zip(values.first().and_then(|v| number(v)))
                .is_some_and(|(v, bound)| v < bound),
            _ => false,
        }
    })
}

/// A pod (anti-)affinity term finds a Pod on this node: its topology key is the node itself
/// (`kubernetes.io/hostname`, the only key the lab's nodes differ by), its namespaces default
/// to the Pod's own.
fn term_matches_on(term: &Json, namespace: &str, node: &NodeView) -> bool {
    if term["topologyKey"] != "kubernetes.io/hostname" {
        return false;
    }
    let namespaces: Vec<&str> = terms(&term["namespaces"])
        .filter_map(Json::as_str)
        .collect();
    let selector = &term["labelSelector"];
    node.pods.iter().any(|(pod_namespace, labels)| {
        let in_namespace = if namespaces.is_empty() {
            pod_namespace == namespace
        } else {
            namespaces.contains(&pod_namespace.as_str())
        };
        in_namespace
            && selector["matchLabels"]
                .as_object()
                .into_iter()
                .flatten()
                .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str())
            && terms_all(&selector["matchExpressions"], |key| {
                labels.get(key).cloned()
            })
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn nodes() -> Vec<NodeView> {
        ["n1", "n2", "n3"]
            .iter()
            .enumerate()
            .map(|(i, name)| NodeView {
                name: (*name).to_owned(),
                labels: BTreeMap::from([
                    ("kubernetes.io/hostname".to_owned(), (*name).to_owned()),
                    ("zone".to_owned(), if i == 0 { "a" } else { "b" }.to_owned()),
                ]),
                ..NodeView::default()
            })
            .collect()
    }

    fn gateway(anti: &str) -> Json {
        let term = json!({"labelSelector": {"matchLabels": {"app": "gw"}},
            "topologyKey": "kubernetes.io/hostname"});
        let anti = if anti == "required" {
            json!({"requiredDuringSchedulingIgnoredDuringExecution": [term]})
        } else {
            json!({"preferredDuringSchedulingIgnoredDuringExecution":
                [{"weight": 100, "podAffinityTerm": term}]})
        };
        json!({"metadata": {"labels": {"app": "gw"}}, "spec": {"affinity": {
            "podAntiAffinity": anti,
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "zone", "operator": "In", "values": ["b"]}]}]}}}}})
    }

    fn place(nodes: &mut [NodeView], template: &Json, start: usize) -> Result<String, String> {
        let node = schedule(template, "default", nodes, start)?;
        let labels = BTreeMap::from([("app".to_owned(), "gw".to_owned())]);
        if let Some(view) = nodes.iter_mut().find(|n| n.name == node) {
            view.pods.push(("default".into(), labels));
        }
        Ok(node)
    }

    #[test]
    fn node_affinity_and_required_anti_affinity_decide_and_say_why_not() {
        let mut nodes = nodes();
        let template = gateway("required");
        assert_eq!(place(&mut nodes, &template, 0), Ok("n2".into()));
        assert_eq!(place(&mut nodes, &template, 1), Ok("n3".into()));
        assert_eq!(
            place(&mut nodes, &template, 2),
            Err(
                "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, \
                 2 node(s) didn't match pod anti-affinity rules."
                    .into()
            )
        );
    }

    #[test]
    fn preferred_anti_affinity_spreads_then_doubles_up_and_dead_nodes_get_nothing() {
        let mut nodes = nodes();
        nodes[2].down = true;
        let template = gateway("preferred");
        assert_eq!(place(&mut nodes, &template, 0), Ok("n2".into()));
        // Only n2 is in zone b and alive: a second replica shares it.
        assert_eq!(place(&mut nodes, &template, 1), Ok("n2".into()));
        // Another namespace's Pods do not count.
        let mut other = self::nodes();
        other[1].pods.push((
            "other".into(),
            BTreeMap::from([("app".into(), "gw".into())]),
        ));
        assert_eq!(schedule(&template, "default", &other, 1), Ok("n2".into()));
    }

    #[test]
    fn node_selectors_and_match_fields_filter_and_ties_follow_the_start() {
        let nodes = nodes();
        let plain = json!({"spec": {}});
        assert_eq!(schedule(&plain, "ns", &nodes, 0), Ok("n1".into()));
        assert_eq!(schedule(&plain, "ns", &nodes, 2), Ok("n3".into()));
        assert_eq!(schedule(&plain, "ns", &nodes, 4), Ok("n2".into()));
        let selected = json!({"spec": {"nodeSelector": {"zone": "a"}}});
        assert_eq!(schedule(&selected, "ns", &nodes, 2), Ok("n1".into()));
        let by_name = json!({"spec": {"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "NotIn",
                    "values": ["n1", "n2"]}]}]}}}}});
        assert_eq!(schedule(&by_name, "ns", &nodes, 0), Ok("n3".into()));
        let nowhere = json!({"spec": {"nodeSelector": {"zone": "c"}}});
        assert_eq!(
            schedule(&nowhere, "ns", &nodes, 0),
            Err(
                "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
                    .into()
            )
        );
    }
}
