//! Every Kubernetes, OVN and Kube-OVN name veg shares with the outside world, and the functions
//! that derive object names from a gateway's identity.
//!
//! The names are Kube-OVN's, so its tooling, its e2e checklist and its garbage collector see our
//! objects as theirs (`pkg/util/const.go`, `pkg/util/label.go`, `pkg/util/hash.go`,
//! `pkg/controller/vpc_egress_gateway.go` in kubeovn/kube-ovn).

use sha2::{Digest, Sha256};

// ===== Kubernetes API =====

/// API group of Kube-OVN's resources, VpcEgressGateway among them.
pub const GROUP: &str = "kubeovn.io";
/// API version of VpcEgressGateway.
pub const VERSION: &str = "v1";
/// Kind of the gateway resource.
pub const KIND: &str = "VpcEgressGateway";
/// Plural resource name.
pub const PLURAL: &str = "vpc-egress-gateways";
/// Singular resource name.
pub const SINGULAR: &str = "vpc-egress-gateway";
/// Short names, `kubectl get veg`.
pub const SHORT_NAMES: [&str; 2] = ["vpc-egress-gw", "veg"];
/// The VPC a gateway serves when `spec.vpc` is empty (Kube-OVN's `--cluster-router` default).
pub const DEFAULT_VPC: &str = "ovn-cluster";

/// The finalizer on every gateway the controller has written OVN rows for (Kube-OVN's name,
/// so either controller can take over the other's gateways).
pub const FINALIZER: &str = "kubeovn.io/kube-ovn-controller";

/// Label `app` on the gateway Deployment, its selector and its Pods.
pub const LABEL_APP: &str = "app";
/// Value of [`LABEL_APP`].
pub const LABEL_APP_VALUE: &str = "vpc-egress-gateway";
/// Label that names the gateway (normalised by [`normalize_label_value`]).
pub const LABEL_GATEWAY: &str = "ovn.kubernetes.io/vpc-egress-gateway";

// ===== OVN Northbound =====

/// `external_ids` key naming the software that owns a row.
pub const EXTERNAL_ID_VENDOR: &str = "vendor";
/// Value of [`EXTERNAL_ID_VENDOR`]; Kube-OVN's, so its GC spares our rows.
pub const VENDOR: &str = "kube-ovn";
/// `external_ids` key holding `<namespace>/<name>` of the owning gateway.
pub const EXTERNAL_ID_GATEWAY: &str = "vpc-egress-gateway";
/// `external_ids` key holding the address family, `4` or `6`.
pub const EXTERNAL_ID_AF: &str = "af";

/// Logical_Router_Policy priority of the per-node reroute (`trafficPolicy: Local`).
pub const PRIORITY_LOCAL: i64 = 29150;
/// Logical_Router_Policy priority of the ECMP reroute over every gateway instance.
pub const PRIORITY_CLUSTER: i64 = 29100;
/// Logical_Router_Policy priority of the drop that stops leaks when no instance is up.
pub const PRIORITY_DROP: i64 = 29090;

/// Prefix of every OVN object name that belongs to a gateway.
pub const OVN_NAME_PREFIX: &str = "VEG.";

// ===== Address families =====

/// An IP address family, as OVN matches and `external_ids:af` spell it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AddressFamily {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl AddressFamily {
    /// Both families, IPv4 first (the order Kube-OVN reconciles them in).
    pub const ALL: [AddressFamily; 2] = [AddressFamily::V4, AddressFamily::V6];

    /// The value of `external_ids:af`: `4` or `6`.
    pub fn af(self) -> &'static str {
        match self {
            AddressFamily::V4 => "4",
            AddressFamily::V6 => "6",
        }
    }

    /// The family of an address.
    pub fn of(ip: std::net::IpAddr) -> Self {
        match ip {
            std::net::IpAddr::V4(_) => AddressFamily::V4,
            std::net::IpAddr::V6(_) => AddressFamily::V6,
        }
    }
}

// ===== Names derived from a gateway =====

/// The first 12 lower-case hex digits of `sha256("<namespace>/<name>")`: the key of every OVN
/// object of a gateway (Kube-OVN `util.Sha256Hash`, cut to 12).
pub fn gateway_hash(namespace: &str, name: &str) -> String {
    let digest = Sha256::digest(format!("{namespace}/{name}").as_bytes());
    let mut hex = hex::encode(digest);
    hex.truncate(12);
    hex
}

/// `<namespace>/<name>`, the value of `external_ids:vpc-egress-gateway`.
pub fn gateway_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// Port_Group of the Pods picked by `spec.selectors`: `VEG.<hash>`.
pub fn port_group(namespace: &str, name: &str) -> String {
    format!("{OVN_NAME_PREFIX}{}", gateway_hash(namespace, name))
}

