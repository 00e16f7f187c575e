//! `kubectl veg` — `veg kubectl-plugin`, or this binary installed as `kubectl-veg` on the PATH.
//! It reads the cluster through kubectl itself (a plugin runs where kubectl works, with its
//! context and credentials) and answers with the controller's own logic:
//! `status NAME` (the status with every instance's BFD state) and `explain POD` (which gateway
//! carries it, through which instances, SNATed to what — or why none does).

use std::process::{Command, ExitCode};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use serde_json::Value as Json;
use veg_controller::plan::snapshot::MemorySnapshot;

/// `veg kubectl-plugin`.
#[derive(Debug, Args)]
pub struct PluginArgs {
    /// The kubectl to call.
    #[arg(long, global = true, env = "VEG_KUBECTL", default_value = "kubectl")]
    kubectl: String,
    /// The namespace (default: `default`).
    #[arg(short = 'n', long, global = true, default_value = "default")]
    namespace: String,
    /// How the controller judges tenancy (explain must judge alike).
    #[command(flatten)]
    tenancy: crate::tenancy::TenancyArgs,
    #[command(subcommand)]
    command: PluginCommand,
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// A gateway's status, with every instance's addresses and BFD state.
    Status {
        /// The gateway.
        name: String,
    },
    /// Which gateway and instances carry a Pod's traffic out, with what source — or why none.
    Explain {
        /// The Pod (`POD` or `NAMESPACE/POD`).
        pod: String,
    },
}

/// Runs the plugin.
pub fn run(args: PluginArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        PluginCommand::Status { name } => status(&args.kubectl, &args.namespace, &name),
        PluginCommand::Explain { pod } => {
            let (namespace, name) = match pod.split_once('/') {
                Some((ns, name)) => (ns.to_owned(), name.to_owned()),
                None => (args.namespace.clone(), pod.clone()),
            };
            let snapshot = cluster(&args.kubectl)?;
            let explanation = veg_controller::plan::explain::explain(
                &snapshot,
                &args.tenancy.tenancy(),
                &namespace,
                &name,
            );
            print!("{}", printable(&explanation.to_string()));
            Ok(
                if matches!(
                    explanation.verdict,
                    veg_controller::plan::explain::Verdict::Unknown(_)
                ) {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                },
            )
        }
    }
}

