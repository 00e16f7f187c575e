//! The external network: a namespace with a bridge (what macvlan Pods share) and the external
//! host's addresses on it; gateway Pods get their second leg (`net1`) as a veth into it, as
//! Multus would attach them.

use ipnet::IpNet;

use crate::command::ip;
use crate::error::LabError;
use crate::ovn::Ovn;

impl Ovn {
    /// The external network's namespace name.
    pub fn external_namespace(&self) -> String {
        format!("{}ext", self.prefix())
    }

    /// Creates the external network with the external host's `addresses` on its bridge.
    pub fn add_external(&self, addresses: &[IpNet]) -> Result<String, LabError> {
        let ns = self.external_namespace();
        self.create_namespace(&ns)?;
        for key in ["default", "all"] {
            let sysctl = format!("net.ipv6.conf.{key}.accept_dad=0");
            ip(&["netns", "exec", &ns, "sysctl", "-qw", &sysctl])?;
        }
        ip(&["-n", &ns, "link", "add", "br-ext", "type", "bridge"])?;
        // A bridge takes the lowest MAC of its ports unless it has its own: fix it, or the
        // external host's MAC would change whenever a gateway Pod attaches.
        ip(&[
            "-n",
            &ns,
            "link",
            "set",
            "br-ext",
            "address",
            "0a:00:00:00:00:01",
        ])?;
        for address in addresses {
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &address.to_string(),
                "dev",
                "br-ext",
                "nodad",
            ])?;
        }
        ip(&["-n", &ns, "link", "set", "br-ext", "up"])?;
        Ok(ns)
    }

    /// Gives the Pod namespace `pod_ns` an interface `net1` on the external bridge, with
    /// `addresses`. `index` keeps the bridge-side names apart.
    pub fn attach_external(
        &self,
        pod_ns: &str,
        addresses: &[IpNet],
        index: usize,
    ) -> Result<(), LabError> {
        let ns = self.external_namespace();
        let port = format!("{}x{index}", self.prefix());
        ip(&[
            "-n", &ns, "link", "add", &port, "type", "veth", "peer", "name", "net1", "netns",
            pod_ns,
        ])?;
        ip(&["-n", &ns, "link", "set", &port, "master", "br-ext", "up"])?;
        for address in addresses {
            ip(&[
                "-n",
                pod_ns,
                "addr",
                "add",
                &address.to_string(),
                "dev",
                "net1",
                "nodad",
            ])?;
        }
        ip(&["-n", pod_ns, "link", "set", "net1", "up"])
    }
}