/// Address_Set of the policy sources (`spec.policies`): `VEG.<hash>.ipv4` / `.ipv6`.
pub fn policy_address_set(namespace: &str, name: &str, family: AddressFamily) -> String {
    let suffix = match family {
        AddressFamily::V4 => "ipv4",
        AddressFamily::V6 => "ipv6",
    };
    format!("{}.{suffix}", port_group(namespace, name))
}

/// The address set northd derives from the Port_Group, `VEG.<hash>_ip4` / `_ip6`. With no
/// selectors the controller creates an empty NB Address_Set of the same name, so policy matches
/// that name it stay valid.
pub fn port_group_address_set(namespace: &str, name: &str, family: AddressFamily) -> String {
    let suffix = match family {
        AddressFamily::V4 => "ip4",
        AddressFamily::V6 => "ip6",
    };
    format!("{}_{suffix}", port_group(namespace, name))
}

/// Name of the gateway's Deployment: `spec.prefix` followed by the gateway's name.
pub fn deployment_name(prefix: &str, name: &str) -> String {
    format!("{prefix}{name}")
}

/// A label value for `value`: unchanged when it has at most 63 characters, else its first 54
/// characters, `-`, and the first 8 hex digits of its sha256 (Kube-OVN `NormalizeLabelValue`).
pub fn normalize_label_value(value: &str) -> String {
    const MAX: usize = 63;
    const KEEP: usize = 54;
    if value.chars().count() <= MAX {
        return value.to_owned();
    }
    let head: String = value.chars().take(KEEP).collect();
    let digest = hex::encode(Sha256::digest(value.as_bytes()));
    format!("{head}-{}", &digest[..8])
}

/// The labels of a gateway's Deployment, its selector and its Pods, sorted by key.
pub fn gateway_labels(name: &str) -> Vec<(&'static str, String)> {
    vec![
        (LABEL_APP, LABEL_APP_VALUE.to_owned()),
        (LABEL_GATEWAY, normalize_label_value(name)),
    ]
}

/// `status.labelSelector` for the scale subresource: the labels in label-selector syntax.
pub fn label_selector(name: &str) -> String {
    gateway_labels(name)
        .into_iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The logical router port that carries the VPC's BFD sessions, `bfd@<vpc>`, and the name of
/// its HA_Chassis_Group.
pub fn bfd_port(vpc: &str) -> String {
    format!("bfd@{vpc}")
}

// ===== tenancy =====

/// Annotation by which a namespace admits other namespaces' gateways (strict tenancy): a
/// comma-separated list of `<namespace>` (every gateway of it) or `<namespace>/<gateway>`.
/// Admitted gateways may select the namespace's Pods and use what is bound to it (its
/// subnets' address space, its VPC, its NetworkAttachmentDefinitions).
pub const ANNOTATION_ADMITS_GATEWAYS: &str = "veg.kubeovn.io/egress-gateways";

/// Whether an [`ANNOTATION_ADMITS_GATEWAYS`] value admits gateway `name` of `namespace`.
pub fn admits_gateway(value: &str, namespace: &str, name: &str) -> bool {
    crate::kubeovn::list_items(value).any(|entry| match entry.split_once('/') {
        Some((ns, gateway)) => ns.trim() == namespace && gateway.trim() == name,
        None => entry == namespace,
    })
}

/// NB_Global external_ids key holding the token of the controller that writes the NB: every
/// NB transaction of that controller first checks the token is still its own, so a deposed
/// leader's late write fails instead of landing.
pub const EXTERNAL_ID_WRITER: &str = "veg-controller-writer";

// ===== the controller ↔ `veg monitor` contract (monitor mode) =====

/// external_ids key under which monitor mode publishes a policy's candidate nexthops.
pub const EXTERNAL_ID_CANDIDATES: &str = "veg-candidates";

/// The value of [`EXTERNAL_ID_CANDIDATES`]: the instances' addresses, comma-separated.
pub fn encode_candidates<'a>(candidates: impl IntoIterator<Item = &'a std::net::IpAddr>) -> String {
    let list: Vec<String> = candidates.into_iter().map(ToString::to_string).collect();
    list.join(",")
}

/// Reads [`EXTERNAL_ID_CANDIDATES`]; parts that are not addresses are skipped.
pub fn decode_candidates(text: &str) -> Vec<std::net::IpAddr> {
    crate::kubeovn::list_addresses(text)
}
/// external_ids key of the monitor's BFD timers for those candidates.
pub const EXTERNAL_ID_MONITOR_TIMERS: &str = "veg-bfd";

