//! Running the lab's programs and writing its files; every failure becomes a
//! [`LabError::Step`] naming what was being done.

use std::path::Path;
use std::process::Command;

use serde_json::Value as Json;

use crate::error::LabError;

/// Turns an error's text into a failure of `step`.
pub(crate) fn step(step: &str) -> impl Fn(String) -> LabError + '_ {
    move |detail| LabError::Step {
        step: step.to_owned(),
        detail,
    }
}

/// Runs `command` to completion; its stdout, or its stderr as the failure of `step`.
pub(crate) fn run(step: &str, command: &mut Command) -> Result<String, LabError> {
    let output = command.output().map_err(|error| LabError::Step {
        step: step.to_owned(),
        detail: error.to_string(),
    })?;
    if !output.status.success() {
        return Err(LabError::Step {
            step: step.to_owned(),
            detail: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `ip ARGS`.
pub(crate) fn ip(args: &[&str]) -> Result<(), LabError> {
    run(
        &format!("ip {}", args.join(" ")),
        Command::new("ip").args(args),
    )
    .map(drop)
}

/// Writes `value` as JSON (which is YAML too: the controller's manifest reader takes it) by
/// renaming a temporary file, so readers never see half a file.
pub(crate) fn write_json(path: &Path, value: &Json) -> Result<(), LabError> {
    let temporary = path.with_extension("tmp");
    std::fs::write(
        &temporary,
        serde_json::to_string_pretty(value).unwrap_or_default(),
    )
    .and_then(|()| std::fs::rename(&temporary, path))
    .map_err(|e| step(&format!("writing {}", path.display()))(e.to_string()))
}
