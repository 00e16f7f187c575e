//! The lab's kubelet: turns a gateway Deployment (as the controller decided it) into gateway
//! Pods — addresses from the requested IPs or the subnet (Kube-OVN's IPAM, simplified), `eth0`
//! on the internal switch, `net1` on the external bridge (Multus), the routes of the Pod's
//! annotations, then its containers as processes in the Pod's namespace — and reports each Pod
//! back as a manifest (status, `podIPs`, Multus' network-status), so the controller sees them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use serde_json::{Value as Json, json};
use tracing::{debug, warn};

use crate::command::{ip, run, step, write_json};
use crate::error::LabError;
use crate::ovn::{Ovn, record_child};
use crate::podsecurity::{self, Level};
use crate::podspec::{self, PodFacts};
use crate::readiness::{self, ProbeAction, ProbeState, ReadinessProbe};
use crate::scheduler::{self, NodeView};
use crate::topology::{LabPod, LabSubnet};

/// One Pod of the lab.
#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize, PartialEq)]
pub struct PodState {
    /// Its network namespace.
    pub netns: String,
    /// `client`, `gateway` or `monitor`.
    pub role: String,
    pub addresses: Vec<IpAddr>,
    pub node: String,
    /// Running, Killed, Cut, UplinkCut.
    pub state: String,
    /// Its containers that are Ready (running, readiness probe passing) and all of them.
    #[serde(default)]
    pub ready: (usize, usize),
}

/// A subnet the kubelet can give addresses from.
#[derive(Clone, Debug)]
pub struct KubeletSubnet {
    pub subnet: LabSubnet,
    /// `ovn` for the VPC's switches, `<nad>.<namespace>` for an attachment.
    pub provider: String,
}

struct RunningPod {
    namespace: String,
    netns: String,
    node: String,
    addresses: Vec<IpAddr>,
    /// The far ends of its legs: the OVS port in the chassis namespace, the bridge port.
    host_side: String,
    /// The namespace of its chassis (where `host_side` is).
    host_namespace: String,
    /// The external leg's bridge port (Pods with a Multus attachment).
    bridge_side: Option<String>,
    template: Json,
    children: Vec<Child>,
    /// When it was killed; the kubelet restarts it after the restart delay.
    killed: Option<Instant>,
    /// Its node is down: nothing restarts it until the node is back.
    node_down: bool,
    cut: Option<&'static str>,
    /// Its containers' readiness probes, restarted with the containers.
    readiness: Vec<ProbeState>,
    /// Its manifest as last reported, and whether that said Ready.
    manifest: Json,
    reported_ready: bool,
}

/// A Pod no node fits yet (`Pending`, PodScheduled `False`); tried again on every sync.
struct PendingPod {
    namespace: String,
    replica: usize,
    template: Json,
    /// The scheduler's reason, as last reported.
    reason: String,
}

/// The kubelet of the lab's nodes (and their scheduler).
pub struct Kubelet {
    veg: PathBuf,
    manifests: PathBuf,
    run_dir: PathBuf,
    subnets: BTreeMap<String, KubeletSubnet>,
    allocated: BTreeSet<IpAddr>,
    pods: BTreeMap<String, RunningPod>,
    next_index: usize,
    /// Nodes in order, with the chassis each runs on.
    nodes: Vec<(String, String)>,
    record: Option<PathBuf>,
    /// Each namespace's Pod Security level (its `pod-security.kubernetes.io/enforce` label);
    /// unlabelled namespaces are `privileged`, as in a stock cluster.
    pod_security: BTreeMap<String, Level>,
    /// `--allowed-unsafe-sysctls` (empty, as a stock kubelet's).
    allowed_unsafe_sysctls: Vec<String>,
    /// ConfigMaps by namespace and name: their data.
    config_maps: BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>>,
    /// The lab's API (directories): what a Pod with its own ServiceAccount token may write.
    api_paths: Vec<PathBuf>,
    /// The subnet of Pods that name none (Kube-OVN's default subnet).
    default_subnet: Option<String>,
    /// Pods waiting for a node.
    pending: BTreeMap<String, PendingPod>,
    /// Each node's labels (beyond `kubernetes.io/hostname`).
    node_labels: BTreeMap<String, BTreeMap<String, String>>,
    /// Nodes that crashed: nothing new is scheduled there.
    down_nodes: BTreeSet<String>,
    /// Each Deployment as last reported (namespace, name): itself, replicas, refusal.
    deployments: BTreeMap<(String, String), (Json, usize, Option<String>)>,
}

/// Why a stock cluster would not run a Pod of this template in `namespace`: Pod Security
/// admission at `level`, then the kubelet's sysctl allowlist. Kubernetes' wording.
pub fn refusal(
    pod: &str,
    level: Level,
    allowed_unsafe_sysctls: &[String],
    template: &Json,
) -> Option<String> {
    let reasons = podsecurity::violations(level, &template["spec"]);
    if !reasons.is_empty() {
        return Some(format!(
            "pods {pod:?} is forbidden: violates PodSecurity \"{}:latest\": {}",
            level.as_str(),
            reasons.join(", ")
        ));
    }
    podsecurity::forbidden_sysctl(&template["spec"], allowed_unsafe_sysctls)
        .map(|message| format!("SysctlForbidden: {message}"))
}

