//! OVN brought up for real under a private directory and taken down without leftovers:
//! the chassis registers, northd turns a logical switch into a Southbound datapath, and after
//! `stop` no daemon, namespace or file of the lab remains. Needs root and the OVN/OVS packages;
//! under CI=true a missing one fails the test.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use veg_lab::{LabError, Ovn, OvnBuild, OvnConfig, OvnInstall};

fn pids(dir: &Path) -> Vec<u32> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.path().extension().is_some_and(|x| x == "pid"))
                .filter_map(|e| std::fs::read_to_string(e.path()).ok()?.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn kube_ovn_build_comes_up_works_and_leaves_nothing_behind() -> Result<()> {
    comes_up_works_and_leaves_nothing_behind(OvnBuild::KubeOvn, "k")
}

#[test]
fn debian_build_comes_up_works_and_leaves_nothing_behind() -> Result<()> {
    comes_up_works_and_leaves_nothing_behind(OvnBuild::Debian, "d")
}

fn comes_up_works_and_leaves_nothing_behind(build: OvnBuild, tag: &str) -> Result<()> {
    let install = match OvnInstall::locate(build) {
        Ok(install) => install,
        Err(error) => {
            veg_testkit::skip_or_fail(&format!("the lab: {error}"));
            return Ok(());
        }
    };
    if let Err(error) = veg_lab::ovn::check_prerequisites(&install) {
        veg_testkit::skip_or_fail(&format!("the lab: {error}"));
        return Ok(());
    }
    let id = format!("v{tag}{}", std::process::id() % 10000);
    let dir = std::env::temp_dir().join(format!("{id}-ovn"));
    let config = OvnConfig {
        state_dir: dir.clone(),
        prefix: id.clone(),
        chassis: vec![format!("{id}-chassis")],
        install: install.clone(),
    };
    let mut stages = Vec::new();
    let started = Instant::now();
    let mut ovn = Ovn::start(&config, &mut |stage, at| {
        stages.push((stage.to_owned(), at))
    })?;
    eprintln!("up in {:?}: {stages:?}", started.elapsed());
    ensure!(stages.len() == 3, "progress: {stages:?}");
    let running = pids(&dir);
    ensure!(running.len() == 6, "pidfiles: {running:?}");

    // The chosen build runs: its own northd answers with its version.
    let version = install.command("ovn-northd").arg("--version").output()?;
    let expected = match build {
        OvnBuild::KubeOvn => "25.03",
        OvnBuild::Debian => "23.03",
    };
    ensure!(
        String::from_utf8_lossy(&version.stdout).contains(expected),
        "{}",
        String::from_utf8_lossy(&version.stdout)
    );
    // northd at work: a logical switch becomes a Southbound datapath.
    let nbctl = install
        .command("ovn-nbctl")
        .args([&format!("--db={}", ovn.nb_remote()), "ls-add", "probe"])
        .output()?;
    ensure!(
        nbctl.status.success(),
        "{}",
        String::from_utf8_lossy(&nbctl.stderr)
    );
    let sb = ovn.sb_remote();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut found = false;
    while Instant::now() < deadline && !found {
        let out = install
            .command("ovn-sbctl")
            .args([
                &format!("--db={sb}"),
                "--bare",
                "--columns=external_ids",
                "list",
                "Datapath_Binding",
            ])
            .output()?;
        found = String::from_utf8_lossy(&out.stdout).contains("name=probe");
        std::thread::sleep(Duration::from_millis(20));
    }
    ensure!(found, "northd did not create the datapath");
    // The chassis bridge lives in the lab's namespace, not the root one.
    let links = Command::new("ip")
        .args(["-n", ovn.host_namespace(), "link"])
        .output()?;
    ensure!(
        String::from_utf8_lossy(&links.stdout).contains("br-int"),
        "no br-int in the host namespace"
    );
    let root = Command::new("ip")
        .args(["link", "show", "br-int"])
        .output()?;
    ensure!(
        !root.status.success(),
        "br-int appeared in the root namespace"
    );

    let namespace = ovn.host_namespace().to_owned();
    ovn.stop();
    for pid in &running {
        // Exited daemons may linger as zombies until init reaps them (`--detach`).
        ensure!(!veg_lab::ovn::alive(*pid), "process {pid} still runs");
    }
    let namespaces = Command::new("ip").args(["netns", "list"]).output()?;
    ensure!(!String::from_utf8_lossy(&namespaces.stdout).contains(&namespace));
    ensure!(!dir.exists(), "{} remains", dir.display());
    Ok(())
}

#[test]
fn prerequisites_are_named_when_missing() {
    let error = LabError::Missing {
        program: "ovn-controller",
        package: "ovn-host",
    };
    assert_eq!(
        error.to_string(),
        "ovn-controller is missing: install ovn-host (scripts/install-deps.sh installs it)"
    );
}
