//! `veg lab`: the embedded lab. `up` starts a supervisor process (`veg lab serve`, hidden)
//! that holds the lab — OVN, the topology, veg's controller and monitor, the kubelet — until
//! `down`; the other commands work from the state directory (`<state>/lab.json`, the API
//! objects in `<state>/api`) and send `kill`/`cut` to the supervisor as request files.
//! `demo` runs the product's scenario in-process from nothing to nothing.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value as Json;
use veg_lab::session::{BfdMode, read_status};
use veg_lab::{Lab, LabOptions, LabState, Topology};

/// `veg lab`.
mod demo;

#[derive(Debug, Args)]
pub struct LabArgs {
    /// The lab's state directory.
    #[arg(
        long,
        global = true,
        env = "VEG_LAB_STATE",
        default_value = "/tmp/veg-lab"
    )]
    state: PathBuf,
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(Debug, Subcommand)]
enum LabCommand {
    /// Start a lab in the background (needs root; scripts/install-deps.sh installs the packages).
    Up(UpArgs),
    /// Stop everything the lab started and remove its namespaces and files (also after a crash).
    Down,
    /// List gateways (`veg`) or Pods (`pods`), like kubectl get.
    Get {
        /// `veg` (VpcEgressGateway) or `pods`.
        what: String,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Apply a manifest file (objects replace those of the same kind/namespace/name).
    Apply {
        /// The file.
        #[arg(short = 'f', long)]
        file: PathBuf,
    },
    /// Delete the objects of a manifest file, or `veg NAME`.
    Delete {
        /// The file whose objects to delete.
        #[arg(short = 'f', long, conflicts_with_all = ["kind", "name"])]
        file: Option<PathBuf>,
        /// `veg`.
        kind: Option<String>,
        /// The gateway's name.
        name: Option<String>,
        /// The gateway's namespace.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
    },
    /// Set a gateway's replicas.
    Scale {
        /// `veg`.
        kind: String,
        /// The gateway's name.
        name: String,
        /// The replicas.
        #[arg(long)]
        replicas: u32,
        /// The gateway's namespace.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
    },
    /// Run a command in a Pod's network namespace (`POD` or `NAMESPACE/POD`).
    Exec {
        /// The Pod.
        pod: String,
        /// The command.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Kill a gateway Pod as a crashed node would (processes killed, links cut); the lab's
    /// kubelet restarts it after the restart delay.
    Kill {
        /// The Pod.
        pod: String,
    },
    /// Crash a node as a whole: its chassis's vswitchd and ovn-controller SIGKILLed, every
    /// gateway Pod on it killed (not restarted until `--restore`), its client Pods cut off.
    KillNode {
        /// The node.
        node: String,
        /// Bring it back: the chassis restarted, its Pods started.
        #[arg(long)]
        restore: bool,
    },
    /// Cut a gateway Pod's links while its processes run (`--uplink`: only the external leg);
    /// `--restore` undoes it.
    Cut {
        /// The Pod.
        pod: String,
        /// Only the external leg.
        #[arg(long)]
        uplink: bool,
        /// Undo the cut.
        #[arg(long)]
        restore: bool,
    },
    /// Why a Pod does or does not leave through a gateway (`POD` or `NAMESPACE/POD`).
    Explain {
        /// The Pod.
        pod: String,
    },
    /// `ovn-nbctl` against the lab's Northbound database.
    Nb {
        /// ovn-nbctl's arguments.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Run the demo end to end (needs root; scripts/install-deps.sh installs the packages).
    Demo {
        /// The examples directory (its nad.yaml, subnets.yaml and lab/).
        #[arg(long, default_value = "examples")]
        examples: PathBuf,
        #[command(flatten)]
        data_plane: DataPlaneArgs,
    },
    /// The supervisor `up` starts (not for direct use).
    #[command(hide = true)]
    Serve(UpArgs),
}

#[derive(Clone, Debug, Args)]
struct UpArgs {
    /// Manifest files or directories (default: the examples' NAD, subnets and lab cluster and
    /// gateway).
    #[arg(long = "manifests", value_delimiter = ',')]
    manifests: Vec<PathBuf>,
    /// The topology file: nodes, namespaces' labels, client Pods.
    #[arg(long, default_value = "examples/lab/topology.yaml")]
    topology: PathBuf,
    /// How long the kubelet waits before restarting a killed Pod (0: never).
    #[arg(long, default_value_t = 3000)]
    restart_delay_ms: u64,
    /// Prefix of the lab's namespaces and interfaces (at most 6 characters).
    #[arg(long)]
    prefix: Option<String>,
    #[command(flatten)]
    data_plane: DataPlaneArgs,
    /// Seconds a dead node keeps its Ready condition before the lab's node controller marks it
    /// Unknown (Kubernetes' --node-monitor-grace-period).
    #[arg(long, default_value_t = 40)]
    node_grace_s: u64,
    /// A namespace's Pod Security level, `NAMESPACE=privileged|baseline|restricted`, as its
    /// `pod-security.kubernetes.io/enforce` label would set it (repeatable; over the
    /// manifests' labels). The gateways' namespace needs `privileged` (a privileged init).
    #[arg(long = "pod-security", value_parser = parse_pod_security)]
    pod_security: Vec<(String, veg_lab::podsecurity::Level)>,
    /// The lab kubelet's --allowed-unsafe-sysctls (comma-separated; `prefix*` patterns):
    /// empty by default, as a stock kubelet's. veg's Pods need none.
    #[arg(long, value_delimiter = ',')]
    allowed_unsafe_sysctls: Vec<String>,
}

fn parse_pod_security(text: &str) -> Result<(String, veg_lab::podsecurity::Level), String> {
    let (namespace, level) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: want NAMESPACE=LEVEL"))?;
    let level = veg_lab::podsecurity::Level::parse(level)
        .ok_or_else(|| format!("{level:?}: want privileged, baseline or restricted"))?;
    Ok((namespace.to_owned(), level))
}

/// Which OVN the lab runs and who withdraws dead gateway instances.
#[derive(Clone, Debug, Args)]
pub(crate) struct DataPlaneArgs {
    /// The OVN build: Kube-OVN's (what its users run; scripts/build-kube-ovn-ovn.sh builds
    /// it) or Debian's packages (stock OVN 23.03).
    #[arg(long, value_enum, default_value_t = OvnArg::KubeOvn)]
    ovn: OvnArg,
    /// native: OVN runs BFD from the VPC's `bfd@<vpc>` port (Kube-OVN's build only);
    /// monitor: `veg monitor` does. Default: native on kube-ovn, monitor on debian.
    #[arg(long, value_enum)]
    bfd_mode: Option<BfdModeArg>,
    /// Nodes with their own chassis (OVS, ovn-controller), joined by Geneve; the topology's
    /// nodes are spread over them (more are named lab-node2, lab-node3, …). Default: 1 for
    /// `up`, 2 for `demo`.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=8))]
    nodes: Option<u8>,
    /// The kustomize overlay whose controller (and monitor) Deployments the lab's kubelet
    /// runs, as shipped. Default: deploy/overlays/native in native mode,
    /// examples/lab/deploy/monitor (the monitor overlay with the lab's addresses) in monitor
    /// mode. `none`: the lab starts the controller and one monitor itself, as root.
    #[arg(long)]
    deploy: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum OvnArg {
    KubeOvn,
    Debian,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum BfdModeArg {
    Native,
    Monitor,
}

impl DataPlaneArgs {
    /// The install to run and the mode; fails when the build is not there.
    pub(crate) fn resolve(&self) -> anyhow::Result<(veg_lab::OvnInstall, BfdMode)> {
        let build = match self.ovn {
            OvnArg::KubeOvn => veg_lab::OvnBuild::KubeOvn,
            OvnArg::Debian => veg_lab::OvnBuild::Debian,
        };
        let mode = match self.bfd_mode {
            Some(BfdModeArg::Native) => BfdMode::Native,
            Some(BfdModeArg::Monitor) => BfdMode::Monitor,
            None => BfdMode::default_for(build),
        };
        Ok((veg_lab::OvnInstall::locate(build)?, mode))
    }

    /// The overlay the lab runs veg's own Deployments from (`None`: `--deploy none`).
    pub(crate) fn deploy(&self, mode: BfdMode) -> anyhow::Result<Option<PathBuf>> {
        let dir = match &self.deploy {
            Some(dir) if dir.as_os_str() == "none" => return Ok(None),
            Some(dir) => dir.clone(),
            None => PathBuf::from(veg_lab::deploy::default_overlay(mode)),
        };
        if !dir.join("kustomization.yaml").exists() {
            bail!(
                "no kustomization.yaml in {}: run from a checkout of veg, or say --deploy \
                 DIR (an overlay) or --deploy none",
                dir.display()
            );
        }
        Ok(Some(dir))
    }

    /// How many chassis, `default` when not given.
    pub(crate) fn nodes(&self, default: u8) -> usize {
        usize::from(self.nodes.unwrap_or(default))
    }

    /// The same choice as arguments (for the supervisor `up` starts).
    fn to_args(&self) -> Vec<String> {
        let name = |value: Option<clap::builder::PossibleValue>| {
            value.map(|v| v.get_name().to_owned()).unwrap_or_default()
        };
        let mut args = vec![format!("--ovn={}", name(self.ovn.to_possible_value()))];
        if let Some(nodes) = self.nodes {
            args.push(format!("--nodes={nodes}"));
        }
        if let Some(mode) = self.bfd_mode {
            args.push(format!("--bfd-mode={}", name(mode.to_possible_value())));
        }
        if let Some(deploy) = &self.deploy {
            args.push(format!("--deploy={}", deploy.display()));
        }
        args
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Wide,
    Json,
}

/// Runs a `veg lab` command.
pub fn run(args: LabArgs) -> anyhow::Result<ExitCode> {
    let state = args.state;
    match args.command {
        LabCommand::Up(up_args) => up(&state, &up_args),
        LabCommand::Serve(up_args) => serve(&state, &up_args),
        LabCommand::Down => down(&state),
        LabCommand::Get { what, output } => get(&state, &what, output),
        LabCommand::Apply { file } => {
            let lab = LabState::read(&state)?;
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            for (kind, namespace, name) in veg_lab::api::apply(&lab.api, &text)? {
                println!(
                    "{} {} applied",
                    kind.to_lowercase(),
                    qualified(&namespace, &name)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Delete {
            file,
            kind,
            name,
            namespace,
        } => {
            let lab = LabState::read(&state)?;
            let keys = match (file, kind.as_deref(), name) {
                (Some(file), _, _) => {
                    let text = std::fs::read_to_string(&file)
                        .with_context(|| format!("reading {}", file.display()))?;
                    veg_api::read_manifests(&text)?
                        .iter()
                        .map(|m| veg_lab::api::key_of(&m.object))
                        .collect()
                }
                (None, Some("veg" | "vpc-egress-gateway" | "vpcegressgateway"), Some(name)) => {
                    vec![("VpcEgressGateway".to_owned(), namespace, name)]
                }
                _ => bail!("say what to delete: -f FILE, or veg NAME"),
            };
            let mut missing = false;
            for key in keys {
                let (kind, ns, name) = &key;
                if veg_lab::api::delete(&lab.api, &key)? {
                    println!("{} {} deleted", kind.to_lowercase(), qualified(ns, name));
                } else {
                    eprintln!("{} {} not found", kind.to_lowercase(), qualified(ns, name));
                    missing = true;
                }
            }
            Ok(if missing {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        LabCommand::Scale {
            kind,
            name,
            replicas,
            namespace,
        } => {
            if !matches!(
                kind.as_str(),
                "veg" | "vpc-egress-gateway" | "vpcegressgateway"
            ) {
                bail!("only gateways scale: veg lab scale veg NAME --replicas N");
            }
            let lab = LabState::read(&state)?;
            veg_lab::api::scale(&lab.api, &namespace, &name, replicas)?;
            println!("vpcegressgateway {namespace}/{name} scaled to {replicas}");
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Exec { pod, command } => {
            let lab = LabState::read(&state)?;
            let netns = pod_netns(&lab, &pod)?;
            let status = Command::new("ip")
                .args(["netns", "exec", &netns])
                .args(&command)
                .status()
                .with_context(|| format!("running {}", command.join(" ")))?;
            Ok(ExitCode::from(
                u8::try_from(status.code().unwrap_or(1)).unwrap_or(1),
            ))
        }
        LabCommand::Kill { pod } => request(&state, &pod, serde_json::json!({"do": "kill"})),
        LabCommand::KillNode { node, restore } => node_request(&state, &node, restore),
        LabCommand::Cut {
            pod,
            uplink,
            restore,
        } => request(
            &state,
            &pod,
            serde_json::json!({"do": if restore { "restore" } else { "cut" }, "uplink": uplink}),
        ),
        LabCommand::Nb { args } => {
            let lab = LabState::read(&state)?;
            let status = lab
                .ovn
                .command("ovn-nbctl")
                .arg(format!("--db={}", lab.nb))
                .args(&args)
                .status()
                .context("running ovn-nbctl")?;
            Ok(ExitCode::from(
                u8::try_from(status.code().unwrap_or(1)).unwrap_or(1),
            ))
        }
        LabCommand::Demo {
            examples,
            data_plane,
        } => demo::demo(&examples, &data_plane),
        LabCommand::Explain { pod } => {
            use veg_controller::run::driver::Source as _;
            let lab = LabState::read(&state)?;
            let key = pod_key(&lab, &pod)?;
            let (namespace, name) = key.split_once('/').unwrap_or(("default", &key));
            let source = veg_controller::adapters::files::FileSource::new(
                &lab.api,
                &lab.decisions,
                Duration::from_secs(1),
            )?;
            print!(
                "{}",
                // The lab's controller runs deploy/'s settings: strict tenancy.
                veg_controller::plan::explain::explain(
                    source.snapshot(),
                    &veg_controller::Tenancy::default(),
                    namespace,
                    name
                )
            );
            // The data plane's answer: who the external host sees, per family of the Pod.
            if lab.pods.get(&key).is_some_and(|p| p.role == "client") {
                let families: std::collections::BTreeSet<bool> = lab.pods[&key]
                    .addresses
                    .iter()
                    .map(IpAddr::is_ipv4)
                    .collect();
                for v4 in families.into_iter().rev() {
                    let sample = veg_lab::session::egress_sample(&state, &lab, &key, v4, 8);
                    if sample.target.is_some() {
                        println!("  in the lab's data plane now: {}", sample.describe());
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn qualified(namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        name.to_owned()
    } else {
        format!("{namespace}/{name}")
    }
}

fn pod_key(lab: &LabState, pod: &str) -> anyhow::Result<String> {
    if lab.pods.contains_key(pod) {
        return Ok(pod.to_owned());
    }
    let matches: Vec<&String> = lab
        .pods
        .keys()
        .filter(|key| key.rsplit('/').next() == Some(pod))
        .collect();
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => bail!(
            "no Pod {pod} in the lab (veg lab get pods lists them: {})",
            lab.pods.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
        _ => bail!("{pod} is ambiguous: say NAMESPACE/{pod}"),
    }
}

fn pod_netns(lab: &LabState, pod: &str) -> anyhow::Result<String> {
    let key = pod_key(lab, pod)?;
    Ok(lab.pods[&key].netns.clone())
}

/// Sends a request to the supervisor and waits for its reply.
fn request(state: &Path, pod: &str, mut body: Json) -> anyhow::Result<ExitCode> {
    let lab = LabState::read(state)?;
    let key = pod_key(&lab, pod)?;
    if lab.pods[&key].role != "gateway" {
        bail!("{key} is not a gateway Pod: only those can be killed or cut");
    }
    if !supervisor_alive(state) {
        bail!(
            "the lab's supervisor is not running (see {}); `veg lab down` cleans up",
            state.join("lab.log").display()
        );
    }
    body["pod"] = Json::from(key.clone());
    match veg_lab::session::send_command(state, &body, Duration::from_secs(15)) {
        Ok(()) => {
            println!("{key}: {}", body["do"].as_str().unwrap_or_default());
            Ok(ExitCode::SUCCESS)
        }
        Err(veg_lab::LabError::Step { detail, .. }) => bail!("{key}: {detail}"),
        Err(other) => Err(other.into()),
    }
}

fn node_request(state: &Path, node: &str, restore: bool) -> anyhow::Result<ExitCode> {
    let lab = LabState::read(state)?;
    if !lab.nodes.contains_key(node) {
        bail!(
            "no node {node}; the lab's nodes are {}",
            lab.nodes.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    if !supervisor_alive(state) {
        bail!(
            "the lab's supervisor is not running (see {}); `veg lab down` cleans up",
            state.join("lab.log").display()
        );
    }
    let body = serde_json::json!({"do": "kill-node", "node": node, "restore": restore});
    match veg_lab::session::send_command(state, &body, Duration::from_secs(30)) {
        Ok(()) => {
            println!("{node}: {}", if restore { "restored" } else { "killed" });
            Ok(ExitCode::SUCCESS)
        }
        Err(veg_lab::LabError::Step { detail, .. }) => bail!("{node}: {detail}"),
        Err(other) => Err(other.into()),
    }
}

fn supervisor_pid(state: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(state.join("serve.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let cmdline = String::from_utf8_lossy(&cmdline);
    (veg_lab::ovn::alive(pid) && cmdline.contains("serve")).then_some(pid)
}

fn supervisor_alive(state: &Path) -> bool {
    supervisor_pid(state).is_some()
}

fn default_manifests() -> Vec<PathBuf> {
    [
        "examples/nad.yaml",
        "examples/subnets.yaml",
        "examples/lab/cluster.yaml",
        "examples/lab/gateway.yaml",
    ]
    .iter()
    .map(PathBuf::from)
    .collect()
}

fn up(state: &Path, args: &UpArgs) -> anyhow::Result<ExitCode> {
    let (ovn, _) = args.data_plane.resolve()?;
    veg_lab::ovn::check_prerequisites(&ovn)?;
    if state.exists() {
        if supervisor_alive(state) {
            bail!(
                "a lab is already up under {}: `veg lab down` stops it",
                state.display()
            );
        }
        bail!(
            "{} holds what is left of an earlier lab: `veg lab down` removes it",
            state.display()
        );
    }
    // Read the inputs now, so a typo is reported before anything starts.
    let manifests = if args.manifests.is_empty() {
        default_manifests()
    } else {
        args.manifests.clone()
    };
    for path in &manifests {
        if !path.exists() {
            bail!("{} does not exist", path.display());
        }
    }
    Topology::read(&args.topology)?;
    let (_, mode) = args.data_plane.resolve()?;
    args.data_plane.deploy(mode)?;
    std::fs::create_dir_all(state)?;
    let log = state.join("lab.log");
    let veg = std::env::current_exe().context("where is veg?")?;
    let mut command = Command::new(&veg);
    command
        .arg("lab")
        .arg("--state")
        .arg(state)
        .arg("serve")
        .arg("--topology")
        .arg(&args.topology)
        .arg(format!("--restart-delay-ms={}", args.restart_delay_ms))
        .arg(format!("--node-grace-s={}", args.node_grace_s));
    for (namespace, level) in &args.pod_security {
        command.arg(format!("--pod-security={namespace}={}", level.as_str()));
    }
    if !args.allowed_unsafe_sysctls.is_empty() {
        command.arg(format!(
            "--allowed-unsafe-sysctls={}",
            args.allowed_unsafe_sysctls.join(",")
        ));
    }
    for path in &manifests {
        command.arg("--manifests").arg(path);
    }
    if let Some(prefix) = &args.prefix {
        command.arg("--prefix").arg(prefix);
    }
    command.args(args.data_plane.to_args());
    // Its own process group: a Ctrl-C at this terminal does not take the lab down.
    use std::os::unix::process::CommandExt as _;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log)?)
        .stderr(std::fs::File::create(state.join("lab.err"))?)
        .process_group(0)
        .spawn()
        .context("starting the lab's supervisor")?;
    std::fs::write(state.join("serve.pid"), child.id().to_string())?;
    let mut shown = 0;
    let show = |shown: &mut usize| {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        for line in text.lines().skip(*shown) {
            println!("{line}");
            *shown += 1;
        }
    };
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        show(&mut shown);
        if state.join("ready").exists() {
            show(&mut shown);
            println!(
                "the lab is up under {}: veg lab get veg -o wide, veg lab get pods, veg lab down",
                state.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        if let Ok(Some(status)) = child.try_wait() {
            show(&mut shown);
            let errors = std::fs::read_to_string(state.join("lab.err")).unwrap_or_default();
            let tail: Vec<&str> = errors.lines().rev().take(10).collect();
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
            let _ = std::fs::remove_dir_all(state);
            bail!("the lab did not come up ({status}); nothing was left behind");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            veg_lab::ovn::stop_dir(state, &[]);
            bail!("the lab did not come up within 180 s; it was taken down");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn serve(state: &Path, args: &UpArgs) -> anyhow::Result<ExitCode> {
    crate::logging::init(crate::logging::LogFormat::Text);
    let stop = Arc::new(AtomicBool::new(false));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    {
        let stop = stop.clone();
        runtime.spawn(async move {
            let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            stop.store(true, Ordering::SeqCst);
        });
    }
    // The runtime's thread runs the signal task; this one runs the lab.
    let signals = std::thread::spawn(move || runtime.block_on(std::future::pending::<()>()));
    drop(signals);
    let prefix = args
        .prefix
        .clone()
        .unwrap_or_else(|| format!("vl{}", std::process::id() % 10000));
    let manifests = if args.manifests.is_empty() {
        default_manifests()
    } else {
        args.manifests.clone()
    };
    let (ovn, bfd_mode) = args.data_plane.resolve()?;
    println!("{}, {} BFD mode", ovn.describe(), bfd_mode.name());
    let started = Instant::now();
    let options = LabOptions {
        state_dir: state.to_owned(),
        prefix,
        veg: std::env::current_exe()?,
        manifests,
        topology: Topology::read(&args.topology)?,
        restart_delay: (args.restart_delay_ms > 0)
            .then(|| Duration::from_millis(args.restart_delay_ms)),
        ovn,
        bfd_mode,
        chassis: args.data_plane.nodes(1),
        node_grace: Duration::from_secs(args.node_grace_s),
        pod_security: args.pod_security.iter().cloned().collect(),
        allowed_unsafe_sysctls: args.allowed_unsafe_sysctls.clone(),
        deploy: args.data_plane.deploy(bfd_mode)?,
    };
    let mut lab = Lab::up(options, &mut |stage, at| {
        println!("[{:>6.2}s] {stage}", at.as_secs_f64());
    })?;
    // Ready when every gateway of the manifests has a status that is final for now.
    let gateways: Vec<(String, String)> = veg_lab::api::objects(lab.api_dir())?
        .iter()
        .map(|(_, o)| veg_lab::api::key_of(o))
        .filter(|(kind, _, _)| kind == "VpcEgressGateway")
        .map(|(_, ns, name)| (ns, name))
        .collect();
    // A problem is "stuck" once the same one has stood for 2 s: a first pass may report one
    // that the next fixes (native mode: the VPC's BFD port not reported yet).
    let mut problems: std::collections::BTreeMap<String, (String, Instant)> = Default::default();
    let mut waiting_instances: std::collections::BTreeMap<String, Instant> = Default::default();
    let outcome = lab.wait_for("the gateways", Duration::from_secs(60), |lab| {
        Ok(gateways.iter().all(|(ns, name)| {
            let status = lab.status(ns, name);
            let problem = status["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| {
                    c["status"] == "False"
                        && c["reason"] != "Processing"
                        && c["reason"] != "NoInstanceUp"
                })
                .map(|c| c["reason"].as_str().unwrap_or_default().to_owned());
            let key = format!("{ns}/{name}");
            let stuck = match problem {
                Some(reason) => {
                    let since = problems
                        .entry(key.clone())
                        .or_insert((reason.clone(), Instant::now()));
                    if since.0 != reason {
                        *since = (reason, Instant::now());
                    }
                    since.1.elapsed() > Duration::from_secs(2)
                }
                None => {
                    problems.remove(&key);
                    false
                }
            };
            // Completed with every instance's session Up (the demo and `explain` right after
            // `up` then see them all), or stuck on a problem its conditions name. An instance
            // whose session stays down is shown below, not waited for past 10 s.
            let not_up = instances_not_up(&status);
            let settled = if not_up.is_empty() {
                waiting_instances.remove(&key);
                true
            } else {
                waiting_instances
                    .entry(key)
                    .or_insert_with(Instant::now)
                    .elapsed()
                    > Duration::from_secs(10)
            };
            (status["phase"] == "Completed" && settled) || stuck
        }))
    });
    match outcome {
        Ok(()) => println!(
            "[{:>6.2}s] gateways: {}",
            started.elapsed().as_secs_f64(),
            gateways
                .iter()
                .map(|(ns, name)| {
                    let status = lab.status(ns, name);
                    let not_up = instances_not_up(&status);
                    format!(
                        "{ns}/{name} {}{}",
                        status["phase"].as_str().unwrap_or("-"),
                        if not_up.is_empty() {
                            String::new()
                        } else {
                            format!(" (BFD not Up: {})", not_up.join(", "))
                        }
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Err(error) => println!("[{:>6.2}s] {error}", started.elapsed().as_secs_f64()),
    }
    std::fs::write(state.join("ready"), "")?;
    while !stop.load(Ordering::SeqCst) {
        if let Err(error) = lab.sync() {
            tracing::warn!(%error, "lab sync");
        }
        lab.serve_commands();
        std::thread::sleep(Duration::from_millis(50));
    }
    lab.down();
    Ok(ExitCode::SUCCESS)
}

fn down(state: &Path) -> anyhow::Result<ExitCode> {
    if !state.exists() {
        println!("no lab under {}", state.display());
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(pid) = supervisor_pid(state) {
        veg_lab::ovn::terminate(pid);
        let deadline = Instant::now() + Duration::from_secs(60);
        while veg_lab::ovn::alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    if state.exists() {
        // The supervisor crashed or did not finish: clean up from the files.
        let namespaces: Vec<String> = LabState::read(state)
            .map(|lab| lab.pods.values().map(|p| p.netns.clone()).collect())
            .unwrap_or_default();
        veg_lab::ovn::stop_dir(state, &namespaces);
    }
    if state.exists() {
        bail!("{} could not be removed", state.display());
    }
    println!("the lab under {} is down", state.display());
    Ok(ExitCode::SUCCESS)
}

fn get(state: &Path, what: &str, output: Output) -> anyhow::Result<ExitCode> {
    let lab = LabState::read(state)?;
    match what {
        "veg" | "vegs" | "vpc-egress-gateways" | "vpcegressgateways" => {
            let gateways: Vec<Json> = veg_lab::api::objects(&lab.api)?
                .into_iter()
                .map(|(path, mut object)| {
                    let (_, ns, name) = veg_lab::api::key_of(&object);
                    object["status"] = read_status(&lab.decisions, &ns, &name);
                    object["metadata"]["namespace"] = Json::from(ns);
                    object["lab:age"] = Json::from(
                        std::fs::metadata(path)
                            .and_then(|m| m.modified())
                            .ok()
                            .and_then(|m| m.elapsed().ok())
                            .map(|d| d.as_secs())
                            .unwrap_or(0),
                    );
                    object
                })
                .filter(|o| o["kind"] == "VpcEgressGateway")
                .collect();
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&gateways)?),
                _ => print!("{}", gateway_table(&gateways, output == Output::Wide)),
            }
        }
        "pods" | "pod" | "po" => match output {
            Output::Json => println!("{}", serde_json::to_string_pretty(&lab.pods)?),
            _ => {
                let mut rows = vec![vec![
                    "NAMESPACE".to_owned(),
                    "NAME".into(),
                    "ROLE".into(),
                    "NODE".into(),
                    "READY".into(),
                    "STATE".into(),
                    "IPS".into(),
                ]];
                for (key, pod) in &lab.pods {
                    let (ns, name) = key.split_once('/').unwrap_or(("", key));
                    rows.push(vec![
                        ns.to_owned(),
                        name.to_owned(),
                        pod.role.clone(),
                        pod.node.clone(),
                        format!("{}/{}", pod.ready.0, pod.ready.1),
                        pod.state.clone(),
                        pod.addresses
                            .iter()
                            .map(IpAddr::to_string)
                            .collect::<Vec<_>>()
                            .join(","),
                    ]);
                }
                print!("{}", columns(&rows));
            }
        },
        other => bail!("veg lab get {other}: say veg or pods"),
    }
    Ok(ExitCode::SUCCESS)
}

fn columns(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}

/// The `kubectl get veg` table, from the CRD's printer columns.
fn gateway_table(gateways: &[Json], wide: bool) -> String {
    let text = |value: &Json| match value {
        Json::Null => "<none>".to_owned(),
        Json::String(s) => s.clone(),
        Json::Array(items) => items
            .iter()
            .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    };
    let age = |seconds: u64| match seconds {
        0..120 => format!("{seconds}s"),
        120..7200 => format!("{}m", seconds / 60),
        _ => format!("{}h", seconds / 3600),
    };
    let mut header = vec![
        "NAMESPACE",
        "NAME",
        "VPC",
        "REPLICAS",
        "BFD ENABLED",
        "EXTERNAL SUBNET",
        "PHASE",
        "READY",
    ];
    if wide {
        header.extend(["INTERNAL IPS", "EXTERNAL IPS", "WORKING NODES"]);
    }
    header.push("AGE");
    let mut rows = vec![header.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>()];
    for gateway in gateways {
        let spec = &gateway["spec"];
        let status = &gateway["status"];
        let mut row = vec![
            text(&gateway["metadata"]["namespace"]),
            text(&gateway["metadata"]["name"]),
            text(&spec["vpc"]).replace("<none>", "ovn-cluster"),
            text(&spec["replicas"]).replace("<none>", "1"),
            text(&spec["bfd"]["enabled"]).replace("<none>", "false"),
            text(&spec["externalSubnet"]),
            text(&status["phase"]),
            text(&status["ready"]).replace("<none>", "false"),
        ];
        if wide {
            row.extend([
                text(&status["internalIPs"]),
                text(&status["externalIPs"]),
                text(&status["workload"]["nodes"]),
            ]);
        }
        row.push(age(gateway["lab:age"].as_u64().unwrap_or(0)));
        rows.push(row);
    }
    columns(&rows)
}

/// The status's instances whose BFD session is on but not Up, as `pod state`.
fn instances_not_up(status: &serde_json::Value) -> Vec<String> {
    status["gateways"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|g| g.get("bfd").is_some_and(|state| state != "Up"))
        .map(|g| {
            format!(
                "{} {}",
                g["pod"].as_str().unwrap_or("-"),
                g["bfd"].as_str().unwrap_or("-")
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_security_levels_are_read_per_namespace_and_bad_ones_named() {
        assert_eq!(
            parse_pod_security("default=baseline"),
            Ok(("default".to_owned(), veg_lab::podsecurity::Level::Baseline))
        );
        assert!(parse_pod_security("default").is_err_and(|e| e.contains("NAMESPACE=LEVEL")));
        assert!(
            parse_pod_security("default=strict")
                .is_err_and(|e| e.contains("privileged, baseline or restricted"))
        );
    }
}
