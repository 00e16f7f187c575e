//! A whole lab: OVN, the Kube-OVN-like topology the manifests need, the external host with its
//! echo service, the client Pods of a topology file, veg's controller (monitor mode) and
//! `veg monitor`, and the kubelet turning the controller's Deployments into gateway Pods.
//! `veg lab up` keeps one running in a supervisor process; the demo, the e2e tests and the
//! failover benchmark run one in-process.
//!
//! The manifests are the API server: the lab copies them to `<state>/api`, the controller
//! reads that directory and writes its decisions to `<state>/decisions`, the kubelet reports
//! Pods and Deployments back into `<state>/api`. `<state>/lab.json` says where everything is,
//! so the other `veg lab` commands work from the state directory alone.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};
use tracing::{info, warn};

use crate::command::{step, write_json};
use crate::error::LabError;
pub use crate::inputs::Topology;
use crate::inputs::{ClientPod, ManifestSubnet, parse_subnet, read_objects};
use crate::install::{OvnBuild, OvnInstall};
use crate::kubelet::{Kubelet, KubeletSubnet, PodState};
use crate::ovn::{Ovn, OvnConfig, record_child};
use crate::topology::LabPod;

/// The TCP and UDP port of the external host's echo service (answers with the source address
/// it sees).
pub const ECHO_PORT: u16 = 7777;

/// How to run a lab.
#[derive(Clone, Debug)]
pub struct LabOptions {
    /// Private state directory (created; removed when the lab goes down).
    pub state_dir: PathBuf,
    /// Prefix of every namespace and interface.
    pub prefix: String,
    /// The `veg` binary the lab runs.
    pub veg: PathBuf,
    /// Manifest files or directories (their `*.yaml`): the API objects.
    pub manifests: Vec<PathBuf>,
    /// Client Pods and nodes.
    pub topology: Topology,
    /// How long the kubelet waits before restarting a killed Pod (`None`: never).
    pub restart_delay: Option<Duration>,
    /// The OVN build it runs.
    pub ovn: OvnInstall,
    /// Who withdraws a dead gateway instance.
    pub bfd_mode: BfdMode,
    /// How many chassis (nodes with their own OVS and ovn-controller, joined by Geneve); the
    /// topology's nodes are spread over them (node `i` on chassis `i mod n`). At least 1.
    pub chassis: usize,
    /// How long a dead node keeps its Ready condition before the node controller marks it
    /// `Unknown` (Kubernetes' `--node-monitor-grace-period`, 40 s by default).
    pub node_grace: Duration,
    /// Pod Security levels by namespace, over what the namespaces' `enforce` labels say (an
    /// operator labelling a namespace).
    pub pod_security: BTreeMap<String, crate::podsecurity::Level>,
    /// The kubelet's `--allowed-unsafe-sysctls` (names, or prefixes ending in `*`); empty
    /// like a stock kubelet's.
    pub allowed_unsafe_sysctls: Vec<String>,
    /// A kustomize overlay of `deploy/` whose controller (and monitor) Deployments the
    /// kubelet runs (`None`: the lab starts them itself, as root).
    pub deploy: Option<PathBuf>,
}

/// Kubernetes' default `--node-monitor-grace-period`.
pub const NODE_GRACE: Duration = Duration::from_secs(40);

/// The lab's nodes (the topology's, `lab-node` when it names none, more added as
/// `lab-node<i>` up to `chassis`) and the chassis of each: node `i` on chassis `i mod n`,
/// a chassis named after its first node.
pub fn plan_nodes(topology: &Topology, chassis: usize) -> Vec<(String, String)> {
    let chassis = chassis.max(1);
    let mut nodes = topology.nodes.clone();
    if nodes.is_empty() {
        nodes.push("lab-node".into());
    }
    while nodes.len() < chassis {
        nodes.push(format!("lab-node{}", nodes.len() + 1));
    }
    let names: Vec<String> = nodes.iter().take(chassis).cloned().collect();
    nodes
        .iter()
        .enumerate()
        .map(|(i, node)| (node.clone(), names[i % names.len()].clone()))
        .collect()
}

