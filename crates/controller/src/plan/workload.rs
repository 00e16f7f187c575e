//! The gateway's Deployment (pure): Kube-OVN's Pod annotations for IPAM, routes and Multus,
//! its labels, affinity and strategy, and veg's containers, each with the least privilege a
//! stock kubelet and container runtime make work:
//! - `veg gateway init`, privileged: it sets the forwarding and rp_filter sysctls (a
//!   non-privileged container's /proc/sys is read-only, and these are not in the kubelet's
//!   safe set, so the Pod cannot ask for them without a kubelet flag on every node) and applies
//!   the first plan. Kube-OVN's gateway Pods run a privileged init too.
//! - `veg gateway run` as uid 0 with only NET_ADMIN and NET_RAW (`drop: [ALL]`), no privilege
//!   escalation: a non-root user would get no effective capability from `capabilities.add`.
//! - `veg bfdd`, when BFD is on, with no capability at all (as uid 0, the agent's user, so
//!   that the agent may reach its control socket).
//!
//! NET_ADMIN already needs the namespace's Pod Security level to be `privileged`, so the
//! privileged init asks the operator for nothing more.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, ExecAction,
    HTTPGetAction, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    PodAffinityTerm, PodAntiAffinity, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    SeccompProfile, SecurityContext, Volume, VolumeMount, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::json;
use veg_api::names::{self, AddressFamily};
use veg_api::{BandwidthRate, PodAntiAffinity as AntiAffinityMode, VpcEgressGateway};

use crate::plan::context::GatewayInputs;

/// Port of `veg gateway run`'s `/metrics`, `/livez`, `/readyz`.
pub const GATEWAY_HTTP_PORT: i32 = 10670;
/// Port of `veg bfdd`'s `/metrics`, `/livez`, `/readyz`.
pub const BFDD_HTTP_PORT: i32 = 10669;
/// Where the bfdd control socket lives (an emptyDir shared by the containers).
pub const RUN_DIR: &str = "/run/veg";
/// The hash annotation (Kube-OVN's name): a change of the template means a new rollout.
pub const HASH_ANNOTATION: &str = "ovn.kubernetes.io/generate-hash";

