//! `veg lab demo`: the product's scenario on a lab it starts and removes — ready, egress per
//! client, failover, scaling, delete — narrated with timestamps.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::Value as Json;
use veg_lab::{Lab, LabOptions, Topology};
use veg_ovsdb::nb::{AddressSet, LogicalRouterPolicy, PortGroup};

use super::gateway_table;

pub(super) fn demo(examples: &Path, data_plane: &super::DataPlaneArgs) -> anyhow::Result<ExitCode> {
    let (ovn, bfd_mode) = data_plane.resolve()?;
    veg_lab::ovn::check_prerequisites(&ovn)?;
    let id = format!("vd{}", std::process::id() % 10000);
    let dir = std::env::temp_dir().join(format!("{id}-veg-lab"));
    let started = Instant::now();
    let say = |text: &str| println!("[{:>6.2}s] {text}", started.elapsed().as_secs_f64());
    say(&format!(
        "starting the lab under {}: {}, {} BFD mode",
        dir.display(),
        ovn.describe(),
        bfd_mode.name()
    ));
    let options = LabOptions {
        state_dir: dir.clone(),
        prefix: id,
        veg: std::env::current_exe().context("where is veg?")?,
        manifests: [
            "nad.yaml",
            "subnets.yaml",
            "lab/cluster.yaml",
            "lab/gateway.yaml",
        ]
        .iter()
        .map(|f| examples.join(f))
        .collect(),
        topology: Topology::read(&examples.join("lab/topology.yaml"))?,
        restart_delay: Some(Duration::from_secs(4)),
        ovn,
        bfd_mode,
        chassis: data_plane.nodes(2),
        node_grace: veg_lab::session::NODE_GRACE,
        pod_security: Default::default(),
        allowed_unsafe_sysctls: Vec::new(),
        deploy: data_plane.deploy(bfd_mode)?,
    };
    let mut lab = Lab::up(options, &mut |stage, at| {
        println!("[{:>6.2}s]   {stage}", at.as_secs_f64());
    })?;
    let outcome = scenario(&mut lab, &say);
    if outcome.is_err() {
        let mut logs = vec![dir.join("veg-controller.log")];
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with("veg-monitor")
            {
                logs.push(entry.path());
            }
        }
        for entry in std::fs::read_dir(dir.join("pods"))
            .into_iter()
            .flatten()
            .flatten()
        {
            for name in ["gateway.log", "bfdd.log", "controller.log", "monitor.log"] {
                logs.push(entry.path().join(name));
            }
        }
        for log in logs {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            println!("--- last lines of {}:", log.display());
            for line in tail.iter().rev() {
                println!("{line}");
            }
        }
    }
    say("taking the lab down");
    lab.down();
    let leftovers = dir.exists();
    match outcome {
        Ok(()) if !leftovers => {
            println!("done: every process, namespace and file of the lab is gone");
            Ok(ExitCode::SUCCESS)
        }
        Ok(()) => bail!("{} was left behind", dir.display()),
        Err(error) => Err(error),
    }
}

/// The live nexthops of the 29100 policy (all instances) of gateway1.
fn nexthops(lab: &Lab) -> usize {
    lab.ovn()
        .live_policy_nexthops(29100)
        .unwrap_or_default()
        .iter()
        .map(std::collections::BTreeSet::len)
        .max()
        .unwrap_or(0)
}

/// The demo's walk: up, egress per client, failover, scaling, delete.
fn scenario(lab: &mut Lab, say: &dyn Fn(&str)) -> anyhow::Result<()> {
    scenario_ready(lab, say)?;
    scenario_egress(lab)?;
    scenario_failover(lab, say)?;
    scenario_scaling(lab, say)?;
    scenario_delete(lab, say)
}

