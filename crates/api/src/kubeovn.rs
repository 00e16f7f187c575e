//! The parts of Kube-OVN's own resources that veg reads: `Vpc`, `Subnet` and `IPPool`
//! (`pkg/apis/kubeovn/v1/{vpc,subnet,ippool}.go` in kubeovn/kube-ovn).
//!
//! These are partial views for reading. Unknown fields are ignored, so never write one of these
//! objects back whole: that would drop what Kube-OVN put there. No CRD is generated for them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

// ===== Vpc =====

/// A Kube-OVN VPC (cluster-scoped): a logical router and its switches.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "kubeovn.io",
    version = "v1",
    kind = "Vpc",
    plural = "vpcs",
    status = "VpcStatus",
    schema = "disabled",
    derive = "PartialEq",
    derive = "Default"
)]
#[serde(rename_all = "camelCase")]
pub struct VpcSpec {
    /// The namespaces that use the VPC (their Pods' primary network is in it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// The dedicated BFD port of the VPC's router, used by egress gateways.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bfd_port: Option<BfdPort>,
}

/// `Vpc.spec.bfdPort`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BfdPort {
    /// Create the port `bfd@<vpc>`.
    #[serde(default)]
    pub enabled: bool,
    /// Its address: one IP, or `v4,v6`, without a prefix length.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ip: String,
    /// Nodes that may host the port; absent means up to three nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<LabelSelector>,
}

/// `Vpc.status`, the fields veg reads.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VpcStatus {
    /// The BFD port as created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bfd_port: Option<BfdPortStatus>,
    /// Name of the OVN logical router.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub router: String,
    /// The VPC's default subnet.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub default_logical_switch: String,
}

/// `Vpc.status.bfdPort`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BfdPortStatus {
    /// `bfd@<vpc>`, empty while the port is off.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The port's address(es), `v4`, `v6` or `v4,v6`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ip: String,
    /// Nodes of the port's HA chassis group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
}

// ===== Subnet =====

/// A Kube-OVN subnet (cluster-scoped).
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "kubeovn.io",
    version = "v1",
    kind = "Subnet",
    plural = "subnets",
    schema = "disabled",
    derive = "PartialEq",
    derive = "Default"
)]
#[serde(rename_all = "camelCase")]
pub struct SubnetSpec {
    /// CIDR(s), `v4`, `v6` or `v4,v6`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cidr_block: String,
    /// Gateway address(es), in the same order as `cidrBlock`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gateway: String,
    /// `ovn` for Kube-OVN's own network, `<nad>.<namespace>` (or `…​.ovn`) for an attachment.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub provider: String,
    /// `IPv4`, `IPv6` or `Dual`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    /// Addresses IPAM never hands out: IPs or `a..b` ranges.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_ips: Vec<String>,
    /// The VPC the subnet belongs to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub vpc: String,
    /// The namespaces bound to the subnet (their Pods take addresses from it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
}

// ===== IPPool =====

/// A Kube-OVN IP pool (cluster-scoped): named addresses of one subnet.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "kubeovn.io",
    version = "v1",
    kind = "IPPool",
    plural = "ippools",
    schema = "disabled",
    derive = "PartialEq",
    derive = "Default"
)]
#[serde(rename_all = "camelCase")]
pub struct IPPoolSpec {
    /// The subnet the pool draws from.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subnet: String,
    /// Addresses, CIDRs or `a..b` ranges.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<String>,
    /// The namespaces bound to the pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
}

// ===== impls =====

/// The parts of one of Kube-OVN's comma-separated lists (`cidrBlock`, `gateway`, a BFD port's
/// `ip`, an instance's `externalIPs` entry): trimmed, empty parts dropped.
pub fn list_items(text: &str) -> impl Iterator<Item = &str> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

/// The IP addresses of a comma-separated list; parts that are not addresses are skipped.
pub fn list_addresses(text: &str) -> Vec<IpAddr> {
    list_items(text)
        .filter_map(|item| item.parse().ok())
        .collect()
}