/// Who withdraws a dead gateway instance in the lab.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BfdMode {
    /// OVN itself (Kube-OVN's build): the controller creates `bfd@<vpc>` from the Vpc's
    /// `spec.bfdPort`, BFD rows and the policies' `bfd_sessions`; ovn-controller runs BFD.
    Native,
    /// `veg monitor`, a Pod holding the VPC's BFD address, runs BFD and writes the nexthops.
    #[default]
    Monitor,
}

impl BfdMode {
    /// What Kube-OVN users run on `build`: native where OVN honours the dedicated BFD port.
    pub fn default_for(build: OvnBuild) -> BfdMode {
        match build {
            OvnBuild::KubeOvn => BfdMode::Native,
            OvnBuild::Debian => BfdMode::Monitor,
        }
    }

    /// As `--bfd-mode` spells it.
    pub fn name(self) -> &'static str {
        match self {
            BfdMode::Native => "native",
            BfdMode::Monitor => "monitor",
        }
    }
}

/// Where a lab's things are; written to `<state>/lab.json` on every change.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct LabState {
    /// The prefix of the lab's namespaces.
    pub prefix: String,
    /// The Northbound remote.
    pub nb: String,
    /// The API objects.
    pub api: PathBuf,
    /// The controller's decisions (status, Deployments, events).
    pub decisions: PathBuf,
    /// The external network's namespace.
    pub external: String,
    /// The external host's addresses.
    pub external_addresses: Vec<IpAddr>,
    /// Pods by `<namespace>/<name>`.
    pub pods: BTreeMap<String, PodState>,
    /// The OVN build it runs.
    #[serde(default)]
    pub ovn: OvnInstall,
    /// Who withdraws a dead gateway instance.
    #[serde(default)]
    pub bfd_mode: BfdMode,
    /// Each node's chassis.
    #[serde(default)]
    pub nodes: BTreeMap<String, String>,
    /// The overlay whose controller and monitors run (none: started by the lab).
    #[serde(default)]
    pub deploy: Option<PathBuf>,
}

/// A VPC's BFD port as the monitors need it: router, default switch, addresses.
type BfdPortSpec = (String, String, Vec<IpAddr>);

impl LabState {
    /// Reads `<state>/lab.json`.
    pub fn read(state_dir: &Path) -> Result<LabState, LabError> {
        let path = state_dir.join("lab.json");
        let text = std::fs::read_to_string(&path).map_err(|e| LabError::Step {
            step: format!(
                "reading {} (is the lab up? `veg lab up` starts it)",
                path.display()
            ),
            detail: e.to_string(),
        })?;
        serde_json::from_str(&text)
            .map_err(|e| step(&format!("reading {}", path.display()))(e.to_string()))
    }
}

struct Daemon {
    name: String,
    child: Child,
}

/// A running lab.
pub struct Lab {
    ovn: Ovn,
    kubelet: Kubelet,
    options: LabOptions,
    api: PathBuf,
    decisions: PathBuf,
    state: LabState,
    daemons: Vec<Daemon>,
    /// Deployments as last handed to the kubelet, by file name.
    applied: BTreeMap<String, Json>,
    /// Nodes killed, since when, and whether the node controller has marked them yet.
    dead_nodes: BTreeMap<String, (Instant, bool)>,
    routers: Vec<String>,
}

