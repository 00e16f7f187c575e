//! What the kubelet reads from a Pod template before it starts anything (pure): the addresses
//! Kube-OVN's `ip_pool` annotation offers, the containers' environment (`env` with the
//! downward API, `envFrom` ConfigMaps), and the container paths that are the Pod's emptyDir.

use std::collections::BTreeMap;

use serde_json::Value as Json;

/// The entries of a Kube-OVN `ip_pool` annotation, as Kube-OVN splits it
/// (`acquireStaticAddressHelper` in pkg/controller/pod.go): by `;` when it has one, else by
/// `,` — except that two addresses of different families separated by `,` are one dual-stack
/// entry. Each entry is what one Pod gets (one address per family).
pub fn ip_pool_entries(text: &str) -> Vec<String> {
    let text = text.trim();
    if text.is_empty() {
        return Vec::new();
    }
    let entries: Vec<String> = if text.contains(';') {
        text.split(';').map(|e| e.trim().to_owned()).collect()
    } else {
        let parts: Vec<&str> = text.split(',').map(str::trim).collect();
        let family = |p: &str| p.parse::<std::net::IpAddr>().ok().map(|ip| ip.is_ipv4());
        if parts.len() == 2 && family(parts[0]) != family(parts[1]) {
            vec![text.to_owned()]
        } else {
            parts.into_iter().map(str::to_owned).collect()
        }
    };
    entries.into_iter().filter(|e| !e.is_empty()).collect()
}

/// The pool entry replica `replica` takes: its own (the `replica`-th) when free, else the first
/// free one — a Deployment's Pod takes any free address of the pool, as Kube-OVN's does.
pub fn pool_entry(
    entries: &[String],
    replica: usize,
    taken: impl Fn(&str) -> bool,
) -> Option<&str> {
    entries
        .get(replica)
        .filter(|e| !taken(e))
        .or_else(|| entries.iter().find(|e| !taken(e)))
        .map(String::as_str)
}

/// What the downward API can tell a container about its Pod.
#[derive(Clone, Debug, Default)]
pub struct PodFacts {
    pub name: String,
    pub namespace: String,
    pub node: String,
    /// The Pod's first address.
    pub ip: String,
    pub service_account: String,
}

impl PodFacts {
    /// A `fieldRef.fieldPath`'s value, as the kubelet resolves it.
    fn field(&self, path: &str) -> Option<&str> {
        Some(match path {
            "metadata.name" => &self.name,
            "metadata.namespace" => &self.namespace,
            "spec.nodeName" => &self.node,
            "status.podIP" | "status.podIPs" => &self.ip,
            "spec.serviceAccountName" => &self.service_account,
            _ => return None,
        })
    }
}

/// A container's environment as the kubelet builds it: `envFrom` first (ConfigMaps of the
/// Pod's namespace, by name), then `env` over it (literal values, `fieldRef`,
/// `configMapKeyRef`). A missing ConfigMap or key that is not `optional` fails the container,
/// with the kubelet's reason (CreateContainerConfigError).
pub fn container_env(
    container: &Json,
    pod: &PodFacts,
    config_maps: &BTreeMap<String, BTreeMap<String, String>>,
) -> Result<Vec<(String, String)>, String> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut set = |name: &str, value: String| {
        if !env.contains_key(name) {
            order.push(name.to_owned());
        }
        env.insert(name.to_owned(), value);
    };
    for source in container["envFrom"].as_array().into_iter().flatten() {
        let Some(name) = source["configMapRef"]["name"].as_str() else {
            continue;
        };
        match config_maps.get(name) {
            Some(data) => {
                let prefix = source["prefix"].as_str().unwrap_or_default();
                for (key, value) in data {
                    set(&format!("{prefix}{key}"), value.clone());
                }
            }
            None if source["configMapRef"]["optional"] == true => {}
            None => return Err(format!("configmap \"{name}\" not found")),
        }
    }
    for var in container["env"].as_array().into_iter().flatten() {
        let Some(name) = var["name"].as_str() else {
            continue;
        };
        if let Some(value) = var["value"].as_str() {
            set(name, value.to_owned());
            continue;
        }
        let from = &var["valueFrom"];
        if let Some(path) = from["fieldRef"]["fieldPath"].as_str() {
            let value = pod
                .field(path)
                .ok_or_else(|| format!("env {name}: unsupported fieldPath {path:?}"))?;
            set(name, value.to_owned());
        } else if let Some(map) = from["configMapKeyRef"]["name"].as_str() {
            let key = from["configMapKeyRef"]["key"].as_str().unwrap_or_default();
            match config_maps.get(map).and_then(|data| data.get(key)) {
                Some(value) => set(name, value.clone()),
                None if from["configMapKeyRef"]["optional"] == true => {}
                None if config_maps.contains_key(map) => {
                    return Err(format!(
                        "couldn't find key {key} in ConfigMap {}/{map}",
                        pod.namespace
                    ));
                }
                None => return Err(format!("configmap \"{map}\" not found")),
            }
        } else {
            set(name, String::new());
        }
    }
    Ok(order
        .into_iter()
        .filter_map(|name| env.remove(&name).map(|value| (name, value)))
        .collect())
}