/// The command that starts a container's process as a container runtime would: its uid and
/// gid, the capability bounding set from its securityContext (nothing inheritable or ambient,
/// so the kernel leaves a non-root process none effective), no_new_privs, and /proc/sys
/// read-only unless privileged, and with `readOnlyRootFilesystem` everything read-only but the
/// Pod's volumes `writable` (its emptyDir first). `ip netns exec` gives the process its own
/// mount namespace, so these mounts do not leak.
fn container_command(
    netns: &str,
    container: &Json,
    pod_spec: &Json,
    writable: &[PathBuf],
) -> Command {
    let privileges = podsecurity::process_privileges(container, pod_spec, &[]);
    let mut command = Command::new("ip");
    command.args(["netns", "exec", netns]);
    if container["securityContext"]["privileged"] == true {
        return command;
    }
    let read_only_root = container["securityContext"]["readOnlyRootFilesystem"] == true;
    // Arguments: `ro` or `rw` (the root), the writable paths up to `--`, the command after.
    command.args([
        "sh",
        "-c",
        "mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys || exit 1; \
         root=\"$1\"; shift; while [ \"$1\" != -- ]; do mount --bind \"$1\" \"$1\" || exit 1; \
         shift; done; shift; if [ \"$root\" = ro ]; then mount -o remount,bind,ro / || exit 1; fi; \
         exec \"$@\"",
        "container",
    ]);
    if read_only_root {
        command.arg("ro").args(writable);
    } else {
        command.arg("rw");
    }
    command.arg("--");
    let mut bounding = "-all".to_owned();
    for capability in &privileges.bounding {
        bounding.push_str(&format!(",+{}", capability.to_lowercase()));
    }
    command.args([
        "setpriv".to_owned(),
        format!("--reuid={}", privileges.uid),
        format!("--regid={}", privileges.gid),
        "--clear-groups".to_owned(),
        "--inh-caps=-all".to_owned(),
        "--ambient-caps=-all".to_owned(),
        format!("--bounding-set={bounding}"),
    ]);
    if privileges.no_new_privs {
        command.arg("--no-new-privs");
    }
    command
}

impl Kubelet {
    /// A kubelet running containers with the `veg` binary, writing Pod manifests to
    /// `manifests`, keeping container state under `run_dir`.
    pub fn new(veg: &Path, manifests: &Path, run_dir: &Path, subnets: Vec<KubeletSubnet>) -> Self {
        Self {
            veg: veg.to_owned(),
            manifests: manifests.to_owned(),
            run_dir: run_dir.to_owned(),
            subnets: subnets
                .into_iter()
                .map(|s| (s.subnet.name.clone(), s))
                .collect(),
            allocated: BTreeSet::new(),
            pods: BTreeMap::new(),
            next_index: 100,
            nodes: vec![("lab-node".into(), "lab-node".into())],
            record: None,
            pod_security: BTreeMap::new(),
            allowed_unsafe_sysctls: Vec::new(),
            config_maps: BTreeMap::new(),
            api_paths: Vec::new(),
            default_subnet: None,
            pending: BTreeMap::new(),
            node_labels: BTreeMap::new(),
            down_nodes: BTreeSet::new(),
            deployments: BTreeMap::new(),
        }
    }

    /// Nodes' labels, as their Node objects carry them.
    pub fn set_node_labels(&mut self, labels: BTreeMap<String, BTreeMap<String, String>>) {
        self.node_labels = labels;
    }

    /// The nodes as the scheduler sees them: labels, alive or not, the Pods on each.
    fn node_views(&self) -> Vec<NodeView> {
        self.nodes
            .iter()
            .map(|(name, _)| {
                let mut labels = self.node_labels.get(name).cloned().unwrap_or_default();
                labels.insert("kubernetes.io/hostname".into(), name.clone());
                NodeView {
                    name: name.clone(),
                    labels,
                    down: self.down_nodes.contains(name),
                    pods: self
                        .pods
                        .values()
                        .filter(|p| &p.node == name)
                        .map(|p| {
                            let labels = p.template["metadata"]["labels"]
                                .as_object()
                                .into_iter()
                                .flatten()
                                .map(|(k, v)| {
                                    (k.clone(), v.as_str().unwrap_or_default().to_owned())
                                })
                                .collect();
                            (p.namespace.clone(), labels)
                        })
                        .collect(),
                }
            })
            .collect()
    }

    /// Pods waiting for a node: scheduled again (a node came back, another Pod left).
    pub fn retry_pending(&mut self, ovn: &Ovn) -> Result<(), LabError> {
        let waiting: Vec<(String, String, usize, Json)> = self
            .pending
            .iter()
            .map(|(pod, p)| {
                (
                    pod.clone(),
                    p.namespace.clone(),
                    p.replica,
                    p.template.clone(),
                )
            })
            .collect();
        for (pod, namespace, replica, template) in waiting {
            self.start_pod(ovn, &namespace, &pod, replica, &template)?;
        }
        Ok(())
    }

    /// A ConfigMap's data, for the containers' `envFrom` / `configMapKeyRef`.
    pub fn set_config_map(&mut self, namespace: &str, name: &str, data: BTreeMap<String, String>) {
        self.config_maps
            .entry(namespace.to_owned())
            .or_default()
            .insert(name.to_owned(), data);
    }

    /// The lab's API directories, writable for Pods that carry their own ServiceAccount token
    /// (the lab has no API server: its API is files).
    pub fn set_api_paths(&mut self, paths: Vec<PathBuf>) {
        self.api_paths = paths;
    }

    /// The subnet of Pods whose template names none (`ovn.kubernetes.io/logical_switch`).
    pub fn set_default_subnet(&mut self, subnet: &str) {
        self.default_subnet = Some(subnet.to_owned());
    }