impl Lab {
    /// Brings a lab up; on failure everything started is stopped and removed.
    pub fn up(
        options: LabOptions,
        progress: &mut dyn FnMut(&str, Duration),
    ) -> Result<Lab, LabError> {
        let started = Instant::now();
        if options.bfd_mode == BfdMode::Native && options.ovn.build == OvnBuild::Debian {
            return Err(step("choosing the BFD mode")(
                "Debian's OVN 23.03 runs no BFD on a dedicated router port (no \
                 Logical_Router_Policy.bfd_sessions): use --bfd-mode monitor, or --ovn kube-ovn"
                    .into(),
            ));
        }
        let objects = read_objects(&options.manifests)?;
        // Rendered first: a broken overlay fails before anything starts.
        let overlay = match &options.deploy {
            Some(dir) => Some(crate::deploy::render(dir)?),
            None => None,
        };
        let ovn = Ovn::start(
            &OvnConfig {
                state_dir: options.state_dir.clone(),
                prefix: options.prefix.clone(),
                chassis: {
                    let nodes = plan_nodes(&options.topology, options.chassis);
                    let mut names: Vec<String> = Vec::new();
                    for (_, chassis) in nodes {
                        if !names.contains(&chassis) {
                            names.push(chassis);
                        }
                    }
                    names
                },
                install: options.ovn.clone(),
            },
            progress,
        )?;
        let api = options.state_dir.join("api");
        let decisions = options.state_dir.join("decisions");
        let kubelet = Kubelet::new(
            &options.veg,
            &api,
            &options.state_dir.join("pods"),
            Vec::new(),
        );
        let mut lab = Lab {
            state: LabState {
                prefix: options.prefix.clone(),
                nb: ovn.nb_remote(),
                api: api.clone(),
                decisions: decisions.clone(),
                external: ovn.external_namespace(),
                ovn: options.ovn.clone(),
                bfd_mode: options.bfd_mode,
                deploy: options.deploy.clone(),
                ..LabState::default()
            },
            ovn,
            kubelet,
            options,
            api,
            decisions,
            daemons: Vec::new(),
            applied: BTreeMap::new(),
            dead_nodes: BTreeMap::new(),
            routers: Vec::new(),
        };
        // On error `lab` is dropped: its daemons, Pods and OVN go with it.
        let release = match overlay {
            Some(overlay) => Some(lab.release(&overlay)?),
            None => None,
        };
        lab.build(&objects, release.as_ref(), started, progress)?;
        Ok(lab)
    }

