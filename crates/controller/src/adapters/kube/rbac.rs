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
    /// The only objects it applies to (`resourceNames`); empty: any.
    pub names: &'static [&'static str],
}

/// The Lease's name in `deploy/` (`--lease-name`): its Role names it.
pub const LEASE_NAME: &str = "veg-controller";

/// The table.
pub const CALLS: &[Call] = &[
    // Watches (list + watch) of everything the planner reads.
    Call {
        group: "kubeovn.io",
        resource: "vpc-egress-gateways",
        verbs: &["list", "watch", "patch"],
        cluster: true,
        names: &[],
    },
    Call {
        group: "kubeovn.io",
        resource: "vpc-egress-gateways/status",
        verbs: &["patch"],
        cluster: true,
        names: &[],
    },
    Call {
        group: "kubeovn.io",
        resource: "vpcs",
        verbs: &["list", "watch"],
        cluster: true,
        names: &[],
    },
    Call {
        group: "kubeovn.io",
        resource: "vpcs/status",
        verbs: &["patch"],
        cluster: true,
        names: &[],
    },
    Call {
        group: "kubeovn.io",
        resource: "subnets",
        verbs: &["list", "watch"],
        cluster: true,
        names: &[],
    },
    Call {
        group: "kubeovn.io",
        resource: "ippools",
        verbs: &["list", "watch"],
        cluster: true,
        names: &[],
    },
    Call {
        group: "k8s.cni.cncf.io",
        resource: "network-attachment-definitions",
        verbs: &["list", "watch"],
        cluster: true,
        names: &[],
    },
    Call {
        group: "",
        resource: "namespaces",
        verbs: &["list", "watch"],
        cluster: true,
        names: &[],
    },
    Call {
        group: "",
        resource: "nodes",
        verbs: &["list", "watch"],
        cluster: true,
        names: &[],
    },
    // Pods: the deletion cost of a leaving instance.
    Call {
        group: "",
        resource: "pods",
        verbs: &["list", "watch", "patch"],
        cluster: true,
        names: &[],
    },
    // Server-side apply of a Deployment that does not exist yet is a create.
    Call {
        group: "apps",
        resource: "deployments",
        verbs: &["list", "watch", "create", "patch"],
        cluster: true,
        names: &[],
    },
    Call {
        group: "events.k8s.io",
        resource: "events",
        verbs: &["create", "patch"],
        cluster: true,
        names: &[],
    },
    // The Lease, in the controller's own namespace: read and renewed by name only (the
    // namespace holds other components' Leases, kube-system's leader elections among them);
    // RBAC cannot limit `create` by name.
    Call {
        group: "coordination.k8s.io",
        resource: "leases",
        verbs: &["create"],
        cluster: false,
        names: &[],
    },
    Call {
        group: "coordination.k8s.io",
        resource: "leases",
        verbs: &["get", "update"],
        cluster: false,
        names: &[LEASE_NAME],
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

/// Whether the table grants a permission on any object.
pub fn granted(group: &str, resource: &str, verb: &str) -> bool {
    CALLS.iter().any(|c| {
        c.group == group && c.resource == resource && c.verbs.contains(&verb) && c.names.is_empty()
    })
}

/// Whether the table grants a request (method and path), the object's name included where a
/// permission is limited to some names.
pub fn granted_request(method: &str, path: &str, query: &str) -> bool {
    let Some((group, resource, verb)) = permission(method, path, query) else {
        return false;
    };
    let name = object_name(path);
    CALLS.iter().any(|c| {
        c.group == group
            && c.resource == resource
            && c.verbs.contains(&verb.as_str())
            && (c.names.is_empty() || name.is_some_and(|name| c.names.contains(&name)))
    })
}

/// The object a path names (`…/<resource>/<name>[/<subresource>]`), if any.
fn object_name(path: &str) -> Option<&str> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let rest = match parts.as_slice() {
        ["api", "v1", rest @ ..] | ["apis", _, _, rest @ ..] => rest,
        _ => return None,
    };
    let rest = match rest {
        ["namespaces", _, rest @ ..] if !rest.is_empty() => rest,
        other => other,
    };
    match rest {
        [_resource, name] | [_resource, name, _] => Some(name),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_own_lease_is_read_and_renewed() {
        let path = |name: &str| {
            format!("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/{name}")
        };
        assert!(granted_request("GET", &path("veg-controller"), ""));
        assert!(granted_request("PUT", &path("veg-controller"), ""));
        assert!(!granted_request(
            "GET",
            &path("kube-controller-manager"),
            ""
        ));
        assert!(!granted_request("PUT", &path("kube-scheduler"), ""));
        assert!(granted_request(
            "POST",
            "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases",
            ""
        ));
        assert!(!granted("coordination.k8s.io", "leases", "update"));
    }

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