/// The container paths that are the Pod's emptyDir volumes (the kubelet gives every emptyDir
/// of a Pod one host directory).
pub fn empty_dir_mounts(container: &Json, pod_spec: &Json) -> Vec<String> {
    let empty_dirs: Vec<&str> = pod_spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["emptyDir"].is_object())
        .filter_map(|v| v["name"].as_str())
        .collect();
    container["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["name"].as_str().is_some_and(|n| empty_dirs.contains(&n)))
        .filter_map(|m| m["mountPath"].as_str().map(str::to_owned))
        .collect()
}

/// Whether a Pod of this spec reaches the API server with a token of its own ServiceAccount
/// (named, not `default`, and its token mounted): the Pods the lab lets use its API.
pub fn uses_api(pod_spec: &Json) -> bool {
    let account = pod_spec["serviceAccountName"]
        .as_str()
        .or(pod_spec["serviceAccount"].as_str())
        .unwrap_or("default");
    account != "default" && pod_spec["automountServiceAccountToken"] != false
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn ip_pools_split_as_kube_ovn_splits_them() {
        assert_eq!(
            ip_pool_entries("198.18.0.251,198.18.0.252"),
            ["198.18.0.251", "198.18.0.252"]
        );
        assert_eq!(
            ip_pool_entries("198.18.0.10,2001:db8::10"),
            ["198.18.0.10,2001:db8::10"]
        );
        assert_eq!(
            ip_pool_entries("198.18.0.10,2001:db8::10;198.18.0.11,2001:db8::11"),
            ["198.18.0.10,2001:db8::10", "198.18.0.11,2001:db8::11"]
        );
        assert_eq!(ip_pool_entries(" "), Vec::<String>::new());
        let pool = ip_pool_entries("a,b,c");
        assert_eq!(pool_entry(&pool, 1, |_| false), Some("b"));
        assert_eq!(pool_entry(&pool, 1, |e| e == "b"), Some("a"));
        assert_eq!(pool_entry(&pool, 5, |e| e == "a"), Some("b"));
        assert_eq!(pool_entry(&pool, 0, |_| true), None);
    }

    #[test]
    fn env_comes_from_config_maps_then_the_containers_own_entries() {
        let container = json!({
            "envFrom": [{"configMapRef": {"name": "veg-config"}},
                        {"configMapRef": {"name": "absent", "optional": true}}],
            "env": [
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "LOCAL", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "VEG_LOG_LEVEL", "value": "debug"},
                {"name": "VPC", "valueFrom": {"configMapKeyRef": {"name": "veg-config",
                    "key": "VEG_DEFAULT_VPC"}}}
            ]
        });
        let pod = PodFacts {
            name: "veg-monitor-0".into(),
            namespace: "kube-system".into(),
            ip: "198.18.0.251".into(),
            ..PodFacts::default()
        };
        let maps = BTreeMap::from([(
            "veg-config".to_owned(),
            BTreeMap::from([
                ("VEG_DEFAULT_VPC".to_owned(), "ovn-cluster".to_owned()),
                ("VEG_LOG_LEVEL".to_owned(), "info".to_owned()),
            ]),
        )]);
        let env = container_env(&container, &pod, &maps);
        assert_eq!(
            env,
            Ok(vec![
                ("VEG_DEFAULT_VPC".into(), "ovn-cluster".into()),
                ("VEG_LOG_LEVEL".into(), "debug".into()),
                ("POD_NAME".into(), "veg-monitor-0".into()),
                ("LOCAL".into(), "198.18.0.251".into()),
                ("VPC".into(), "ovn-cluster".into()),
            ])
        );
        assert_eq!(
            container_env(&container, &pod, &BTreeMap::new()),
            Err("configmap \"veg-config\" not found".into())
        );
        let bad_key = json!({"env": [{"name": "X", "valueFrom": {"configMapKeyRef":
            {"name": "veg-config", "key": "NOPE"}}}]});
        assert_eq!(
            container_env(&bad_key, &pod, &maps),
            Err("couldn't find key NOPE in ConfigMap kube-system/veg-config".into())
        );
    }

    #[test]
    fn only_pods_with_their_own_service_account_token_use_the_api() {
        assert!(uses_api(&json!({"serviceAccountName": "veg-controller"})));
        assert!(!uses_api(&json!({})));
        assert!(!uses_api(&json!({"serviceAccountName": "default"})));
        assert!(!uses_api(&json!({"serviceAccountName": "veg-controller",
            "automountServiceAccountToken": false})));
    }

    #[test]
    fn empty_dir_mounts_are_the_containers_mounts_of_empty_dir_volumes() {
        let spec = json!({"volumes": [{"name": "run", "emptyDir": {}},
            {"name": "certs", "secret": {"secretName": "x"}}]});
        let container = json!({"volumeMounts": [{"name": "run", "mountPath": "/run/veg"},
            {"name": "certs", "mountPath": "/etc/certs"}]});
        assert_eq!(empty_dir_mounts(&container, &spec), ["/run/veg"]);
    }
}
