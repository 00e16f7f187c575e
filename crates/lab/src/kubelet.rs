//! The lab's kubelet: turns a gateway Deployment (as the controller decided it) into gateway
//! Pods — addresses from the requested IPs or the subnet (Kube-OVN's IPAM, simplified), `eth0`
//! on the internal switch, `net1` on the external bridge (Multus), the routes of the Pod's
//! annotations, then its containers as processes in the Pod's namespace — and reports each Pod
//! back as a manifest (status, `podIPs`, Multus' network-status), so the controller sees them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use ipnet::IpNet;
use serde_json::{Value as Json, json};

use crate::error::LabError;
use crate::ovn::Ovn;
use crate::topology::{LabPod, LabSubnet};

/// A subnet the kubelet can give addresses from.
#[derive(Clone, Debug)]
pub struct KubeletSubnet {
    /// The subnet.
    pub subnet: LabSubnet,
    /// `ovn` for the VPC's switches, `<nad>.<namespace>` for an attachment.
    pub provider: String,
}

struct RunningPod {
    netns: String,
    addresses: Vec<IpAddr>,
    children: Vec<Child>,
}

/// The kubelet of the lab's single node.
pub struct Kubelet {
    veg: PathBuf,
    manifests: PathBuf,
    run_dir: PathBuf,
    node: String,
    subnets: BTreeMap<String, KubeletSubnet>,
    allocated: BTreeSet<IpAddr>,
    pods: BTreeMap<String, RunningPod>,
    next_index: usize,
}

fn step(step: &str) -> impl Fn(String) -> LabError + '_ {
    move |detail| LabError::Step {
        step: step.to_owned(),
        detail,
    }
}

fn ip(args: &[&str]) -> Result<(), LabError> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| step("ip")(e.to_string()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(step(&format!("ip {}", args.join(" ")))(
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        ))
    }
}

impl Kubelet {
    /// A kubelet running containers with the `veg` binary, writing Pod manifests to
    /// `manifests`, keeping container state under `run_dir`.
    pub fn new(veg: &Path, manifests: &Path, run_dir: &Path, subnets: Vec<KubeletSubnet>) -> Self {
        Self {
            veg: veg.to_owned(),
            manifests: manifests.to_owned(),
            run_dir: run_dir.to_owned(),
            node: "lab-node".into(),
            subnets: subnets
                .into_iter()
                .map(|s| (s.subnet.name.clone(), s))
                .collect(),
            allocated: BTreeSet::new(),
            pods: BTreeMap::new(),
            next_index: 100,
        }
    }

    /// Marks an address as taken (a client Pod the lab created itself).
    pub fn reserve(&mut self, address: IpAddr) {
        self.allocated.insert(address);
    }

    fn allocate(
        &mut self,
        subnet: &LabSubnet,
        pinned: Option<&str>,
    ) -> Result<Vec<IpNet>, LabError> {
        let mut out = Vec::new();
        for cidr in &subnet.cidrs {
            let wanted: Option<IpAddr> = pinned.and_then(|text| {
                text.split(',')
                    .filter_map(|ip| ip.trim().parse::<IpAddr>().ok())
                    .find(|ip| cidr.contains(ip))
            });
            let address = match wanted {
                Some(address) => address,
                None => cidr
                    .hosts()
                    .skip(9) // leave the first addresses to the gateway and friends
                    .find(|ip| !self.allocated.contains(ip) && !subnet.gateways.contains(ip))
                    .ok_or_else(|| {
                        step("allocating an address")(format!("subnet {} is full", subnet.name))
                    })?,
            };
            self.allocated.insert(address);
            out.push(
                IpNet::new(address, cidr.prefix_len())
                    .map_err(|e| step("address")(e.to_string()))?,
            );
        }
        Ok(out)
    }

