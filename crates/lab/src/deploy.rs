//! The shipped manifests in the lab (`veg lab up --deploy deploy/overlays/<x>`): the overlay
//! rendered with `kubectl kustomize`, its `veg-controller` and `veg-monitor` Deployments run by
//! the lab's kubelet as they are — image aside, their args, environment, security context and
//! volumes — except for what the lab is not (said in the README):
//! - it has no API server: the controller's `--source=kube` becomes the lab's directory
//!   (`--source=dir:… --output=…`), which only a Pod with its own ServiceAccount token may
//!   write (the kubelet's part);
//! - its NB is a socket of its own: `VEG_NB` in `veg-config` is set to it, as an operator sets
//!   it to their cluster's;
//! - it has no Lease: `--source dir` elects no leader, so one controller replica runs.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::{Value as Json, json};

use crate::command::{run, step};
use crate::error::LabError;

/// The controller's Deployment and the ConfigMap its Pods read.
const CONTROLLER: &str = "veg-controller";
const MONITOR: &str = "veg-monitor";
const CONFIG: &str = "veg-config";

/// What the lab runs from an overlay.
#[derive(Clone, Debug, PartialEq)]
pub struct Release {
    /// The controller's Deployment, rewritten for the lab.
    pub controller: Json,
    /// The monitors' Deployment (monitor overlays).
    pub monitor: Option<Json>,
    /// Every ConfigMap: namespace, name, data (`veg-config` with the lab's NB).
    pub config_maps: Vec<(String, String, BTreeMap<String, String>)>,
    /// The controller's `--bfd-mode` (`auto` when it has none).
    pub bfd_mode: String,
}

/// Where the lab's controller finds its API and NB.
#[derive(Clone, Debug)]
pub struct LabEndpoints<'a> {
    pub api: &'a Path,
    pub decisions: &'a Path,
    pub nb: &'a str,
}

/// The overlay a lab in `mode` runs by default, relative to a checkout of veg: the shipped
/// native overlay, or the shipped monitor overlay with the lab's monitor addresses.
pub fn default_overlay(mode: crate::session::BfdMode) -> &'static str {
    match mode {
        crate::session::BfdMode::Native => "deploy/overlays/native",
        crate::session::BfdMode::Monitor => "examples/lab/deploy/monitor",
    }
}

/// `kubectl kustomize DIR`: the overlay's objects.
pub fn render(dir: &Path) -> Result<Vec<Json>, LabError> {
    let what = format!("rendering {} (kubectl kustomize)", dir.display());
    let text = run(&what, Command::new("kubectl").arg("kustomize").arg(dir))?;
    let manifests = veg_api::read_manifests(&text).map_err(|e| step(&what)(e.to_string()))?;
    Ok(manifests.into_iter().map(|m| m.object).collect())
}

