//! Why the lab cannot run, or what failed on the way.

use std::path::PathBuf;

/// A lab failure; every variant says what to do or what broke.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("the lab needs root (network namespaces, OVS): run it with sudo")]
    NotRoot,
    /// A program is missing.
    #[error("{program} is missing: install {package} (scripts/install-deps.sh installs it)")]
    Missing {
        program: &'static str,
        /// The Debian package.
        package: &'static str,
    },
    /// A step failed.
    #[error("{step}: {detail}")]
    Step {
        /// What was being done.
        step: String,
        /// The command's output or the error.
        detail: String,
    },
    /// A daemon did not come up in time.
    #[error("{what} not ready within {seconds} s; see {log}")]
    Timeout {
        what: &'static str,
        /// Seconds waited.
        seconds: u64,
        /// The log to read.
        log: PathBuf,
    },
}
