//! The CI gate: a test that cannot run here (no root, a tool missing) is skipped on a
//! developer's machine and fails under `CI=true`, where a skip would hide a broken suite.

use std::path::Path;
use std::process::Command;

/// Whether this is a CI run (`CI=true`).
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|ci| ci == "true")
}

/// Says why a test cannot run: panics under CI, otherwise prints `skipped: …` and returns
/// false (the caller returns early).
pub fn skip_or_fail(reason: &str) -> bool {
    if under_ci() {
        panic!("cannot run under CI: {reason}");
    }
    eprintln!("skipped: {reason}");
    record_skip(reason);
    false
}

/// Appends the skip to `$VEG_SKIP_LOG` (set by `scripts/test.sh`, which counts skips apart
/// from passes and lists them): cargo's harness would count the early return as a pass.
fn record_skip(reason: &str) {
    use std::io::Write as _;
    let Some(path) = std::env::var_os("VEG_SKIP_LOG") else {
        return;
    };
    let test = std::thread::current()
        .name()
        .unwrap_or("unnamed test")
        .to_owned();
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(file, "{test}: {reason}");
    }
}

/// Whether `what` can run here: root and every tool present (a `/usr/sbin` or `/usr/bin`
/// path is also looked up under `/sbin` and `/bin`). See [`skip_or_fail`].
pub fn require(what: &str, tools: &[&str]) -> bool {
    let mut missing = Vec::new();
    if !is_root() {
        missing.push("root".to_owned());
    }
    for tool in tools {
        let found = Path::new(tool).exists()
            || Path::new(&tool.replace("/usr/sbin", "/sbin")).exists()
            || Path::new(&tool.replace("/usr/bin", "/bin")).exists();
        if !found {
            missing.push((*tool).to_owned());
        }
    }
    missing.is_empty()
        || skip_or_fail(&format!(
            "{what} needs {} (scripts/install-deps.sh installs them)",
            missing.join(", ")
        ))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}