    fn spawn(&mut self, name: &str, mut command: Command, log: &Path) -> Result<(), LabError> {
        let file = std::fs::File::create(log)
            .map_err(|e| step(&format!("creating {}", log.display()))(e.to_string()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(
                file.try_clone()
                    .map_err(|e| step("log file")(e.to_string()))?,
            )
            .stderr(file)
            .spawn()
            .map_err(|e| step(&format!("starting {name}"))(e.to_string()))?;
        record_child(&self.options.state_dir, child.id());
        self.daemons.push(Daemon {
            name: name.to_owned(),
            child,
        });
        Ok(())
    }

    fn start_controller(&mut self) -> Result<(), LabError> {
        let mut command = Command::new(&self.options.veg);
        command
            .arg("controller")
            .arg("--source")
            .arg(format!("dir:{}", self.api.display()))
            .arg("--output")
            .arg(&self.decisions)
            .args(["--nb", &self.state.nb])
            .args([
                "--bfd-mode",
                self.options.bfd_mode.name(),
                "--poll-ms",
                "100",
            ])
            .args(["--log-format", "json"]);
        let log = self.options.state_dir.join("veg-controller.log");
        // Append: a restarted controller keeps its predecessor's log.
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| step("controller log")(e.to_string()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .map_err(|e| step("starting veg controller")(e.to_string()))?;
        record_child(&self.options.state_dir, child.id());
        self.daemons.push(Daemon {
            name: "controller".into(),
            child,
        });
        Ok(())
    }

    /// The overlay's Deployments as the lab runs them, checked against the lab's BFD mode.
    fn release(&self, overlay: &[Json]) -> Result<crate::deploy::Release, LabError> {
        let release = crate::deploy::release(
            overlay,
            &crate::deploy::LabEndpoints {
                api: &self.api,
                decisions: &self.decisions,
                nb: &self.ovn.pods_nb_remote(),
            },
        )?;
        let mode = self.options.bfd_mode.name();
        let overlay_name = self
            .options
            .deploy
            .as_ref()
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        if release.bfd_mode != mode {
            return Err(step("the overlay")(format!(
                "{overlay_name} runs the controller with --bfd-mode={}, the lab runs {mode} BFD \
                 mode: use the {mode} overlay",
                release.bfd_mode
            )));
        }
        if (self.options.bfd_mode == BfdMode::Monitor) != release.monitor.is_some() {
            return Err(step("the overlay")(format!(
                "{overlay_name} {} a veg-monitor Deployment, which {mode} mode {}",
                if release.monitor.is_some() {
                    "has"
                } else {
                    "has no"
                },
                if release.monitor.is_some() {
                    "does not use"
                } else {
                    "needs"
                },
            )));
        }
        Ok(release)
    }

    /// Kills the controller (SIGKILL, mid-whatever) and starts a new one.
    pub fn restart_controller(&mut self) -> Result<(), LabError> {
        if self.options.deploy.is_some() {
            let pod = self
                .kubelet
                .pods()
                .into_iter()
                .find(|(_, p)| p.role == "controller")
                .map(|(key, _)| key)
                .ok_or_else(|| step("restarting the controller")("no controller Pod".into()))?;
            let name = pod.rsplit('/').next().unwrap_or(&pod).to_owned();
            return self.kubelet.restart_pod(&name);
        }
        if let Some(position) = self.daemons.iter().position(|d| d.name == "controller") {
            let mut daemon = self.daemons.remove(position);
            let _ = daemon.child.kill();
            let _ = daemon.child.wait();
        }
        self.start_controller()
    }

    /// Hands the controller's Deployments to the kubelet, restarts killed Pods whose delay
    /// has passed, and records the lab's state.
    pub fn sync(&mut self) -> Result<(), LabError> {
        let dir = self.decisions.join("deployments");
        let mut seen = BTreeSet::new();
        let gateways: BTreeSet<(String, String)> = crate::api::objects(&self.api)?
            .iter()
            .map(|(_, o)| crate::api::key_of(o))
            .filter(|(kind, _, _)| kind == "VpcEgressGateway")
            .map(|(_, ns, name)| (ns, name))
            .collect();
        for (path, deployment) in controller_deployments(&dir) {
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let Some(deployment) = deployment else {
                // Unreadable for now: what was applied stays as it is.
                seen.insert(name);
                continue;
            };
            // The garbage collector's part: a Deployment whose gateway is gone goes too.
            let namespace = deployment["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let orphan = deployment["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|owner| owner["kind"] == "VpcEgressGateway")
                .any(|owner| {
                    let owner = owner["name"].as_str().unwrap_or_default().to_owned();
                    !gateways.contains(&(namespace.clone(), owner))
                });
            if orphan {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            seen.insert(name.clone());
            let applied = self.applied.get(&name);
            if applied.is_none_or(|a| a["spec"] != deployment["spec"]) {
                let costs = deletion_costs(&self.decisions);
                self.kubelet
                    .apply_deployment(&self.ovn, &deployment, &costs)?;
                self.applied.insert(name, deployment);
            }
        }
        // Deployments the controller deleted (the gateway is gone): their Pods go.
        let gone: Vec<String> = self
            .applied
            .keys()
            .filter(|name| !seen.contains(*name))
            .cloned()
            .collect();
        for name in gone {
            if let Some(deployment) = self.applied.remove(&name) {
                self.kubelet.remove_deployment(&self.ovn, &deployment)?;
            }
        }
        if self.options.bfd_mode == BfdMode::Native {
            self.sync_vpc_status()?;
        }
        self.mark_dead_nodes()?;
        self.kubelet
            .restart_killed(&self.ovn, self.options.restart_delay)?;
        self.kubelet.retry_pending(&self.ovn)?;
        self.kubelet.probe_readiness()?;
        for (name, daemon) in self
            .daemons
            .iter_mut()
            .map(|d| (d.name.clone(), &mut d.child))
        {
            if let Ok(Some(status)) = daemon.try_wait() {
                warn!(daemon = %name, %status, "a lab daemon exited");
            }
        }
        self.write_state()
    }

    fn write_state(&mut self) -> Result<(), LabError> {
        let mut state = self.state.clone();
        state.pods.retain(|_, pod| pod.role != "gateway");
        for (key, pod) in self.kubelet.pods() {
            state.pods.insert(key, pod);
        }
        let path = self.options.state_dir.join("lab.json");
        let text = serde_json::to_string_pretty(&state).unwrap_or_default();
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            let temporary = path.with_extension("json.tmp");
            std::fs::write(&temporary, &text)
                .and_then(|()| std::fs::rename(&temporary, &path))
                .map_err(|e| step("writing lab.json")(e.to_string()))?;
        }
        Ok(())
    }

    /// Syncs until `done` holds, or fails after `limit` naming `what`.
    pub fn wait_for(
        &mut self,
        what: &str,
        limit: Duration,
        mut done: impl FnMut(&mut Lab) -> Result<bool, LabError>,
    ) -> Result<(), LabError> {
        let deadline = Instant::now() + limit;
        loop {
            self.sync()?;
            if done(self)? {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(step(what)(format!("not within {limit:?}")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The OVN of the lab.
    pub fn ovn(&self) -> &Ovn {
        &self.ovn
    }

    /// Where everything is.
    pub fn state(&self) -> LabState {
        let mut state = self.state.clone();
        for (key, pod) in self.kubelet.pods() {
            state.pods.insert(key, pod);
        }
        state
    }

    /// The API objects' directory (`apply` = write a file there, `delete` = remove it).
    pub fn api_dir(&self) -> &Path {
        &self.api
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.options.state_dir
    }

    /// A gateway's status as the controller last wrote it (`Null` when none).
    pub fn status(&self, namespace: &str, name: &str) -> Json {
        read_status(&self.decisions, namespace, name)
    }

    /// The network namespace of `<namespace>/<pod>`.
    pub fn netns(&self, pod: &str) -> Option<String> {
        self.state().pods.get(pod).map(|p| p.netns.clone())
    }

    /// [`ask`] from the Pod `<namespace>/<pod>` to the external host's address of `target`'s
    /// family (`v4`: true for IPv4).
    pub fn ask(&self, pod: &str, v4: bool, timeout: Duration) -> Option<String> {
        let netns = self.netns(pod)?;
        let target = *self
            .state
            .external_addresses
            .iter()
            .find(|a| a.is_ipv4() == v4)?;
        ask(&self.options.state_dir, &netns, target, timeout)
    }

    /// Kills a gateway Pod as a crashed node would: SIGKILL to its processes, its links down.
    /// The kubelet brings it back after the restart delay.
    pub fn kill(&mut self, pod: &str) -> Result<(), LabError> {
        let name = pod.rsplit('/').next().unwrap_or(pod);
        self.kubelet.kill_pod(&self.ovn, name)?;
        self.write_state()
    }

    /// Crashes node `node` (`restore`: brings it back): its chassis's vswitchd and
    /// ovn-controller SIGKILLed, every gateway Pod on it killed and not restarted, its client
    /// Pods shown `NodeDown`. Every node sharing that chassis goes with it.
    pub fn kill_node(&mut self, node: &str, restore: bool) -> Result<(), LabError> {
        let chassis = self.kubelet.chassis_of(node);
        if !self.kubelet.nodes().iter().any(|(name, _)| name == node) {
            return Err(step("kill-node")(format!(
                "no node {node}; the lab's nodes are {}",
                self.kubelet
                    .nodes()
                    .iter()
                    .map(|(name, _)| name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let affected: Vec<String> = self
            .kubelet
            .nodes()
            .iter()
            .filter(|(_, c)| *c == chassis)
            .map(|(name, _)| name.clone())
            .collect();
        if restore {
            self.ovn.restore_chassis(&chassis)?;
            for node in &affected {
                self.kubelet.restore_node(&self.ovn, node)?;
                // Its kubelet posts status again at once.
                self.dead_nodes.remove(node);
                self.set_node_ready(node, "True", "KubeletReady")?;
            }
        } else {
            self.ovn.kill_chassis(&chassis)?;
            for node in &affected {
                self.kubelet.kill_node(&self.ovn, node)?;
                self.dead_nodes
                    .entry(node.clone())
                    .or_insert((Instant::now(), false));
            }
        }
        let state = if restore { "Running" } else { "NodeDown" };
        for pod in self.state.pods.values_mut() {
            if pod.role != "gateway" && affected.contains(&pod.node) {
                pod.state = state.into();
            }
        }
        self.write_state()
    }

    /// Cuts a gateway Pod off (`uplink`: only its external leg), or restores it (`restore`).
    pub fn cut(&mut self, pod: &str, uplink: bool, restore: bool) -> Result<(), LabError> {
        let name = pod.rsplit('/').next().unwrap_or(pod);
        self.kubelet.cut_pod(&self.ovn, name, uplink, restore)?;
        self.write_state()
    }

    /// The node controller's part: a node dead for longer than the grace period gets Ready
    /// `Unknown` (its kubelet stopped posting status).
    fn mark_dead_nodes(&mut self) -> Result<(), LabError> {
        let grace = self.options.node_grace;
        let due: Vec<String> = self
            .dead_nodes
            .iter()
            .filter(|(_, (since, marked))| !marked && since.elapsed() >= grace)
            .map(|(node, _)| node.clone())
            .collect();
        for node in due {
            self.set_node_ready(&node, "Unknown", "NodeStatusUnknown")?;
            if let Some(entry) = self.dead_nodes.get_mut(&node) {
                entry.1 = true;
            }
            info!(%node, "node marked NotReady (Ready=Unknown) after the grace period");
        }
        Ok(())
    }

    fn set_node_ready(&self, node: &str, status: &str, reason: &str) -> Result<(), LabError> {
        let key = ("Node".to_owned(), String::new(), node.to_owned());
        crate::api::set_status(
            &self.api,
            &key,
            "conditions",
            &json!([{"type": "Ready", "status": status, "reason": reason}]),
        )
        .map(drop)
    }

    /// Native mode: the controller's `status.bfdPort` of each VPC (the port it made) into the
    /// Vpc object, where it and Kube-OVN's readers find it.
    fn sync_vpc_status(&mut self) -> Result<(), LabError> {
        let dir = self.decisions.join("vpcs");
        for (path, status) in controller_deployments(&dir) {
            let (Some(vpc), Some(status)) = (path.file_stem(), status) else {
                continue;
            };
            let key = (
                "Vpc".to_owned(),
                String::new(),
                vpc.to_string_lossy().into_owned(),
            );
            crate::api::set_status(&self.api, &key, "bfdPort", &status)?;
        }
        Ok(())
    }

    /// Executes the commands [`send_command`] leaves for a running supervisor
    /// (`<state>/commands/`).
    pub fn serve_commands(&mut self) {
        let dir = self.options.state_dir.join("commands");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        let mut requests: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "request"))
            .collect();
        requests.sort();
        for request in requests {
            let Ok(text) = std::fs::read_to_string(&request) else {
                continue;
            };
            let _ = std::fs::remove_file(&request);
            let command: Json = serde_json::from_str(&text).unwrap_or_default();
            let pod = command["pod"].as_str().unwrap_or_default().to_owned();
            let outcome = match command["do"].as_str().unwrap_or_default() {
                "kill" => self.kill(&pod),
                "kill-node" => self.kill_node(
                    command["node"].as_str().unwrap_or_default(),
                    command["restore"] == true,
                ),
                "cut" => self.cut(&pod, command["uplink"] == true, false),
                "restore" => self.cut(&pod, command["uplink"] == true, true),
                other => Err(step("lab command")(format!("unknown command {other:?}"))),
            };
            let reply = match outcome {
                Ok(()) => json!({"ok": true}),
                Err(error) => json!({"ok": false, "error": error.to_string()}),
            };
            info!(command = %text.trim(), reply = %reply, "lab command");
            // Whole or not at all: the sender polls for this file.
            let _ = write_json(&request.with_extension("reply"), &reply);
        }
    }

    /// Stops everything and removes the state directory.
    pub fn down(mut self) {
        self.stop_daemons();
        // Dropping the kubelet stops the Pods' processes; dropping the OVN removes the rest.
    }

    fn stop_daemons(&mut self) {
        for daemon in &mut self.daemons {
            let _ = daemon.child.kill();
            let _ = daemon.child.wait();
        }
        self.daemons.clear();
        self.kubelet.stop_all();
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop_daemons();
        self.ovn.stop();
    }
}

/// The Pods' `controller.kubernetes.io/pod-deletion-cost` the controller set, latest last.
/// The objects the controller wrote under `dir` (Deployments, `<namespace>.<name>.json`; VPC
/// statuses, `<vpc>.json`), each with its content, or `None` while it cannot be read. Only
/// `.json`: the writer's `.tmp` twin, taken for a Deployment of its own, would "vanish" on the
/// next pass and take its Pods along.
fn controller_deployments(dir: &Path) -> Vec<(PathBuf, Option<Json>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let content = std::fs::read_to_string(&path)
                .ok()
                .and_then(|text| serde_json::from_str::<Json>(&text).ok());
            (path, content)
        })
        .collect()
}

fn deletion_costs(decisions: &Path) -> BTreeMap<String, i64> {
    let text = std::fs::read_to_string(decisions.join("pod-annotations.jsonl")).unwrap_or_default();
    let mut costs = BTreeMap::new();
    for line in text.lines() {
        let Ok(entry) = serde_json::from_str::<Json>(line) else {
            continue;
        };
        let Some(pod) = entry["pod"].as_str() else {
            continue;
        };
        if let Some(Ok(cost)) = entry["annotations"]["controller.kubernetes.io/pod-deletion-cost"]
            .as_str()
            .map(str::parse::<i64>)
        {
            costs.insert(pod.to_owned(), cost);
        }
    }
    costs
}

/// Leaves `command` (`{"do": "kill"|"cut"|"restore", "pod": …}`) for the lab's supervisor
/// under `<state>/commands/` and waits up to `timeout` for its reply
/// ([`Lab::serve_commands`]).
pub fn send_command(state_dir: &Path, command: &Json, timeout: Duration) -> Result<(), LabError> {
    let dir = state_dir.join("commands");
    std::fs::create_dir_all(&dir)
        .map_err(|e| step(&format!("creating {}", dir.display()))(e.to_string()))?;
    let id = format!(
        "{}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
        std::process::id()
    );
    // write_json renames a whole file into place: the supervisor never reads half a request.
    write_json(&dir.join(format!("{id}.request")), command)?;
    let reply_path = dir.join(format!("{id}.reply"));
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(text) = std::fs::read_to_string(&reply_path) {
            let _ = std::fs::remove_file(&reply_path);
            let reply: Json = serde_json::from_str(&text).unwrap_or_default();
            if reply["ok"] == true {
                return Ok(());
            }
            return Err(step("the lab's supervisor")(
                reply["error"].as_str().unwrap_or("failed").to_owned(),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(step("the lab's supervisor")(format!(
        "no answer within {timeout:?}"
    )))
}

/// A gateway's status from a decisions directory (`Null` when none).
pub fn read_status(decisions: &Path, namespace: &str, name: &str) -> Json {
    std::fs::read_to_string(
        decisions
            .join("status")
            .join(format!("{namespace}.{name}.json")),
    )
    .ok()
    .and_then(|text| serde_json::from_str(&text).ok())
    .unwrap_or(Json::Null)
}

/// One TCP connection from `netns` to the external host's echo service at `target`: the
/// source address the host saw, `None` when the connection failed within `timeout`.
pub fn ask(state_dir: &Path, netns: &str, target: IpAddr, timeout: Duration) -> Option<String> {
    let output = Command::new("ip")
        .args(["netns", "exec", netns, "python3"])
        .arg(state_dir.join("ask.py"))
        .arg(target.to_string())
        .arg(ECHO_PORT.to_string())
        .arg(timeout.as_secs_f64().to_string())
        .output()
        .ok()?;
    let seen = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    (!seen.is_empty()).then_some(seen)
}

/// What the external host saw of a Pod's connections: each source address, how often, and
/// which gateway Pod owns it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EgressSample {
    /// The external host's address asked.
    pub target: Option<IpAddr>,
    /// Source address seen → (connections, the gateway Pod `<namespace>/<name>` that has it).
    pub seen: BTreeMap<String, (usize, Option<String>)>,
    /// Connections nobody answered.
    pub unanswered: usize,
}

impl EgressSample {
    /// One line: `8 connections to 198.51.100.1: 8 seen as 198.51.100.10 (default/gateway1-0)`.
    pub fn describe(&self) -> String {
        let Some(target) = self.target else {
            return "no external host of this family".into();
        };
        let total = self.unanswered + self.seen.values().map(|(n, _)| n).sum::<usize>();
        let mut parts: Vec<String> = self
            .seen
            .iter()
            .map(|(address, (count, owner))| match owner {
                Some(owner) => format!("{count} seen as {address} ({owner})"),
                None => format!("{count} seen as {address}"),
            })
            .collect();
        if self.unanswered > 0 {
            parts.push(format!("{} unanswered", self.unanswered));
        }
        format!("{total} TCP connections to {target}: {}", parts.join(", "))
    }
}

/// Opens `connections` TCP connections from Pod `pod` to the external host (family `v4`) and
/// records who the host saw: the data plane's answer to "which instance does this Pod use".
pub fn egress_sample(
    state_dir: &Path,
    state: &LabState,
    pod: &str,
    v4: bool,
    connections: usize,
) -> EgressSample {
    let mut sample = EgressSample::default();
    let (Some(running), Some(target)) = (
        state.pods.get(pod),
        state
            .external_addresses
            .iter()
            .copied()
            .find(|a| a.is_ipv4() == v4),
    ) else {
        return sample;
    };
    sample.target = Some(target);
    for _ in 0..connections {
        match ask(state_dir, &running.netns, target, Duration::from_secs(1)) {
            Some(seen) => {
                let owner = seen.parse::<IpAddr>().ok().and_then(|address| {
                    state
                        .pods
                        .iter()
                        .find(|(_, p)| p.role == "gateway" && p.addresses.contains(&address))
                        .map(|(key, _)| key.clone())
                });
                let entry = sample.seen.entry(seen).or_insert((0, owner));
                entry.0 += 1;
            }
            None => sample.unanswered += 1,
        }
    }
    sample
}

/// One connection to the echo service; prints what it answered (nothing on failure).
const ASK: &str = r#"
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
    s.settimeout(float(sys.argv[3]))
    print(s.recv(100).decode().strip())
except OSError:
    pass
"#;

/// The external host's echo service: TCP and UDP on both families; answers every connection
/// or datagram with the source address it sees (a UDP datagram's payload is echoed after it,
/// so probes can carry sequence numbers).
const ECHO: &str = r#"
import socket, sys, threading
port = int(sys.argv[1])
def plain(peer):
    return peer[0][7:] if peer[0].startswith("::ffff:") else peer[0]
def tcp():
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", port)); s.listen(256)
    while True:
        c, peer = s.accept()
        try:
            c.sendall((plain(peer) + "\n").encode())
        except OSError:
            pass
        c.close()
def udp():
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    while True:
        data, peer = s.recvfrom(2048)
        try:
            s.sendto((plain(peer) + " ").encode() + data, peer)
        except OSError:
            pass
threading.Thread(target=tcp, daemon=True).start()
print("ready", flush=True)
udp()
"#;

mod build;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_json_deployments_are_read_and_half_written_ones_are_kept_apart()
    -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("veg-lab-deployments-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let whole = json!({"metadata": {"namespace": "default", "name": "gateway1"}});
        let written = (|| -> std::io::Result<()> {
            std::fs::write(dir.join("default.gateway1.json"), whole.to_string())?;
            // The controller's write-then-rename leaves this for a moment; not a Deployment.
            std::fs::write(dir.join("default.gateway1.tmp"), whole.to_string())?;
            std::fs::write(dir.join("other.half.json"), "{\"metadata\": {")
        })();
        let found = controller_deployments(&dir);
        std::fs::remove_dir_all(&dir)?;
        written?;
        let names: Vec<(String, Option<&Json>)> = found
            .iter()
            .map(|(path, content)| {
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                (name.into_owned(), content.as_ref())
            })
            .collect();
        anyhow::ensure!(
            names
                == [
                    ("default.gateway1.json".to_owned(), Some(&whole)),
                    ("other.half.json".to_owned(), None)
                ],
            "{names:?}"
        );
        Ok(())
    }
}