/// The monitor's side of a gateway's BFD sessions: the Pod's timers mirrored (the monitor
/// sends at the rate the Pod wants to receive, and the reverse).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct MonitorTimers {
    /// Desired min TX, ms.
    pub min_tx_ms: u32,
    /// Required min RX, ms.
    pub min_rx_ms: u32,
    /// Detect multiplier.
    pub multiplier: u8,
}

impl MonitorTimers {
    /// `min_tx/min_rx/multiplier` in ms, as published in external_ids.
    pub fn encode(&self) -> String {
        format!("{}/{}/{}", self.min_tx_ms, self.min_rx_ms, self.multiplier)
    }

    /// Parses [`MonitorTimers::encode`]'s form.
    pub fn decode(text: &str) -> Option<Self> {
        let mut parts = text.split('/').map(str::trim);
        let timers = Self {
            min_tx_ms: parts.next()?.parse().ok()?,
            min_rx_ms: parts.next()?.parse().ok()?,
            multiplier: parts.next()?.parse().ok()?,
        };
        (parts.next().is_none()
            && timers.min_tx_ms > 0
            && timers.min_rx_ms > 0
            && timers.multiplier > 0)
            .then_some(timers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admission_annotation_names_namespaces_or_single_gateways() {
        let value = " team-a, team-b/gw1 ,,";
        assert!(admits_gateway(value, "team-a", "anything"));
        assert!(admits_gateway(value, "team-b", "gw1"));
        assert!(!admits_gateway(value, "team-b", "gw2"));
        assert!(!admits_gateway(value, "team", "gw1"));
        assert!(!admits_gateway(value, "team-c", "team-a"));
        assert!(!admits_gateway("", "team-a", "gw1"));
        assert!(!admits_gateway("*", "team-a", "gw1"));
    }

    // Kube-OVN's own docs show `VEG.8ca38ae7da18` for default/gateway1.
    #[test]
    fn hash_matches_kube_ovn() {
        assert_eq!(gateway_hash("default", "gateway1"), "8ca38ae7da18");
        assert_eq!(gateway_hash("default", "gateway2"), "9b33407d429d");
        assert_eq!(port_group("default", "gateway1"), "VEG.8ca38ae7da18");
        assert_eq!(
            policy_address_set("default", "gateway1", AddressFamily::V4),
            "VEG.8ca38ae7da18.ipv4"
        );
        assert_eq!(
            policy_address_set("default", "gateway1", AddressFamily::V6),
            "VEG.8ca38ae7da18.ipv6"
        );
        assert_eq!(
            port_group_address_set("default", "gateway1", AddressFamily::V4),
            "VEG.8ca38ae7da18_ip4"
        );
        assert_eq!(
            port_group_address_set("default", "gateway1", AddressFamily::V6),
            "VEG.8ca38ae7da18_ip6"
        );
    }

    #[test]
    fn label_values_are_normalized_like_kube_ovn() {
        assert_eq!(normalize_label_value("gateway1"), "gateway1");
        let exactly_63 = "a".repeat(63);
        assert_eq!(normalize_label_value(&exactly_63), exactly_63);
        // Expected values computed with `sha256sum`, independently of this code.
        let long = "b".repeat(64);
        assert_eq!(
            normalize_label_value(&long),
            format!("{}-a0fab137", "b".repeat(54))
        );
        let name = "my-very-long-gateway-name-that-goes-past-the-kubernetes-label-limit";
        assert_eq!(
            normalize_label_value(name),
            "my-very-long-gateway-name-that-goes-past-the-kubernete-6e49b2d9"
        );
        assert_eq!(normalize_label_value(name).len(), 63);
    }

    #[test]
    fn derived_names() {
        assert_eq!(deployment_name("", "gateway1"), "gateway1");
        assert_eq!(deployment_name("veg-", "gateway1"), "veg-gateway1");
        assert_eq!(gateway_key("default", "gateway1"), "default/gateway1");
        assert_eq!(bfd_port("ovn-cluster"), "bfd@ovn-cluster");
        assert_eq!(
            label_selector("gateway1"),
            "app=vpc-egress-gateway,ovn.kubernetes.io/vpc-egress-gateway=gateway1"
        );
    }

    #[test]
    fn monitor_timers_round_trip_and_reject_garbage() {
        let timers = MonitorTimers {
            min_tx_ms: 100,
            min_rx_ms: 300,
            multiplier: 3,
        };
        assert_eq!(MonitorTimers::decode(&timers.encode()), Some(timers));
        for bad in [
            "",
            "100/300",
            "100/300/3/1",
            "0/300/3",
            "100/300/0",
            "a/b/c",
            "100/300/300",
        ] {
            assert_eq!(MonitorTimers::decode(bad), None, "{bad}");
        }
    }
}