fn kubectl(kubectl: &str, args: &[&str]) -> anyhow::Result<Json> {
    let output = Command::new(kubectl)
        .args(args)
        .output()
        .with_context(|| format!("running {kubectl} (is it installed? --kubectl names another)"))?;
    if !output.status.success() {
        bail!(
            "{kubectl} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    serde_json::from_slice(&output.stdout)
        .with_context(|| format!("{kubectl} {}: not JSON", args.join(" ")))
}

/// The objects `explain` reads, from every namespace. A kind the cluster lacks (an optional
/// CRD) is empty; the explanation then says what is missing.
fn cluster(kubectl_path: &str) -> anyhow::Result<MemorySnapshot> {
    let mut snapshot = MemorySnapshot::default();
    for (resource, kind) in [
        ("vpc-egress-gateways.kubeovn.io", "VpcEgressGateway"),
        ("vpcs.kubeovn.io", "Vpc"),
        ("subnets.kubeovn.io", "Subnet"),
        ("ippools.kubeovn.io", "IPPool"),
        (
            "network-attachment-definitions.k8s.cni.cncf.io",
            "NetworkAttachmentDefinition",
        ),
        ("namespaces", "Namespace"),
        ("nodes", "Node"),
        ("pods", "Pod"),
    ] {
        let list = match kubectl(kubectl_path, &["get", resource, "-A", "-o", "json"]) {
            Ok(list) => list,
            Err(error) => {
                eprintln!("warning: {error:#}");
                continue;
            }
        };
        for item in list["items"].as_array().into_iter().flatten() {
            let name = item["metadata"]["name"].as_str().unwrap_or("?").to_owned();
            // The list's items are of the kind asked for, whether or not they say so.
            let mut item = item.clone();
            item["kind"] = Json::from(kind);
            if let Err(error) = snapshot.put_object(item) {
                eprintln!(
                    "{}",
                    printable(&format!("warning: {resource} {name}: {error}"))
                );
            }
        }
    }
    Ok(snapshot)
}

fn text(value: &Json) -> String {
    match value {
        Json::Null => "-".to_owned(),
        Json::String(s) => s.clone(),
        Json::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(" "),
        other => other.to_string(),
    }
}

fn status(kubectl_path: &str, namespace: &str, name: &str) -> anyhow::Result<ExitCode> {
    let gateway = kubectl(
        kubectl_path,
        &[
            "get",
            "vpc-egress-gateways.kubeovn.io",
            name,
            "-n",
            namespace,
            "-o",
            "json",
        ],
    )?;
    print!("{}", printable(&status_text(&gateway)));
    Ok(if gateway["status"]["ready"] == true {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The readable status of a gateway object.
pub fn status_text(gateway: &Json) -> String {
    let spec = &gateway["spec"];
    let status = &gateway["status"];
    let mut out = format!(
        "gateway {}/{}: phase {}, ready {}, {} replica(s), VPC {}, external subnet {}, BFD {}\n",
        text(&gateway["metadata"]["namespace"]),
        text(&gateway["metadata"]["name"]),
        text(&status["phase"]),
        status["ready"] == true,
        spec["replicas"].as_i64().unwrap_or(1),
        spec["vpc"]
            .as_str()
            .filter(|v| !v.is_empty())
            .unwrap_or("ovn-cluster"),
        text(&spec["externalSubnet"]),
        if spec["bfd"]["enabled"] == true {
            format!(
                "on ({} ms × {})",
                spec["bfd"]["minRX"].as_i64().unwrap_or(1000),
                spec["bfd"]["multiplier"].as_i64().unwrap_or(3)
            )
        } else {
            "off".to_owned()
        }
    );
    out.push_str("conditions:\n");
    for condition in status["conditions"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {}={} {}{} (since {})\n",
            text(&condition["type"]),
            text(&condition["status"]),
            text(&condition["reason"]),
            condition["message"]
                .as_str()
                .filter(|m| !m.is_empty())
                .map(|m| format!(": {m}"))
                .unwrap_or_default(),
            text(&condition["lastTransitionTime"])
        ));
    }
    let instances = status["gateways"].as_array().cloned().unwrap_or_default();
    if instances.is_empty() {
        out.push_str("instances: none\n");
        return out;
    }
    let mut rows = vec![[
        "POD".to_owned(),
        "NODE".to_owned(),
        "INTERNAL".to_owned(),
        "EXTERNAL".to_owned(),
        "BFD".to_owned(),
        "SINCE".to_owned(),
    ]];
    for instance in &instances {
        rows.push([
            text(&instance["pod"]),
            text(&instance["node"]),
            text(&instance["internalIPs"]),
            text(&instance["externalIPs"]),
            text(&instance["bfd"]),
            text(&instance["since"]),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    out.push_str("instances:\n");
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(&format!("  {}\n", cells.join("   ").trim_end()));
    }
    out
}

/// `text` safe for a terminal: object fields (names, messages, annotations) are anyone's to
/// write, and an escape sequence in one would otherwise drive the reader's terminal. Control
/// characters other than newline and tab are shown escaped.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn escape_sequences_from_object_fields_are_shown_not_obeyed() {
        let message = "pod x\u{1b}]0;owned\u{7}\u{1b}[2J gone\r\nnext\tline";
        let shown = printable(message);
        assert!(
            !shown
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t'),
            "{shown:?}"
        );
        assert_eq!(
            shown,
            "pod x\\u{1b}]0;owned\\u{7}\\u{1b}[2J gone\\r\nnext\tline"
        );
    }
}
