//! The logical topology the lab plays Kube-OVN for: a VPC router, a logical switch per
//! subnet with its gateway on the router and Kube-OVN's 31000 allow policies (intra-VPC
//! traffic is never rerouted to a gateway), and Pods as network namespaces bound to logical
//! switch ports named `<pod>.<namespace>`.
//!
//! Two traps from the OVN lab notes are handled here: the netdev datapath does not complete
//! TX checksums, so TX offload is turned off on every Pod veth (else TCP fails while ICMP
//! works); IPv6 duplicate address detection is off in the Pods (a tentative address would delay
//! the first packets by a second).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::process::Command;

use ipnet::IpNet;
use veg_ovsdb::nb::{LogicalRouterPolicy, LogicalSwitchPort, PortGroup};
use veg_ovsdb::{NbRow, Row, Value};

use crate::command::{ip, run};
use crate::error::LabError;
use crate::ovn::Ovn;

/// A subnet: one logical switch, its router port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabSubnet {
    /// Name (the logical switch's).
    pub name: String,
    /// CIDRs, one per family.
    pub cidrs: Vec<IpNet>,
    /// The router's address in each CIDR.
    pub gateways: Vec<IpAddr>,
}

/// A Pod of a subnet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabPod {
    pub name: String,
    pub namespace: String,
    /// Addresses, with the subnet's prefix length.
    pub addresses: Vec<IpNet>,
    /// Default gateways, one per family.
    pub gateways: Vec<IpAddr>,
}

impl LabPod {
    /// The logical switch port, `<pod>.<namespace>` as Kube-OVN names it.
    pub fn port(&self) -> String {
        format!("{}.{}", self.name, self.namespace)
    }
}

/// A MAC address for `seed`, locally administered and stable.
pub fn mac(seed: &str) -> String {
    // FNV-1a: enough spread for a lab, no dependency.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in seed.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let bytes = hash.to_be_bytes();
    format!(
        "0a:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        bytes[1], bytes[2], bytes[3], bytes[4], bytes[5]
    )
}

impl Ovn {
    /// `ovn-nbctl` against the lab's Northbound database.
    pub fn nbctl(&self, args: &[&str]) -> Result<String, LabError> {
        let mut command = self.install().command("ovn-nbctl");
        command.arg(format!("--db={}", self.nb_remote())).args(args);
        run(&format!("ovn-nbctl {}", args.join(" ")), &mut command)
    }

    /// Every row of `T`'s table, typed (read with `ovn-nbctl --format=json list`, so the lab
    /// and the controller share one row vocabulary: veg-ovsdb's NB tables).
    pub fn rows<T: NbRow>(&self) -> Result<Vec<T>, LabError> {
        let columns = format!("--columns=_uuid,{}", T::COLUMNS.join(","));
        let text = self.nbctl(&["--format=json", &columns, "list", T::TABLE])?;
        parse_nbctl_list(&text)
    }

    /// The nexthops of every Logical_Router_Policy of `priority`, one set per policy row
    /// (what the demo, the CLI and the benchmarks watch).
    pub fn policy_nexthops(&self, priority: u32) -> Result<Vec<BTreeSet<IpAddr>>, LabError> {
        Ok(self
            .rows::<LogicalRouterPolicy>()?
            .into_iter()
            .filter(|policy| policy.priority == i64::from(priority))
            .map(|policy| {
                policy
                    .nexthops
                    .iter()
                    .filter_map(|hop| hop.parse().ok())
                    .collect()
            })
            .collect())
    }

    /// The addresses whose NB `BFD` row OVN reports `down` or `admin_down`: in native mode
    /// northd leaves them out of their policies' flows (`init` still counts as alive).
    pub fn bfd_down(&self) -> Result<BTreeSet<IpAddr>, LabError> {
        let text = self.nbctl(&[
            "--format=csv",
            "--data=bare",
            "--no-headings",
            "--columns=dst_ip,status",
            "list",
            "BFD",
        ])?;
        Ok(text
            .lines()
            .filter_map(|line| line.split_once(','))
            .filter(|(_, status)| matches!(status.trim(), "down" | "admin_down"))
            .filter_map(|(ip, _)| ip.trim().parse().ok())
            .collect())
    }

    /// The nexthops that carry traffic, per policy of `priority`: all of them in monitor mode
    /// (the monitor writes only live ones), those without a dead BFD row in native mode.
    pub fn live_policy_nexthops(&self, priority: u32) -> Result<Vec<BTreeSet<IpAddr>>, LabError> {
        let down = self.bfd_down()?;
        Ok(self
            .policy_nexthops(priority)?
            .into_iter()
            .map(|hops| hops.difference(&down).copied().collect())
            .collect())
    }