/// The overlay's objects as the lab runs them.
pub fn release(objects: &[Json], lab: &LabEndpoints) -> Result<Release, LabError> {
    let named = |kind: &str, name: &str| {
        objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .cloned()
    };
    let fail = |detail: String| step("the overlay")(detail);
    let mut controller = named("Deployment", CONTROLLER)
        .ok_or_else(|| fail(format!("it renders no Deployment {CONTROLLER}")))?;
    let namespace = controller["metadata"]["namespace"]
        .as_str()
        .ok_or_else(|| fail(format!("Deployment {CONTROLLER} has no namespace")))?
        .to_owned();
    let monitor = named("Deployment", MONITOR);
    if let Some(monitor) = &monitor
        && monitor["metadata"]["namespace"].as_str() != Some(namespace.as_str())
    {
        return Err(fail(format!(
            "Deployment {MONITOR} is not in the controller's namespace {namespace}"
        )));
    }
    let mut config_maps = Vec::new();
    for object in objects.iter().filter(|o| o["kind"] == "ConfigMap") {
        let (_, map_namespace, name) = crate::api::key_of(object);
        let mut data: BTreeMap<String, String> = object["data"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect();
        if name == CONFIG {
            data.insert("VEG_NB".into(), lab.nb.to_owned());
        }
        config_maps.push((map_namespace, name, data));
    }
    if !config_maps
        .iter()
        .any(|(ns, name, _)| ns == &namespace && name == CONFIG)
    {
        return Err(fail(format!(
            "it renders no ConfigMap {CONFIG} in {namespace}"
        )));
    }

    let container = &mut controller["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<String> = container["args"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    let (args, bfd_mode) = controller_args(&args, lab);
    container["args"] = json!(args);
    controller["spec"]["replicas"] = json!(1);
    Ok(Release {
        controller,
        monitor,
        config_maps,
        bfd_mode,
    })
}

/// The controller's args with the lab's API in place of the cluster's, and its `--bfd-mode`.
fn controller_args(args: &[String], lab: &LabEndpoints) -> (Vec<String>, String) {
    let mut out = Vec::new();
    let mut bfd_mode = "auto".to_owned();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if arg == "--source" || arg == "--output" || arg == "--poll-ms" {
            rest.next();
            continue;
        }
        if arg.starts_with("--source=")
            || arg.starts_with("--output=")
            || arg.starts_with("--poll-ms=")
        {
            continue;
        }
        if let Some(mode) = arg.strip_prefix("--bfd-mode=") {
            mode.clone_into(&mut bfd_mode);
        }
        out.push(arg.clone());
    }
    // After the subcommand (`controller`), so a flag never lands before it.
    let at = out
        .iter()
        .position(|a| a == "controller")
        .map_or(0, |i| i + 1);
    let lab_args = [
        format!("--source=dir:{}", lab.api.display()),
        format!("--output={}", lab.decisions.display()),
        // The lab's API is polled files; a cluster's is a watch.
        "--poll-ms=100".to_owned(),
    ];
    out.splice(at..at, lab_args);
    (out, bfd_mode)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn endpoints() -> (PathBuf, PathBuf) {
        (PathBuf::from("/lab/api"), PathBuf::from("/lab/decisions"))
    }

    fn overlay(controller_args: Json, with_config: bool) -> Vec<Json> {
        let mut objects = vec![json!({"kind": "Deployment",
            "metadata": {"name": "veg-controller", "namespace": "kube-system"},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "controller", "args": controller_args}]}}}})];
        if with_config {
            objects.push(json!({"kind": "ConfigMap",
                "metadata": {"name": "veg-config", "namespace": "kube-system"},
                "data": {"VEG_NB": "tcp:ovn-nb.kube-system.svc:6641", "VEG_LOG_FORMAT": "json"}}));
        }
        objects
    }

    #[test]
    fn the_controller_reads_the_labs_api_and_nb_and_keeps_its_other_args() {
        let (api, decisions) = endpoints();
        let lab = LabEndpoints {
            api: &api,
            decisions: &decisions,
            nb: "unix:/lab/ovn/nb-pods.sock",
        };
        let objects = overlay(
            json!([
                "controller",
                "--source=kube",
                "--bfd-mode=native",
                "--metrics-address=[::]:10660",
                "--ovn-honours-bfd-port"
            ]),
            true,
        );
        let release = release(&objects, &lab).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            release.controller["spec"]["template"]["spec"]["containers"][0]["args"],
            json!([
                "controller",
                "--source=dir:/lab/api",
                "--output=/lab/decisions",
                "--poll-ms=100",
                "--bfd-mode=native",
                "--metrics-address=[::]:10660",
                "--ovn-honours-bfd-port"
            ])
        );
        assert_eq!(release.controller["spec"]["replicas"], 1);
        assert_eq!(release.bfd_mode, "native");
        assert_eq!(
            release.config_maps,
            [(
                "kube-system".to_owned(),
                "veg-config".to_owned(),
                BTreeMap::from([
                    ("VEG_LOG_FORMAT".to_owned(), "json".to_owned()),
                    ("VEG_NB".to_owned(), "unix:/lab/ovn/nb-pods.sock".to_owned()),
                ])
            )]
        );
        assert_eq!(release.monitor, None);
    }

    #[test]
    fn an_overlay_without_what_the_lab_needs_is_refused_by_name() {
        let (api, decisions) = endpoints();
        let lab = LabEndpoints {
            api: &api,
            decisions: &decisions,
            nb: "unix:/nb",
        };
        let error = release(&overlay(json!(["controller"]), false), &lab)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            error.contains("no ConfigMap veg-config in kube-system"),
            "{error}"
        );
        let error = release(&[], &lab)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("no Deployment veg-controller"), "{error}");
        // The overlay's flags in their other spelling are replaced too.
        let args = ["controller", "--source", "kube", "--poll-ms", "5"].map(str::to_owned);
        let (args, mode) = controller_args(&args, &lab);
        assert_eq!(
            args,
            [
                "controller",
                "--source=dir:/lab/api",
                "--output=/lab/decisions",
                "--poll-ms=100"
            ]
        );
        assert_eq!(mode, "auto");
    }
}