    /// Each namespace's Pod Security level, from the namespaces' labels.
    /// The kubelet's `--allowed-unsafe-sysctls` (default empty, as a stock kubelet's).
    pub fn set_allowed_unsafe_sysctls(&mut self, sysctls: Vec<String>) {
        self.allowed_unsafe_sysctls = sysctls;
    }

    pub fn set_pod_security(&mut self, levels: BTreeMap<String, Level>) {
        self.pod_security = levels;
    }

    /// Replaces the subnets it gives addresses from.
    pub fn set_subnets(&mut self, subnets: Vec<KubeletSubnet>) {
        self.subnets = subnets
            .into_iter()
            .map(|s| (s.subnet.name.clone(), s))
            .collect();
    }

    /// The nodes gateway Pods are spread over (replica `i` on node `i mod n`), each with its
    /// chassis.
    pub fn set_nodes(&mut self, nodes: Vec<(String, String)>) {
        if !nodes.is_empty() {
            self.nodes = nodes;
        }
    }

    /// The nodes, each with its chassis.
    pub fn nodes(&self) -> &[(String, String)] {
        &self.nodes
    }

    /// The chassis node `node` runs on (the first node's for an unknown one).
    pub fn chassis_of(&self, node: &str) -> String {
        self.nodes
            .iter()
            .find(|(name, _)| name == node)
            .or(self.nodes.first())
            .map(|(_, chassis)| chassis.clone())
            .unwrap_or_default()
    }

    /// Records every container's pid under `state_dir`, so a crashed lab is cleaned up.
    pub fn set_record(&mut self, state_dir: &Path) {
        self.record = Some(state_dir.to_owned());
    }

    /// A fresh interface index (keeps veth names apart).
    pub fn next_index(&mut self) -> usize {
        self.next_index += 1;
        self.next_index
    }

    /// Marks an address as taken (a client Pod the lab created itself).
    pub fn reserve(&mut self, address: IpAddr) {
        self.allocated.insert(address);
    }