    /// Creates a VPC router.
    pub fn add_router(&self, router: &str) -> Result<(), LabError> {
        self.nbctl(&["--may-exist", "lr-add", router]).map(|_| ())
    }

    /// Creates a subnet's switch, its router port and the 31000 allow policies.
    pub fn add_subnet(&self, router: &str, subnet: &LabSubnet) -> Result<(), LabError> {
        let lrp = format!("{router}-{}", subnet.name);
        let lsp = format!("{}-{router}", subnet.name);
        let networks: Vec<String> = subnet
            .cidrs
            .iter()
            .zip(&subnet.gateways)
            .map(|(cidr, gateway)| format!("{gateway}/{}", cidr.prefix_len()))
            .collect();
        let mac = mac(&lrp);
        let mut args: Vec<&str> = vec!["ls-add", &subnet.name, "--", "lrp-add", router, &lrp, &mac];
        args.extend(networks.iter().map(String::as_str));
        let options = format!("router-port={lrp}");
        args.extend([
            "--",
            "lsp-add",
            &subnet.name,
            &lsp,
            "--",
            "lsp-set-type",
            &lsp,
            "router",
            "--",
            "lsp-set-addresses",
            &lsp,
            "router",
            "--",
            "lsp-set-options",
            &lsp,
            &options,
        ]);
        self.nbctl(&args)?;
        for cidr in &subnet.cidrs {
            let family = match cidr {
                IpNet::V4(_) => "ip4",
                IpNet::V6(_) => "ip6",
            };
            let matching = format!("{family}.dst == {}", cidr.trunc());
            self.nbctl(&[
                "--may-exist",
                "lr-policy-add",
                router,
                "31000",
                &matching,
                "allow",
            ])?;
        }
        Ok(())
    }

    /// Creates a Pod on chassis `chassis`: a namespace with `eth0` bound to the switch port
    /// `<pod>.<namespace>`. Returns the namespace's name.
    pub fn add_pod(
        &self,
        switch: &str,
        pod: &LabPod,
        index: usize,
        chassis: &str,
    ) -> Result<String, LabError> {
        let chassis = self.chassis_named(chassis)?.clone();
        let netns = format!("{}-{}-{}", self.prefix(), pod.namespace, pod.name);
        self.create_namespace(&netns)?;
        let in_pod = |args: &[&str]| -> Result<String, LabError> {
            let mut command = Command::new("ip");
            command.args(["netns", "exec", &netns]).args(args);
            run(&args.join(" "), &mut command)
        };
        for key in ["default", "all"] {
            in_pod(&[
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{key}.accept_dad=0"),
            ])?;
        }
        let host_side = format!("{}v{index}", self.prefix());
        let host = chassis.namespace.clone();
        let mac = mac(&pod.port());
        ip(&[
            "-n", &host, "link", "add", &host_side, "type", "veth", "peer", "name", "eth0",
            "netns", &netns,
        ])?;
        ip(&["-n", &netns, "link", "set", "eth0", "address", &mac])?;
        in_pod(&["ethtool", "-K", "eth0", "tx", "off"])?;
        for address in &pod.addresses {
            ip(&[
                "-n",
                &netns,
                "addr",
                "add",
                &address.to_string(),
                "dev",
                "eth0",
                "nodad",
            ])?;
        }
        ip(&["-n", &netns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &host, "link", "set", &host_side, "up"])?;
        for gateway in &pod.gateways {
            let family = if gateway.is_ipv4() { "-4" } else { "-6" };
            ip(&[
                "-n",
                &netns,
                family,
                "route",
                "add",
                "default",
                "via",
                &gateway.to_string(),
            ])?;
        }
        let port = pod.port();
        let mut addresses = vec![mac.clone()];
        addresses.extend(pod.addresses.iter().map(|a| a.addr().to_string()));
        let addresses = addresses.join(" ");
        self.nbctl(&[
            "lsp-add",
            switch,
            &port,
            "--",
            "lsp-set-addresses",
            &port,
            &addresses,
        ])?;
        let iface = format!("external_ids:iface-id={port}");
        chassis.vsctl(
            self.install(),
            &[
                "add-port",
                "br-int",
                &host_side,
                "--",
                "set",
                "interface",
                &host_side,
                &iface,
            ],
        )?;
        // Where the Pod's port is bound (Kube-OVN sets it to the Pod's node).
        self.nbctl(&[
            "lsp-set-options",
            &port,
            &format!("requested-chassis={}", chassis.name),
        ])?;
        Ok(netns)
    }

