//! Golden cases for the planner: `tests/golden/<case>.yaml` (gateways, on top of the shared
//! `cluster.yaml`) → `tests/golden/<case>.golden` (per gateway: the problem that stops it, or
//! its OVN rows in native and in monitor mode and its Deployment). A change to what the
//! planner produces shows as a diff of these files; after checking it, accept it with
//! `VEG_UPDATE_GOLDEN=1 cargo test -p veg-controller --test golden`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use veg_controller::plan::workload;
use veg_controller::{BfdMode, MemorySnapshot, Snapshot, Tenancy, resolve};

const IMAGE: &str = "veg:golden";

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn load(snapshot: &mut MemorySnapshot, path: &Path) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    let mut gateways = Vec::new();
    for manifest in veg_api::read_manifests(&text)? {
        if manifest.object["kind"] == "VpcEgressGateway" {
            let metadata = &manifest.object["metadata"];
            gateways.push((
                metadata["namespace"]
                    .as_str()
                    .unwrap_or("default")
                    .to_owned(),
                metadata["name"].as_str().unwrap_or_default().to_owned(),
            ));
        }
        snapshot
            .put_object(manifest.object)
            .with_context(|| format!("{}: document {}", path.display(), manifest.index))?;
    }
    Ok(gateways)
}

/// What the planner makes of every gateway of `case`, as text.
fn render(case: &Path) -> Result<String> {
    let mut snapshot = MemorySnapshot::default();
    load(&mut snapshot, &golden_dir().join("cluster.yaml"))?;
    let mut gateways = load(&mut snapshot, case)?;
    gateways.sort();
    let mut out = String::new();
    for (namespace, name) in gateways {
        let gateway = snapshot
            .gateways()
            .into_iter()
            .find(|g| g.namespace_or_empty() == namespace && g.name_or_empty() == name)
            .context("the gateway is not in the snapshot")?;
        writeln!(out, "=== gateway {namespace}/{name}")?;
        match resolve(gateway, &snapshot, &Tenancy::default()) {
            Err(problem) => writeln!(out, "problem: {problem:#?}")?,
            Ok(inputs) => {
                for mode in [BfdMode::Native, BfdMode::Monitor] {
                    let rows = veg_controller::plan::ovn::plan(&inputs, mode);
                    writeln!(out, "--- OVN rows, {mode:?} mode\n{rows:#?}")?;
                }
                let deployment = workload::render(gateway, &inputs, IMAGE);
                writeln!(
                    out,
                    "--- Deployment\n{}",
                    serde_json::to_string_pretty(&deployment)?
                )?;
            }
        }
    }
    Ok(out)
}

#[test]
fn planner_output_matches_the_golden_files() -> Result<()> {
    let update = std::env::var_os("VEG_UPDATE_GOLDEN").is_some();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(golden_dir())?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.extension().is_some_and(|ext| ext == "yaml")
                && path.file_stem().is_some_and(|stem| stem != "cluster")
        })
        .collect();
    cases.sort();
    anyhow::ensure!(cases.len() >= 3, "golden cases missing: {cases:?}");
    let mut failures = Vec::new();
    for case in &cases {
        let actual = render(case)?;
        let expected_path = case.with_extension("golden");
        if update {
            std::fs::write(&expected_path, &actual)?;
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).with_context(|| {
            format!(
                "{} (create it with VEG_UPDATE_GOLDEN=1)",
                expected_path.display()
            )
        })?;
        if let Some(diff) = first_difference(&expected, &actual) {
            failures.push(format!("{}: {diff}", expected_path.display()));
        }
    }
    if !failures.is_empty() {
        bail!(
            "the planner's output changed (if intended: VEG_UPDATE_GOLDEN=1):\n{}",
            failures.join("\n")
        );
    }
    Ok(())
}

/// The first differing line with a little context, or `None` when equal.
fn first_difference(expected: &str, actual: &str) -> Option<String> {
    if expected == actual {
        return None;
    }
    let (want, got): (Vec<&str>, Vec<&str>) =
        (expected.lines().collect(), actual.lines().collect());
    let line = want
        .iter()
        .zip(&got)
        .position(|(a, b)| a != b)
        .unwrap_or(want.len().min(got.len()));
    let around =
        |lines: &[&str]| lines[line.saturating_sub(3)..(line + 3).min(lines.len())].join("\n    ");
    Some(format!(
        "line {}:\n  expected:\n    {}\n  actual:\n    {}",
        line + 1,
        around(&want),
        around(&got)
    ))
}