/// gateway1 comes up: its Pods, their BFD sessions, its status and rows.
fn scenario_ready(lab: &mut Lab, say: &dyn Fn(&str)) -> anyhow::Result<()> {
    lab.wait_for(
        "gateway Pods and their BFD sessions",
        Duration::from_secs(30),
        |lab| Ok(nexthops(lab) == 2),
    )?;
    lab.ovn().sync()?;
    lab.wait_for("the gateway's status", Duration::from_secs(10), |lab| {
        Ok(lab.status("default", "gateway1")["phase"] == "Completed")
    })?;
    say("gateway1 is Ready (both instances' BFD sessions Up):");
    let mut gateway = veg_lab::api::find(
        lab.api_dir(),
        &(
            "VpcEgressGateway".into(),
            "default".into(),
            "gateway1".into(),
        ),
    )?
    .map(|(_, o)| o)
    .unwrap_or_default();
    gateway["status"] = lab.status("default", "gateway1");
    gateway["metadata"]["namespace"] = Json::from("default");
    print!("{}", gateway_table(&[gateway], true));
    println!("\n$ ovn-nbctl lr-policy-list ovn-cluster");
    print!("{}", lab.ovn().nbctl(&["lr-policy-list", "ovn-cluster"])?);
    Ok(())
}

/// What the external host sees of each client Pod.
fn scenario_egress(lab: &mut Lab) -> anyhow::Result<()> {
    // The forward-only source needs a way back: a return route on the external host.
    let status = lab.status("default", "gateway1");
    let first_external = status["externalIPs"][0].as_str().unwrap_or_default();
    let external = lab.state().external;
    let _ = Command::new("ip")
        .args([
            "-n",
            &external,
            "route",
            "add",
            "198.18.16.30/32",
            "via",
            first_external,
        ])
        .status();

    println!();
    let clients = [
        ("default/web-1", "selected by namespace: SNAT"),
        ("default/web-2", "selected by namespace: SNAT"),
        ("other/app-1", "policy subnet1: SNAT"),
        ("other/app-2", "policy ipBlock, snat: false: forwarded"),
        ("other/db-1", "not selected: no egress"),
    ];
    let state = lab.state();
    for (pod, why) in clients {
        let address = state
            .pods
            .get(pod)
            .and_then(|p| p.addresses.first().copied());
        let seen: std::collections::BTreeSet<String> = (0..6)
            .filter_map(|_| lab.ask(pod, true, Duration::from_millis(500)))
            .collect();
        let seen = if seen.is_empty() {
            "nothing (no egress)".to_owned()
        } else {
            seen.into_iter().collect::<Vec<_>>().join(", ")
        };
        println!(
            "  {pod:<14} {:<13} {why:<40} → the external host sees {seen}",
            address.map(|a| a.to_string()).unwrap_or_default()
        );
    }
    Ok(())
}