    /// Creates Kube-OVN's port group of a node (`node.<name>`, dashes as dots) and returns
    /// the node's `ovn.kubernetes.io/port_name` annotation (`node-<name>`), which names it.
    pub fn add_node_port_group(&self, node: &str) -> Result<String, LabError> {
        let port_name = format!("node-{node}");
        self.nbctl(&["pg-add", &port_name.replace('-', ".")])?;
        Ok(port_name)
    }

    /// Adds the logical switch port `port` to the port group of `node` (Kube-OVN puts every
    /// Pod of the default VPC into its node's group).
    pub fn join_node_port_group(&self, node: &str, port: &str) -> Result<(), LabError> {
        let group = format!("node-{node}").replace('-', ".");
        let Some(lsp) = self
            .rows::<LogicalSwitchPort>()?
            .into_iter()
            .find(|lsp| lsp.name == port)
        else {
            return Err(LabError::Step {
                step: format!("adding {port} to {group}"),
                detail: "no such logical switch port".into(),
            });
        };
        self.nbctl(&["add", PortGroup::TABLE, &group, "ports", &lsp.uuid])
            .map(|_| ())
    }

    /// Waits until every chassis has applied the Northbound database.
    pub fn sync(&self) -> Result<(), LabError> {
        self.nbctl(&["--wait=hv", "--timeout=30", "sync"])
            .map(|_| ())
    }
}

/// Typed rows from `ovn-nbctl --format=json list` output (RFC 7047 notation in `data`).
fn parse_nbctl_list<T: NbRow>(text: &str) -> Result<Vec<T>, LabError> {
    let invalid = |detail: &str| LabError::Step {
        step: format!("reading {} from ovn-nbctl", T::TABLE),
        detail: detail.to_owned(),
    };
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|error| invalid(&error.to_string()))?;
    let headings: Vec<&str> = json["headings"]
        .as_array()
        .ok_or_else(|| invalid("no headings"))?
        .iter()
        .filter_map(serde_json::Value::as_str)
        .collect();
    let mut rows = Vec::new();
    for cells in json["data"].as_array().ok_or_else(|| invalid("no data"))? {
        let mut row = Row::new();
        let mut uuid = String::new();
        for (heading, cell) in headings.iter().zip(cells.as_array().into_iter().flatten()) {
            let value = Value::from_json(cell)
                .ok_or_else(|| invalid(&format!("{heading}: {cell} is not an OVSDB value")))?;
            if *heading == "_uuid" {
                uuid = value
                    .as_atom()
                    .and_then(|atom| atom.as_uuid())
                    .unwrap_or_default()
                    .to_owned();
            } else {
                row.insert((*heading).to_owned(), value);
            }
        }
        rows.push(T::from_row(&uuid, &row));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_are_stable_locally_administered_and_distinct() {
        assert_eq!(mac("web.default"), mac("web.default"));
        assert_ne!(mac("web.default"), mac("db.default"));
        assert!(mac("x").starts_with("0a:"));
        assert_eq!(mac("x").len(), 17);
    }

    #[test]
    fn nbctl_json_becomes_typed_rows() -> Result<(), LabError> {
        let text = r#"{"data":[[["uuid","055485ca-2e2c-4df3-a8c4-e370d1b541dc"],29000,"ip4.src == 198.51.100.1","reroute",["set",["198.51.100.2","198.51.100.3"]],["map",[]],["map",[["vpc-egress-gateway","default/gw"]]]]],"headings":["_uuid","priority","match","action","nexthops","options","external_ids"]}"#;
        let rows: Vec<LogicalRouterPolicy> = parse_nbctl_list(text)?;
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].uuid, "055485ca-2e2c-4df3-a8c4-e370d1b541dc");
        assert_eq!(rows[0].priority, 29000);
        assert_eq!(rows[0].match_, "ip4.src == 198.51.100.1");
        assert_eq!(rows[0].nexthops.len(), 2);
        assert_eq!(
            rows[0]
                .external_ids
                .get("vpc-egress-gateway")
                .map(String::as_str),
            Some("default/gw")
        );
        assert!(parse_nbctl_list::<LogicalRouterPolicy>("not json").is_err());
        Ok(())
    }
}