    /// Makes the Pods of `deployment` match it: creates missing replicas, deletes extra ones.
    pub fn apply_deployment(&mut self, ovn: &Ovn, deployment: &Json) -> Result<(), LabError> {
        let name = deployment["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let namespace = deployment["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let replicas = deployment["spec"]["replicas"].as_u64().unwrap_or(0) as usize;
        let template = &deployment["spec"]["template"];
        let wanted: BTreeSet<String> = (0..replicas).map(|i| format!("{name}-{i}")).collect();
        let existing: Vec<String> = self
            .pods
            .keys()
            .filter(|pod| pod.rsplit_once('-').is_some_and(|(base, _)| base == name))
            .cloned()
            .collect();
        for pod in existing.iter().filter(|pod| !wanted.contains(*pod)) {
            self.delete_pod(ovn, &namespace, pod)?;
        }
        for (index, pod) in wanted.iter().enumerate() {
            if !self.pods.contains_key(pod) {
                self.start_pod(ovn, &namespace, pod, index, template)?;
            }
        }
        // Report the Deployment as the API server would: all replicas updated and available.
        let mut reported = deployment.clone();
        reported["apiVersion"] = json!("apps/v1");
        reported["kind"] = json!("Deployment");
        reported["metadata"]["generation"] = json!(1);
        reported["status"] = json!({
            "observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas,
            "readyReplicas": replicas, "availableReplicas": replicas
        });
        let path = self
            .manifests
            .join(format!("deployment-{namespace}-{name}.yaml"));
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&reported).unwrap_or_default(),
        )
        .map_err(|e| step("writing the Deployment manifest")(e.to_string()))?;
        Ok(())
    }

    fn start_pod(
        &mut self,
        ovn: &Ovn,
        namespace: &str,
        pod: &str,
        replica: usize,
        template: &Json,
    ) -> Result<(), LabError> {
        let annotations = &template["metadata"]["annotations"];
        let get = |key: &str| annotations[key].as_str().map(str::to_owned);
        let switch = get("ovn.kubernetes.io/logical_switch").unwrap_or_default();
        let internal = self
            .subnets
            .get(&switch)
            .cloned()
            .ok_or_else(|| step("starting a gateway Pod")(format!("no subnet {switch:?}")))?;
        let pinned =
            |key: &str| get(key).and_then(|list| list.split(';').nth(replica).map(str::to_owned));
        let internal_addresses = self.allocate(
            &internal.subnet,
            pinned("ovn.kubernetes.io/ip_pool").as_deref(),
        )?;
        // Multus: `<ns>/<nad>` → provider `<nad>.<ns>`.
        let attachment = get("k8s.v1.cni.cncf.io/networks").unwrap_or_default();
        let provider = attachment
            .split_once('/')
            .map(|(ns, nad)| format!("{nad}.{ns}"))
            .unwrap_or_default();
        let external = self
            .subnets
            .values()
            .find(|s| s.provider == provider)
            .cloned()
            .ok_or_else(|| {
                step("starting a gateway Pod")(format!("no subnet for provider {provider:?}"))
            })?;
        let external_addresses = self.allocate(
            &external.subnet,
            pinned(&format!("{provider}.kubernetes.io/ip_pool")).as_deref(),
        )?;

        let index = self.next_index;
        self.next_index += 1;
        let lab_pod = LabPod {
            name: pod.to_owned(),
            namespace: namespace.to_owned(),
            addresses: internal_addresses.clone(),
            gateways: Vec::new(),
        };
        let netns = ovn.add_pod(&internal.subnet.name, &lab_pod, index)?;
        ovn.attach_external(&netns, &external_addresses, index)?;
        // The Pod's own default route first (Kube-OVN's), then the annotations' routes.
        for gateway in &internal.subnet.gateways {
            let family = if gateway.is_ipv4() { "-4" } else { "-6" };
            ip(&[
                "-n",
                &netns,
                family,
                "route",
                "replace",
                "default",
                "via",
                &gateway.to_string(),
                "dev",
                "eth0",
            ])?;
        }
        for (key, device) in [
            ("ovn.kubernetes.io/routes".to_owned(), "eth0"),
            (format!("{provider}.kubernetes.io/routes"), "net1"),
        ] {
            let routes: Vec<Json> = get(&key)
                .and_then(|text| serde_json::from_str(&text).ok())
                .unwrap_or_default();
            for route in routes {
                let (Some(dst), Some(gw)) = (route["dst"].as_str(), route["gw"].as_str()) else {
                    continue;
                };
                ip(&[
                    "-n", &netns, "route", "replace", dst, "via", gw, "dev", device,
                ])?;
            }
        }

        // Containers: the init container to completion, then the others.
        let run_dir = self.run_dir.join(pod);
        std::fs::create_dir_all(&run_dir).map_err(|e| step("run dir")(e.to_string()))?;
        let spec = &template["spec"];
        let command = |container: &Json| -> Command {
            let mut command = Command::new("ip");
            command.args(["netns", "exec", &netns]).arg(&self.veg);
            for arg in container["args"].as_array().into_iter().flatten() {
                let arg = arg
                    .as_str()
                    .unwrap_or_default()
                    .replace("/run/veg", &run_dir.display().to_string());
                command.arg(arg);
            }
            for var in container["env"].as_array().into_iter().flatten() {
                if let (Some(name), Some(value)) = (var["name"].as_str(), var["value"].as_str()) {
                    command.env(name, value);
                }
            }
            command
        };
        for container in spec["initContainers"].as_array().into_iter().flatten() {
            let output = command(container)
                .output()
                .map_err(|e| step("init container")(e.to_string()))?;
            if !output.status.success() {
                return Err(step(&format!("init container of {pod}"))(
                    String::from_utf8_lossy(&output.stderr).trim().to_owned(),
                ));
            }
        }
        let mut children = Vec::new();
        for container in spec["containers"].as_array().into_iter().flatten() {
            let name = container["name"].as_str().unwrap_or("container");
            let log = std::fs::File::create(run_dir.join(format!("{name}.log")))
                .map_err(|e| step("container log")(e.to_string()))?;
            let child = command(container)
                .stdin(Stdio::null())
                .stdout(log.try_clone().map_err(|e| step("log")(e.to_string()))?)
                .stderr(log)
                .spawn()
                .map_err(|e| step(&format!("starting container {name} of {pod}"))(e.to_string()))?;
            children.push(child);
        }

        // Report the Pod as the API server would show it.
        let internal_ips: Vec<String> = internal_addresses
            .iter()
            .map(|a| a.addr().to_string())
            .collect();
        let external_ips: Vec<String> = external_addresses
            .iter()
            .map(|a| a.addr().to_string())
            .collect();
        let mut annotations = annotations.as_object().cloned().unwrap_or_default();
        annotations.insert(
            "k8s.v1.cni.cncf.io/network-status".into(),
            json!(json!([{"name": "ovn", "ips": internal_ips}, {"name": attachment, "ips": external_ips}]).to_string()),
        );
        annotations.insert("ovn.kubernetes.io/allocated".into(), json!("true"));
        let manifest = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod, "namespace": namespace,
                "labels": template["metadata"]["labels"], "annotations": annotations},
            "spec": {"containers": [], "nodeName": self.node},
            "status": {"phase": "Running",
                "podIPs": internal_ips.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>(),
                "conditions": [{"type": "Ready", "status": "True"}]}
        });
        let path = self.manifests.join(format!("pod-{namespace}-{pod}.yaml"));
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&manifest).unwrap_or_default(),
        )
        .map_err(|e| step("writing the Pod manifest")(e.to_string()))?;
        self.pods.insert(
            pod.to_owned(),
            RunningPod {
                netns,
                addresses: internal_addresses
                    .iter()
                    .chain(&external_addresses)
                    .map(IpNet::addr)
                    .collect(),
                children,
            },
        );
        Ok(())
    }

    /// Stops a Pod's containers, removes its namespace, port and manifest.
    pub fn delete_pod(&mut self, ovn: &Ovn, namespace: &str, pod: &str) -> Result<(), LabError> {
        let Some(mut running) = self.pods.remove(pod) else {
            return Ok(());
        };
        for child in &mut running.children {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        for child in &mut running.children {
            let _ = child.wait();
        }
        let _ = ovn.nbctl(&["--if-exists", "lsp-del", &format!("{pod}.{namespace}")]);
        let _ = Command::new("ip")
            .args(["netns", "del", &running.netns])
            .status();
        for address in running.addresses {
            self.allocated.remove(&address);
        }
        let _ = std::fs::remove_file(self.manifests.join(format!("pod-{namespace}-{pod}.yaml")));
        Ok(())
    }

    /// Kills a Pod's containers (SIGKILL: a crash; no AdminDown, no goodbye); its namespace
    /// and addresses stay, as a dead Pod's would until it is deleted.
    pub fn kill_containers(&mut self, pod: &str) {
        if let Some(running) = self.pods.get_mut(pod) {
            for child in &mut running.children {
                let _ = child.kill();
                let _ = child.wait();
            }
            running.children.clear();
        }
    }

    /// The namespace of a running Pod.
    pub fn namespace_of(&self, pod: &str) -> Option<&str> {
        self.pods.get(pod).map(|p| p.netns.as_str())
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        for running in self.pods.values_mut() {
            for child in &mut running.children {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