/// The instance carrying web-1's UDP flow dies; the flow's gap, the status, the restart.
fn scenario_failover(lab: &mut Lab, say: &dyn Fn(&str)) -> anyhow::Result<()> {
    // Failover: an instance dies.
    let mut spread = BTreeMap::new();
    for _ in 0..20 {
        if let Some(seen) = lab.ask("default/web-1", true, Duration::from_millis(500)) {
            *spread.entry(seen).or_insert(0) += 1;
        }
    }
    println!("\n  20 connections from web-1, by gateway external address: {spread:?}");
    // The instance carrying web-1's UDP flow (a probe every 5 ms) dies.
    let state = lab.state();
    let web = state
        .pods
        .get("default/web-1")
        .context("no web-1")?
        .netns
        .clone();
    let target = state
        .external_addresses
        .first()
        .context("no external host")?;
    let probe =
        veg_lab::probe::GapProbe::start(lab.state_dir(), &web, *target, Duration::from_secs(3))?;
    let carrier = probe.via().to_owned();
    let victim = lab.status("default", "gateway1")["gateways"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|g| g["externalIPs"][0] == carrier.as_str())
        .and_then(|g| g["pod"].as_str().map(str::to_owned))
        .with_context(|| format!("no instance with external address {carrier:?}"))?;
    std::thread::sleep(Duration::from_millis(500));
    say(&format!(
        "{victim} (it carries web-1's UDP flow, seen as {carrier}) dies: processes killed, links cut"
    ));
    lab.kill(&format!("default/{victim}"))?;
    let report = probe.finish()?;
    println!(
        "  web-1's flow was silent for {:.0} ms, then continued through {}",
        report.gap_ms,
        report.after.as_deref().unwrap_or("nothing")
    );
    println!(
        "  live nexthops now: {}",
        lab.ovn()
            .live_policy_nexthops(29100)?
            .first()
            .map(|hops| hops
                .iter()
                .map(IpAddr::to_string)
                .collect::<Vec<_>>()
                .join(" "))
            .unwrap_or_default()
    );
    lab.wait_for(
        "the status to show the crash",
        Duration::from_secs(5),
        |lab| {
            Ok(lab.status("default", "gateway1")["gateways"]
                .as_array()
                .is_some_and(|g| {
                    g.iter()
                        .any(|i| i["pod"] == victim.as_str() && i["bfd"] == "Down")
                }))
        },
    )?;
    for instance in lab.status("default", "gateway1")["gateways"]
        .as_array()
        .into_iter()
        .flatten()
    {
        println!(
            "  status: instance {} ({}) bfd {}",
            instance["pod"].as_str().unwrap_or(""),
            instance["internalIPs"][0].as_str().unwrap_or(""),
            instance["bfd"].as_str().unwrap_or("")
        );
    }

    // The kubelet restarts it.
    lab.wait_for("the restarted instance", Duration::from_secs(20), |lab| {
        Ok(nexthops(lab) == 2)
    })?;
    say(&format!(
        "the kubelet restarted {victim}; both instances are nexthops again"
    ));
    Ok(())
}

/// Scale to 3 and back to 2.
fn scenario_scaling(lab: &mut Lab, say: &dyn Fn(&str)) -> anyhow::Result<()> {
    // Scale to 3 and back to 2.
    veg_lab::api::scale(lab.api_dir(), "default", "gateway1", 3)?;
    lab.wait_for("three instances", Duration::from_secs(30), |lab| {
        Ok(nexthops(lab) == 3)
    })?;
    say("scaled to 3: three nexthops");
    veg_lab::api::scale(lab.api_dir(), "default", "gateway1", 2)?;
    lab.wait_for("back to two instances", Duration::from_secs(30), |lab| {
        Ok(nexthops(lab) == 2
            && lab
                .state()
                .pods
                .keys()
                .filter(|p| p.starts_with("default/gateway1-"))
                .count()
                == 2)
    })?;
    say("scaled back to 2: the leaving instance left the nexthops first, then its Pod went");
    Ok(())
}

/// Delete: no OVN row is left.
fn scenario_delete(lab: &mut Lab, say: &dyn Fn(&str)) -> anyhow::Result<()> {
    // Delete: no OVN row is left.
    veg_lab::api::delete(
        lab.api_dir(),
        &(
            "VpcEgressGateway".into(),
            "default".into(),
            "gateway1".into(),
        ),
    )?;
    lab.wait_for(
        "the gateway's OVN rows to go",
        Duration::from_secs(10),
        |lab| {
            let owner = veg_api::names::gateway_key("default", "gateway1");
            let owned = |ids: &std::collections::BTreeMap<String, String>| {
                ids.get(veg_api::names::EXTERNAL_ID_GATEWAY) == Some(&owner)
            };
            let ovn = lab.ovn();
            Ok(!ovn
                .rows::<LogicalRouterPolicy>()?
                .iter()
                .any(|row| owned(&row.external_ids))
                && !ovn
                    .rows::<AddressSet>()?
                    .iter()
                    .any(|row| owned(&row.external_ids))
                && !ovn
                    .rows::<PortGroup>()?
                    .iter()
                    .any(|row| owned(&row.external_ids)))
        },
    )?;
    say("gateway1 deleted: no Logical_Router_Policy, Address_Set or Port_Group of it is left");
    println!("\n$ ovn-nbctl lr-policy-list ovn-cluster");
    print!("{}", lab.ovn().nbctl(&["lr-policy-list", "ovn-cluster"])?);
    Ok(())
}
