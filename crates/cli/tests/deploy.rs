//! `deploy/`: every kustomization renders offline with `kubectl kustomize`; every object parses
//! into its k8s-openapi type with no unknown field; the Deployments' args and environment are
//! flags of the `veg` subcommand they run; the controller runs as two unprivileged replicas
//! with a read-only root; the ClusterRole and Role grant exactly the adapter's RBAC table.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

fn render(kustomization: &str) -> Result<Vec<Value>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(kustomization);
    Ok(veg_lab::deploy::render(&dir)?)
}

/// Decodes into `T`, failing on any field `T` does not have.
fn strict<T: serde::de::DeserializeOwned>(object: &Value) -> Result<T> {
    let mut unknown = Vec::new();
    let decoded =
        serde_ignored::deserialize(object.clone(), |path| unknown.push(path.to_string()))?;
    ensure!(
        unknown.is_empty(),
        "{} {}: unknown fields {unknown:?}",
        object["kind"],
        object["metadata"]["name"]
    );
    Ok(decoded)
}

fn help(subcommand: &str) -> Result<String> {
    let output = Command::new(env!("CARGO_BIN_EXE_veg"))
        .args([subcommand, "--help"])
        .output()?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Every `--flag` of the container's args and every `VEG_*`/`POD_*` variable it gets exists in
/// `veg <subcommand> --help`.
fn check_container(deployment: &Deployment, config: Option<&ConfigMap>) -> Result<String> {
    let spec = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .context("no pod spec")?;
    let container = spec.containers.first().context("no container")?;
    let args = container.args.clone().unwrap_or_default();
    let subcommand = args.first().context("no subcommand")?.clone();
    let help = help(&subcommand)?;
    for arg in &args[1..] {
        let flag = arg.split('=').next().unwrap_or_default();
        ensure!(
            flag.starts_with("--")
                && (help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n"))),
            "{}: `{arg}` is not a flag of `veg {subcommand}`",
            deployment.metadata.name.as_deref().unwrap_or_default()
        );
    }
    let mut variables: Vec<String> = container
        .env
        .iter()
        .flatten()
        .map(|e| e.name.clone())
        .collect();
    let config = config.context("no veg-config")?;
    if subcommand == "controller" {
        variables.extend(config.data.iter().flatten().map(|(k, _)| k.clone()));
    }
    // Every NB client given the ConfigMap takes its connection (TLS included, which the
    // ConfigMap's comment tells operators to set there) and logging settings from it.
    let from_config = container.env_from.iter().flatten().any(|source| {
        source
            .config_map_ref
            .as_ref()
            .is_some_and(|c| c.name == "veg-config")
    });
    ensure!(
        from_config,
        "{}: does not read veg-config",
        deployment.metadata.name.as_deref().unwrap_or_default()
    );
    variables.extend(
        [
            "VEG_NB",
            "VEG_NB_CA_CERT",
            "VEG_NB_CERT",
            "VEG_NB_KEY",
            "VEG_LOG_FORMAT",
            "VEG_LOG_LEVEL",
        ]
        .map(str::to_owned),
    );
    for variable in variables {
        ensure!(
            help.contains(&format!("[env: {variable}=")),
            "{}: {variable} is not read by `veg {subcommand}`",
            deployment.metadata.name.as_deref().unwrap_or_default()
        );
    }
    // Unprivileged and read-only.
    let pod_security = spec
        .security_context
        .as_ref()
        .context("no pod securityContext")?;
    ensure!(pod_security.run_as_non_root == Some(true), "runAsNonRoot");
    let security = container
        .security_context
        .as_ref()
        .context("no securityContext")?;
    ensure!(
        security.read_only_root_filesystem == Some(true),
        "readOnlyRootFilesystem"
    );
    ensure!(
        security.allow_privilege_escalation == Some(false),
        "allowPrivilegeEscalation"
    );
    let capabilities = security.capabilities.as_ref().context("no capabilities")?;
    ensure!(
        capabilities.drop.clone().unwrap_or_default() == ["ALL"]
            && capabilities.add.clone().unwrap_or_default().is_empty(),
        "capabilities: {capabilities:?}"
    );
    Ok(subcommand)
}

/// (group, resource, verb, cluster-wide, resource names joined) of every grant.
type Grant = (String, String, String, bool, String);

fn granted(rules: &[PolicyRule], cluster: bool, out: &mut BTreeSet<Grant>) {
    for rule in rules {
        let mut names = rule.resource_names.clone().unwrap_or_default();
        names.sort();
        let names = names.join(",");
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    out.insert((
                        group.clone(),
                        resource.clone(),
                        verb.clone(),
                        cluster,
                        names.clone(),
                    ));
                }
            }
        }
    }
}

