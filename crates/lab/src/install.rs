//! Which OVN the lab runs, and where its programs and schemas are: Kube-OVN's build (OVS 3.5 +
//! OVN 25.03 with Kube-OVN's patches, what its users run; built by
//! `scripts/build-kube-ovn-ovn.sh` into [`KUBE_OVN_PREFIX`]) or Debian's packages (OVN 23.03,
//! the stock data plane).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::error::LabError;

/// Where `scripts/build-kube-ovn-ovn.sh` links the current build.
pub const KUBE_OVN_PREFIX: &str = "/opt/veg/ovn-kube-ovn";
/// Overrides [`KUBE_OVN_PREFIX`].
pub const KUBE_OVN_PREFIX_ENV: &str = "VEG_KUBE_OVN_PREFIX";

/// An OVN build.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OvnBuild {
    /// Kube-OVN's: native BFD on `bfd@<vpc>`, ECMP hashed on the IP source.
    #[default]
    KubeOvn,
    /// Debian 12's packages: no `bfd_sessions` on dedicated ports (monitor mode only).
    Debian,
}

impl OvnBuild {
    /// As `--ovn` spells it.
    pub fn name(self) -> &'static str {
        match self {
            OvnBuild::KubeOvn => "kube-ovn",
            OvnBuild::Debian => "debian",
        }
    }
}

/// An installed OVN: programs and schemas.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OvnInstall {
    /// Which build.
    pub build: OvnBuild,
    /// Its install prefix (`None`: the system's, programs found on `PATH`).
    pub prefix: Option<PathBuf>,
}

impl Default for OvnInstall {
    fn default() -> Self {
        OvnInstall::debian()
    }
}

impl OvnInstall {
    /// Debian's packages.
    pub fn debian() -> Self {
        OvnInstall {
            build: OvnBuild::Debian,
            prefix: None,
        }
    }

    /// `build` as installed on this machine; Kube-OVN's must have been built
    /// (`scripts/build-kube-ovn-ovn.sh`, which `scripts/install-deps.sh` runs).
    pub fn locate(build: OvnBuild) -> Result<Self, LabError> {
        match build {
            OvnBuild::Debian => Ok(OvnInstall::debian()),
            OvnBuild::KubeOvn => {
                let prefix = std::env::var_os(KUBE_OVN_PREFIX_ENV)
                    .map_or_else(|| PathBuf::from(KUBE_OVN_PREFIX), PathBuf::from);
                if !prefix.join("bin/ovn-nbctl").is_file() {
                    return Err(LabError::Step {
                        step: "finding Kube-OVN's OVN build".into(),
                        detail: format!(
                            "nothing at {} ({KUBE_OVN_PREFIX_ENV} moves it): run \
                             scripts/build-kube-ovn-ovn.sh, or use --ovn debian",
                            prefix.display()
                        ),
                    });
                }
                Ok(OvnInstall {
                    build,
                    prefix: Some(prefix),
                })
            }
        }
    }

    /// The path of `program` (`ovn-nbctl`, `ovs-vswitchd`, …).
    pub fn program(&self, program: &str) -> PathBuf {
        match &self.prefix {
            Some(prefix) => ["bin", "sbin"]
                .iter()
                .map(|dir| prefix.join(dir).join(program))
                .find(|path| path.is_file())
                .unwrap_or_else(|| prefix.join("bin").join(program)),
            None => PathBuf::from(program),
        }
    }

    /// A `Command` running `program` of this install.
    pub fn command(&self, program: &str) -> Command {
        Command::new(self.program(program))
    }

    /// Whether `program` is there.
    pub fn has(&self, program: &str) -> bool {
        match &self.prefix {
            Some(_) => self.program(program).is_file(),
            None => find_on_path(program),
        }
    }

    /// The schema file `name` (`ovn-nb`, `ovn-sb`, `vswitch`).
    pub fn schema(&self, name: &str) -> PathBuf {
        let share = self
            .prefix
            .as_deref()
            .map_or_else(|| PathBuf::from("/usr/share"), |p| p.join("share"));
        let project = if name == "vswitch" {
            "openvswitch"
        } else {
            "ovn"
        };
        share.join(project).join(format!("{name}.ovsschema"))
    }

    /// What the lab prints: the build, OVN's and OVS's versions.
    pub fn describe(&self) -> String {
        let version = self
            .command("ovn-nbctl")
            .arg("--version")
            .output()
            .map(|out| {
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .take(2)
                    .map(str::trim)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        format!("{} OVN ({version})", self.build.name())
    }
}

fn find_on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
        || ["/usr/sbin", "/sbin"]
            .iter()
            .any(|dir| Path::new(dir).join(program).is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_and_schemas_come_from_the_chosen_install() {
        let debian = OvnInstall::debian();
        assert_eq!(debian.program("ovn-nbctl"), PathBuf::from("ovn-nbctl"));
        assert_eq!(
            debian.schema("ovn-nb"),
            PathBuf::from("/usr/share/ovn/ovn-nb.ovsschema")
        );
        let built = OvnInstall {
            build: OvnBuild::KubeOvn,
            prefix: Some(PathBuf::from("/nowhere/ovn")),
        };
        assert_eq!(
            built.schema("vswitch"),
            PathBuf::from("/nowhere/ovn/share/openvswitch/vswitch.ovsschema")
        );
        assert_eq!(
            built.program("ovn-nbctl"),
            PathBuf::from("/nowhere/ovn/bin/ovn-nbctl")
        );
        assert!(!built.has("ovn-nbctl"));
    }
}
