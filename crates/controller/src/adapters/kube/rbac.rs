//! Every Kubernetes API call the adapter makes, as RBAC sees it. `deploy/` grants exactly these
//! (a test compares the ClusterRole and the Role with this table), and the adapter's tests map
//! each request they see to an entry here (so the table cannot list less than the code does).

/// One permission: API group, resource (with subresource), verbs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call {
    /// API group (`""` for core).
    pub group: &'static str,
    /// Resource, `resource/subresource` for subresources.
    pub resource: &'static str,
    pub verbs: &'static [&'static str],
    /// Cluster-wide (ClusterRole) or in the controller's namespace only (Role).
    pub cluster: bool,
}

/// The table.
pub const CALLS: &[Call] = &[
    // Watches (list + watch) of everything the planner reads.
    Call {
        group: "kubeovn.io",
        resource: "vpc-egress-gateways",
        verbs: &["list", "watch", "patch"],
        cluster: true,
    },
    Call {
        group: "kubeovn.io",
        resource: "vpc-egress-gateways/status",
        verbs: &["patch"],
        cluster: true,
    },
    Call {
        group: "kubeovn.io",
        resource: "vpcs",
        verbs: &["list", "watch"],
        cluster: true,
    },
    Call {
        group: "kubeovn.io",
        resource: "vpcs/status",
        verbs: &["patch"],
        cluster: true,
    },
    Call {
        group: "kubeovn.io",
        resource: "subnets",
        verbs: &["list", "watch"],
        cluster: true,
    },
    Call {
        group: "kubeovn.io",
        resource: "ippools",
        verbs: &["list", "watch"],
        cluster: true,
    },
    Call {
        group: "k8s.cni.cncf.io",
        resource: "network-attachment-definitions",
        verbs: &["list", "watch"],
        cluster: true,
    },
    Call {
        group: "",
        resource: "namespaces",
        verbs: &["list", "watch"],
        cluster: true,
    },
    Call {
        group: "",
        resource: "nodes",
        verbs: &["list", "watch"],
        cluster: true,
    },
    // Pods: the deletion cost of a leaving instance.
    Call {
        group: "",
        resource: "pods",
        verbs: &["list", "watch", "patch"],
        cluster: true,
    },
    // Server-side apply of a Deployment that does not exist yet is a create.
    Call {
        group: "apps",
        resource: "deployments",
        verbs: &["list", "watch", "create", "patch"],
        cluster: true,
    },
    Call {
        group: "events.k8s.io",
        resource: "events",
        verbs: &["create", "patch"],
        cluster: true,
    },
    // The Lease, in the controller's own namespace.
    Call {
        group: "coordination.k8s.io",
        resource: "leases",
        verbs: &["get", "create", "update"],
        cluster: false,
    },
];

/// The RBAC (group, resource, verb) of a request the adapter sent, from its method and path
/// (`None` for paths that are not resources).
pub fn permission(method: &str, path: &str, query: &str) -> Option<(String, String, String)> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return None,
    };
    let rest = match rest {
        ["namespaces", _, rest @ ..] if !rest.is_empty() => rest,
        other => other,
    };
    let (resource, named) = match rest {
        [resource] => ((*resource).to_owned(), false),
        [resource, _name] => ((*resource).to_owned(), true),
        [resource, _name, sub] => (format!("{resource}/{sub}"), true),
        _ => return None,
    };
    let verb = match (method, named) {
        ("GET", false) if query.contains("watch=true") => "watch",
        ("GET", false) => "list",
        ("GET", true) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", _) => "delete",
        _ => return None,
    };
    Some((group.to_owned(), resource, verb.to_owned()))
}

/// Whether the table grants a permission.
pub fn granted(group: &str, resource: &str, verb: &str) -> bool {
    CALLS
        .iter()
        .any(|c| c.group == group && c.resource == resource && c.verbs.contains(&verb))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_permissions() {
        let p = |m, path, q| permission(m, path, q);
        assert_eq!(
            p(
                "PATCH",
                "/apis/kubeovn.io/v1/namespaces/default/vpc-egress-gateways/g/status",
                "fieldManager=x"
            ),
            Some((
                "kubeovn.io".into(),
                "vpc-egress-gateways/status".into(),
                "patch".into()
            ))
        );
        assert_eq!(
            p("GET", "/api/v1/pods", "watch=true&x"),
            Some(("".into(), "pods".into(), "watch".into()))
        );
        assert_eq!(
            p("GET", "/api/v1/pods", ""),
            Some(("".into(), "pods".into(), "list".into()))
        );
        assert_eq!(
            p(
                "PUT",
                "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/veg-controller",
                ""
            ),
            Some((
                "coordination.k8s.io".into(),
                "leases".into(),
                "update".into()
            ))
        );
        assert_eq!(p("GET", "/version", ""), None);
        assert!(granted("apps", "deployments", "create"));
        assert!(!granted("apps", "deployments", "delete"));
    }
}