    /// Addresses for a Pod of `subnet`: the `pinned` ones (comma separated, one per family) or
    /// the next free ones.
    pub fn allocate(
        &mut self,
        subnet: &LabSubnet,
        pinned: Option<&str>,
    ) -> Result<Vec<IpNet>, LabError> {
        let mut out = Vec::new();
        for cidr in &subnet.cidrs {
            let wanted: Option<IpAddr> = pinned.and_then(|text| {
                veg_api::kubeovn::list_addresses(text)
                    .into_iter()
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

    /// Makes the Pods of `deployment` match it: creates missing replicas, deletes extra ones
    /// (lowest `controller.kubernetes.io/pod-deletion-cost` first, as a ReplicaSet does).
    /// Returns why its Pods are refused (admission, sysctls), if they are.
    pub fn apply_deployment(
        &mut self,
        ovn: &Ovn,
        deployment: &Json,
        deletion_costs: &BTreeMap<String, i64>,
    ) -> Result<Option<String>, LabError> {
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
        let level = self
            .pod_security
            .get(&namespace)
            .copied()
            .unwrap_or(Level::Privileged);
        if let Some(reason) = refusal(
            &format!("{name}-0"),
            level,
            &self.allowed_unsafe_sysctls,
            template,
        ) {
            // A real ReplicaSet retries and records FailedCreate; here it is said once per
            // template (the session applies a Deployment again only when it changes).
            warn!(deployment = %format!("{namespace}/{name}"), %reason, "Pods refused");
            self.report_deployment(deployment, replicas, Some(&reason))?;
            return Ok(Some(reason));
        }
        let mut existing = self.pods_of(&namespace, &name);
        if existing.len() > replicas {
            // As a ReplicaSet ranks them: Pending before running, not ready (killed) before
            // ready, then the lowest deletion cost, then the newest.
            existing.sort_by_key(|pod| {
                let cost = deletion_costs
                    .get(&format!("{namespace}/{pod}"))
                    .copied()
                    .unwrap_or(0);
                let running = self.pods.get(pod);
                (
                    running.is_some(),
                    running.is_some_and(|p| p.killed.is_none()),
                    cost,
                    std::cmp::Reverse(replica_of(pod)),
                )
            });
            let leaving: Vec<String> = existing.drain(..existing.len() - replicas).collect();
            for pod in leaving {
                self.delete_pod(ovn, &namespace, &pod)?;
            }
        }
        // New Pods take the lowest free replica numbers (the index into pinned IP lists).
        let mut replica = 0;
        while self.pods_of(&namespace, &name).len() < replicas {
            let pod = format!("{name}-{replica}");
            if !self.pods.contains_key(&pod) && !self.pending.contains_key(&pod) {
                self.start_pod(ovn, &namespace, &pod, replica, template)?;
            }
            replica += 1;
        }
        // Pods of an older template are replaced (a rolling update, one at a time here).
        let stale: Vec<String> = self
            .pods_of(&namespace, &name)
            .into_iter()
            .filter(|pod| self.pods.get(pod).is_some_and(|p| &p.template != template))
            .collect();
        for pod in stale {
            self.delete_pod(ovn, &namespace, &pod)?;
            self.start_pod(ovn, &namespace, &pod, replica_of(&pod), template)?;
        }
        // Pending Pods of this Deployment wait with its new template.
        for pod in self.pods_of(&namespace, &name) {
            if let Some(pending) = self.pending.get_mut(&pod) {
                pending.template = template.clone();
            }
        }
        self.report_deployment(deployment, replicas, None)?;
        Ok(None)
    }

    /// Writes the Deployment as the API server would show it; `refused`: why its ReplicaSet
    /// cannot create Pods (a `ReplicaFailure` condition, reason `FailedCreate`).
    fn report_deployment(
        &mut self,
        deployment: &Json,
        replicas: usize,
        refused: Option<&str>,
    ) -> Result<(), LabError> {
        let name = deployment["metadata"]["name"].as_str().unwrap_or_default();
        let namespace = deployment["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default();
        self.deployments.insert(
            (namespace.to_owned(), name.to_owned()),
            (deployment.clone(), replicas, refused.map(str::to_owned)),
        );
        let ready = self
            .pods_of(namespace, name)
            .iter()
            .filter(|pod| self.pods.get(*pod).is_some_and(Self::pod_ready))
            .count();
        // As the API server would show it: updated, ready and available replicas.
        let mut reported = deployment.clone();
        reported["apiVersion"] = json!("apps/v1");
        reported["kind"] = json!("Deployment");
        reported["metadata"]["generation"] = json!(1);
        reported["status"] = json!({
            "observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas,
            "readyReplicas": ready, "availableReplicas": ready
        });
        if let Some(reason) = refused {
            reported["status"]["conditions"] = json!([{"type": "ReplicaFailure",
                "status": "True", "reason": "FailedCreate", "message": reason}]);
        }
        write_json(
            &self
                .manifests
                .join(format!("deployment-{namespace}-{name}.yaml")),
            &reported,
        )
    }

    /// Reports every Deployment again (its ready replicas changed).
    fn report_deployments(&mut self) -> Result<(), LabError> {
        let reports: Vec<(Json, usize, Option<String>)> =
            self.deployments.values().cloned().collect();
        for (deployment, replicas, refused) in reports {
            self.report_deployment(&deployment, replicas, refused.as_deref())?;
        }
        Ok(())
    }

    /// Deletes every Pod of a Deployment the controller removed, and its reported manifest.
    pub fn remove_deployment(&mut self, ovn: &Ovn, deployment: &Json) -> Result<(), LabError> {
        let name = deployment["metadata"]["name"].as_str().unwrap_or_default();
        let namespace = deployment["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default();
        for pod in self.pods_of(namespace, name) {
            self.delete_pod(ovn, namespace, &pod)?;
        }
        self.deployments
            .remove(&(namespace.to_owned(), name.to_owned()));
        let _ = std::fs::remove_file(
            self.manifests
                .join(format!("deployment-{namespace}-{name}.yaml")),
        );
        Ok(())
    }

    /// A Deployment's Pods, running or pending.
    fn pods_of(&self, namespace: &str, deployment: &str) -> Vec<String> {
        let of_it = |pod: &str| {
            pod.rsplit_once('-')
                .is_some_and(|(base, n)| base == deployment && n.parse::<usize>().is_ok())
        };
        self.pods
            .iter()
            .filter(|(pod, running)| running.namespace == namespace && of_it(pod))
            .map(|(pod, _)| pod.clone())
            .chain(
                self.pending
                    .iter()
                    .filter(|(pod, pending)| pending.namespace == namespace && of_it(pod))
                    .map(|(pod, _)| pod.clone()),
            )
            .collect()
    }

    fn start_pod(
        &mut self,
        ovn: &Ovn,
        namespace: &str,
        pod: &str,
        replica: usize,
        template: &Json,
    ) -> Result<(), LabError> {
        // Gateway replica `i` from node `i` on; veg's own Pods from the last node backwards,
        // so a crash of the gateways' first node leaves the controller up (in a cluster a
        // second replica on another node takes over; the lab's runs one, having no Lease).
        let count = self.nodes.len().max(1);
        let start = if is_system_pod(template) {
            count - 1 - replica % count
        } else {
            replica % count
        };
        let node = match scheduler::schedule(template, namespace, &self.node_views(), start) {
            Ok(node) => node,
            Err(reason) => return self.hold_pending(namespace, pod, replica, template, &reason),
        };
        self.pending.remove(pod);
        let chassis = self.chassis_of(&node);
        let annotations = &template["metadata"]["annotations"];
        let get = |key: &str| annotations[key].as_str().map(str::to_owned);
        let switch = get("ovn.kubernetes.io/logical_switch")
            .or_else(|| self.default_subnet.clone())
            .unwrap_or_default();
        let internal =
            self.subnets.get(&switch).cloned().ok_or_else(|| {
                step(&format!("starting Pod {pod}"))(format!("no subnet {switch:?}"))
            })?;
        let pinned = |key: &str| {
            let entries = podspec::ip_pool_entries(&get(key).unwrap_or_default());
            podspec::pool_entry(&entries, replica, |entry| {
                veg_api::kubeovn::list_addresses(entry)
                    .iter()
                    .any(|ip| self.allocated.contains(ip))
            })
            .map(str::to_owned)
        };
        let internal_pool = pinned("ovn.kubernetes.io/ip_pool");
        let attachment = get("k8s.v1.cni.cncf.io/networks").unwrap_or_default();
        let provider = attachment
            .split_once('/')
            .map(|(ns, nad)| format!("{nad}.{ns}"))
            .unwrap_or_default();
        let external_pool = pinned(&format!("{provider}.kubernetes.io/ip_pool"));
        let internal_addresses = self.allocate(&internal.subnet, internal_pool.as_deref())?;
        // Multus: `<ns>/<nad>` → provider `<nad>.<ns>`; a Pod without it has only eth0.
        let external = if attachment.is_empty() {
            None
        } else {
            Some(
                self.subnets
                    .values()
                    .find(|s| s.provider == provider)
                    .cloned()
                    .ok_or_else(|| {
                        step(&format!("starting Pod {pod}"))(format!(
                            "no subnet for provider {provider:?}"
                        ))
                    })?,
            )
        };
        let external_addresses = match &external {
            Some(external) => self.allocate(&external.subnet, external_pool.as_deref())?,
            None => Vec::new(),
        };

        let index = self.next_index();
        let lab_pod = LabPod {
            name: pod.to_owned(),
            namespace: namespace.to_owned(),
            addresses: internal_addresses.clone(),
            gateways: Vec::new(),
        };
        let netns = ovn.add_pod(&internal.subnet.name, &lab_pod, index, &chassis)?;
        ovn.join_node_port_group(&node, &lab_pod.port())?;
        if external.is_some() {
            ovn.attach_external(&netns, &external_addresses, index)?;
        }
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
        self.pods.insert(
            pod.to_owned(),
            RunningPod {
                namespace: namespace.to_owned(),
                netns,
                node: node.clone(),
                addresses: internal_addresses
                    .iter()
                    .chain(&external_addresses)
                    .map(IpNet::addr)
                    .collect(),
                host_side: format!("{}v{index}", ovn.prefix()),
                host_namespace: ovn.chassis_named(&chassis)?.namespace.clone(),
                bridge_side: external
                    .is_some()
                    .then(|| format!("{}x{index}", ovn.prefix())),
                template: template.clone(),
                children: Vec::new(),
                killed: None,
                node_down: false,
                cut: None,
                readiness: Vec::new(),
                manifest: Json::Null,
                reported_ready: false,
            },
        );
        self.start_containers(pod)?;

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
        let mut networks = vec![json!({"name": "ovn", "ips": internal_ips})];
        if !attachment.is_empty() {
            networks.push(json!({"name": attachment, "ips": external_ips}));
        }
        annotations.insert(
            "k8s.v1.cni.cncf.io/network-status".into(),
            json!(Json::Array(networks).to_string()),
        );
        annotations.insert("ovn.kubernetes.io/allocated".into(), json!("true"));
        let manifest = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod, "namespace": namespace,
                "labels": template["metadata"]["labels"], "annotations": annotations},
            "spec": {"containers": [], "nodeName": node},
            "status": {"phase": "Running",
                "podIPs": internal_ips.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>(),
                "conditions": [{"type": "Ready", "status": "False"}]}
        });
        if let Some(running) = self.pods.get_mut(pod) {
            running.manifest = manifest;
        }
        // Ready at once when no container has a readiness probe; else when they pass.
        self.report_pod(pod, true)
    }

    /// How many of a Pod's containers are Ready, of all of them (`kubectl get pods`' READY).
    fn containers_ready(running: &RunningPod) -> (usize, usize) {
        let all = running.template["spec"]["containers"]
            .as_array()
            .map_or(0, Vec::len);
        if running.killed.is_some() {
            return (0, all);
        }
        let failing = running.readiness.iter().filter(|p| !p.ready).count();
        (all.saturating_sub(failing), all)
    }

    /// Whether a Pod is Ready: running, and every readiness probe passing.
    fn pod_ready(running: &RunningPod) -> bool {
        running.killed.is_none() && running.readiness.iter().all(|probe| probe.ready)
    }

    /// Writes the Pod's manifest with its Ready condition when it changed (or `always`).
    fn report_pod(&mut self, pod: &str, always: bool) -> Result<(), LabError> {
        let Some(running) = self.pods.get_mut(pod) else {
            return Ok(());
        };
        let ready = Self::pod_ready(running);
        if !always && ready == running.reported_ready {
            return Ok(());
        }
        running.reported_ready = ready;
        running.manifest["status"]["conditions"] =
            json!([{"type": "Ready", "status": if ready { "True" } else { "False" }}]);
        write_json(
            &self
                .manifests
                .join(format!("pod-{}-{pod}.yaml", running.namespace)),
            &running.manifest,
        )
    }

    /// Runs the readiness probes that are due, as a kubelet does, and reports the Pods and
    /// Deployments whose readiness changed.
    pub fn probe_readiness(&mut self) -> Result<(), LabError> {
        let now = Instant::now();
        let mut changed = false;
        let names: Vec<String> = self.pods.keys().cloned().collect();
        for pod in names {
            let due: Vec<(usize, ReadinessProbe)> = match self.pods.get(&pod) {
                Some(running) if running.killed.is_none() => running
                    .readiness
                    .iter()
                    .enumerate()
                    .filter(|(_, state)| state.due(now))
                    .map(|(index, state)| (index, state.probe.clone()))
                    .collect(),
                _ => Vec::new(),
            };
            for (index, probe) in due {
                let ok = self.run_probe(&pod, &probe);
                if let Some(state) = self
                    .pods
                    .get_mut(&pod)
                    .and_then(|running| running.readiness.get_mut(index))
                    && state.record(ok, Instant::now())
                {
                    debug!(pod = %pod, container = %probe.container, ready = state.ready, "readiness changed");
                }
            }
            let before = self.pods.get(&pod).map(|running| running.reported_ready);
            self.report_pod(&pod, false)?;
            changed |= before != self.pods.get(&pod).map(|running| running.reported_ready);
        }
        if changed {
            self.report_deployments()?;
        }
        Ok(())
    }

    /// Runs one probe within its timeout: whether it succeeded.
    fn run_probe(&self, pod: &str, probe: &ReadinessProbe) -> bool {
        let Some(running) = self.pods.get(pod) else {
            return false;
        };
        let command = match &probe.action {
            ProbeAction::Exec(argv) => {
                let container = running.template["spec"]["containers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|c| c["name"] == probe.container.as_str())
                    .cloned()
                    .unwrap_or(Json::Null);
                // The lab's only image is veg: its command is the binary.
                let args = match argv.first().map(String::as_str) {
                    Some("veg") => &argv[1..],
                    _ => &argv[..],
                };
                self.container_process(pod, &container, args)
            }
            ProbeAction::HttpGet { host, port, path } => {
                // From outside the containers, to the Pod's address, as a kubelet does.
                let host = host
                    .clone()
                    .or_else(|| running.addresses.first().map(ToString::to_string))
                    .unwrap_or_else(|| "127.0.0.1".to_owned());
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host
                };
                let mut command = Command::new("ip");
                command
                    .args([
                        "netns",
                        "exec",
                        &running.netns,
                        "curl",
                        "-sf",
                        "-o",
                        "/dev/null",
                    ])
                    .arg("-m")
                    .arg(probe.timeout.as_secs().to_string())
                    .arg(format!("http://{host}:{port}{path}"));
                Ok(command)
            }
        };
        let Ok(mut command) = command else {
            return false;
        };
        let Ok(mut child) = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        else {
            return false;
        };
        let deadline = Instant::now() + probe.timeout;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return status.success(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return false;
                }
            }
        }
    }

    /// A container's process as a runtime starts it: the `veg` binary with `args` (a
    /// container path of an emptyDir turned into the Pod's run directory), its environment,
    /// user, capabilities and mounts.
    fn container_process(
        &self,
        pod: &str,
        container: &Json,
        args: &[String],
    ) -> Result<Command, LabError> {
        let running = self
            .pods
            .get(pod)
            .ok_or_else(|| step("container")(format!("no Pod {pod}")))?;
        let run_dir = self.run_dir.join(pod);
        let spec = &running.template["spec"];
        let facts = PodFacts {
            name: pod.to_owned(),
            namespace: running.namespace.clone(),
            node: running.node.clone(),
            ip: running
                .addresses
                .first()
                .map(ToString::to_string)
                .unwrap_or_default(),
            service_account: spec["serviceAccountName"]
                .as_str()
                .unwrap_or("default")
                .to_owned(),
        };
        let no_config_maps = BTreeMap::new();
        let config_maps = self
            .config_maps
            .get(&running.namespace)
            .unwrap_or(&no_config_maps);
        // Writable under a read-only root: the Pod's emptyDir and, for a Pod with its own
        // ServiceAccount token, the lab's API (files here, an API server in a cluster).
        let mut writable = vec![run_dir.clone()];
        if podspec::uses_api(spec) {
            writable.extend(self.api_paths.iter().cloned());
        }
        let name = container["name"].as_str().unwrap_or("container");
        let mut command = container_command(&running.netns, container, spec, &writable);
        command.arg(&self.veg);
        // The lab has no container images: a container path of an emptyDir is the Pod's
        // run directory.
        let mounts = podspec::empty_dir_mounts(container, spec);
        for arg in args {
            let mut arg = arg.clone();
            for mount in &mounts {
                arg = arg.replace(mount.as_str(), &run_dir.display().to_string());
            }
            command.arg(arg);
        }
        let env = podspec::container_env(container, &facts, config_maps).map_err(|reason| {
            step(&format!("container {name} of {pod}"))(format!(
                "CreateContainerConfigError: {reason}"
            ))
        })?;
        for (key, mut value) in env {
            for mount in &mounts {
                value = value.replace(mount.as_str(), &run_dir.display().to_string());
            }
            command.env(key, value);
        }
        Ok(command)
    }

    /// Runs a Pod's init containers to completion, then starts its containers.
    fn start_containers(&mut self, pod: &str) -> Result<(), LabError> {
        let Some(running) = self.pods.get(pod) else {
            return Ok(());
        };
        let run_dir = self.run_dir.join(pod);
        std::fs::create_dir_all(&run_dir).map_err(|e| step("run dir")(e.to_string()))?;
        // An emptyDir: writable by every container, whatever its user.
        std::fs::set_permissions(
            &run_dir,
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .map_err(|e| step("run dir")(e.to_string()))?;
        let spec = running.template["spec"].clone();
        let command = |container: &Json| -> Result<Command, LabError> {
            let args: Vec<String> = container["args"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|arg| arg.as_str().unwrap_or_default().to_owned())
                .collect();
            self.container_process(pod, container, &args)
        };
        for container in spec["initContainers"].as_array().into_iter().flatten() {
            run(
                &format!("init container of {pod}"),
                &mut command(container)?,
            )?;
        }
        let mut children = Vec::new();
        for container in spec["containers"].as_array().into_iter().flatten() {
            let name = container["name"].as_str().unwrap_or("container");
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(run_dir.join(format!("{name}.log")))
                .map_err(|e| step("container log")(e.to_string()))?;
            let child = command(container)?
                .stdin(Stdio::null())
                .stdout(log.try_clone().map_err(|e| step("log")(e.to_string()))?)
                .stderr(log)
                .spawn()
                .map_err(|e| step(&format!("starting container {name} of {pod}"))(e.to_string()))?;
            if let Some(dir) = &self.record {
                record_child(dir, child.id());
            }
            children.push(child);
        }
        let probes = readiness::readiness_probes(&spec)
            .map_err(|reason| step(&format!("readiness probes of {pod}"))(reason))?;
        if let Some(running) = self.pods.get_mut(pod) {
            running.children = children;
            let started = Instant::now();
            running.readiness = probes
                .into_iter()
                .map(|probe| ProbeState::new(probe, started))
                .collect();
        }
        Ok(())
    }

    /// A Pod no node fits: kept `Pending` with the scheduler's reason, tried again later.
    fn hold_pending(
        &mut self,
        namespace: &str,
        pod: &str,
        replica: usize,
        template: &Json,
        reason: &str,
    ) -> Result<(), LabError> {
        // Retried on every sync: report (and rewrite the manifest the controller watches) only
        // what changed.
        if self
            .pending
            .get(pod)
            .is_some_and(|p| p.reason == reason && &p.template == template)
        {
            return Ok(());
        }
        warn!(pod = %format!("{namespace}/{pod}"), %reason, "FailedScheduling");
        self.pending.insert(
            pod.to_owned(),
            PendingPod {
                namespace: namespace.to_owned(),
                replica,
                template: template.clone(),
                reason: reason.to_owned(),
            },
        );
        write_json(
            &self.manifests.join(format!("pod-{namespace}-{pod}.yaml")),
            &json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": pod, "namespace": namespace,
                    "labels": template["metadata"]["labels"],
                    "annotations": template["metadata"]["annotations"]},
                "spec": {"containers": []},
                "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled",
                    "status": "False", "reason": "Unschedulable", "message": reason}]}
            }),
        )
    }

    /// Stops a Pod's containers, removes its namespace, port and manifest.
    pub fn delete_pod(&mut self, ovn: &Ovn, namespace: &str, pod: &str) -> Result<(), LabError> {
        if self.pending.remove(pod).is_some() {
            let _ =
                std::fs::remove_file(self.manifests.join(format!("pod-{namespace}-{pod}.yaml")));
            return Ok(());
        }
        let Some(mut running) = self.pods.remove(pod) else {
            return Ok(());
        };
        for child in &running.children {
            crate::ovn::terminate(child.id());
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

    /// Kills a Pod as a crashed node would: SIGKILL to its processes (no AdminDown, no
    /// goodbye) and its links cut at the far end. It keeps its namespace and addresses and is
    /// restarted by [`Kubelet::restart_killed`].
    pub fn kill_pod(&mut self, ovn: &Ovn, pod: &str) -> Result<(), LabError> {
        let running = self
            .pods
            .get_mut(pod)
            .ok_or_else(|| step("kill")(format!("no gateway Pod {pod}")))?;
        for child in &mut running.children {
            let _ = child.kill();
        }
        ip(&[
            "-n",
            &running.host_namespace,
            "link",
            "set",
            &running.host_side,
            "down",
        ])?;
        if let Some(bridge_side) = &running.bridge_side {
            ip(&[
                "-n",
                &ovn.external_namespace(),
                "link",
                "set",
                bridge_side,
                "down",
            ])?;
        }
        for child in &mut running.children {
            let _ = child.wait();
        }
        running.children.clear();
        running.killed = Some(Instant::now());
        Ok(())
    }

    /// Restarts a Pod's containers at once (SIGKILL, then init containers and containers
    /// again), its links and addresses untouched: a crashed process, not a crashed node.
    pub fn restart_pod(&mut self, pod: &str) -> Result<(), LabError> {
        let running = self
            .pods
            .get_mut(pod)
            .ok_or_else(|| step("restart")(format!("no Pod {pod}")))?;
        for child in &mut running.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        running.children.clear();
        self.start_containers(pod)
    }

    /// Node `node` crashed: every Pod on it killed, none restarted until [`Kubelet::restore_node`].
    pub fn kill_node(&mut self, ovn: &Ovn, node: &str) -> Result<(), LabError> {
        self.down_nodes.insert(node.to_owned());
        let on_node: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, p)| p.node == node)
            .map(|(name, _)| name.clone())
            .collect();
        for pod in on_node {
            if self.pods.get(&pod).is_some_and(|p| p.killed.is_none()) {
                self.kill_pod(ovn, &pod)?;
            }
            if let Some(running) = self.pods.get_mut(&pod) {
                running.node_down = true;
            }
        }
        Ok(())
    }

    /// Node `node` is back: its Pods start again (links back, init container, containers).
    pub fn restore_node(&mut self, ovn: &Ovn, node: &str) -> Result<(), LabError> {
        self.down_nodes.remove(node);
        let on_node: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, p)| p.node == node && p.node_down)
            .map(|(name, _)| name.clone())
            .collect();
        for pod in on_node {
            self.cut_pod(ovn, &pod, false, true)?;
            self.start_containers(&pod)?;
            if let Some(running) = self.pods.get_mut(&pod) {
                running.killed = None;
                running.node_down = false;
            }
        }
        Ok(())
    }

    /// Restarts the killed Pods whose `delay` has passed: links back, init container, containers.
    pub fn restart_killed(&mut self, ovn: &Ovn, delay: Option<Duration>) -> Result<(), LabError> {
        let Some(delay) = delay else {
            return Ok(());
        };
        let due: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, p)| !p.node_down && p.killed.is_some_and(|at| at.elapsed() >= delay))
            .map(|(name, _)| name.clone())
            .collect();
        for pod in due {
            self.cut_pod(ovn, &pod, false, true)?;
            self.start_containers(&pod)?;
            if let Some(running) = self.pods.get_mut(&pod) {
                running.killed = None;
            }
        }
        Ok(())
    }

    /// Cuts a Pod off at the far end of its legs (`uplink`: only the external one) while its
    /// processes keep running, or restores what was cut (`restore`).
    pub fn cut_pod(
        &mut self,
        ovn: &Ovn,
        pod: &str,
        uplink: bool,
        restore: bool,
    ) -> Result<(), LabError> {
        let running = self
            .pods
            .get_mut(pod)
            .ok_or_else(|| step("cut")(format!("no gateway Pod {pod}")))?;
        let state = if restore { "up" } else { "down" };
        if !uplink || restore {
            ip(&[
                "-n",
                &running.host_namespace,
                "link",
                "set",
                &running.host_side,
                state,
            ])?;
        }
        if let Some(bridge_side) = &running.bridge_side {
            ip(&[
                "-n",
                &ovn.external_namespace(),
                "link",
                "set",
                bridge_side,
                state,
            ])?;
        }
        running.cut = match (restore, uplink) {
            (true, _) => None,
            (false, true) => Some("UplinkCut"),
            (false, false) => Some("Cut"),
        };
        Ok(())
    }

    /// The Pods it runs or holds Pending, as `<namespace>/<name>` → what `lab.json` shows.
    pub fn pods(&self) -> Vec<(String, PodState)> {
        let running = self.pods.iter().map(|(name, running)| {
            let state = match (running.killed, running.cut) {
                (Some(_), _) if running.node_down => "NodeDown",
                (Some(_), _) => "Killed",
                (None, Some(cut)) => cut,
                (None, None) => "Running",
            };
            (
                format!("{}/{name}", running.namespace),
                PodState {
                    netns: running.netns.clone(),
                    role: role_of(&running.template),
                    addresses: running.addresses.clone(),
                    node: running.node.clone(),
                    state: state.into(),
                    ready: Self::containers_ready(running),
                },
            )
        });
        // Pods no node took yet: no namespace, no node.
        let pending = self.pending.iter().map(|(name, pending)| {
            (
                format!("{}/{name}", pending.namespace),
                PodState {
                    role: role_of(&pending.template),
                    state: "Pending".into(),
                    ..PodState::default()
                },
            )
        });
        running.chain(pending).collect()
    }

    /// Stops every Pod's processes (namespaces go with the lab's OVN).
    pub fn stop_all(&mut self) {
        for running in self.pods.values_mut() {
            for child in &mut running.children {
                let _ = child.kill();
                let _ = child.wait();
            }
            running.children.clear();
        }
    }
}

