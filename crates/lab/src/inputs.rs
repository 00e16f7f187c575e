//! What a lab is made from: the manifests (the API objects, their subnets) and the topology
//! file (client Pods, nodes, namespace labels).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::command::step;
use crate::error::LabError;
use crate::topology::LabSubnet;

/// The client Pods and nodes the lab plays, beside the manifests.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Topology {
    /// Node names; gateway Pods are spread over them in order. Default: `lab-node`.
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Labels of nodes (their Node objects'; the scheduler matches nodeSelector and node
    /// affinity against them), besides `kubernetes.io/hostname`.
    #[serde(default)]
    pub node_labels: BTreeMap<String, BTreeMap<String, String>>,
    /// Labels of namespaces (created when the manifests do not have them).
    #[serde(default)]
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// Client Pods.
    #[serde(default)]
    pub pods: Vec<ClientPod>,
}

/// A client Pod: a namespace bound to the logical switch port `<name>.<namespace>`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientPod {
    pub name: String,
    /// Namespace (`default` when absent).
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// The subnet (a Subnet manifest).
    pub subnet: String,
    /// Fixed addresses (one per family of the subnet); allocated when absent.
    #[serde(default)]
    pub ips: Vec<IpAddr>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The node it runs on (the first node when absent).
    #[serde(default)]
    pub node: Option<String>,
}

fn default_namespace() -> String {
    "default".into()
}

impl Topology {
    /// Reads a topology file (YAML).
    pub fn read(path: &Path) -> Result<Topology, LabError> {
        let reading = format!("reading {}", path.display());
        let text = std::fs::read_to_string(path).map_err(|e| step(&reading)(e.to_string()))?;
        serde_saphyr::from_str(&text).map_err(|e| step(&reading)(e.to_string()))
    }
}

/// A subnet as the manifests describe it.
#[derive(Clone, Debug)]
pub(crate) struct ManifestSubnet {
    pub(crate) subnet: LabSubnet,
    pub(crate) provider: String,
    pub(crate) vpc: String,
}

impl ManifestSubnet {
    pub(crate) fn internal(&self) -> bool {
        self.provider.is_empty() || self.provider == "ovn" || self.provider.ends_with(".ovn")
    }
}

pub(crate) fn parse_subnet(object: &Json) -> Result<ManifestSubnet, LabError> {
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let fail = |detail: String| LabError::Step {
        step: format!("Subnet {name}"),
        detail,
    };
    let spec = &object["spec"];
    let cidrs = veg_api::kubeovn::list_items(spec["cidrBlock"].as_str().unwrap_or_default())
        .map(|c| {
            c.parse::<IpNet>()
                .map_err(|e| fail(format!("cidrBlock {c}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut gateways = veg_api::kubeovn::list_items(spec["gateway"].as_str().unwrap_or_default())
        .map(|g| {
            g.parse::<IpAddr>()
                .map_err(|e| fail(format!("gateway {g}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if gateways.is_empty() {
        // Kube-OVN's default: the first address of each CIDR.
        gateways = cidrs.iter().filter_map(|c| c.hosts().next()).collect();
    }
    if cidrs.is_empty() || cidrs.len() != gateways.len() {
        return Err(fail(
            "needs a cidrBlock and one gateway per CIDR".to_owned(),
        ));
    }
    Ok(ManifestSubnet {
        subnet: LabSubnet {
            name: name.to_owned(),
            cidrs,
            gateways,
        },
        provider: spec["provider"].as_str().unwrap_or("ovn").to_owned(),
        vpc: spec["vpc"].as_str().unwrap_or("ovn-cluster").to_owned(),
    })
}

/// Reads every manifest of `paths` (files, or directories' `*.yaml`/`*.yml`), in order.
pub(crate) fn read_objects(paths: &[PathBuf]) -> Result<Vec<(String, Json)>, LabError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut inner: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| step(&format!("reading {}", path.display()))(e.to_string()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            inner.sort();
            files.extend(inner);
        } else {
            files.push(path.clone());
        }
    }
    let mut objects = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| step(&format!("reading {}", file.display()))(e.to_string()))?;
        let manifests = veg_api::read_manifests(&text)
            .map_err(|e| step(&format!("reading {}", file.display()))(e.to_string()))?;
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for manifest in manifests {
            objects.push((name.clone(), manifest.object));
        }
    }
    Ok(objects)
}