fn check(kustomization: &str) -> Result<Vec<String>> {
    let objects = render(kustomization)?;
    let mut config = None;
    let mut deployments = Vec::new();
    let mut rules = BTreeSet::new();
    for object in &objects {
        match object["kind"].as_str().unwrap_or_default() {
            "CustomResourceDefinition" => {
                let crd: CustomResourceDefinition = strict(object)?;
                ensure!(
                    crd == veg_api::crd(),
                    "the kustomization's CRD is not the generated one"
                );
            }
            "ServiceAccount" => drop(strict::<ServiceAccount>(object)?),
            "ClusterRole" => granted(
                &strict::<ClusterRole>(object)?.rules.unwrap_or_default(),
                true,
                &mut rules,
            ),
            "Role" => granted(
                &strict::<Role>(object)?.rules.unwrap_or_default(),
                false,
                &mut rules,
            ),
            "ClusterRoleBinding" => drop(strict::<ClusterRoleBinding>(object)?),
            "RoleBinding" => drop(strict::<RoleBinding>(object)?),
            "ConfigMap" => config = Some(strict::<ConfigMap>(object)?),
            "Deployment" => deployments.push(strict::<Deployment>(object)?),
            other => bail!("{kustomization}: unexpected kind {other}"),
        }
    }
    let expected: BTreeSet<Grant> = veg_controller::adapters::kube::rbac::CALLS
        .iter()
        .flat_map(|call| {
            let mut names: Vec<&str> = call.names.to_vec();
            names.sort_unstable();
            let names = names.join(",");
            call.verbs.iter().map(move |verb| {
                (
                    call.group.to_owned(),
                    call.resource.to_owned(),
                    (*verb).to_owned(),
                    call.cluster,
                    names.clone(),
                )
            })
        })
        .collect();
    let missing: Vec<_> = expected.difference(&rules).collect();
    let extra: Vec<_> = rules.difference(&expected).collect();
    ensure!(
        missing.is_empty() && extra.is_empty(),
        "{kustomization}: RBAC differs from the code's calls: missing {missing:?}, extra {extra:?}"
    );
    let mut roles = Vec::new();
    for deployment in &deployments {
        let role = check_container(deployment, config.as_ref())
            .with_context(|| kustomization.to_owned())?;
        if role == "controller" {
            ensure!(
                deployment.spec.as_ref().and_then(|s| s.replicas) == Some(2),
                "the controller runs two replicas"
            );
        }
        roles.push(role);
    }
    Ok(roles)
}

fn args_of(kustomization: &str, name: &str) -> Result<Vec<String>> {
    let objects = render(kustomization)?;
    let deployment = objects
        .iter()
        .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == name)
        .context("no such Deployment")?;
    Ok(serde_json::from_value(
        deployment["spec"]["template"]["spec"]["containers"][0]["args"].clone(),
    )?)
}