/// veg's own Pods by their component label (`controller`, `monitor`); the rest are gateways.
fn role_of(template: &Json) -> String {
    match template["metadata"]["labels"]["app.kubernetes.io/component"].as_str() {
        Some(role @ ("controller" | "monitor")) => role.to_owned(),
        _ => "gateway".to_owned(),
    }
}

/// A Pod of veg's own Deployments.
fn is_system_pod(template: &Json) -> bool {
    role_of(template) != "gateway"
}

fn replica_of(pod: &str) -> usize {
    pod.rsplit_once('-')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(0)
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.stop_all();
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The gateway Pod template veg shipped before: non-root with NET_ADMIN/NET_RAW added and
    /// the forwarding sysctls in the Pod.
    fn old_gateway_template() -> Json {
        json!({"spec": {
            "securityContext": {"runAsNonRoot": true, "sysctls": [
                {"name": "net.ipv4.ip_forward", "value": "1"}]},
            "containers": [{"name": "gateway", "securityContext": {
                "runAsUser": 65534, "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]}}}]
        }})
    }

    #[test]
    fn the_old_gateway_pod_is_refused_as_a_stock_cluster_would() {
        let template = old_gateway_template();
        assert_eq!(
            refusal("gateway1-0", Level::Privileged, &[], &template).as_deref(),
            Some("SysctlForbidden: forbidden sysctl: \"net.ipv4.ip_forward\" not allowlisted")
        );
        assert_eq!(
            refusal("gateway1-0", Level::Baseline, &[], &template).as_deref(),
            Some(
                "pods \"gateway1-0\" is forbidden: violates PodSecurity \"baseline:latest\": \
                 non-default capabilities (container \"gateway\" must not include \
                 \"NET_ADMIN\", \"NET_RAW\" in securityContext.capabilities.add), forbidden \
                 sysctls (net.ipv4.ip_forward)"
            )
        );
        // With the operator's --allowed-unsafe-sysctls, a privileged namespace runs it.
        let allowed = ["net.ipv4.ip_forward".to_owned()];
        assert_eq!(
            refusal("gateway1-0", Level::Privileged, &allowed, &template),
            None
        );
    }

    #[test]
    fn containers_start_with_what_their_security_context_gives() {
        let pod = json!({"securityContext": {"runAsGroup": 7}});
        let agent = json!({"securityContext": {"runAsUser": 0, "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]}}});
        let writable = [PathBuf::from("/run/p"), PathBuf::from("/api/out")];
        let args: Vec<String> = container_command("ns1", &agent, &pod, &writable)
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let text = args.join(" ");
        assert!(
            text.starts_with("netns exec ns1 sh -c mount --bind /proc/sys")
                && text.contains("exec \"$@\" container ro /run/p /api/out -- setpriv")
                && text.ends_with(
                    "setpriv --reuid=0 --regid=7 --clear-groups --inh-caps=-all \
                     --ambient-caps=-all --bounding-set=-all,+net_admin,+net_raw --no-new-privs"
                ),
            "{text}"
        );
        let privileged = json!({"securityContext": {"privileged": true}});
        let args: Vec<String> = container_command("ns1", &privileged, &pod, &writable)
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args, ["netns", "exec", "ns1"]);
    }
}
