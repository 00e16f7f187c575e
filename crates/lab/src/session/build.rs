//! Bringing a lab up from its inputs, step by step: routers, subnets (with Kube-OVN's default
//! routes), the external host and its echo service, the API objects, client Pods, then veg's
//! controller and a monitor per VPC BFD port.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use serde_json::{Value as Json, json};

use super::*;

impl Lab {
    pub(super) fn build(
        &mut self,
        objects: &[(String, Json)],
        release: Option<&crate::deploy::Release>,
        started: Instant,
        progress: &mut dyn FnMut(&str, Duration),
    ) -> Result<(), LabError> {
        std::fs::create_dir_all(&self.api).map_err(|e| step("api dir")(e.to_string()))?;
        std::fs::create_dir_all(&self.decisions)
            .map_err(|e| step("decisions dir")(e.to_string()))?;
        let kind = |o: &Json| o["kind"].as_str().unwrap_or_default().to_owned();

        let bfd_ports = self.build_routers(objects)?;
        let subnets = objects
            .iter()
            .filter(|(_, o)| kind(o) == "Subnet")
            .map(|(_, o)| parse_subnet(o))
            .collect::<Result<Vec<_>, _>>()?;
        let external_addresses = self.build_subnets(&subnets)?;
        for (_, gateway) in objects.iter().filter(|(_, o)| kind(o) == "Pod") {
            for ip in gateway["status"]["podIPs"].as_array().into_iter().flatten() {
                if let Some(Ok(ip)) = ip["ip"].as_str().map(str::parse::<IpAddr>) {
                    self.kubelet.reserve(ip);
                }
            }
        }
        let placement = plan_nodes(&self.options.topology, self.options.chassis);
        let nodes: Vec<String> = placement.iter().map(|(node, _)| node.clone()).collect();
        self.kubelet.set_nodes(placement.clone());
        self.state.nodes = placement.iter().cloned().collect();
        self.kubelet.set_record(&self.options.state_dir);
        progress(
            &format!(
                "topology: routers {}, subnets {}",
                self.routers.join(", "),
                subnets
                    .iter()
                    .map(|s| format!(
                        "{} {}",
                        s.subnet.name,
                        s.subnet
                            .cidrs
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(",")
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            started.elapsed(),
        );

        self.start_external(&external_addresses, started, progress)?;
        self.write_api_objects(objects, &nodes)?;

        // Client Pods.
        let clients = self.options.topology.pods.clone();
        for client in &clients {
            self.add_client(client, &subnets, &nodes)?;
        }
        if !clients.is_empty() {
            progress(
                &format!(
                    "client Pods: {}",
                    clients
                        .iter()
                        .map(|c| format!("{}/{}", c.namespace, c.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                started.elapsed(),
            );
        }

        // veg: the controller, and (monitor mode) a monitor per VPC with a BFD address —
        // the overlay's Deployments through the kubelet, or started by the lab.
        let native = self.options.bfd_mode == BfdMode::Native;
        match release {
            Some(release) => self.start_release(release, &bfd_ports)?,
            None => self.start_controller()?,
        }
        for port in &bfd_ports {
            if native {
                self.prepare_native_bfd(port, &subnets)?;
            } else if release.is_none() {
                self.start_monitor(port, &subnets, &nodes)?;
            }
        }
        if let (Some(_), Some(overlay)) = (release, &self.options.deploy) {
            let pods: Vec<String> = self
                .kubelet
                .pods()
                .into_iter()
                .filter(|(_, p)| p.role == "controller" || p.role == "monitor")
                .map(|(key, p)| format!("{key} on {}", p.node))
                .collect();
            progress(
                &format!(
                    "veg's Deployments from {} (kubectl kustomize), run by the kubelet with their \
                     security context: {}",
                    overlay.display(),
                    pods.join(", ")
                ),
                started.elapsed(),
            );
        }
        progress(
            &format!(
                "veg controller ({} mode){}",
                self.options.bfd_mode.name(),
                if bfd_ports.is_empty() {
                    String::new()
                } else {
                    let ports = bfd_ports
                        .iter()
                        .map(|(r, _, ips)| {
                            format!(
                                "{r} ({})",
                                ips.iter()
                                    .map(ToString::to_string)
                                    .collect::<Vec<_>>()
                                    .join(",")
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(", ");
                    if native {
                        format!(" and OVN's BFD port on {ports}")
                    } else if release.is_some() {
                        // The overlay's monitors have addresses of their own.
                        format!(", the veg-monitor Pods serving {ports}")
                    } else {
                        format!(" and veg monitor on {ports}")
                    }
                }
            ),
            started.elapsed(),
        );
        if native && !bfd_ports.is_empty() {
            // As Kube-OVN's controller would before any gateway is planned: the VPCs' BFD
            // ports made and reported in their status.
            let vpcs: Vec<String> = bfd_ports
                .iter()
                .map(|(router, _, _)| router.clone())
                .collect();
            self.wait_for("the VPCs' BFD ports", Duration::from_secs(20), |lab| {
                Ok(vpcs.iter().all(|vpc| {
                    crate::api::find(&lab.api, &("Vpc".into(), String::new(), vpc.clone()))
                        .ok()
                        .flatten()
                        .is_some_and(|(_, o)| o["status"]["bfdPort"]["name"].is_string())
                }))
            })?;
            progress("VPC BFD ports made by the controller", started.elapsed());
        }
        self.write_state()?;
        Ok(())
    }

    /// The overlay's controller and monitors, run by the kubelet as any Pod: its ConfigMaps,
    /// the lab's API writable for Pods with their own ServiceAccount token, Pods that name no
    /// subnet on the default VPC's.
    fn start_release(
        &mut self,
        release: &crate::deploy::Release,
        bfd_ports: &[BfdPortSpec],
    ) -> Result<(), LabError> {
        for (namespace, name, data) in &release.config_maps {
            self.kubelet.set_config_map(namespace, name, data.clone());
        }
        // Its Pods run as any user: they write the decisions as the controller's uid.
        std::fs::set_permissions(
            &self.decisions,
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .map_err(|e| step("decisions dir")(e.to_string()))?;
        self.kubelet.set_api_paths(vec![self.decisions.clone()]);
        let default_subnet = bfd_ports
            .iter()
            .find(|(router, _, _)| router == "ovn-cluster")
            .map(|(_, switch, _)| switch.clone())
            .unwrap_or_else(|| "ovn-default".into());
        self.kubelet.set_default_subnet(&default_subnet);
        // The VPCs' BFD addresses belong to their ports (native) or to nobody (monitor mode,
        // where the monitors have addresses of their own): no Pod may take them.
        for (_, _, ips) in bfd_ports {
            for ip in ips {
                self.kubelet.reserve(*ip);
            }
        }
        // A refused Pod (Pod Security, sysctls) fails the lab with the admission's reason.
        let no_costs = BTreeMap::new();
        for deployment in std::iter::once(&release.controller).chain(&release.monitor) {
            if let Some(reason) = self
                .kubelet
                .apply_deployment(&self.ovn, deployment, &no_costs)?
            {
                let (_, namespace, name) = crate::api::key_of(deployment);
                return Err(step(&format!("starting {namespace}/{name}"))(reason));
            }
        }
        Ok(())
    }

    /// Every Vpc's router (its `status.router`, else its name) and `ovn-cluster`; returns the
    /// VPC BFD ports the monitors serve.
    fn build_routers(&mut self, objects: &[(String, Json)]) -> Result<Vec<BfdPortSpec>, LabError> {
        let mut routers: BTreeSet<String> = BTreeSet::from(["ovn-cluster".to_owned()]);
        let mut bfd_ports: Vec<BfdPortSpec> = Vec::new();
        for (_, vpc) in objects.iter().filter(|(_, o)| o["kind"] == "Vpc") {
            let name = vpc["metadata"]["name"].as_str().unwrap_or_default();
            let router = vpc["status"]["router"]
                .as_str()
                .filter(|r| !r.is_empty())
                .unwrap_or(name)
                .to_owned();
            routers.insert(router.clone());
            // The address the user asked for (`spec.bfdPort`), else the one Kube-OVN reports.
            let requested = &vpc["spec"]["bfdPort"];
            let ips: Vec<IpAddr> = veg_api::kubeovn::list_addresses(
                requested["ip"]
                    .as_str()
                    .filter(|_| requested["enabled"] == true)
                    .or(vpc["status"]["bfdPort"]["ip"].as_str())
                    .unwrap_or_default(),
            );
            if !ips.is_empty() {
                let switch = vpc["status"]["defaultLogicalSwitch"]
                    .as_str()
                    .unwrap_or("ovn-default")
                    .to_owned();
                bfd_ports.push((router, switch, ips));
            }
        }
        for router in &routers {
            self.ovn.add_router(router)?;
        }
        self.routers = routers.iter().cloned().collect();
        Ok(bfd_ports)
    }

    /// Internal subnets become switches on their VPC's router (with Kube-OVN's default route);
    /// the others (a NAD's provider) the external network, whose gateways are the external
    /// host's addresses (returned).
    fn build_subnets(&mut self, subnets: &[ManifestSubnet]) -> Result<Vec<IpNet>, LabError> {
        let mut external_addresses = Vec::new();
        let mut kubelet_subnets = Vec::new();
        let mut default_routes: BTreeMap<(String, bool), IpAddr> = BTreeMap::new();
        for subnet in subnets {
            if subnet.internal() {
                let router = if subnet.vpc == "ovn-cluster" || self.routers.contains(&subnet.vpc) {
                    subnet.vpc.clone()
                } else {
                    return Err(step(&format!("Subnet {}", subnet.subnet.name))(format!(
                        "its VPC {} has no Vpc manifest",
                        subnet.vpc
                    )));
                };
                self.ovn.add_subnet(&router, &subnet.subnet)?;
                // Kube-OVN's join-subnet default route, to an address nobody holds: OVN routes
                // before it applies policies, so rerouting needs a route to start from.
                for cidr in &subnet.subnet.cidrs {
                    let last = match cidr {
                        IpNet::V4(c) => c.hosts().last().map(IpAddr::V4),
                        IpNet::V6(c) => c.hosts().last().map(IpAddr::V6),
                    };
                    if let Some(last) = last {
                        default_routes
                            .entry((router.clone(), cidr.addr().is_ipv4()))
                            .or_insert(last);
                    }
                }
            } else {
                for (cidr, gateway) in subnet.subnet.cidrs.iter().zip(&subnet.subnet.gateways) {
                    external_addresses.push(
                        IpNet::new(*gateway, cidr.prefix_len())
                            .map_err(|e| step("external address")(e.to_string()))?,
                    );
                }
            }
            kubelet_subnets.push(KubeletSubnet {
                subnet: subnet.subnet.clone(),
                provider: if subnet.internal() {
                    "ovn".into()
                } else {
                    subnet.provider.clone()
                },
            });
        }
        for ((router, v4), via) in &default_routes {
            let prefix = if *v4 { "0.0.0.0/0" } else { "::/0" };
            self.ovn.nbctl(&[
                "--may-exist",
                "lr-route-add",
                router,
                prefix,
                &via.to_string(),
            ])?;
        }
        self.kubelet.set_subnets(kubelet_subnets);
        Ok(external_addresses)
    }

    /// The external host and its echo service.
    fn start_external(
        &mut self,
        external_addresses: &[IpNet],
        started: Instant,
        progress: &mut dyn FnMut(&str, Duration),
    ) -> Result<(), LabError> {
        if !external_addresses.is_empty() {
            self.ovn.add_external(external_addresses)?;
            self.state.external_addresses = external_addresses.iter().map(IpNet::addr).collect();
            let script = self.options.state_dir.join("echo.py");
            std::fs::write(&script, ECHO).map_err(|e| step("echo.py")(e.to_string()))?;
            std::fs::write(self.options.state_dir.join("ask.py"), ASK)
                .map_err(|e| step("ask.py")(e.to_string()))?;
            let log = self.options.state_dir.join("echo.log");
            let mut command = Command::new("ip");
            command
                .args(["netns", "exec", &self.state.external, "python3"])
                .arg(&script)
                .arg(ECHO_PORT.to_string());
            self.spawn("echo", command, &log)?;
            progress(
                &format!(
                    "external host {} with its echo service on port {ECHO_PORT}",
                    self.state
                        .external_addresses
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                started.elapsed(),
            );
        }
        Ok(())
    }

    /// The API objects: the manifests, then what the lab adds (namespaces, nodes).
    fn write_api_objects(
        &mut self,
        objects: &[(String, Json)],
        nodes: &[String],
    ) -> Result<(), LabError> {
        let kind = |o: &Json| o["kind"].as_str().unwrap_or_default().to_owned();
        for (index, (_, object)) in objects.iter().enumerate() {
            let name = object["metadata"]["name"].as_str().unwrap_or("object");
            let path = self.api.join(format!(
                "{index:03}-{}-{name}.yaml",
                kind(object).to_lowercase()
            ));
            if kind(object) == "Vpc" {
                write_json(&path, &self.vpc_for_mode(object))?;
            } else {
                write_json(&path, object)?;
            }
        }
        // Pod Security levels, as the namespaces' enforce labels set them.
        let mut levels = BTreeMap::new();
        let labelled = objects
            .iter()
            .filter(|(_, o)| kind(o) == "Namespace")
            .map(|(_, o)| {
                (
                    o["metadata"]["name"].clone(),
                    o["metadata"]["labels"].clone(),
                )
            })
            .chain(
                self.options
                    .topology
                    .namespaces
                    .iter()
                    .map(|(name, labels)| {
                        (
                            Json::from(name.as_str()),
                            serde_json::to_value(labels).unwrap_or_default(),
                        )
                    }),
            );
        for (name, labels) in labelled {
            let level = labels["pod-security.kubernetes.io/enforce"]
                .as_str()
                .and_then(crate::podsecurity::Level::parse);
            if let (Some(name), Some(level)) = (name.as_str(), level) {
                levels.insert(name.to_owned(), level);
            }
        }
        // The operator's labels (`--pod-security`) over the manifests'.
        levels.extend(self.options.pod_security.clone());
        self.kubelet.set_pod_security(levels);
        self.kubelet
            .set_allowed_unsafe_sysctls(self.options.allowed_unsafe_sysctls.clone());
        let known_namespaces: BTreeSet<String> = objects
            .iter()
            .filter(|(_, o)| kind(o) == "Namespace")
            .filter_map(|(_, o)| o["metadata"]["name"].as_str().map(str::to_owned))
            .collect();
        let mut wanted_namespaces: BTreeSet<String> = self
            .options
            .topology
            .pods
            .iter()
            .map(|p| p.namespace.clone())
            .collect();
        wanted_namespaces.extend(self.options.topology.namespaces.keys().cloned());
        wanted_namespaces.insert("kube-system".into());
        for namespace in wanted_namespaces.difference(&known_namespaces) {
            let mut labels = self
                .options
                .topology
                .namespaces
                .get(namespace)
                .cloned()
                .unwrap_or_default();
            labels.insert("kubernetes.io/metadata.name".into(), namespace.clone());
            write_json(
                &self.api.join(format!("namespace-{namespace}.yaml")),
                &json!({"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": namespace, "labels": labels}}),
            )?;
        }
        self.kubelet
            .set_node_labels(self.options.topology.node_labels.clone());
        for node in nodes {
            let port_name = self.ovn.add_node_port_group(node)?;
            let mut labels = self
                .options
                .topology
                .node_labels
                .get(node)
                .cloned()
                .unwrap_or_default();
            labels.insert("kubernetes.io/hostname".into(), node.clone());
            // As Kube-OVN annotates them: the node's port and its OVN chassis.
            write_json(
                &self.api.join(format!("node-{node}.yaml")),
                &json!({"apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": node, "labels": labels,
                        "annotations": {"ovn.kubernetes.io/port_name": port_name,
                            "ovn.kubernetes.io/chassis": self.kubelet.chassis_of(node)}},
                    "status": {"conditions": [
                        {"type": "Ready", "status": "True", "reason": "KubeletReady"}]}}),
            )?;
        }
        Ok(())
    }

    /// A Vpc as the controller sees it in this mode. Native: `spec.bfdPort` enabled with the
    /// VPC's BFD address (taken from `status.bfdPort` when the manifest has no spec), so the
    /// controller creates `bfd@<vpc>`. Monitor: no `spec.bfdPort` — the address belongs to
    /// the monitor's Pod, and a router port claiming it would swallow the gateways' replies.
    fn vpc_for_mode(&self, vpc: &Json) -> Json {
        let mut vpc = vpc.clone();
        let requested = vpc["spec"]["bfdPort"].clone();
        match self.options.bfd_mode {
            BfdMode::Native => {
                let reported = vpc["status"]["bfdPort"]["ip"].clone();
                if requested["enabled"] != true && reported.is_string() {
                    vpc["spec"]["bfdPort"] = json!({"enabled": true, "ip": reported});
                }
            }
            BfdMode::Monitor => {
                if let Some(spec) = vpc["spec"].as_object_mut() {
                    spec.remove("bfdPort");
                }
                // The monitor holds the address; the gateways learn it where Kube-OVN reports
                // a VPC's BFD port.
                let name = vpc["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                if requested["enabled"] == true && !vpc["status"]["bfdPort"].is_object() {
                    vpc["status"]["bfdPort"] =
                        json!({"name": format!("bfd@{name}"), "ip": requested["ip"].clone()});
                }
            }
        }
        vpc
    }

    /// Native mode, for a VPC's BFD port that the controller creates: its addresses kept
    /// from Pods, and the lab-only workaround for ovn-controller's BFD transmit stall.
    fn prepare_native_bfd(
        &mut self,
        (_, switch, ips): &BfdPortSpec,
        subnets: &[ManifestSubnet],
    ) -> Result<(), LabError> {
        for ip in ips {
            self.kubelet.reserve(*ip);
        }
        // pinctrl stops sending BFD and checking detection times when no packet wakes it
        // (shared reference native-bfd-on-kube-ovn-ovn.md §5.1: the last live peer's session
        // then stays `up`). A busy node's other packet-ins hide this; a quiet lab needs an IGMP
        // querier on a switch of the chassis to keep pinctrl awake (one query per 150 s).
        let source = subnets
            .iter()
            .find(|s| &s.subnet.name == switch)
            .and_then(|s| s.subnet.gateways.iter().copied().find(IpAddr::is_ipv4));
        let mut args = vec![
            "set".to_owned(),
            "Logical_Switch".to_owned(),
            switch.clone(),
            "other_config:mcast_snoop=true".to_owned(),
            "other_config:mcast_querier=true".to_owned(),
            format!(
                "other_config:mcast_eth_src={}",
                crate::topology::mac(switch)
            ),
        ];
        if let Some(source) = source {
            args.push(format!("other_config:mcast_ip4_src={source}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.ovn.nbctl(&args).map(drop)
    }

    /// `veg monitor` for a VPC's BFD port, as a Pod on the port's subnet.
    fn start_monitor(
        &mut self,
        (router, switch, ips): &BfdPortSpec,
        subnets: &[ManifestSubnet],
        nodes: &[String],
    ) -> Result<(), LabError> {
        let Some(subnet) = subnets.iter().find(|s| &s.subnet.name == switch) else {
            return Err(step(&format!("the BFD port of {router}"))(format!(
                "its default subnet {switch} has no Subnet manifest"
            )));
        };
        let addresses = subnet
            .subnet
            .cidrs
            .iter()
            .filter_map(|cidr| {
                let ip = ips.iter().find(|ip| cidr.contains(*ip))?;
                IpNet::new(*ip, cidr.prefix_len()).ok()
            })
            .collect::<Vec<_>>();
        for address in &addresses {
            self.kubelet.reserve(address.addr());
        }
        let pod = LabPod {
            name: format!("veg-monitor-{router}"),
            namespace: "kube-system".into(),
            addresses: addresses.clone(),
            gateways: subnet.subnet.gateways.clone(),
        };
        let index = self.kubelet.next_index();
        let chassis = self.kubelet.chassis_of(&nodes[0]);
        let netns = self
            .ovn
            .add_pod(&subnet.subnet.name, &pod, index, &chassis)?;
        let locals = ips
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let socket = self
            .options
            .state_dir
            .join(format!("monitor-{router}.sock"));
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &netns])
            .arg(&self.options.veg)
            .args(["monitor", "--nb", &self.state.nb, "--vpc", router])
            .args(["--local", &locals, "--holder", "lab-monitor"])
            .arg("--control-socket")
            .arg(&socket)
            .args(["--log-format", "json"]);
        let log = self
            .options
            .state_dir
            .join(format!("veg-monitor-{router}.log"));
        self.spawn(&format!("monitor-{router}"), command, &log)?;
        self.state.pods.insert(
            format!("kube-system/{}", pod.name),
            PodState {
                netns,
                role: "monitor".into(),
                addresses: ips.clone(),
                node: nodes[0].clone(),
                state: "Running".into(),
                // A daemon the lab runs itself: no probe.
                ready: (1, 1),
            },
        );
        Ok(())
    }

    fn add_client(
        &mut self,
        client: &ClientPod,
        subnets: &[ManifestSubnet],
        nodes: &[String],
    ) -> Result<(), LabError> {
        let what = format!("client Pod {}/{}", client.namespace, client.name);
        let subnet = subnets
            .iter()
            .find(|s| s.subnet.name == client.subnet && s.internal())
            .ok_or_else(|| {
                step(&what)(format!(
                    "no internal Subnet {} in the manifests",
                    client.subnet
                ))
            })?;
        let node = client.node.clone().unwrap_or_else(|| nodes[0].clone());
        if !nodes.contains(&node) {
            return Err(step(&what)(format!(
                "node {node} is not in the topology's nodes"
            )));
        }
        let pinned = client
            .ips
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let addresses = self.kubelet.allocate(
            &subnet.subnet,
            (!pinned.is_empty()).then_some(pinned.as_str()),
        )?;
        let pod = LabPod {
            name: client.name.clone(),
            namespace: client.namespace.clone(),
            addresses: addresses.clone(),
            gateways: subnet.subnet.gateways.clone(),
        };
        let index = self.kubelet.next_index();
        let chassis = self.kubelet.chassis_of(&node);
        let netns = self
            .ovn
            .add_pod(&subnet.subnet.name, &pod, index, &chassis)?;
        self.ovn.join_node_port_group(&node, &pod.port())?;
        let ips: Vec<IpAddr> = addresses.iter().map(IpNet::addr).collect();
        let router = if subnet.vpc.is_empty() {
            "ovn-cluster"
        } else {
            &subnet.vpc
        };
        write_json(
            &self
                .api
                .join(format!("pod-{}-{}.yaml", client.namespace, client.name)),
            &json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": client.name, "namespace": client.namespace,
                    "labels": client.labels,
                    "annotations": {"ovn.kubernetes.io/allocated": "true",
                        "ovn.kubernetes.io/logical_router": router,
                        "ovn.kubernetes.io/logical_switch": subnet.subnet.name}},
                "spec": {"containers": [], "nodeName": node},
                "status": {"phase": "Running",
                    "podIPs": ips.iter().map(|ip| json!({"ip": ip.to_string()})).collect::<Vec<_>>()}
            }),
        )?;
        self.state.pods.insert(
            format!("{}/{}", client.namespace, client.name),
            PodState {
                netns,
                role: "client".into(),
                addresses: ips,
                node,
                state: "Running".into(),
                // A network namespace with no process to probe.
                ready: (1, 1),
            },
        );
        Ok(())
    }
}