#[test]
fn every_kustomization_renders_parses_and_matches_the_code() -> Result<()> {
    if !support::require("deploy/ rendering", &["/usr/bin/kubectl"]) {
        return Ok(());
    }
    ensure!(check("base")? == ["controller"]);
    ensure!(check("overlays/native")? == ["controller"]);
    ensure!(check("overlays/monitor")? == ["controller", "monitor"]);
    let native = args_of("overlays/native", "veg-controller")?;
    ensure!(
        native.contains(&"--bfd-mode=native".to_owned())
            && native.contains(&"--ovn-honours-bfd-port".to_owned()),
        "{native:?}"
    );
    let monitor = args_of("overlays/monitor", "veg-controller")?;
    ensure!(
        monitor.contains(&"--bfd-mode=monitor".to_owned())
            && monitor
                .iter()
                .any(|a| a.starts_with("--monitor-addresses=")),
        "{monitor:?}"
    );
    // The lab's monitor overlay is the shipped one with the lab's addresses, nothing else.
    ensure!(check(LAB_MONITOR)? == ["controller", "monitor"]);
    let shipped = render("overlays/monitor")?;
    let lab = render(LAB_MONITOR)?;
    ensure!(
        shipped.len() == lab.len(),
        "the lab overlay adds or drops objects"
    );
    for (shipped, lab) in shipped.iter().zip(&lab) {
        if shipped["kind"] != "Deployment" {
            ensure!(
                shipped == lab,
                "the lab overlay changes {}",
                shipped["kind"]
            );
        }
    }
    for overlay in ["overlays/monitor", LAB_MONITOR] {
        ensure!(
            monitor_addresses(overlay)?.len() == 2,
            "{overlay}: two monitors, two addresses"
        );
    }
    Ok(())
}

/// The lab's monitor overlay (examples/), as the lab runs it.
const LAB_MONITOR: &str = "../examples/lab/deploy/monitor";

/// The monitors' addresses as the controller is told them (`--monitor-addresses`), checked
/// equal to the addresses their Pods take (`ovn.kubernetes.io/ip_pool`).
fn monitor_addresses(overlay: &str) -> Result<Vec<String>> {
    let told: Vec<String> = args_of(overlay, "veg-controller")?
        .iter()
        .find_map(|a| a.strip_prefix("--monitor-addresses=").map(str::to_owned))
        .context("no --monitor-addresses")?
        .split(',')
        .map(str::to_owned)
        .collect();
    let objects = render(overlay)?;
    let pool: Vec<String> = objects
        .iter()
        .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "veg-monitor")
        .and_then(|d| {
            d["spec"]["template"]["metadata"]["annotations"]["ovn.kubernetes.io/ip_pool"].as_str()
        })
        .context("the monitors have no ip_pool")?
        .split(',')
        .map(str::to_owned)
        .collect();
    ensure!(
        told == pool,
        "{overlay}: the controller is told monitors {told:?}, their Pods take {pool:?}"
    );
    Ok(told)
}

/// Kinds that live in a namespace (every other kind deploy/ renders is cluster-scoped).
const NAMESPACED: [&str; 7] = [
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "ConfigMap",
    "Secret",
    "Service",
    "Deployment",
];

/// The names a Pod template refers to, by kind: ConfigMaps and Secrets (envFrom, env
/// valueFrom, volumes) and its ServiceAccount.
fn references(template: &Value) -> Vec<(&'static str, String)> {
    let spec = &template["spec"];
    let mut out = Vec::new();
    if let Some(account) = spec["serviceAccountName"].as_str() {
        out.push(("ServiceAccount", account.to_owned()));
    }
    let containers = ["initContainers", "containers"]
        .into_iter()
        .flat_map(|field| spec[field].as_array().into_iter().flatten());
    for container in containers {
        for source in container["envFrom"].as_array().into_iter().flatten() {
            if let Some(name) = source["configMapRef"]["name"].as_str() {
                out.push(("ConfigMap", name.to_owned()));
            }
            if let Some(name) = source["secretRef"]["name"].as_str() {
                out.push(("Secret", name.to_owned()));
            }
        }
        for var in container["env"].as_array().into_iter().flatten() {
            if let Some(name) = var["valueFrom"]["configMapKeyRef"]["name"].as_str() {
                out.push(("ConfigMap", name.to_owned()));
            }
            if let Some(name) = var["valueFrom"]["secretKeyRef"]["name"].as_str() {
                out.push(("Secret", name.to_owned()));
            }
        }
    }
    for volume in spec["volumes"].as_array().into_iter().flatten() {
        if let Some(name) = volume["configMap"]["name"].as_str() {
            out.push(("ConfigMap", name.to_owned()));
        }
        if let Some(name) = volume["secret"]["secretName"].as_str() {
            out.push(("Secret", name.to_owned()));
        }
    }
    out
}