/// The Deployment of a gateway.
pub fn render(gateway: &VpcEgressGateway, inputs: &GatewayInputs, image: &str) -> Deployment {
    let spec = &gateway.spec;
    let labels: BTreeMap<String, String> = names::gateway_labels(&inputs.name)
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect();
    let image = if spec.image.is_empty() {
        image
    } else {
        spec.image.as_str()
    };

    let mut template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels.clone()),
            annotations: Some(annotations(gateway, inputs)),
            ..ObjectMeta::default()
        }),
        spec: Some(pod_spec(gateway, inputs, image, &labels)),
    };
    let hash = template_hash(&template);
    if let Some(metadata) = template.metadata.as_mut() {
        metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(HASH_ANNOTATION.to_owned(), hash.clone());
    }
    Deployment {
        metadata: ObjectMeta {
            name: Some(names::deployment_name(&spec.prefix, &inputs.name)),
            namespace: Some(inputs.namespace.clone()),
            labels: Some(labels.clone()),
            annotations: Some(BTreeMap::from([(HASH_ANNOTATION.to_owned(), hash)])),
            owner_references: Some(vec![OwnerReference {
                api_version: format!("{}/{}", names::GROUP, names::VERSION),
                kind: names::KIND.to_owned(),
                name: inputs.name.clone(),
                uid: gateway.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(spec.replicas),
            selector: LabelSelector {
                match_labels: Some(labels),
                match_expressions: None,
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(1)),
                    max_surge: Some(IntOrString::Int(0)),
                }),
            }),
            template,
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

/// The first 12 hex digits of the sha256 of the template's JSON (self-consistent only).
fn template_hash(template: &PodTemplateSpec) -> String {
    use sha2::Digest as _;
    let json = serde_json::to_vec(template).unwrap_or_default();
    let digest = sha2::Sha256::digest(&json);
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

// ===== annotations =====

fn family_of(ip: &IpAddr) -> AddressFamily {
    AddressFamily::of(*ip)
}

/// `[{"dst": …, "gw": …}]`, sorted by dst then gw, host routes as /32 or /128.
fn routes_json(routes: &BTreeSet<(String, String)>) -> String {
    let list: Vec<serde_json::Value> = routes
        .iter()
        .map(|(dst, gw)| json!({"dst": dst, "gw": gw}))
        .collect();
    serde_json::Value::Array(list).to_string()
}

fn annotations(gateway: &VpcEgressGateway, inputs: &GatewayInputs) -> BTreeMap<String, String> {
    let spec = &gateway.spec;
    let workload = &inputs.workload;
    let provider = &workload.external_provider;
    let mut out = BTreeMap::new();
    out.insert(
        "k8s.v1.cni.cncf.io/networks".to_owned(),
        workload.attachment.clone(),
    );
    out.insert(
        "ovn.kubernetes.io/logical_switch".to_owned(),
        workload.internal_subnet.clone(),
    );

    // eth0: the BFD addresses and the policy sources outside the internal subnet, via the
    // internal gateway of their family.
    let internal_gateway = |family: AddressFamily| {
        workload
            .internal_gateways
            .iter()
            .find(|gw| family_of(gw) == family)
    };
    let mut internal_routes = BTreeSet::new();
    for ip in &workload.bfd_ips {
        // On-link (monitor mode, the monitor on the gateways' switch): no route via the router,
        // which would cost the BFD packets a hop. A router port (native) is never on-link.
        let on_link =
            !workload.bfd_routed && workload.internal_cidrs.iter().any(|cidr| cidr.contains(ip));
        if let Some(gw) = internal_gateway(family_of(ip)).filter(|_| !on_link) {
            internal_routes.insert((IpNet::from(*ip).to_string(), gw.to_string()));
        }
    }
    for (family, family_inputs) in &inputs.families {
        let Some(gw) = internal_gateway(*family) else {
            continue;
        };
        for source in &family_inputs.sources {
            let inside = workload
                .internal_cidrs
                .iter()
                .any(|cidr| cidr.contains(source));
            if !inside {
                internal_routes.insert((source.to_string(), gw.to_string()));
            }
        }
    }
    if !internal_routes.is_empty() {
        out.insert(
            "ovn.kubernetes.io/routes".to_owned(),
            routes_json(&internal_routes),
        );
    }
    // net1: the default route of each family via the external gateway.
    let external_routes: BTreeSet<(String, String)> = workload
        .external_gateways
        .iter()
        .filter(|gw| inputs.families.contains_key(&family_of(gw)))
        .map(|gw| {
            let default = match family_of(gw) {
                AddressFamily::V4 => "0.0.0.0/0",
                AddressFamily::V6 => "::/0",
            };
            (default.to_owned(), gw.to_string())
        })
        .collect();
    if !external_routes.is_empty() {
        out.insert(
            format!("{provider}.kubernetes.io/routes"),
            routes_json(&external_routes),
        );
    }

    // Addresses: pinned IPs or a pool, per leg.
    for (ips, pool, prefix) in [
        (&spec.internal_ips, &spec.internal_ip_pool, "ovn".to_owned()),
        (&spec.external_ips, &spec.external_ip_pool, provider.clone()),
    ] {
        let value = if !ips.is_empty() {
            Some(ips.join(";"))
        } else if !pool.is_empty() {
            Some(pool.clone())
        } else {
            None
        };
        if let Some(value) = value {
            out.insert(format!("{prefix}.kubernetes.io/ip_pool"), value);
        }
    }

    // Bandwidth, directions swapped on purpose: ingress into the VPC leaves eth0's OVS port.
    if let Some(bandwidth) = &spec.bandwidth {
        for (rate, key) in [
            (&bandwidth.ingress, "ovn.kubernetes.io/egress_rate"),
            (&bandwidth.egress, "ovn.kubernetes.io/ingress_rate"),
        ] {
            if let Some(mbps) = rate.as_ref().and_then(mbps).filter(|mbps| *mbps > 0) {
                out.insert(key.to_owned(), mbps.to_string());
            }
        }
    }
    out
}

/// A rate in Mbps: an integer, a digit string, or a quantity in bit/s rounded up.
pub fn mbps(rate: &BandwidthRate) -> Option<i64> {
    match rate {
        BandwidthRate::Mbps(value) => (*value >= 0).then_some(*value),
        BandwidthRate::Quantity(text) => {
            let text = text.trim();
            if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
                return text.parse().ok();
            }
            let split = text
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(text.len());
            let (number, suffix) = text.split_at(split);
            let number: f64 = number.parse().ok()?;
            let factor: f64 = match suffix {
                "" => 1.0,
                "k" => 1e3,
                "M" => 1e6,
                "G" => 1e9,
                "T" => 1e12,
                "Ki" => 1024.0,
                "Mi" => 1024.0 * 1024.0,
                "Gi" => 1024.0 * 1024.0 * 1024.0,
                "Ti" => 1024.0_f64.powi(4),
                _ => return None,
            };
            let bits = number * factor;
            (bits >= 0.0).then(|| (bits / 1e6).ceil() as i64)
        }
    }
}

// ===== the Pod =====

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn join<T: ToString>(items: impl IntoIterator<Item = T>) -> String {
    items
        .into_iter()
        .map(|item| item.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// `veg bfdd`: BFD on UDP 3784 needs no capability at all. It runs as uid 0 all the same, so
/// that its control socket belongs to the user of the agent that connects to it (the agent
/// has no CAP_DAC_OVERRIDE to reach a socket of another user).
fn unprivileged() -> SecurityContext {
    SecurityContext {
        run_as_user: Some(0),
        run_as_group: Some(0),
        run_as_non_root: Some(false),
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        ..SecurityContext::default()
    }
}

/// The agent's long-running container: root, so that the runtime's bounding set becomes its
/// effective set, holding only NET_ADMIN and NET_RAW.
fn network_admin() -> SecurityContext {
    SecurityContext {
        run_as_user: Some(0),
        run_as_group: Some(0),
        run_as_non_root: Some(false),
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: Some(vec!["NET_ADMIN".into(), "NET_RAW".into()]),
        }),
        ..SecurityContext::default()
    }
}

/// The init container: privileged, for the sysctls (see the module's comment).
fn privileged_init() -> SecurityContext {
    SecurityContext {
        run_as_user: Some(0),
        run_as_group: Some(0),
        run_as_non_root: Some(false),
        privileged: Some(true),
        read_only_root_filesystem: Some(true),
        ..SecurityContext::default()
    }
}

/// How the kubelet asks a gateway container about itself.
#[derive(Clone, Copy)]
enum ProbeWay {
    /// HTTP to the Pod's address: the default VPC, which the node can reach.
    Http,
    /// `veg gateway probe` inside the container, over loopback: a custom VPC's Pod addresses
    /// are not reachable from the node.
    Exec,
}

fn probe(way: ProbeWay, path: &str, port: i32, period: i32, failure: i32) -> Probe {
    let (http_get, exec) = match way {
        ProbeWay::Http => (
            Some(HTTPGetAction {
                path: Some(path.to_owned()),
                port: IntOrString::Int(port),
                ..HTTPGetAction::default()
            }),
            None,
        ),
        ProbeWay::Exec => (
            None,
            Some(ExecAction {
                command: Some(
                    [
                        "veg",
                        "gateway",
                        "probe",
                        "--port",
                        &port.to_string(),
                        "--path",
                        path,
                    ]
                    .map(str::to_owned)
                    .to_vec(),
                ),
            }),
        ),
    };
    Probe {
        http_get,
        exec,
        period_seconds: Some(period),
        timeout_seconds: Some(5),
        failure_threshold: Some(failure),
        ..Probe::default()
    }
}

fn pod_spec(
    gateway: &VpcEgressGateway,
    inputs: &GatewayInputs,
    image: &str,
    labels: &BTreeMap<String, String>,
) -> PodSpec {
    let spec = &gateway.spec;
    let bfd_on = inputs.bfd.is_some();
    let agent_env = agent_env(inputs);
    let run_mount = VolumeMount {
        name: "run".into(),
        mount_path: RUN_DIR.into(),
        ..VolumeMount::default()
    };
    let socket = format!("{RUN_DIR}/bfdd.sock");

    let init = Container {
        name: "init".into(),
        image: Some(image.to_owned()),
        image_pull_policy: Some("IfNotPresent".into()),
        args: Some(vec!["gateway".into(), "init".into()]),
        env: Some(agent_env.clone()),
        security_context: Some(privileged_init()),
        ..Container::default()
    };
    let mut run_args = vec![
        "gateway".to_owned(),
        "run".to_owned(),
        "--http".to_owned(),
        format!("[::]:{GATEWAY_HTTP_PORT}"),
    ];
    if bfd_on {
        run_args.extend(["--bfd-control".to_owned(), socket.clone()]);
    }
    let probe_way = if inputs.vpc == names::DEFAULT_VPC {
        ProbeWay::Http
    } else {
        ProbeWay::Exec
    };
    let agent = Container {
        name: "gateway".into(),
        image: Some(image.to_owned()),
        image_pull_policy: Some("IfNotPresent".into()),
        args: Some(run_args),
        env: Some(agent_env),
        ports: Some(vec![ContainerPort {
            name: Some("gateway-http".into()),
            container_port: GATEWAY_HTTP_PORT,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        liveness_probe: Some(probe(probe_way, "/livez", GATEWAY_HTTP_PORT, 5, 3)),
        readiness_probe: Some(probe(probe_way, "/readyz", GATEWAY_HTTP_PORT, 2, 1)),
        resources: spec.resources.clone(),
        security_context: Some(network_admin()),
        volume_mounts: Some(vec![run_mount.clone()]),
        ..Container::default()
    };
    let mut containers = vec![agent];
    if let Some(bfd) = &inputs.bfd {
        containers.push(bfdd_container(
            bfd, inputs, image, socket, probe_way, run_mount,
        ));
    }

    PodSpec {
        init_containers: Some(vec![init]),
        containers,
        affinity: Some(affinity(spec, labels)),
        tolerations: (!spec.tolerations.is_empty()).then(|| spec.tolerations.clone()),
        security_context: Some(PodSecurityContext {
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            ..PodSecurityContext::default()
        }),
        volumes: Some(
            std::iter::once(Volume {
                name: "run".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            })
            .chain(
                inputs
                    .workload
                    .bfd_auth_secret
                    .iter()
                    .filter(|_| inputs.bfd.is_some())
                    .map(|secret| Volume {
                        name: "bfd-auth".into(),
                        secret: Some(k8s_openapi::api::core::v1::SecretVolumeSource {
                            secret_name: Some(secret.clone()),
                            items: Some(vec![k8s_openapi::api::core::v1::KeyToPath {
                                key: BFD_AUTH_KEY.into(),
                                path: BFD_AUTH_KEY.into(),
                                mode: Some(0o400),
                            }]),
                            ..Default::default()
                        }),
                        ..Volume::default()
                    }),
            )
            .collect(),
        ),
        // BFD on: time for the AdminDown the router needs to withdraw this instance.
        termination_grace_period_seconds: Some(if bfd_on { 30 } else { 5 }),
        ..PodSpec::default()
    }
}

/// The environment of `veg gateway init` and `veg gateway run` (empty values left out).
fn agent_env(inputs: &GatewayInputs) -> Vec<EnvVar> {
    let workload = &inputs.workload;
    let carried = |ip: &IpAddr| inputs.families.contains_key(&family_of(ip));
    let sources = inputs.families.values().flat_map(|f| f.sources.iter());
    let forward_only = inputs.families.values().flat_map(|f| f.forward_only.iter());
    let mut agent_env = vec![
        env("VEG_GW_INTERNAL_INTERFACE", "eth0"),
        env("VEG_GW_EXTERNAL_INTERFACE", "net1"),
        env(
            "VEG_GW_INTERNAL_GATEWAY",
            join(workload.internal_gateways.iter().filter(|gw| carried(gw))),
        ),
        env(
            "VEG_GW_EXTERNAL_GATEWAY",
            join(workload.external_gateways.iter().filter(|gw| carried(gw))),
        ),
        env("VEG_GW_SOURCES", join(sources)),
        env("VEG_GW_FORWARD_ONLY", join(forward_only)),
        env("VEG_GW_BFD_PEERS", join(&workload.bfd_ips)),
        env(
            "VEG_GW_BFD_PEERS_ROUTED",
            if workload.bfd_routed { "true" } else { "" },
        ),
        env("VEG_LOG_FORMAT", "json"),
    ];
    agent_env.retain(|var| var.value.as_deref().is_some_and(|v| !v.is_empty()));
    agent_env
}

/// The `veg bfdd` container: the passive side of the router's sessions.
fn bfdd_container(
    bfd: &crate::plan::context::BfdInputs,
    inputs: &GatewayInputs,
    image: &str,
    socket: String,
    probe_way: ProbeWay,
    run_mount: VolumeMount,
) -> Container {
    Container {
        name: "bfdd".into(),
        image: Some(image.to_owned()),
        image_pull_policy: Some("IfNotPresent".into()),
        args: Some(
            vec![
                "bfdd".into(),
                "--allow".into(),
                join(&inputs.workload.bfd_ips),
                "--min-tx-ms".into(),
                bfd.min_tx.to_string(),
                "--min-rx-ms".into(),
                bfd.min_rx.to_string(),
                "--multiplier".into(),
                bfd.multiplier.to_string(),
                // OVN routes the router's packets: one hop.
                "--min-ttl".into(),
                "254".into(),
                "--control-socket".into(),
                socket,
                "--http".into(),
                format!("[::]:{BFDD_HTTP_PORT}"),
                "--log-format".into(),
                "json".into(),
            ]
            .into_iter()
            .chain(inputs.workload.bfd_auth_secret.iter().flat_map(|_| {
                [
                    "--auth-key-file".to_owned(),
                    format!("{BFD_AUTH_DIR}/{BFD_AUTH_KEY}"),
                ]
            }))
            // Native mode: OVN reports a peer's AdminDown up to 5 s late, silence at once.
            .chain(
                inputs
                    .workload
                    .bfd_routed
                    .then(|| "--silent-path-down".to_owned()),
            )
            .collect(),
        ),
        ports: Some(vec![ContainerPort {
            name: Some("bfdd-http".into()),
            container_port: BFDD_HTTP_PORT,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        // Live, not ready-on-sessions: a gateway with no session yet is healthy.
        liveness_probe: Some(probe(probe_way, "/livez", BFDD_HTTP_PORT, 5, 3)),
        security_context: Some(unprivileged()),
        volume_mounts: Some(
            std::iter::once(run_mount)
                .chain(inputs.workload.bfd_auth_secret.iter().map(|_| VolumeMount {
                    name: "bfd-auth".into(),
                    mount_path: BFD_AUTH_DIR.into(),
                    read_only: Some(true),
                    ..VolumeMount::default()
                }))
                .collect(),
        ),
        ..Container::default()
    }
}

/// Where bfdd finds the keyed SHA1 key (monitor mode), and the Secret's key holding it.
const BFD_AUTH_DIR: &str = "/etc/veg/bfd-auth";
const BFD_AUTH_KEY: &str = "key";

/// Spread over nodes (`podAntiAffinity`) and kept to the chosen ones (`nodeSelector`).
fn affinity(spec: &veg_api::VpcEgressGatewaySpec, labels: &BTreeMap<String, String>) -> Affinity {
    let anti_affinity_term = PodAffinityTerm {
        label_selector: Some(LabelSelector {
            match_labels: Some(labels.clone()),
            match_expressions: None,
        }),
        topology_key: "kubernetes.io/hostname".into(),
        ..PodAffinityTerm::default()
    };
    let pod_anti_affinity = match spec.pod_anti_affinity {
        AntiAffinityMode::Required => PodAntiAffinity {
            required_during_scheduling_ignored_during_execution: Some(vec![anti_affinity_term]),
            ..PodAntiAffinity::default()
        },
        AntiAffinityMode::Preferred => PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: anti_affinity_term,
                },
            ]),
            ..PodAntiAffinity::default()
        },
    };
    let node_terms: Vec<NodeSelectorTerm> = spec
        .node_selector
        .iter()
        .map(|selector| {
            let mut expressions = selector.match_expressions.clone();
            for (key, value) in &selector.match_labels {
                expressions.push(NodeSelectorRequirement {
                    key: key.clone(),
                    operator: "In".into(),
                    values: Some(vec![value.clone()]),
                });
            }
            NodeSelectorTerm {
                match_expressions: (!expressions.is_empty()).then_some(expressions),
                match_fields: (!selector.match_fields.is_empty())
                    .then(|| selector.match_fields.clone()),
            }
        })
        .collect();
    Affinity {
        pod_anti_affinity: Some(pod_anti_affinity),
        node_affinity: (!node_terms.is_empty()).then(|| NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: node_terms,
            }),
            ..NodeAffinity::default()
        }),
        ..Affinity::default()
    }
}

#[cfg(test)]
mod tests;