/// A network as Kube-OVN writes one (a CIDR, host bits cleared, or a bare address as a /32 or
/// /128), or `None`.
pub fn parse_network(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>()
        .map(|net| net.trunc())
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

impl SubnetSpec {
    /// `cidrBlock` as networks ([`parse_network`]), or `None` when a part is not one.
    pub fn cidrs(&self) -> Option<Vec<IpNet>> {
        list_items(&self.cidr_block).map(parse_network).collect()
    }

    /// `gateway` as addresses.
    pub fn gateways(&self) -> Vec<IpAddr> {
        list_addresses(&self.gateway)
    }
}

impl BfdPort {
    /// `ip` as written, one item per family.
    pub fn networks(&self) -> Vec<String> {
        list_items(&self.ip).map(str::to_owned).collect()
    }
}

impl BfdPortStatus {
    /// `ip` as addresses.
    pub fn addresses(&self) -> Vec<IpAddr> {
        list_addresses(&self.ip)
    }
}

impl Subnet {
    /// The attachment network (`<namespace>/<nad>`) named by this subnet's provider
    /// `<nad>.<namespace>[.ovn]`, or `None` for Kube-OVN's own network or a malformed provider.
    pub fn attachment_network(&self) -> Option<(String, String)> {
        let mut parts = self.spec.provider.split('.');
        let nad = parts.next().filter(|part| !part.is_empty())?;
        let namespace = parts.next().filter(|part| !part.is_empty())?;
        Some((namespace.to_owned(), nad.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comma_lists_read_as_kube_ovn_writes_them() {
        let spec = SubnetSpec {
            cidr_block: " 198.18.16.5/20, 2001:db8:16::/64,".into(),
            gateway: "198.18.16.1,bogus, 2001:db8:16::1".into(),
            ..SubnetSpec::default()
        };
        let cidrs: Vec<String> = spec
            .cidrs()
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(cidrs, ["198.18.16.0/20", "2001:db8:16::/64"]);
        assert_eq!(spec.gateways().len(), 2);
        let bad = SubnetSpec {
            cidr_block: "198.18.16.0/20,nope".into(),
            ..SubnetSpec::default()
        };
        assert_eq!(bad.cidrs(), None);
        let port = BfdPortStatus {
            ip: "203.0.113.254, 2001:db8:ff::254".into(),
            ..BfdPortStatus::default()
        };
        assert_eq!(port.addresses().len(), 2);
    }

    #[test]
    fn reads_kube_ovn_objects_and_ignores_the_rest() -> anyhow::Result<()> {
        let vpc: Vpc = serde_json::from_value(serde_json::json!({
            "apiVersion": "kubeovn.io/v1", "kind": "Vpc",
            "metadata": {"name": "ovn-cluster"},
            "spec": {"bfdPort": {"enabled": true, "ip": "203.0.113.254",
                                 "nodeSelector": {"matchLabels": {"kubernetes.io/os": "linux"}}},
                     "staticRoutes": [{"cidr": "0.0.0.0/0", "nextHopIP": "198.51.100.1"}]},
            "status": {"router": "ovn-cluster", "defaultLogicalSwitch": "ovn-default",
                       "bfdPort": {"name": "bfd@ovn-cluster", "ip": "203.0.113.254", "nodes": ["node1"]},
                       "standby": true}
        }))?;
        let bfd_port = vpc.spec.bfd_port.as_ref().map(|port| port.ip.as_str());
        assert_eq!(bfd_port, Some("203.0.113.254"));
        let status = vpc.status.unwrap_or_default();
        assert_eq!(status.router, "ovn-cluster");
        assert_eq!(status.default_logical_switch, "ovn-default");
        assert_eq!(
            status.bfd_port.map(|port| port.nodes),
            Some(vec!["node1".to_owned()])
        );

        let subnet: Subnet = serde_json::from_value(serde_json::json!({
            "apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": "macvlan1"},
            "spec": {"protocol": "IPv4", "provider": "eth1.default", "cidrBlock": "198.51.100.0/24",
                     "gateway": "198.51.100.1", "excludeIps": ["198.51.100.2..198.51.100.10"]}
        }))?;
        assert_eq!(
            subnet.attachment_network(),
            Some(("default".to_owned(), "eth1".to_owned()))
        );
        let mut ovn = subnet.clone();
        ovn.spec.provider = "ovn".to_owned();
        assert_eq!(ovn.attachment_network(), None);

        let pool: IPPool = serde_json::from_value(serde_json::json!({
            "apiVersion": "kubeovn.io/v1", "kind": "IPPool", "metadata": {"name": "pool1"},
            "spec": {"subnet": "macvlan1", "ips": ["198.51.100.20", "198.51.100.21"]}
        }))?;
        assert_eq!(pool.spec.ips.len(), 2);
        Ok(())
    }
}