/// How many Pods a rolling update runs at once at most: replicas + maxSurge (25 % rounded up
/// by default), or replicas under Recreate.
fn peak_pods(deployment: &Value) -> i64 {
    let replicas = deployment["spec"]["replicas"].as_i64().unwrap_or(1);
    let strategy = &deployment["spec"]["strategy"];
    if strategy["type"] == "Recreate" {
        return replicas;
    }
    let surge = match &strategy["rollingUpdate"]["maxSurge"] {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(percent) => {
            let p: i64 = percent.trim_end_matches('%').parse().unwrap_or(25);
            (replicas * p + 99) / 100
        }
        _ => (replicas * 25 + 99) / 100,
    };
    replicas + surge
}

/// What an operator applying an overlay to a stock cluster needs to hold: every namespaced
/// object has its namespace; what a workload names exists in that namespace; a Deployment
/// with fixed addresses (Kube-OVN's ip_pool) can roll without a free address it does not
/// have; each Pod template passes its namespace's Pod Security level, and veg's own Pods
/// pass `restricted`.
fn check_placement(kustomization: &str) -> Result<()> {
    let objects = render(kustomization)?;
    let mut present = BTreeSet::new();
    for object in &objects {
        let kind = object["kind"].as_str().unwrap_or_default();
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let namespace = object["metadata"]["namespace"].as_str().unwrap_or_default();
        if NAMESPACED.contains(&kind) {
            ensure!(
                !namespace.is_empty(),
                "{kustomization}: {kind} {name} has no namespace (kubectl apply would put it in \
                 whatever namespace the operator's context names)"
            );
        }
        present.insert((kind.to_owned(), namespace.to_owned(), name.to_owned()));
    }
    let level_of = |namespace: &str| {
        objects
            .iter()
            .find(|o| o["kind"] == "Namespace" && o["metadata"]["name"] == namespace)
            .and_then(|o| {
                o["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
                    .as_str()
                    .and_then(veg_lab::podsecurity::Level::parse)
            })
            // Unlabelled namespaces are privileged in a stock cluster.
            .unwrap_or(veg_lab::podsecurity::Level::Privileged)
    };
    for deployment in objects.iter().filter(|o| o["kind"] == "Deployment") {
        let name = deployment["metadata"]["name"].as_str().unwrap_or_default();
        let namespace = deployment["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default();
        let template = &deployment["spec"]["template"];
        for (kind, referenced) in references(template) {
            ensure!(
                present.contains(&(kind.to_owned(), namespace.to_owned(), referenced.clone())),
                "{kustomization}: Deployment {namespace}/{name} names {kind} {referenced}, which \
                 is not in namespace {namespace:?}"
            );
        }
        if let Some(pool) =
            template["metadata"]["annotations"]["ovn.kubernetes.io/ip_pool"].as_str()
        {
            let addresses = i64::try_from(pool.split(',').count())?;
            let peak = peak_pods(deployment);
            ensure!(
                peak <= addresses,
                "{kustomization}: Deployment {name} runs up to {peak} Pods during a rolling \
                 update but its ip_pool has {addresses} addresses: the update would never finish"
            );
        }
        for level in [level_of(namespace), veg_lab::podsecurity::Level::Restricted] {
            let reasons = veg_lab::podsecurity::violations(level, &template["spec"]);
            ensure!(
                reasons.is_empty(),
                "{kustomization}: Deployment {name} violates PodSecurity \"{}:latest\": {}",
                level.as_str(),
                reasons.join(", ")
            );
        }
    }
    Ok(())
}

#[test]
fn every_overlay_applies_cleanly_to_a_stock_cluster() -> Result<()> {
    if !support::require("deploy/ rendering", &["/usr/bin/kubectl"]) {
        return Ok(());
    }
    for kustomization in ["base", "overlays/native", "overlays/monitor", LAB_MONITOR] {
        check_placement(kustomization)?;
    }
    Ok(())
}
